"""Background study jobs with progress, off the request path.

:class:`Runner` queues runs on a pool of worker *processes* by default (``executor="thread"``
for tests): a study's pure-Python stretches then never hold the server's GIL, so what-if
requests stay fast while a study runs. Workers send ``(run, message, fraction)`` progress
messages through a queue drained by one thread into an in-memory table that the status API
reads; results are stored in DuckDB when a job ends. Runs left unfinished by a stop are queued
again at the next start.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue as queue_mod
import shutil
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from smesurvival.web import worker
from smesurvival.web.security import new_id
from smesurvival.web.store import Run, Store

log = logging.getLogger("smesurvival.web")

ExecutorKind = Literal["process", "thread"]


@dataclass
class Progress:
    status: str
    fraction: float
    message: str


class Runner:
    """Runs study jobs in the background and tracks their progress."""

    def __init__(self, store: Store, data_dir: Path, kind: ExecutorKind = "process",
                 workers: int = 1) -> None:
        if kind not in ("process", "thread"):
            raise ValueError(f"executor must be 'process' or 'thread'; got {kind!r}")
        self.store = store
        self.tmp = data_dir / "tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)  # leftovers of a previous stop
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.kind = kind
        self._progress: dict[str, Progress] = {}
        self._lock = threading.Lock()
        self._queue: Any
        self._pool: Executor
        if kind == "process":
            ctx = multiprocessing.get_context("spawn")
            self._queue = ctx.Queue()
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                             initializer=worker.init, initargs=(self._queue,))
        else:
            self._queue = queue_mod.Queue()
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="study")
        self._stop = threading.Event()
        self._drain = threading.Thread(target=self._drain_progress, name="progress", daemon=True)
        self._drain.start()

    # ---- progress ----------------------------------------------------------------------------
    def _drain_progress(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except (queue_mod.Empty, EOFError, OSError):
                continue
            if item is None:
                break
            run_id, message, fraction = item
            with self._lock:
                p = self._progress.get(run_id)
                if p is not None and p.status in ("queued", "running"):
                    self._progress[run_id] = Progress("running", max(p.fraction, float(fraction)),
                                                      str(message))

    def progress(self, run: Run) -> Progress:
        """Live progress of a queued or running run (stored values otherwise)."""
        with self._lock:
            p = self._progress.get(run.id)
        if p is not None:
            return p
        return Progress(run.status, run.progress, run.message)

    # ---- jobs --------------------------------------------------------------------------------
    def submit(self, run: Run) -> None:
        """Queue ``run``: export its data for the worker, then hand the job to the pool."""
        work = self.tmp / new_id()
        work.mkdir(parents=True)
        job: dict[str, Any] = {"run_id": run.id, "spec": run.spec, "work_dir": str(work),
                               "data_path": None, "source": "", "sha256": None}
        if run.dataset_id is not None:
            ds = self.store.dataset(run.workspace_id, run.dataset_id)
            if ds is None:
                self._finish(run.id, {"error": {"kind": "user", "message": "the data set of this run no longer exists"}})
                return
            if ds.synthetic is None:  # built-in cohorts are simulated again by run_study itself
                path = work / "data.parquet"
                self.store.export_parquet(ds, path)
                job.update(data_path=str(path), source=ds.name, sha256=ds.sha256)
        with self._lock:
            self._progress[run.id] = Progress("queued", 0.0, "waiting for a free worker")
        self.store.update_run(run.id, "queued", 0.0, "waiting for a free worker")
        fut: Future[dict[str, Any]]
        if self.kind == "process":
            fut = self._pool.submit(worker.execute, job)
        else:
            fut = self._pool.submit(worker.execute, job, self._queue)
        fut.add_done_callback(partial(self._done, run.id))

    def _done(self, run_id: str, fut: Future[dict[str, Any]]) -> None:
        if self._stop.is_set():  # stopped with the server: queued again at the next start
            return
        try:
            out = fut.result()
        except Exception as e:  # the worker process died, or the pool was shut down
            log.error("study run %s: worker failed: %r", run_id, e)
            out = {"error": {"kind": "bug", "message": "The study stopped because its worker "
                                                       "ended unexpectedly; run it again."}}
        try:
            self._finish(run_id, out)
        except Exception:
            log.exception("study run %s: could not store the outcome", run_id)

    def _finish(self, run_id: str, out: dict[str, Any]) -> None:
        err = out.get("error")
        if err:
            self.store.update_run(run_id, "failed", 1.0, "stopped", err["message"], err["kind"])
        else:
            self.store.save_results(run_id, out["results_json"], out["view"], out["whatif"],
                                    out["bundle"])
        with self._lock:
            self._progress.pop(run_id, None)

    def shutdown(self) -> None:
        """Stop at once: running studies are ended (and queued again at the next start)."""
        self._stop.set()
        procs = list((getattr(self._pool, "_processes", None) or {}).values())  # before shutdown()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()  # a running study would otherwise hold the exit until it ends
        for proc in procs:
            proc.join(timeout=5)
        if self.kind == "process":
            self._pool.shutdown(wait=True)  # the workers are gone: this only releases the queues
        try:
            self._queue.put(None)
        except (OSError, ValueError):
            pass
        self._drain.join(timeout=2)
        if self.kind == "process":
            self._queue.close()
            self._queue.join_thread()
        shutil.rmtree(self.tmp, ignore_errors=True)
