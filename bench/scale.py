"""Discrete-time logits at register scale: in memory vs glum, streamed, and on Spark.

The three in the same run: in memory against glum, streamed from Parquet, and on Spark
against the stream engine.

Three parts (``--parts memory,stream,spark``, all by default):

* ``memory`` (below): 10 M firm-years fitted in memory, against glum;
* ``stream``: ``--stream-rows`` (50 M) firm-years from Parquet with the stream engine;
* ``spark``: the Spark engine (``local[2]``) on the first ``--spark-rows`` (10 M) of them,
  against the stream engine on the same file.

Part ``memory``. Issue 5's goal: 10 M firm-years x 20 design columns, a discrete-time logit
(a logit on the firm-year rows) fitted in memory,

* at least 2x faster than glum at the same tolerance (coefficients agree to 1e-8),
* peak resident memory at most 1.3x the design matrix,
* each IRLS iteration within 2x the time of one X'X product on the same matrix (the compute
  floor of a Gram-matrix Newton step), measured in the same run.

Data: a synthetic firm-year panel written straight into one float64 design matrix (no data
frame), firm by firm, by :func:`generate` (documented there): 20 columns = intercept, 9 year
dummies (2013-2021; 2012 the reference), log firm age, log employees, export ratio, R&D
intensity, R&D alliance, the two export interactions, profitability, leverage and a
manufacturing dummy; the outcome is the exit indicator of the firm-year, drawn from a known
logit hazard. Each firm contributes its years until exit or 2021, so rows come grouped by
firm, as a register extract does. Deterministic in ``--seed``, chunk by chunk.

Each measurement runs in its own subprocess (so peak RSS, from ``getrusage`` in the child,
does not mix between tools), which first generates the data (the design matrix is part of
every peak):

* ``data``: generation only -- the floor every tool's peak starts from;
* ``smesurvival``: :func:`smesurvival.models.fit.fit_arrays` (rank check, Newton to
  ``tol=1e-8`` on the coefficient steps, classical covariance, null model, diagnostics; its
  passes over X are counted); then, in the same process on the same matrix, one kernel pass
  at the estimate (the cost of one IRLS iteration: the p x p solve is negligible) with the
  default threads and with one thread, and one X'X (numpy's ``X.T @ X`` and
  ``np.dot(X.T, X)``, BLAS threads as configured; the faster), each best of 3, in wall-clock
  and CPU time;
* ``glum``: ``GeneralizedLinearRegressor(family="binomial", alpha=0, fit_intercept=False,
  gradient_tol=...)`` on the same matrix (its intercept is the matrix's column of ones),
  solver ``auto`` (IRLS with a line search). ``gradient_tol`` (glum's criterion is the largest
  gradient component of its mean deviance) is tightened until its coefficients agree with
  smesurvival's to 1e-8; the run prints the max abs difference.

Every subprocess is run ``--repeat`` times, interleaved; times are best-of, peaks the largest.
The machine may be shared: take the ratios from a quiet moment, or raise ``--repeat``.

statsmodels' GLM is not run: at 10 M x 20 it ran out of memory (17.8 GB peak, no result) and
would take a shared machine with it.

Install: ``pip install -e ".[bench]"`` (glum comes with the bench extra); without glum the
glum rows are skipped with a message.

Parts ``stream`` and ``spark``. Data: a synthetic firm-year panel drawn by
:func:`smesurvival.data.simwrite.iter_cohort_tables` (``panel=True, measures=True``: the
register layout, 29 columns, text industry and region) and written once, in blocks of 65,536
firms (one Parquet row group each, snappy), to ``--data-dir`` (default: a temporary folder,
removed at the end): ``stream.parquet`` with the first ``--stream-rows`` firm-years and
``spark.parquet`` with the first ``--spark-rows``. The model is the 20-column discrete-time
logit :data:`STREAM_FORMULA` (intercept, 5 covariates, an interaction, 9 industry and 4 year
dummies).

* ``stream``: ``fit_stream(STREAM_FORMULA, "stream.parquet", memory="1GB")`` in a child
  process: peak RSS (issue 5's goal: under 1.5 GB at 50 M rows), the passes over the file
  (scan, design, one per Newton step, sandwich), each timed from its first batch to its last,
  and rows/s per pass. ``--stream-formulaic`` also times the engine with formulaic encoding
  every batch (its encoder before :mod:`smesurvival.scale.encode`), for the gain.
* ``spark``: ``fit_spark(STREAM_FORMULA, "spark.parquet", master="local[2]")`` (session started
  before the clock; partitions as Spark reads the file, or ``--spark-partitions``) and, in
  another child, ``fit_stream`` on the same file: time per Newton iteration (a Spark job on
  the cached design; a pass over the file for the stream engine) and their ratio, the Spark
  engine's overhead. Skipped with a message without pyspark or Java.

    python bench/scale.py [--parts memory,stream,spark] [--rows 10000000] [--cols 20]
        [--stream-rows 50000000] [--spark-rows 10000000] [--stream-formulaic]
        [--spark-partitions N] [--data-dir DIR] [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: the goals of issue 5 for the in-memory fit.
GOAL_SPEEDUP = 2.0  # glum time / smesurvival time, at least
GOAL_RSS = 1.3  # peak RSS / design matrix bytes, at most
GOAL_ITER = 2.0  # IRLS iteration time / X'X time, at most
COEF_TOL = 1e-8

YEARS = tuple(range(2012, 2022))  # 2012 is the reference year
BASE_TERMS = (
    "log_firm_age", "log_employees", "export_ratio", "rd_intensity", "rd_alliance",
    "export_ratio:rd_intensity", "export_ratio:rd_alliance", "profitability", "leverage",
    "manufacturing",
)
#: true log-odds of exit per firm-year (per unit of each column).
TRUE_BETA = {
    "Intercept": -2.2, "log_firm_age": -0.35, "log_employees": -0.25, "export_ratio": -0.6,
    "rd_intensity": 0.8, "rd_alliance": -0.3, "export_ratio:rd_intensity": -2.5,
    "export_ratio:rd_alliance": 0.05, "profitability": -1.2, "leverage": 0.6,
    "manufacturing": 0.1,
}
YEAR_EFFECT = 0.04  # year dummy y: +0.04 * (y - 2012) - 0.2 * (y in 2020, 2021) (a cycle)
FIRMS_PER_CHUNK = 20_000
KINDS = ("data", "smesurvival", "glum", "glum-intercept")
PARTS = ("memory", "stream", "spark")

#: the goals of issue 5 for the stream engine.
GOAL_STREAM_RSS = 1.5e9  # bytes, peak RSS at 50 M firm-years with memory="1GB"
GOAL_STREAM_ROWS = 50_000_000
#: the 20-column discrete-time logit of the stream and spark parts (5 follow-up years:
#: 2004-2008, 4 year dummies; 10 industries, 9 dummies).
STREAM_FORMULA = ("event ~ export_ratio * rd_intensity + rd_alliance + log_employees"
                  " + log_firm_age + C(industry) + C(year)")
STREAM_KINDS = ("write", "stream", "stream-formulaic", "spark", "stream-spark")


def terms_for(cols: int) -> tuple[str, ...]:
    """Intercept, the year dummies, then as many covariates as ``cols`` leaves room for."""
    years = tuple(f"year[{y}]" for y in YEARS[1:])
    base = ("Intercept", *years, *BASE_TERMS)
    if cols <= len(base):
        return base[:cols]
    return base + tuple(f"noise{j}" for j in range(cols - len(base)))


def generate(
    rows: int, cols: int, seed: int, intercept: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A firm-year panel of ``rows`` rows as a (rows, cols) float64 design and a 0/1 exit.

    Firms are drawn in chunks of 20,000 with ``np.random.default_rng([seed, chunk])``. A firm
    enters in 2012 (half of them: incumbents) or a later year, at age a0 ~ 1 + lognormal
    (log 8, 0.7) years, and is followed until it exits or 2021. Firm traits: log employees
    ~ N(2.8, 1.0) drifting by N(0.02, 0.15) a year; export ratio 0 for 55% of firms, else
    Beta(2, 3); R&D intensity lognormal (median 0.02, capped at 1); an R&D alliance with
    probability 0.2; manufacturing with probability 0.8; profitability ~ N(0.05, 0.1) and
    leverage ~ N(0.5, 0.2) each year. The exit hazard of a firm-year is the logit of
    ``TRUE_BETA`` and the year effects; rows after an exit are not generated. Columns beyond
    the 20 named ones are N(0, 1) noise. The last firm is cut at ``rows``. With
    ``intercept=False`` the column of ones is left out (cols - 1 columns, same data).
    """
    terms = tuple(t for t in terms_for(cols) if intercept or t != "Intercept")
    X = np.empty((rows, len(terms)))
    y = np.empty(rows)
    pos, chunk = 0, 0
    n_years = len(YEARS)
    t_idx = np.arange(n_years)
    while pos < rows:
        rng = np.random.default_rng([seed, chunk])
        F = FIRMS_PER_CHUNK
        entry = np.where(rng.random(F) < 0.5, 0, rng.integers(1, n_years, F))
        age0 = 1.0 + rng.lognormal(np.log(8.0), 0.7, F)
        emp0 = rng.normal(2.8, 1.0, F)
        export = np.where(rng.random(F) < 0.55, 0.0, rng.beta(2.0, 3.0, F))
        rd = np.minimum(rng.lognormal(np.log(0.02), 1.0, F), 1.0)
        alliance = (rng.random(F) < 0.2).astype(float)
        manuf = (rng.random(F) < 0.8).astype(float)
        # (F, years) grids: year index of each firm-year, and whether it is observed
        year_i = entry[:, None] + t_idx[None, :]
        observed = year_i < n_years
        year_i = np.minimum(year_i, n_years - 1)
        log_age = np.log(age0[:, None] + t_idx[None, :])
        log_emp = emp0[:, None] + np.cumsum(rng.normal(0.02, 0.15, (F, n_years)), axis=1)
        profit = rng.normal(0.05, 0.1, (F, n_years))
        lever = rng.normal(0.5, 0.2, (F, n_years))
        b = TRUE_BETA
        year = np.asarray(YEARS)[year_i]
        eta = (b["Intercept"] + YEAR_EFFECT * (year - 2012) - 0.2 * (year >= 2020)
               + b["log_firm_age"] * log_age + b["log_employees"] * log_emp
               + (b["export_ratio"] * export + b["rd_intensity"] * rd
                  + b["rd_alliance"] * alliance + b["export_ratio:rd_intensity"] * export * rd
                  + b["export_ratio:rd_alliance"] * export * alliance
                  + b["manufacturing"] * manuf)[:, None]
               + b["profitability"] * profit + b["leverage"] * lever)
        exit_ = (rng.random((F, n_years)) < 1.0 / (1.0 + np.exp(-eta))) & observed
        # a firm's rows: observed years up to and including its first exit
        exited_before = np.cumsum(exit_, axis=1) - exit_ > 0
        keep = observed & ~exited_before
        k = int(keep.sum())
        take = min(k, rows - pos)
        sl = slice(pos, pos + take)
        frow = np.broadcast_to(np.arange(F)[:, None], keep.shape)[keep][:take]
        per_firm = {
            "export_ratio": export, "rd_intensity": rd, "rd_alliance": alliance,
            "export_ratio:rd_intensity": export * rd,
            "export_ratio:rd_alliance": export * alliance, "manufacturing": manuf,
        }
        per_year = {"log_firm_age": log_age, "log_employees": log_emp,
                    "profitability": profit, "leverage": lever}
        yi = year_i[keep][:take]
        noise_rng = np.random.default_rng([seed, chunk, 1])
        for j, t in enumerate(terms):
            col = X[sl, j]
            if t == "Intercept":
                col[:] = 1.0
            elif t.startswith("year["):
                col[:] = yi == YEARS.index(int(t[5:-1]))
            elif t in per_firm:
                col[:] = per_firm[t][frow]
            elif t in per_year:
                col[:] = per_year[t][keep][:take]
            else:
                col[:] = noise_rng.standard_normal(take)
        y[sl] = exit_[keep][:take]
        pos += take
        chunk += 1
    return X, y, terms


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def best_of(fn: Any, k: int = 3) -> tuple[float, float]:
    """Best wall-clock and best CPU time (all threads of the process) of ``k`` calls."""
    wall, cpu = np.inf, np.inf
    for _ in range(k):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return float(wall), float(cpu)


# ------------------------------------------------------------------------- the subprocesses


def child(kind: str, rows: int, cols: int, seed: int, glum_tol: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    X, y, terms = generate(rows, cols, seed, intercept=kind != "glum-intercept")
    out: dict[str, Any] = {"kind": kind, "gen_s": time.perf_counter() - t0,
                           "design_bytes": X.nbytes, "events": float(y.sum())}
    if kind == "smesurvival":
        from smesurvival.models import glm
        from smesurvival.models.families import FAMILIES
        from smesurvival.models.fit import fit_arrays
        from smesurvival.models.kernels import glm_partial_sums

        passes = []

        def counted(*a: Any, **k: Any) -> Any:  # counts the fit's passes over X
            passes.append(1)
            return glm_partial_sums(*a, **k)

        glm.glm_partial_sums = counted  # type: ignore[assignment]
        (out["fit_s"], out["fit_cpu"]), res = timed(
            lambda: fit_arrays(X, y, model="logit", terms=terms, tol=1e-8))
        glm.glm_partial_sums = glm_partial_sums  # type: ignore[assignment]
        out["passes"] = len(passes)
        out["rss_fit"] = peak_rss_bytes()
        out["params"] = res.params.tolist()
        out["iterations"] = res.iterations
        out["converged"] = res.converged
        fam = FAMILIES["logit"]
        out["pass_s"], out["pass_cpu"] = best_of(
            lambda: glm_partial_sums(X, y, res.params, fam))
        out["pass1_s"], out["pass1_cpu"] = best_of(
            lambda: glm_partial_sums(X, y, res.params, fam, threads=1))
        # the floor: numpy's X'X (syrk) both ways of writing it, the faster of the two
        xtx = [best_of(lambda: X.T @ X), best_of(lambda: np.dot(X.T, X))]
        out["xtx_s"], out["xtx_cpu"] = min(xtx)
    elif kind.startswith("glum"):
        from glum import GeneralizedLinearRegressor

        icpt = kind == "glum-intercept"
        model = GeneralizedLinearRegressor(
            family="binomial", alpha=0, fit_intercept=icpt, gradient_tol=glum_tol,
            max_iter=200, copy_X=False,
        )
        (out["fit_s"], out["fit_cpu"]), _ = timed(lambda: model.fit(X, y))
        out["rss_fit"] = peak_rss_bytes()
        coef = np.asarray(model.coef_)
        out["params"] = (np.r_[model.intercept_, coef] if icpt else coef).tolist()
        out["iterations"] = int(getattr(model, "n_iter_", -1))
        out["converged"] = True
    out["rss"] = peak_rss_bytes()
    return out


def timed(fn: Any) -> tuple[tuple[float, float], Any]:
    t0, c0 = time.perf_counter(), time.process_time()
    res = fn()
    return (time.perf_counter() - t0, time.process_time() - c0), res


# ------------------------------------------------------- the stream and spark subprocesses


def write_panels(data_dir: Path, stream_rows: int, spark_rows: int, seed: int) -> dict[str, Any]:
    """``stream.parquet`` (first ``stream_rows`` firm-years) and ``spark.parquet`` (first
    ``spark_rows``; 0: not written) in ``data_dir``, from one draw of the synthetic panel."""
    import pyarrow.parquet as pq

    from smesurvival.data.simwrite import iter_cohort_tables

    targets = {name: rows for name, rows in (("stream", stream_rows), ("spark", spark_rows))
               if rows > 0}
    need = max(targets.values())
    # about 4.7 firm-years per firm: ask for more firms than needed and stop early
    firms = need // 4 + 65_536
    writers: dict[str, Any] = {}
    written = dict.fromkeys(targets, 0)
    t0 = time.perf_counter()
    try:
        for table in iter_cohort_tables(firms, seed, panel=True, measures=True):
            for name, rows in targets.items():
                take = min(rows - written[name], table.num_rows)
                if take <= 0:
                    continue
                if name not in writers:
                    writers[name] = pq.ParquetWriter(data_dir / f"{name}.parquet",
                                                     table.schema, compression="snappy")
                writers[name].write_table(table.slice(0, take), row_group_size=take)
                written[name] += take
            if all(written[k] >= v for k, v in targets.items()):
                break
    finally:
        for w in writers.values():
            w.close()
    short = {k: v for k, v in written.items() if v < targets[k]}
    if short:
        raise RuntimeError(f"the synthetic panel ran out of firm-years: {short}")
    return {"write_s": time.perf_counter() - t0, "written": written,
            "bytes": {k: (data_dir / f"{k}.parquet").stat().st_size for k in written}}


def stream_fit(path: Path, memory: str, formulaic: bool) -> dict[str, Any]:
    """``fit_stream`` on ``path``, every pass over the file timed (first batch to last)."""
    from smesurvival.scale import sources, stream
    from smesurvival.scale.stream import fit_stream

    if formulaic:
        stream._DIRECT_ENCODER = False
    passes: list[tuple[float, int]] = []
    frames = sources.BatchSource.frames

    def timed_frames(self: Any, columns: list[str], batch_rows: int) -> Any:
        t0, rows = time.perf_counter(), 0
        for df in frames(self, columns, batch_rows):
            rows += len(df)
            yield df
        passes.append((time.perf_counter() - t0, rows))

    sources.BatchSource.frames = timed_frames  # type: ignore[method-assign]
    encoders: list[str] = []
    make = stream._encoding

    def spy(*a: Any, **k: Any) -> Any:
        enc = make(*a, **k)
        encoders.append("direct" if enc.direct is not None else "formulaic")
        return enc

    stream._encoding = spy  # type: ignore[assignment]
    (fit_s, fit_cpu), res = timed(lambda: fit_stream(STREAM_FORMULA, str(path), memory=memory))
    return {"fit_s": fit_s, "fit_cpu": fit_cpu, "passes": [p[0] for p in passes],
            "pass_rows": [p[1] for p in passes], "rows": res.flow.n_read, "nobs": res.nobs,
            "iterations": res.iterations, "params": res.params.tolist(),
            "terms": list(res.terms), "encoder": encoders[0] if encoders else "?"}


def spark_fit(path: Path, memory: str, master: str, partitions: int | None) -> dict[str, Any]:
    """``fit_spark`` on ``path`` (session started first, not timed with the fit); each kernel
    job timed: the first also encodes and caches the design, the others are Newton steps."""
    from smesurvival.scale import spark as sp

    t0 = time.perf_counter()
    session = sp.spark_session(master)
    start_s = time.perf_counter() - t0
    jobs: list[tuple[bool, float]] = []
    kernel = sp._sum_kernel

    def timed_kernel(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        out = kernel(*a, **k)
        jobs.append((bool(k.get("start", False)), time.perf_counter() - t))
        return out

    sp._sum_kernel = timed_kernel  # type: ignore[assignment]
    try:
        (fit_s, fit_cpu), res = timed(lambda: sp.fit_spark(
            STREAM_FORMULA, str(path), spark=session, memory=memory, partitions=partitions))
    finally:
        session.stop()
    return {"fit_s": fit_s, "fit_cpu": fit_cpu, "session_s": start_s,
            "design_s": sum(t for st, t in jobs if st),
            "newton": [t for st, t in jobs if not st], "rows": res.flow.n_read,
            "nobs": res.nobs, "iterations": res.iterations, "params": res.params.tolist()}


def stream_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(args.data_dir)
    out: dict[str, Any] = {"kind": kind}
    if kind == "write":
        out.update(write_panels(data_dir, args.stream_rows, args.spark_rows, args.seed))
    elif kind in ("stream", "stream-formulaic"):
        out.update(stream_fit(data_dir / "stream.parquet", args.stream_memory,
                              kind == "stream-formulaic"))
    elif kind == "stream-spark":
        out.update(stream_fit(data_dir / "spark.parquet", args.stream_memory, False))
    elif kind == "spark":
        out.update(spark_fit(data_dir / "spark.parquet", args.stream_memory, args.spark_master,
                             args.spark_partitions))
    out["rss"] = peak_rss_bytes()
    return out


def run_rounds(console: Any, kinds: list[str], args: argparse.Namespace,
               describe: Any) -> dict[str, list[dict[str, Any]]] | None:
    """Every measurement ``args.repeat`` times, interleaved, each in its own subprocess; a
    line per run (``describe(kind, result)``). None (after saying why) when one fails."""
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(args.repeat):
        for k in kinds:
            out = run_child(k, args)
            if "error" in out:
                console.print(f"[red]{k} failed:[/red] {out['error']}")
                return None
            runs[k].append(out)
            console.print(f"round {r + 1}/{args.repeat} {k}: {describe(k, out)}")
    return runs


def run_child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--rows", str(args.rows), "--cols",
           str(args.cols), "--seed", str(args.seed), "--glum-tol", str(args.glum_tol),
           "--stream-rows", str(args.stream_rows), "--spark-rows", str(args.spark_rows),
           "--stream-memory", args.stream_memory, "--spark-master", args.spark_master]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    if args.spark_partitions:
        cmd += ["--spark-partitions", str(args.spark_partitions)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        return {"kind": kind, "error": " | ".join(tail) or f"exit status {proc.returncode}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------- the report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--glum-tol", type=float, default=1e-8,
                    help="glum's gradient_tol (largest gradient component of its mean deviance)")
    ap.add_argument("--no-glum", action="store_true")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma-separated parts to run: memory, stream, spark (default all)")
    ap.add_argument("--stream-rows", type=int, default=50_000_000,
                    help="firm-years streamed from Parquet in the stream part")
    ap.add_argument("--spark-rows", type=int, default=10_000_000,
                    help="firm-years of the spark part (Spark and stream on the same file)")
    ap.add_argument("--stream-memory", default="1GB", help="memory= of fit_stream / fit_spark")
    ap.add_argument("--stream-formulaic", action="store_true",
                    help="also time the stream engine with formulaic encoding every batch")
    ap.add_argument("--spark-master", default="local[2]")
    ap.add_argument("--spark-partitions", type=int, default=None,
                    help="repartition the Spark data first (default: as Spark reads the file)")
    ap.add_argument("--data-dir", default=None,
                    help="folder for the Parquet files (default: a temporary folder, removed)")
    ap.add_argument("--child", choices=KINDS + STREAM_KINDS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cols < 2:
        ap.error("--cols must be at least 2")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - set(PARTS):
        ap.error(f"--parts takes a comma-separated list of {', '.join(PARTS)}")
    if args.child in STREAM_KINDS:
        print(json.dumps(stream_child(args.child, args)))
        return 0
    if args.stream_rows < 1 or args.spark_rows < 1:
        ap.error("--stream-rows and --spark-rows must be positive")
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.cols, args.seed, args.glum_tol)))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console()
    status = 0
    if "memory" in parts:
        status = memory_part(console, Table, args)
    if status == 0 and ("stream" in parts or "spark" in parts):
        status = file_parts(console, Table, args, parts)
    return status


def memory_part(console: Any, Table: Any, args: argparse.Namespace) -> int:
    """The in-memory fit against glum (each kind in its own subprocess, interleaved)."""
    kinds = ["data", "smesurvival"]
    if not args.no_glum:
        try:
            import glum  # noqa: F401
        except ImportError:
            console.print("[yellow]glum is not installed (pip install glum, or the bench "
                          "extra): its rows are skipped[/yellow]")
        else:
            kinds += ["glum", "glum-intercept"]
    runs = run_rounds(console, kinds, args, lambda k, out: (
        (f"fit {out['fit_s']:.2f} s (cpu {out['fit_cpu']:.2f} s), " if "fit_s" in out else "")
        + f"peak {out['rss'] / 2**30:.2f} GiB"))
    if runs is None:
        return 1
    report(console, Table, runs, args)
    return 0


def report(console: Any, Table: Any, runs: dict[str, list[dict[str, Any]]],
           args: argparse.Namespace) -> None:
    """The results table and the goal ratios (times best-of, peaks the largest)."""

    def best(k: str, key: str) -> float:
        return min(float(o[key]) for o in runs[k])

    def peak(k: str) -> float:
        return max(float(o["rss"]) for o in runs[k])

    sme = runs["smesurvival"][0]
    beta = np.asarray(sme["params"])
    design = float(sme["design_bytes"])
    diffs = {k: float(np.max(np.abs(np.asarray(runs[k][0]["params"]) - beta)))
             for k in runs if k.startswith("glum")}
    table = Table(title=f"{args.rows:,} firm-years x {args.cols} columns, design "
                        f"{design / 2**30:.2f} GiB; times best of {args.repeat}, largest peak")
    for c in ("", "fit s", "CPU s", "iter", "peak GiB", "peak/X", "max|dcoef|"):
        table.add_column(c, justify="right" if c else "left")
    table.add_row("data only", "", "", "", f"{peak('data') / 2**30:.2f}",
                  f"{peak('data') / design:.2f}", "")
    labels = {"smesurvival": "smesurvival", "glum": "glum (1s column)",
              "glum-intercept": "glum (fit_intercept)"}
    for k in runs:
        if k == "data":
            continue
        table.add_row(labels[k], f"{best(k, 'fit_s'):.2f}", f"{best(k, 'fit_cpu'):.2f}",
                      str(runs[k][0]["iterations"]), f"{peak(k) / 2**30:.2f}",
                      f"{peak(k) / design:.2f}", f"{diffs[k]:.1e}" if k in diffs else "")
    console.print(table)
    console.print(f"smesurvival: fit_arrays(tol=1e-8); glum: GeneralizedLinearRegressor(family="
                  f"'binomial', alpha=0, gradient_tol={args.glum_tol:g}), on the same matrix "
                  "(with its column of ones) or, fit_intercept=True, on the matrix without it. "
                  "max|dcoef|: against smesurvival's coefficients.")

    goals = Table(title="Goals of issue 5, ratios measured in this run")
    for c in ("measure", "value", "goal", "met"):
        goals.add_column(c, justify="left" if c == "measure" else "right")

    def verdict(ok: bool) -> str:
        return "[green]yes[/green]" if ok else "[red]no[/red]"

    ok_glum = [k for k in diffs if diffs[k] <= COEF_TOL]
    if diffs and ok_glum:
        g = min(ok_glum, key=lambda k: best(k, "fit_s"))
        speed = best(g, "fit_s") / best("smesurvival", "fit_s")
        goals.add_row(f"speed: {g} / smesurvival (faster glum within 1e-8)",
                      f"{speed:.3f}x", f">= {GOAL_SPEEDUP:g}x", verdict(speed >= GOAL_SPEEDUP))
        goals.add_row("  same, in CPU time", f"{best(g, 'fit_cpu') / best('smesurvival', 'fit_cpu'):.2f}x",
                      "", "")
    for k, d in diffs.items():
        goals.add_row(f"coefficients: max|dcoef| vs {k}", f"{d:.1e}", f"<= {COEF_TOL:g}",
                      verdict(d <= COEF_TOL))
    rss = peak("smesurvival") / design
    goals.add_row("memory: peak RSS / design matrix", f"{rss:.3f}x",
                  f"<= {GOAL_RSS:g}x", verdict(rss <= GOAL_RSS))
    xtx, xtx_cpu = best("smesurvival", "xtx_s"), best("smesurvival", "xtx_cpu")
    it = best("smesurvival", "pass_s") / xtx
    goals.add_row(f"iteration: pass {best('smesurvival', 'pass_s'):.3f} s / X'X {xtx:.3f} s",
                  f"{it:.3f}x", f"<= {GOAL_ITER:g}x", verdict(it <= GOAL_ITER))
    goals.add_row(f"  1 thread: {best('smesurvival', 'pass1_s'):.3f} s / X'X",
                  f"{best('smesurvival', 'pass1_s') / xtx:.2f}x", "", "")
    goals.add_row(f"  1 thread, CPU: {best('smesurvival', 'pass1_cpu'):.3f} s / X'X "
                  f"{xtx_cpu:.3f} s", f"{best('smesurvival', 'pass1_cpu') / xtx_cpu:.2f}x", "", "")
    per_pass = best("smesurvival", "fit_s") / int(sme["passes"])
    goals.add_row(f"  whole fit / its {sme['passes']} passes / X'X", f"{per_pass / xtx:.2f}x",
                  "", "")
    console.print(goals)


# --------------------------------------------------------------- the stream and spark parts


def spark_missing() -> str | None:
    """Why the spark part cannot run here (None: it can)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'smesurvival[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Java is missing (no java on the PATH, no JAVA_HOME)"
    return None


def file_parts(console: Any, Table: Any, args: argparse.Namespace, parts: list[str]) -> int:
    """Write the Parquet panel(s) once, then run the stream and/or spark measurements."""
    want_stream = "stream" in parts
    want_spark = "spark" in parts
    if want_spark and (why := spark_missing()):
        console.print(f"[yellow]spark part skipped: {why}[/yellow]")
        want_spark = False
    if not (want_stream or want_spark):
        return 0
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.mkdtemp(prefix="smesurvival-bench-")
        args.data_dir = tmp
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        wargs = argparse.Namespace(**vars(args))
        wargs.stream_rows = args.stream_rows if want_stream else 0
        wargs.spark_rows = args.spark_rows if want_spark else 0
        w = run_child("write", wargs)
        if "error" in w:
            console.print(f"[red]writing the panel failed:[/red] {w['error']}")
            return 1
        for name, n in w["written"].items():
            console.print(f"wrote {name}.parquet: {n:,} firm-years, "
                          f"{w['bytes'][name] / 1e6:,.0f} MB ({args.data_dir})")
        console.print(f"  in {w['write_s']:.1f} s")
        kinds = (["stream"] + (["stream-formulaic"] if args.stream_formulaic else [])
                 if want_stream else []) + (["spark", "stream-spark"] if want_spark else [])
        runs = run_rounds(console, kinds, args, lambda k, out: (
            f"fit {out['fit_s']:.2f} s (cpu {out['fit_cpu']:.2f} s), peak {out['rss'] / 1e9:.2f} GB"
            + (" (driver)" if k == "spark" else "")
            + (f", encoder {out['encoder']}" if "encoder" in out else "")))
        if runs is None:
            return 1
        if want_stream:
            stream_report(console, Table, runs, args, w["bytes"]["stream"])
        if want_spark:
            spark_report(console, Table, runs, args)
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def newton_passes(out: dict[str, Any]) -> list[float]:
    """The Newton passes of a stream fit: all but the scan, design and sandwich passes."""
    return list(out["passes"][2:-1]) or list(out["passes"])


def median(xs: list[float]) -> float:
    return float(np.median(np.asarray(xs)))


def verdict(ok: bool) -> str:
    return "[green]yes[/green]" if ok else "[red]no[/red]"


def stream_report(console: Any, Table: Any, runs: dict[str, list[dict[str, Any]]],
                  args: argparse.Namespace, size: int) -> None:
    """Peak RSS, passes and rows/s per pass of the stream fits (best-of, largest peak)."""
    first = runs["stream"][0]
    rows = int(first["rows"])
    table = Table(title=f"Stream engine: {rows:,} firm-years from Parquet ({size / 1e6:,.0f} MB), "
                        f"memory={args.stream_memory}, {len(first['terms'])} design columns; "
                        f"times best of {args.repeat}, largest peak")
    for c in ("encoder", "fit s", "passes", "scan s", "Newton s", "Mrow/s Newton",
              "Mrow/s fit", "peak GB"):
        table.add_column(c, justify="left" if c == "encoder" else "right", no_wrap=c == "encoder")
    stats: dict[str, dict[str, float]] = {}
    for k in ("stream", "stream-formulaic"):
        if k not in runs:
            continue
        fit_s = min(float(o["fit_s"]) for o in runs[k])
        n_pass = len(runs[k][0]["passes"])
        newton = min(median(newton_passes(o)) for o in runs[k])
        scan = min(float(o["passes"][0]) for o in runs[k])
        peak = max(float(o["rss"]) for o in runs[k])
        stats[k] = {"fit_s": fit_s, "newton": newton, "peak": peak, "passes": n_pass}
        table.add_row(runs[k][0]["encoder"], f"{fit_s:.2f}", str(n_pass), f"{scan:.2f}",
                      f"{newton:.3f}", f"{rows / newton / 1e6:.2f}",
                      f"{rows * n_pass / fit_s / 1e6:.2f}", f"{peak / 1e9:.2f}")
    console.print(table)
    console.print(f"formula: {STREAM_FORMULA}; {first['iterations']} Newton iterations. Passes: "
                  "scan, design (rank check, start values), one per Newton step, sandwich; each "
                  "timed from its first batch to its last. scan s: the scan pass; Newton s: the "
                  "median Newton pass; Mrow/s Newton: rows / Newton s; Mrow/s fit: rows x passes "
                  "/ fit s.")
    goals = Table(title="Goals of issue 5 (stream engine), measured in this run")
    for c in ("measure", "value", "goal", "met"):
        goals.add_column(c, justify="left" if c == "measure" else "right")
    st = stats["stream"]
    note = "" if rows == GOAL_STREAM_ROWS else f" (goal set for {GOAL_STREAM_ROWS:,})"
    goals.add_row(f"stream: peak RSS, {rows:,} firm-years, memory={args.stream_memory}{note}",
                  f"{st['peak'] / 1e9:.2f} GB", f"< {GOAL_STREAM_RSS / 1e9:g} GB",
                  verdict(st["peak"] < GOAL_STREAM_RSS))
    goals.add_row("stream: throughput per Newton pass", f"{rows / st['newton'] / 1e6:.2f} M rows/s",
                  "reported", "")
    goals.add_row(f"stream: throughput per pass, whole fit ({int(st['passes'])} passes)",
                  f"{rows * st['passes'] / st['fit_s'] / 1e6:.2f} M rows/s", "reported", "")
    if "stream-formulaic" in stats:
        fo = stats["stream-formulaic"]
        goals.add_row("  direct encoder vs formulaic: Newton pass time ratio",
                      f"{fo['newton'] / st['newton']:.2f}x", "", "")
        goals.add_row("  direct encoder vs formulaic: whole fit time ratio",
                      f"{fo['fit_s'] / st['fit_s']:.2f}x", "", "")
        d = float(np.max(np.abs(np.asarray(runs["stream"][0]["params"])
                                - np.asarray(runs["stream-formulaic"][0]["params"]))))
        goals.add_row("  coefficients: max|d| direct vs formulaic", f"{d:.1e}", "<= 1e-12",
                      verdict(d <= 1e-12))
    console.print(goals)


def spark_report(console: Any, Table: Any, runs: dict[str, list[dict[str, Any]]],
                 args: argparse.Namespace) -> None:
    """Time per Newton iteration of Spark and of the stream engine on the same file."""
    sp, sm = runs["spark"], runs["stream-spark"]
    rows = int(sp[0]["rows"])
    spark_iter = min(median(o["newton"]) for o in sp)
    stream_iter = min(median(newton_passes(o)) for o in sm)
    spark_fit = min(float(o["fit_s"]) for o in sp)
    stream_fit = min(float(o["fit_s"]) for o in sm)
    table = Table(title=f"Spark {args.spark_master} against the stream engine: {rows:,} "
                        f"firm-years, same Parquet file; times best of {args.repeat}")
    for c in ("engine", "fit s", "iterations", "s/iteration", "Mrow/s", "encode s"):
        table.add_column(c, justify="left" if c == "engine" else "right")
    design = min(float(o["design_s"]) for o in sp)
    scan_design = min(float(o["passes"][0]) + float(o["passes"][1]) for o in sm)
    table.add_row(f"spark {args.spark_master}", f"{spark_fit:.2f}", str(sp[0]["iterations"]),
                  f"{spark_iter:.3f}", f"{rows / spark_iter / 1e6:.2f}", f"{design:.2f}")
    table.add_row("stream", f"{stream_fit:.2f}", str(sm[0]["iterations"]), f"{stream_iter:.3f}",
                  f"{rows / stream_iter / 1e6:.2f}", f"{scan_design:.2f}")
    console.print(table)
    console.print(f"s/iteration: median Newton step. spark: session started before the clock "
                  f"({min(o['session_s'] for o in sp):.1f} s); encode s: its first kernel job, "
                  "which also encodes and caches the design; each later job is one Newton step "
                  "on the cached design. stream: encode s is its scan and design passes; each "
                  "Newton step is a pass over the file.")
    goals = Table(title=f"Issue 5: spark {args.spark_master} on {rows:,} firm-years (the goal "
                        "names 10 M), measured in this run")
    for c in ("measure", "value", "goal", "met"):
        goals.add_column(c, justify="left" if c == "measure" else "right")
    goals.add_row(f"spark: time per Newton iteration, {rows:,} firm-years", f"{spark_iter:.3f} s",
                  "reported", "")
    goals.add_row("stream: time per Newton pass, same file", f"{stream_iter:.3f} s", "reported", "")
    goals.add_row("spark overhead per iteration (spark / stream)",
                  f"{spark_iter / stream_iter:.2f}x", "reported", "")
    goals.add_row("spark overhead, whole fit (spark / stream)", f"{spark_fit / stream_fit:.2f}x",
                  "reported", "")
    d = float(np.max(np.abs(np.asarray(sp[0]["params"]) - np.asarray(sm[0]["params"]))))
    goals.add_row("coefficients: max|d| spark vs stream", f"{d:.1e}", "<= 1e-8", verdict(d <= 1e-8))
    console.print(goals)


if __name__ == "__main__":
    sys.exit(main())
