"""Large synthetic cohorts and firm-year panels, generated and written in chunks.

:func:`write_cohort` writes ``n`` synthetic firms (or their firm-years) to Parquet or CSV in
bounded memory: firms are drawn in *blocks* of :data:`BLOCK_FIRMS` by the same code as
:func:`~smesurvival.data.synthetic.simulate_cohort`, turned straight into Arrow columns (no
pandas frame), expanded to firm-years on the fly when ``panel=True``, and appended to the file
while the next blocks are drawn on worker threads (numpy, scipy and Arrow release the GIL).

Determinism
-----------
The output is a function of ``(n, seed, params)`` only: never of ``chunk_firms``, ``threads``,
the format or the machine's timing. Block ``b`` (firms ``b * BLOCK_FIRMS + 1 ..``) draws from
its own generator, ``np.random.default_rng(seed)`` for block 0 and
``np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(b,)))`` after it, so

* for ``n <= BLOCK_FIRMS`` (65,536 firms, which includes the 1,612-firm default) the file holds
  exactly ``simulate_cohort(n, seed, params).frame`` (``panel=True``: the ``panel=True`` frame)
  and the same truth;
* for larger ``n`` the firms are *not* those of ``simulate_cohort(n, seed)``: one generator
  over all ``n`` firms draws variable by variable, with a variable number of random bits per
  normal, gamma or Poisson draw, so a chunk cannot jump to its place in that stream. They
  follow the same distribution, with the same true model and population constants: every
  block is a ``simulate_cohort`` draw of up to 65,536 firms and firms are independent, so the
  cohort is an i.i.d. sample of the same firm distribution. Growing ``n`` keeps the firms
  already drawn except those of the last, partial block.

Memory is bounded by the blocks in flight (about 60 MB each as firm-years, ``threads + 1`` of
them) plus one write chunk, whatever ``n`` is: about 400 MB peak RSS with the default single
worker, interpreter and calibration included; ``bench/simulate.py`` measures it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from smesurvival.data.synthetic import (
    COLUMNS,
    EXIT_TYPES,
    CohortParams,
    _calibrate,
    _Calibration,
    _Firms,
    _label,
    _simulate_firms,
    _truth,
)
from smesurvival.errors import UsageError

__all__ = [
    "BLOCK_FIRMS",
    "COMPRESSIONS",
    "DEFAULT_CHUNK_FIRMS",
    "MEASURE_COLUMNS",
    "PANEL_COLUMNS",
    "WriteSummary",
    "cohort_columns",
    "cohort_schema",
    "iter_cohort_tables",
    "write_cohort",
]

#: firms per random-stream block; fixed, because the cohort drawn for a seed depends on it
BLOCK_FIRMS = 65_536
#: default firms per write (one Parquet row group, or one CSV append)
DEFAULT_CHUNK_FIRMS = 65_536
#: columns of the firm-year layout: the firm file's, then ``year``, ``t`` (1..) and ``event``
PANEL_COLUMNS: tuple[str, ...] = (*COLUMNS, "year", "t", "event")
#: study measures appended with ``measures=True`` (``survived`` only in the firm layout)
MEASURE_COLUMNS: tuple[str, ...] = (
    "export_ratio", "exporter", "rd_intensity", "innovativeness", "firm_age", "log_firm_age",
    "log_employees",
)

_STRINGS = ("industry", "region", "exit_type")
_NULLABLE_INTS = ("exit_year", "exit_month")
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
COMPRESSIONS: tuple[str, ...] = ("snappy", "zstd", "lz4", "gzip", "brotli", "none")
#: Parquet dictionary encoding only where values repeat (ids and money amounts hardly do)
_NO_DICTIONARY = frozenset({"firm_id", "sales", "export_sales", "rd_expenditure"})

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class WriteSummary:
    """What :func:`write_cohort` wrote."""

    path: Path
    truth_path: Path | None
    layout: str  # "firms" or "firm-years"
    n_firms: int
    n_rows: int
    n_exits: int
    seconds: float
    label: str

    @property
    def rows_per_second(self) -> float:
        """Rows written per second of wall time, end to end (calibration included)."""
        return self.n_rows / self.seconds if self.seconds > 0 else float("inf")


def cohort_columns(panel: bool = False, measures: bool = False) -> tuple[str, ...]:
    """Column names of the layout :func:`write_cohort` writes."""
    names = PANEL_COLUMNS if panel else COLUMNS
    if measures:
        names = (*names, *MEASURE_COLUMNS, *(() if panel else ("survived",)))
    return names


def cohort_schema(panel: bool = False, measures: bool = False) -> pa.Schema:
    """The Arrow schema written, with the pandas metadata ``DataFrame.to_parquet`` stores.

    Reading the file back with :func:`pandas.read_parquet` gives the dtypes of
    ``simulate_cohort(...).frame``: int64, float64, ``str`` and nullable ``Int64`` for
    ``exit_year``/``exit_month``; the measures are float64, as ``build_measures`` makes them.
    """
    floats = {"sales", "export_sales", "rd_expenditure", "weight", *MEASURE_COLUMNS, "survived"}
    dtypes = {c: ("str" if c in _STRINGS else "Int64" if c in _NULLABLE_INTS
                  else "float64" if c in floats else "int64")
              for c in cohort_columns(panel, measures)}
    empty = pd.DataFrame({c: pd.Series([], dtype=d) for c, d in dtypes.items()})
    return pa.Schema.from_pandas(empty, preserve_index=False)


# ----------------------------------------------------------------------------- blocks

def _block_rng(seed: int, block: int) -> np.random.Generator:
    """Block 0 draws as ``simulate_cohort(n, seed)``; later blocks from independent children."""
    if block == 0:
        return np.random.default_rng(seed)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(block,)))


@dataclass(frozen=True)
class _Block:
    """One block as an Arrow table, with its counts for the truth file and the progress bar."""

    table: pa.Table
    firm_ends: np.ndarray  # end row (exclusive) of each firm in ``table``
    n_firms: int
    n_exits: int
    exits_by_type: tuple[int, ...]
    lost: int


def _measures(cols: dict[str, np.ndarray], exited: np.ndarray, cal: _Calibration
               ) -> dict[str, np.ndarray]:
    """Row-wise study measures, computed as :func:`~smesurvival.data.measures.build_measures`
    does (bit for bit), except innovativeness: its item z-scores use the *population* means and
    SDs of the truth file (``innovativeness_items``), not the sample's, so that a chunk never
    needs the whole file. ``survived`` is 1 when no exit was observed in the follow-up."""
    sales, emp = cols["sales"].astype(float), cols["employees"].astype(float)
    age = cols["survey_year"].astype(float) - cols["founding_year"].astype(float)
    ratio = np.where(sales > 0, cols["export_sales"] / sales, np.nan)
    k = cal.consts
    items = [(np.log1p(cols[q].astype(float)) - k[f"item.{q}.mean"]) / k[f"item.{q}.sd"]
             for q in ("patents", "new_products", "certified_tech")]
    out = {
        "export_ratio": ratio,
        "exporter": (ratio > 0).astype(float),
        "rd_intensity": np.where(emp > 0, cols["rd_employees"].astype(float) / emp, np.nan),
        "innovativeness": (items[0] + items[1] + items[2]) / 3,
        "firm_age": age,
        "log_firm_age": np.log1p(np.where(age >= 0, age, np.nan)),
        "log_employees": np.log(np.where(emp > 0, emp, np.nan)),
    }
    out["survived"] = 1.0 - exited
    return out


def _firm_columns(f: _Firms, p: CohortParams, start: int) -> dict[str, np.ndarray]:
    """The firm file's columns as arrays, as ``synthetic._frame`` builds them; strings as codes."""
    c, exited, m = f.c, f.exited, f.exited.size
    size_class = np.searchsorted(np.array([10, 20, 50, 100]), c["employees"], side="right")
    return {
        "firm_id": np.arange(start + 1, start + m + 1, dtype=np.int64),
        "survey_year": np.full(m, p.survey_year, dtype=np.int64),
        "founding_year": c["founding_year"],
        "industry": c["industry"],
        "region": c["region"],
        "employees": c["employees"],
        "sales": c["sales"],
        "export_sales": c["export_sales"],
        "rd_employees": c["rd_employees"],
        "rd_expenditure": c["rd_expenditure"],
        "patents": c["patents"].astype(np.int64),
        "new_products": c["new_products"].astype(np.int64),
        "certified_tech": c["certified_tech"],
        "rd_alliance": c["rd_alliance"],
        "weight": np.asarray(p.class_weights)[size_class],
        "exit_year": np.where(exited, f.exit_year, 0),
        "exit_month": np.where(exited, f.exit_month, 0),
        "exit_type": f.cause,
        "last_year_observed": f.last,
    }


def _expand(cols: dict[str, np.ndarray], f: _Firms, p: CohortParams, names: list[str]
            ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Firm-years as :func:`smesurvival.data.synthetic.firm_years` makes them: years
    ``survey_year + 1`` to the exit year or the last year observed; ``event`` 1 in the exit year.

    Returns the columns, the exit flag per row and the end row of each firm.
    """
    n_years = np.where(f.exited, f.exit_year, f.last) - p.survey_year
    firm_ends = np.cumsum(n_years)
    row = np.repeat(np.arange(n_years.size), n_years)  # then np.take, which releases the GIL
    out = {k: v.take(row) for k, v in cols.items() if k in names}
    exited = f.exited.take(row)
    t = np.arange(row.size, dtype=np.int64) - (firm_ends - n_years).take(row) + 1
    last_row = np.zeros(row.size, dtype=bool)
    last_row[firm_ends - 1] = True
    out["year"] = p.survey_year + t
    out["t"] = t
    out["event"] = (last_row & exited).astype(np.int64)
    return out, exited, firm_ends


def _to_table(cols: dict[str, np.ndarray], exited: np.ndarray, schema: pa.Schema,
              dicts: dict[str, pa.Array]) -> pa.Table:
    """Arrow columns (zero-copy for plain numbers); exit columns are null without an exit."""
    arrays = []
    for name in schema.names:
        v = cols[name]
        if name in _STRINGS:
            codes = pa.array(v.astype(np.int32), mask=~exited if name == "exit_type" else None)
            arrays.append(pa.DictionaryArray.from_arrays(codes, dicts[name]).cast(pa.large_string()))
        elif name in _NULLABLE_INTS:
            arrays.append(pa.array(v, type=pa.int64(), mask=~exited))
        else:
            arrays.append(pa.array(v))
    return pa.Table.from_arrays(arrays, schema=schema)


def _block(block: int, n: int, seed: int, p: CohortParams, cal: _Calibration, panel: bool,
           measures: bool, schema: pa.Schema, dicts: dict[str, pa.Array]) -> _Block:
    """Draw block ``block`` of the cohort and lay it out as firms or firm-years."""
    start = block * BLOCK_FIRMS
    m = min(BLOCK_FIRMS, n - start)
    f = _simulate_firms(m, _block_rng(seed, block), p, cal)
    cols = _firm_columns(f, p, start)
    if measures:
        cols.update(_measures(cols, f.exited, cal))
    exited, firm_ends = f.exited, np.arange(1, m + 1, dtype=np.int64)
    if panel:
        cols, exited, firm_ends = _expand(cols, f, p, schema.names)
    by_type = tuple(int(np.count_nonzero(f.exited & (f.cause == k)))
                    for k in range(len(EXIT_TYPES)))
    return _Block(table=_to_table(cols, exited, schema, dicts), firm_ends=firm_ends, n_firms=m,
                  n_exits=int(f.exited.sum()), exits_by_type=by_type,
                  lost=int((f.last < p.survey_year + p.follow_up_years).sum()))


def _dictionaries(p: CohortParams) -> dict[str, pa.Array]:
    return {"industry": pa.array(list(p.industries), pa.large_string()),
            "region": pa.array(list(p.regions), pa.large_string()),
            "exit_type": pa.array(list(EXIT_TYPES), pa.large_string())}


def _iter_blocks(n: int, seed: int, p: CohortParams, panel: bool, measures: bool, threads: int
                 ) -> Generator[_Block, None, None]:
    """Blocks in order; up to ``threads`` are being drawn (on workers) ahead of the one handed
    out, so the caller can write one block while the next ones are drawn."""
    cal = _calibrate(p)
    schema, dicts = cohort_schema(panel, measures), _dictionaries(p)
    n_blocks = -(-n // BLOCK_FIRMS)
    if threads == 0:
        for b in range(n_blocks):
            yield _block(b, n, seed, p, cal, panel, measures, schema, dicts)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="smesurvival-simulate")
    pending: deque[Future[_Block]] = deque()
    try:
        for b in range(n_blocks):
            pending.append(pool.submit(_block, b, n, seed, p, cal, panel, measures, schema,
                                        dicts))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _check_args(n: Any, seed: Any, params: Any, chunk_firms: Any, threads: Any
                ) -> tuple[int, int, CohortParams, int, int]:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise UsageError(f"n = {n!r}: the number of firms must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UsageError(f"seed = {seed!r}: the seed must be a non-negative integer")
    p = params if params is not None else CohortParams()
    if not isinstance(p, CohortParams):
        raise UsageError("params must be a CohortParams instance (or None for the defaults)")
    if isinstance(chunk_firms, bool) or not isinstance(chunk_firms, int | np.integer) \
            or chunk_firms < 1:
        raise UsageError(f"chunk_firms = {chunk_firms!r}: give a positive number of firms per write")
    if threads is None:  # the calling thread writes; one worker per further core, up to 2
        threads = min(2, _cpu_count() - 1)
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 0:
        raise UsageError(f"threads = {threads!r}: give a number of worker threads >= 0")
    return int(n), int(seed), p, int(chunk_firms), int(threads)


def iter_cohort_tables(
    n: int,
    seed: int = 2012,
    *,
    params: CohortParams | None = None,
    panel: bool = False,
    measures: bool = False,
    threads: int | None = None,
) -> Iterator[pa.Table]:
    """The cohort :func:`write_cohort` writes, as Arrow tables of one block (65,536 firms) each.

    For engines that consume a large synthetic cohort without a file; memory stays bounded as
    long as the caller does not keep the tables.
    """
    n, seed, p, _, threads = _check_args(n, seed, params, 1, threads)
    for blk in _iter_blocks(n, seed, p, panel, measures, threads):
        yield blk.table


# ----------------------------------------------------------------------------- writing

class _Chunker:
    """Regroups block tables into write chunks of ``chunk_firms`` firms (cut between firms)."""

    def __init__(self, chunk_firms: int) -> None:
        self.chunk_firms = chunk_firms
        # pending tables and, for each, the end row (exclusive) of each of its firms
        self.parts: deque[tuple[pa.Table, np.ndarray]] = deque()
        self.firms = 0

    def add(self, table: pa.Table, firm_ends: np.ndarray) -> Iterator[tuple[pa.Table, int]]:
        """Take a block; yield every complete chunk (table, firms in it)."""
        self.parts.append((table, firm_ends))
        self.firms += firm_ends.size
        while self.firms >= self.chunk_firms:
            yield self._cut(self.chunk_firms), self.chunk_firms

    def flush(self) -> Iterator[tuple[pa.Table, int]]:
        """Yield what is left."""
        if self.firms:
            firms = self.firms
            yield self._cut(firms), firms

    def _cut(self, firms: int) -> pa.Table:
        out: list[pa.Table] = []
        need = firms
        while need:
            table, ends = self.parts.popleft()
            if ends.size <= need:
                out.append(table)
                need -= ends.size
                continue
            rows = int(ends[need - 1])
            out.append(table.slice(0, rows))
            self.parts.appendleft((table.slice(rows), ends[need:] - rows))
            need = 0
        self.firms -= firms
        return out[0] if len(out) == 1 else pa.concat_tables(out)


class _Sink:
    """An open Parquet or CSV writer on a temporary file."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, compression: str) -> None:
        self.fmt = fmt
        self.writer: Any
        if fmt == "parquet":
            import pyarrow.parquet as pq

            # dictionary pages where values repeat; min/max statistics on all but the strings
            self.writer = pq.ParquetWriter(
                path, schema, compression=compression,
                use_dictionary=[c for c in schema.names if c not in _NO_DICTIONARY],
                write_statistics=[c for c in schema.names if c not in _STRINGS])
        else:
            import pyarrow.csv as pacsv

            self.writer = pacsv.CSVWriter(path, schema,
                                          write_options=pacsv.WriteOptions(quoting_style="needed"))

    def write(self, table: pa.Table) -> None:
        if self.fmt == "parquet":
            self.writer.write_table(table, row_group_size=table.num_rows)
        else:
            self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


def _temp_beside(path: Path, suffix: str) -> Path:
    """A fresh hidden name in ``path``'s folder (same file system, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{suffix}")


def write_cohort(
    path: str | Path,
    n: int,
    seed: int = 2012,
    *,
    params: CohortParams | None = None,
    panel: bool = False,
    measures: bool = False,
    chunk_firms: int = DEFAULT_CHUNK_FIRMS,
    threads: int | None = None,
    compression: str = "snappy",
    truth: bool = True,
    progress: ProgressCallback | None = None,
) -> WriteSummary:
    """Write a synthetic cohort of ``n`` firms, or its firm-years, in chunks of firms.

    Parameters
    ----------
    path : output file; ``.parquet`` (or ``.pq``) or ``.csv`` chooses the format.
    n, seed, params : as :func:`~smesurvival.data.synthetic.simulate_cohort` (see the module
        docstring for what is identical to it and what is only equal in distribution).
    panel : write firm-years (the firm columns, then ``year``, ``t`` and ``event``, as
        :func:`smesurvival.data.synthetic.firm_years`) instead of firms.
    chunk_firms : firms per write: one Parquet row group (a firm's years never straddle two)
        or one CSV append. Changes memory and row groups, never the values.
    threads : worker threads drawing blocks while the calling thread writes; 0 draws in the
        calling thread. Default: one per CPU beyond the first, at most 2 (1 on two cores:
        drawing and writing cost about the same). Each worker adds about 100 MB of peak memory.
    compression : Parquet codec, one of :data:`COMPRESSIONS` (ignored for CSV).
    measures : append the study's measures (:data:`MEASURE_COLUMNS`, and ``survived`` in the
        firm layout), so that models can be fitted on the file without ``build_measures``;
        see :func:`_measures` for the one difference (innovativeness uses population
        constants).
    truth : also write the ground truth to ``<path>.truth.json``, as ``SyntheticCohort.write``.
    progress : called after every write with (firms written, rows written).

    The file appears only when complete: everything goes to a temporary file in the same
    folder, renamed at the end; on an error or Ctrl-C the temporary file is removed and any
    earlier file at ``path`` is left as it was.

    Examples
    --------
    >>> s = write_cohort("panel.parquet", 1_000_000, seed=7, panel=True)  # doctest: +SKIP
    >>> s.n_rows, round(s.rows_per_second)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    n, seed, p, chunk_firms, threads = _check_args(n, seed, params, chunk_firms, threads)
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot write {path}: use a .parquet or .csv extension")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder; give a file name")
    if not isinstance(compression, str) or compression.lower() not in COMPRESSIONS:
        raise UsageError(f"compression = {compression!r}: choose one of {', '.join(COMPRESSIONS)}")
    schema = cohort_schema(panel, measures)
    tmp = _temp_beside(path, ".tmp")
    tmp_truth: Path | None = None
    done = {"firms": 0, "rows": 0}
    n_exits = lost = 0
    by_type = np.zeros(len(EXIT_TYPES), dtype=np.int64)

    def write(chunks: Iterator[tuple[pa.Table, int]]) -> None:
        for table, firms in chunks:
            sink.write(table)
            done["firms"] += firms
            done["rows"] += table.num_rows
            if progress is not None:
                progress(done["firms"], done["rows"])

    try:
        sink = _Sink(tmp, fmt, schema, compression.lower())
        try:
            chunker = _Chunker(chunk_firms)
            blocks = _iter_blocks(n, seed, p, panel, measures, threads)
            with closing(blocks):  # the workers stop before the clean-up below
                for blk in blocks:
                    n_exits += blk.n_exits
                    lost += blk.lost
                    by_type += blk.exits_by_type
                    write(chunker.add(blk.table, blk.firm_ends))
            write(chunker.flush())
        finally:
            sink.close()
        label = _label(seed, n, p)
        if truth:
            realised = {"survival_5y": 1.0 - n_exits / n, "n_exits": n_exits,
                        "exits_by_type": dict(zip(EXIT_TYPES, by_type.tolist(), strict=True)),
                        "lost_to_follow_up": lost}
            doc = _truth(p, _calibrate(p), seed, n, realised, label, panel)
            doc["chunked"] = {"block_firms": BLOCK_FIRMS,
                              "identical_to_simulate_cohort": n <= BLOCK_FIRMS}
            tmp_truth = _temp_beside(path, ".truth.tmp")
            tmp_truth.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, path)
        truth_path = None
        if tmp_truth is not None:
            truth_path = path.with_name(path.name + ".truth.json")
            os.replace(tmp_truth, truth_path)
    except BaseException:
        for leftover in (tmp, tmp_truth):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
        raise
    return WriteSummary(path=path, truth_path=truth_path,
                        layout="firm-years" if panel else "firms", n_firms=n, n_rows=done["rows"],
                        n_exits=n_exits, seconds=time.perf_counter() - t0, label=label)
