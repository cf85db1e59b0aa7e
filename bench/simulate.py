"""Large synthetic firm-year panels: the chunked writer against simulate-then-to_parquet.

For each size (default 1,000,000 and 5,000,000 firms, about 4.7 firm-years each), in a fresh
process each so that peak RSS is that run's own:
  * smesurvival: ``write_cohort(path, n, seed, panel=True)`` — blocks of 65,536 firms drawn on
    worker threads, expanded to firm-years as Arrow columns, appended to one Parquet file
    (what ``smesurvival simulate --n N --panel --out FILE.parquet`` runs);
  * baseline, what a user would otherwise write: ``simulate_cohort(n, seed, panel=True)`` in one
    go (one numpy generator, a pandas frame, pandas firm-year expansion) then
    ``frame.to_parquet(path)``.

Timed end to end inside the process: the one-off calibration (about 0.7 s), drawing,
expansion and Parquet writing (imports excluded). Printed per run: firm-years, wall seconds,
million firm-years per second, CPU seconds (user + system) and firm-years per CPU second
(robust on a shared machine), peak RSS and file size; then the ratios. The load average is
printed before and after: on a shared machine wall-clock throughput depends on it. Goal
(issue 5): at least 1 M firm-years per second on 2 cores, peak RSS independent of n.

    python bench/simulate.py [--sizes 1000000,5000000] [--no-baseline] [--threads 2] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
how, path, n, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
threads = None if sys.argv[5] == "default" else int(sys.argv[5])
from smesurvival.data.simwrite import write_cohort
from smesurvival.data.synthetic import simulate_cohort
def cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime
c0, t0 = cpu(), time.perf_counter()
if how == "chunked":
    rows = write_cohort(path, n, seed, panel=True, threads=threads, truth=False).n_rows
else:
    frame = simulate_cohort(n, seed, panel=True).frame
    frame.to_parquet(path, index=False)
    rows = len(frame)
wall, used = time.perf_counter() - t0, cpu() - c0
print(json.dumps({"rows": rows, "wall": wall, "cpu": used,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "file_mb": path.stat().st_size / 1e6}))
"""


def _run(how: str, path: Path, n: int, seed: int, threads: int | None) -> dict[str, float]:
    """One measurement in a fresh interpreter (clean peak RSS, cold calibration cache)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, how, str(path), str(n), str(seed),
                          "default" if threads is None else str(threads)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{how} run failed:\n{out.stderr}")
    res: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    path.unlink(missing_ok=True)
    return res


def _row(label: str, n: int, r: dict[str, float]) -> str:
    return (f"{label:<34} {n:>10,} {int(r['rows']):>12,} {r['wall']:>8.2f} "
            f"{r['rows'] / r['wall'] / 1e6:>8.2f} {r['cpu']:>7.1f} "
            f"{r['rows'] / r['cpu'] / 1e6:>8.2f} {r['rss_mb']:>8.0f} {r['file_mb']:>8.1f}")


def main() -> None:
    """Run the benchmark and print the table and the ratios."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000000,5000000", help="firms, comma-separated")
    ap.add_argument("--no-baseline", action="store_true", help="skip the baseline runs")
    ap.add_argument("--threads", type=int, default=None,
                    help="write_cohort worker threads (default: the library's, 1 on two cores)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--dir", default=None, help="folder for the files (default: a temp folder)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    print(f"cores: {os.cpu_count()}; load average before: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} (a shared machine: other jobs "
          "take cores, so wall-clock throughput varies; CPU seconds are steadier)")
    head = (f"{'run':<34} {'firms':>10} {'firm-years':>12} {'wall s':>8} {'M fy/s':>8} "
            f"{'CPU s':>7} {'M fy/CPUs':>9} {'peak MB':>8} {'file MB':>8}")
    print(head)
    print("-" * len(head))
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sizes:
            path = Path(tmp) / f"panel_{n}.parquet"
            r = _run("chunked", path, n, args.seed, args.threads)
            results["chunked", n] = r
            label = "default" if args.threads is None else args.threads
            print(_row(f"write_cohort (threads={label})", n, r), flush=True)
            if not args.no_baseline:
                b = _run("baseline", path, n, args.seed, args.threads)
                results["baseline", n] = b
                print(_row("simulate_cohort + to_parquet", n, b), flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for n in sizes:
        c = results["chunked", n]
        goal = "meets" if c["rows"] / c["wall"] >= 1e6 else "MISSES"
        line = (f"n = {n:,}: write_cohort {c['rows'] / c['wall'] / 1e6:.2f} M firm-years/s "
                f"({goal} the 1 M/s goal), peak RSS {c['rss_mb']:.0f} MB")
        if ("baseline", n) in results:
            b = results["baseline", n]
            line += (f"; vs simulate_cohort + to_parquet: {b['wall'] / c['wall']:.1f}x faster, "
                     f"{b['rss_mb'] / c['rss_mb']:.1f}x less peak memory")
        print(line)
    if len(sizes) > 1:
        small, large = results["chunked", min(sizes)], results["chunked", max(sizes)]
        print(f"peak RSS, {max(sizes):,} vs {min(sizes):,} firms: {large['rss_mb']:.0f} vs "
              f"{small['rss_mb']:.0f} MB (bounded: it does not grow with n)")


if __name__ == "__main__":
    main()
