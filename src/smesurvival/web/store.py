"""Storage of the web app: one DuckDB file in the data folder.

Tables: ``workspaces``; ``datasets`` (metadata, column map) with each data set's rows in its own
table ``data_<id>``; ``runs`` (options, spec, status); ``results`` (``results.json``, the page
view, the what-if model and the report bundle as a ZIP blob). Everything survives a restart.

Every look-up of a data set or run names its workspace too (``WHERE id = ? AND workspace_id =
?``): an id from another workspace is simply not found. Ids are checked against
:data:`~smesurvival.web.security.ID_PATTERN` before they reach SQL, and every value is a bound
parameter; the only identifier built from text is ``data_<32 hex digits>``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from smesurvival.errors import UsageError
from smesurvival.web.security import new_id, valid_id

DB_NAME = "smesurvival.duckdb"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
  id VARCHAR PRIMARY KEY, created TIMESTAMP, public BOOLEAN);
CREATE TABLE IF NOT EXISTS datasets (
  id VARCHAR PRIMARY KEY, workspace_id VARCHAR NOT NULL, name VARCHAR, format VARCHAR,
  sha256 VARCHAR, n_rows BIGINT, columns VARCHAR, mapping VARCHAR, synthetic VARCHAR,
  created TIMESTAMP);
CREATE TABLE IF NOT EXISTS runs (
  id VARCHAR PRIMARY KEY, workspace_id VARCHAR NOT NULL, dataset_id VARCHAR, status VARCHAR,
  progress DOUBLE, message VARCHAR, options VARCHAR, spec VARCHAR, created TIMESTAMP,
  finished TIMESTAMP, error VARCHAR, error_kind VARCHAR);
CREATE TABLE IF NOT EXISTS results (
  run_id VARCHAR PRIMARY KEY, results_json VARCHAR, view_json VARCHAR, whatif_json VARCHAR,
  bundle BLOB);
"""

FINISHED = ("done", "failed")


@dataclass(frozen=True)
class Dataset:
    id: str
    workspace_id: str
    name: str
    format: str
    sha256: str
    n_rows: int
    columns: tuple[str, ...]
    mapping: dict[str, Any] | None
    synthetic: dict[str, Any] | None  # {"n", "seed", "label"} for the built-in cohort
    created: datetime


@dataclass(frozen=True)
class Run:
    id: str
    workspace_id: str
    dataset_id: str | None  # None: the built-in cohort of the spec
    status: str  # queued | running | done | failed
    progress: float
    message: str
    options: dict[str, Any]
    spec: dict[str, Any]
    created: datetime
    finished: datetime | None
    error: str | None
    error_kind: str | None  # "user" (bad input: shown) | "bug" (reference only)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Store:
    """Thread-safe access to the DuckDB file (one lock; each call its own cursor)."""

    def __init__(self, data_dir: Path) -> None:
        import duckdb

        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / DB_NAME
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as e:
            raise UsageError(f"cannot open {self.path}: {e}. Is another 'smesurvival serve' "
                             "using this data folder? Stop it or choose another --data-dir.") from None
        self._lock = threading.RLock()
        self._frames: OrderedDict[str, pd.DataFrame] = OrderedDict()
        with self._lock:
            self._con.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def _q(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._con.cursor()
            try:
                return cur.execute(sql, list(params)).fetchall()
            finally:
                cur.close()

    # ---- workspaces --------------------------------------------------------------------------
    def create_workspace(self, public: bool = False) -> str:
        ws = new_id()
        self._q("INSERT INTO workspaces VALUES (?, ?, ?)", (ws, _now(), public))
        return ws

    def workspace_exists(self, ws: str) -> bool:
        return valid_id(ws) and bool(self._q("SELECT 1 FROM workspaces WHERE id = ?", (ws,)))

    def is_public(self, ws: str) -> bool:
        rows = self._q("SELECT public FROM workspaces WHERE id = ?", (ws,))
        return bool(rows and rows[0][0])

    def demo_workspace(self) -> str:
        """The public, read-only workspace holding the built-in study (created once)."""
        with self._lock:
            rows = self._q("SELECT id FROM workspaces WHERE public ORDER BY created LIMIT 1")
            return rows[0][0] if rows else self.create_workspace(public=True)

    # ---- data sets ---------------------------------------------------------------------------
    def add_dataset(self, ws: str, name: str, fmt: str, sha256: str, frame: pd.DataFrame,
                    synthetic: dict[str, Any] | None = None) -> str:
        import pyarrow as pa

        ds = new_id()
        table = pa.Table.from_pandas(_storable(frame), preserve_index=False)
        with self._lock:
            cur = self._con.cursor()
            try:
                cur.register("incoming", table)
                cur.execute(f'CREATE TABLE "data_{ds}" AS SELECT * FROM incoming')
                cur.unregister("incoming")
                cur.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)", [
                    ds, ws, name, fmt, sha256, len(frame), json.dumps([str(c) for c in frame.columns]),
                    json.dumps(synthetic) if synthetic else None, _now()])
            finally:
                cur.close()
        return ds

    def datasets(self, ws: str) -> list[Dataset]:
        rows = self._q("SELECT * FROM datasets WHERE workspace_id = ? ORDER BY created DESC", (ws,))
        return [_dataset(r) for r in rows]

    def dataset(self, ws: str, ds: str) -> Dataset | None:
        if not (valid_id(ws) and valid_id(ds)):
            return None
        rows = self._q("SELECT * FROM datasets WHERE id = ? AND workspace_id = ?", (ds, ws))
        return _dataset(rows[0]) if rows else None

    def set_mapping(self, ws: str, ds: str, mapping: dict[str, Any]) -> None:
        self._q("UPDATE datasets SET mapping = ? WHERE id = ? AND workspace_id = ?",
                (json.dumps(mapping), ds, ws))

    def frame(self, ds: Dataset) -> pd.DataFrame:
        """The data set's rows in file order (a small in-memory cache of recent ones)."""
        with self._lock:
            if ds.id in self._frames:
                self._frames.move_to_end(ds.id)
                return self._frames[ds.id]
            cur = self._con.cursor()
            try:
                table = cur.sql(f'SELECT * FROM "data_{ds.id}" ORDER BY rowid').to_arrow_table()
            finally:
                cur.close()
            frame = table.to_pandas()
            self._frames[ds.id] = frame
            while len(self._frames) > 3:
                self._frames.popitem(last=False)
            return frame

    def export_parquet(self, ds: Dataset, path: Path) -> None:
        """Write the data set's rows to ``path`` (for a worker process)."""
        self.frame(ds).to_parquet(path, index=False)

    # ---- runs --------------------------------------------------------------------------------
    def add_run(self, ws: str, dataset_id: str | None, options: dict[str, Any],
                spec: dict[str, Any]) -> str:
        run = new_id()
        self._q("INSERT INTO runs VALUES (?, ?, ?, 'queued', 0, 'waiting to start', ?, ?, ?, NULL, NULL, NULL)",
                (run, ws, dataset_id, json.dumps(options), json.dumps(spec), _now()))
        return run

    def runs(self, ws: str) -> list[Run]:
        rows = self._q("SELECT * FROM runs WHERE workspace_id = ? ORDER BY created DESC", (ws,))
        return [_run(r) for r in rows]

    def run(self, ws: str, run: str) -> Run | None:
        if not (valid_id(ws) and valid_id(run)):
            return None
        rows = self._q("SELECT * FROM runs WHERE id = ? AND workspace_id = ?", (run, ws))
        return _run(rows[0]) if rows else None

    def unfinished(self) -> list[Run]:
        rows = self._q("SELECT * FROM runs WHERE status NOT IN ('done', 'failed') ORDER BY created")
        return [_run(r) for r in rows]

    def update_run(self, run: str, status: str, progress: float, message: str,
                   error: str | None = None, error_kind: str | None = None) -> None:
        finished = _now() if status in FINISHED else None
        self._q("UPDATE runs SET status = ?, progress = ?, message = ?, error = ?, error_kind = ?, "
                "finished = ? WHERE id = ?", (status, progress, message, error, error_kind, finished, run))

    def save_results(self, run: str, results_json: str, view: dict[str, Any],
                     whatif: dict[str, Any] | None, bundle: bytes) -> None:
        with self._lock:
            self._q("DELETE FROM results WHERE run_id = ?", (run,))
            self._q("INSERT INTO results VALUES (?, ?, ?, ?, ?)", (
                run, results_json, json.dumps(view), json.dumps(whatif) if whatif else None, bundle))
            self.update_run(run, "done", 1.0, "finished")

    def result(self, ws: str, run: str, field: str) -> Any:
        """One stored output of a finished run of workspace ``ws`` (None when absent)."""
        if field not in ("results_json", "view_json", "whatif_json", "bundle"):
            raise ValueError(field)
        if self.run(ws, run) is None:
            return None
        rows = self._q(f"SELECT {field} FROM results WHERE run_id = ?", (run,))
        if not rows or rows[0][0] is None:
            return None
        value = rows[0][0]
        if field in ("view_json", "whatif_json"):
            return json.loads(value)
        return value


def _storable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each column of mixed Python types (e.g. numbers and text in one Excel
    column) as text, missing cells kept missing: validation then names the cells that are not
    numbers, exactly as for a CSV."""
    import pyarrow as pa

    out = {}
    for col in frame.columns:
        s = frame[col]
        if s.dtype == object:
            try:
                pa.array(s, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                s = s.map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
                s = s.astype(object).where(s.notna(), None)
        out[col] = s
    return pd.DataFrame(out, index=frame.index)


def _dataset(r: tuple[Any, ...]) -> Dataset:
    return Dataset(r[0], r[1], r[2], r[3], r[4], int(r[5]), tuple(json.loads(r[6])),
                   json.loads(r[7]) if r[7] else None, json.loads(r[8]) if r[8] else None, r[9])


def _run(r: tuple[Any, ...]) -> Run:
    return Run(r[0], r[1], r[2], r[3], float(r[4] or 0.0), r[5] or "", json.loads(r[6]),
               json.loads(r[7]), r[8], r[9], r[10], r[11])
