"""What the pages and the JSON API do, in one place: both front doors call these methods.

Every method takes the workspace id first and finds data sets and runs only inside it
(:class:`NotFound` otherwise). User mistakes raise :class:`~smesurvival.errors.SmeSurvivalError`
(shown as a validation page or a 400 JSON error); nothing here formats HTML.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

from smesurvival.errors import DataReadError, SmeSurvivalError, UsageError
from smesurvival.web import mapping as mp
from smesurvival.web import studyform as sf
from smesurvival.web.jobs import Runner
from smesurvival.web.security import display_name, new_id
from smesurvival.web.sniff import sniff
from smesurvival.web.store import Dataset, Run, Store
from smesurvival.web.whatif import WhatIf

BUILTIN_MAX_N = 50_000


class WebError(Exception):
    """An HTTP-level refusal (not found, read-only) with its status code."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(WebError):
    status = 404


class Forbidden(WebError):
    status = 403


class TooLarge(WebError):
    status = 413


class Service:
    def __init__(self, store: Store, runner: Runner, data_dir: Path,
                 demo_bootstrap: int | None = None, max_upload_bytes: int = 200 << 20) -> None:
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.runner = runner
        self.data_dir = data_dir
        self.demo_bootstrap = demo_bootstrap
        self._whatif: OrderedDict[tuple[str, str], WhatIf] = OrderedDict()
        self._whatif_lock = threading.Lock()
        self._checks: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()

    # ---- start-up ----------------------------------------------------------------------------
    def start(self) -> None:
        """Queue runs a previous stop left unfinished, and the built-in study if it is missing."""
        for run in self.store.unfinished():
            self.runner.submit(run)
        demo = self.store.demo_workspace()
        runs = self.store.runs(demo)
        if not any(r.status != "failed" for r in runs):
            options = sf.StudyOptions.default()
            raw, _ = sf.build_spec(options)
            if self.demo_bootstrap is not None:
                for section in ("effects", "mediation"):
                    raw[section]["bootstrap"] = self.demo_bootstrap
            demo_run = self.store.run(demo, self.store.add_run(demo, None, options.to_dict(), raw))
            assert demo_run is not None
            self.runner.submit(demo_run)

    # ---- workspaces --------------------------------------------------------------------------
    def new_workspace(self) -> str:
        return self.store.create_workspace()

    def check_workspace(self, ws: str, write: bool = False) -> None:
        if not self.store.workspace_exists(ws):
            raise NotFound("No such workspace. Workspace links are private: check the address.")
        if write and self.store.is_public(ws):
            raise Forbidden("The built-in study's workspace is read-only: start your own "
                            "workspace to upload data or run a study.")

    def demo(self) -> tuple[str, Run | None]:
        ws = self.store.demo_workspace()
        runs = self.store.runs(ws)
        done = [r for r in runs if r.status == "done"]
        return ws, (done[0] if done else (runs[0] if runs else None))

    def workspace(self, ws: str) -> dict[str, Any]:
        self.check_workspace(ws)
        return {"id": ws, "public": self.store.is_public(ws),
                "datasets": self.store.datasets(ws), "runs": self.store.runs(ws)}

    # ---- data sets ---------------------------------------------------------------------------
    def upload(self, ws: str, filename: str | None, stream: IO[bytes]) -> Dataset:
        """Store an upload: type sniffed from its bytes, parsed by the readers, never named by
        the user on disk."""
        self.check_workspace(ws, write=True)
        from smesurvival.data.readers import read_data

        work = self.runner.tmp / new_id()
        work.mkdir(parents=True)
        try:
            raw = work / "upload.bin"
            digest = hashlib.sha256()
            size = 0
            with open(raw, "wb") as fh:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > self.max_upload_bytes:
                        raise TooLarge(f"The upload is larger than the limit of "
                                       f"{self.max_upload_bytes:,} bytes.")
                    digest.update(chunk)
                    fh.write(chunk)
            ext = sniff(raw)
            typed = raw.rename(work / f"upload{ext}")
            name = display_name(filename)
            try:
                loaded = read_data(typed)
            except DataReadError as e:
                raise DataReadError(str(e).replace(str(typed), name)) from None
            ds_id = self.store.add_dataset(ws, name, ext.lstrip("."), digest.hexdigest(),
                                           loaded.frame)
            return self._add(ws, ds_id)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _add(self, ws: str, ds_id: str) -> Dataset:
        ds = self.store.dataset(ws, ds_id)
        assert ds is not None
        return ds

    def add_builtin(self, ws: str, n: int, seed: int) -> Dataset:
        """The built-in SYNTHETIC cohort as a data set of the workspace."""
        self.check_workspace(ws, write=True)
        if isinstance(n, bool) or not 50 <= int(n) <= BUILTIN_MAX_N:
            raise UsageError(f"n must be a whole number from 50 to {BUILTIN_MAX_N:,}")
        if isinstance(seed, bool) or not 0 <= int(seed) <= 2**31 - 1:
            raise UsageError("seed must be a whole number from 0 to 2147483647")
        from smesurvival.data.synthetic import simulate_cohort

        cohort = simulate_cohort(n=int(n), seed=int(seed))
        frame = cohort.frame
        sha = hashlib.sha256(frame.to_csv(index=False).encode("utf-8")).hexdigest()
        ds_id = self.store.add_dataset(ws, cohort.label, "synthetic", sha, frame,
                                       synthetic={"n": int(n), "seed": int(seed), "label": cohort.label})
        return self._add(ws, ds_id)

    def dataset(self, ws: str, ds_id: str) -> Dataset:
        self.check_workspace(ws)
        ds = self.store.dataset(ws, ds_id)
        if ds is None:
            raise NotFound("No such data set in this workspace.")
        return ds

    def mapping_of(self, ds: Dataset) -> tuple[dict[str, Any], bool]:
        """The saved mapping, or the suggestion from the column names (and whether suggested)."""
        if ds.mapping is not None:
            return ds.mapping, False
        return mp.suggest(ds.columns), True

    def check(self, ds: Dataset) -> dict[str, Any]:
        """Validation of the data set under its mapping (cached per mapping)."""
        mapping, suggested = self.mapping_of(ds)
        key = (ds.id, json.dumps(mapping, sort_keys=True))
        view = self._checks.get(key)
        if view is None:
            frame = self.store.frame(ds)
            view = mp.validation_view(frame, mapping, ds.name, ds.columns)
            view["needs"] = mp.measure_needs(mapping, "rd_employee_ratio")
            with self._whatif_lock:
                self._checks[key] = view
                while len(self._checks) > 16:
                    self._checks.popitem(last=False)
        return {"mapping": mapping, "suggested": suggested, "validation": view,
                "ready": bool(view["ok"] and not view["needs"])}

    def save_mapping(self, ws: str, ds_id: str, raw: dict[str, Any]) -> dict[str, Any]:
        self.check_workspace(ws, write=True)
        ds = self.dataset(ws, ds_id)
        mapping = mp.parse_mapping(raw, ds.columns)
        self.store.set_mapping(ws, ds.id, mapping)
        return self.check(self.dataset(ws, ds_id))

    def offending_csv(self, ws: str, ds_id: str) -> str:
        from smesurvival.web.bundle import to_csv

        ds = self.dataset(ws, ds_id)
        off = self.check(ds)["validation"].get("offending")
        if not off:
            return to_csv(["line", "rules"], [])
        return to_csv(["line", "rules", *off["columns"]],
                      ([r["line"], "; ".join(r["rules"]), *r["values"]] for r in off["rows"]))

    def data_csv(self, ws: str, ds_id: str) -> str:
        from smesurvival.web.bundle import to_csv

        ds = self.dataset(ws, ds_id)
        frame = self.store.frame(ds)
        return to_csv(frame.columns, frame.astype(object).where(frame.notna(), None).itertuples(index=False))

    # ---- runs ----------------------------------------------------------------------------------
    def start_run(self, ws: str, ds_id: str, options: dict[str, Any]) -> Run:
        self.check_workspace(ws, write=True)
        ds = self.dataset(ws, ds_id)
        opts = sf.StudyOptions.parse(options)
        state = self.check(ds)
        if not state["ready"]:
            problems = [i["message"] or i["rule"] for i in state["validation"]["issues"]
                        if i["severity"] == "error"] + state["validation"]["needs"]
            raise UsageError("the data are not ready for the study: " + "; ".join(problems[:5])
                             + ". Fix the column mapping (or the file) and check again.")
        mapping = state["mapping"]
        if "C(region)" in opts.controls and not mapping.get("region"):
            raise UsageError("the control 'Region dummies' needs the role 'region' mapped to a column")
        columns = mp.column_map(mapping, ds.columns)
        raw, _ = sf.build_spec(opts, columns, ds.synthetic)
        run_id = self.store.add_run(ws, ds.id, opts.to_dict(), raw)
        run = self.store.run(ws, run_id)
        assert run is not None
        self.runner.submit(run)
        return run

    def run(self, ws: str, run_id: str) -> Run:
        self.check_workspace(ws)
        run = self.store.run(ws, run_id)
        if run is None:
            raise NotFound("No such study run in this workspace.")
        return run

    def status(self, ws: str, run_id: str) -> dict[str, Any]:
        run = self.run(ws, run_id)
        p = self.runner.progress(run)
        out: dict[str, Any] = {"id": run.id, "dataset_id": run.dataset_id, "status": p.status,
                               "progress": round(p.fraction, 4), "message": p.message,
                               "options": run.options, "created": run.created.isoformat(),
                               "error": None}
        if p.status == "failed":
            out["error"] = {"kind": run.error_kind, "message": run.error}
        if p.status == "done":
            view = self.store.result(ws, run.id, "view_json") or {}
            out["summary"] = {k: view.get(k) for k in ("title", "synthetic", "data_label", "n_read",
                                                       "n_used", "n_events", "window_years",
                                                       "verdicts", "caveats")}
        return out

    def output(self, ws: str, run_id: str, field: str) -> Any:
        run = self.run(ws, run_id)
        if run.status != "done":
            raise NotFound("This run has no results yet.")
        value = self.store.result(ws, run.id, field)
        if value is None:
            raise NotFound("This run has no such output.")
        return value

    def bundle_member(self, ws: str, run_id: str, member: str) -> bytes:
        """One file of the run's bundle, by exact name from the bundle's own listing."""
        import io

        data = self.output(ws, run_id, "bundle")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if member not in zf.namelist():
                raise NotFound("No such file in this run's report.")
            return zf.read(member)

    def cached_whatif(self, ws: str, run_id: str) -> WhatIf | None:
        """The what-if model of a run if it is loaded already (no database access)."""
        return self._whatif.get((ws, run_id))

    def whatif(self, ws: str, run_id: str) -> WhatIf:
        """The what-if model of a finished run of ``ws`` (loaded once, then cached)."""
        key = (ws, run_id)
        model = self._whatif.get(key)
        if model is not None:
            return model
        with self._whatif_lock:
            model = self._whatif.get(key)
            if model is None:
                stored = self.output(ws, run_id, "whatif_json")
                model = WhatIf(stored)
                self._whatif[key] = model
                while len(self._whatif) > 16:
                    self._whatif.popitem(last=False)
        return model


def user_message(e: Exception) -> str:
    """The text shown for a refused request."""
    if isinstance(e, WebError):
        return e.message
    if isinstance(e, SmeSurvivalError):
        return str(e)
    return "The request could not be handled."
