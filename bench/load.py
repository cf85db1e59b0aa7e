"""Load test of the web dashboard's what-if: 50 concurrent clients on loopback for 30 s,
with a study job running the whole time.

Starts the dashboard in a subprocess (Uvicorn, studies in a worker process, a fresh data
folder, the built-in study without bootstrap so start-up is short), waits for the built-in
study, then:

1. baseline: ``--clients`` keep-alive connections POST random firm profiles to the what-if
   endpoint for ``--baseline`` seconds, no study running;
2. under load: two studies of the built-in cohort (1,612 firms, 1,000 bootstrap replicates,
   robustness models) are queued, and the same clients run for ``--seconds`` seconds while a
   monitor polls the job's status every second.

Reported per phase: requests, errors (non-200 or no answer within 30 s), throughput and the
latency percentiles; for the load phase also the share of the window in which a study was
running and how far its progress moved. Exit status 1 if any request failed or no study ran
during the load window. Only 127.0.0.1 is contacted; every loop is bounded in time.

    python bench/load.py [--clients 50] [--seconds 30] [--baseline 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HOST = "127.0.0.1"
SERVER = """
import sys, uvicorn
from smesurvival.web.app import create_app
app = create_app(sys.argv[1], demo_bootstrap=0)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def call(port: int, method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_done(port: int, ws: str, run: str, limit: float) -> dict[str, Any]:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        s = call(port, "GET", f"/api/workspaces/{ws}/runs/{run}")
        if s["status"] in ("done", "failed"):
            return s  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise SystemExit(f"run {run} did not finish within {limit:.0f} s")


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) * 1000.0
        q = (lambda p: float(np.percentile(lat, p))) if lat.size else (lambda p: float("nan"))
        return {"phase": self.name, "seconds": self.seconds, "requests": int(lat.size),
                "errors": self.errors, "statuses": {str(k): v for k, v in self.statuses.items()},
                "throughput_per_s": lat.size / self.seconds, "p50_ms": q(50), "p95_ms": q(95),
                "p99_ms": q(99), "max_ms": float(lat.max()) if lat.size else float("nan")}


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    status = int(status_line.split()[1])
    length, close = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
        elif k.strip().lower() == "connection" and v.strip().lower() == "close":
            close = True
    return status, await reader.readexactly(length), close


async def client(i: int, port: int, path: str, schema: dict[str, Any], deadline: float,
                 phase: Phase) -> None:
    rng = random.Random(i)
    inputs = schema["inputs"]
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline:
        if writer is None:
            reader, writer = await asyncio.open_connection(HOST, port)
        assert reader is not None
        profile: dict[str, Any] = {}
        for inp in inputs:
            if inp["kind"] == "category":
                profile[inp["name"]] = rng.choice(inp["levels"])
            elif inp["kind"] == "binary":
                profile[inp["name"]] = rng.randint(0, 1)
            else:
                profile[inp["name"]] = round(rng.uniform(inp["min"], inp["max"]) / inp["step"]) * inp["step"]
                profile[inp["name"]] = min(max(profile[inp["name"]], inp["min"]), inp["max"])
        body = json.dumps({"profile": profile}).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode()
        t0 = time.perf_counter()
        try:
            writer.write(head + body)
            await writer.drain()
            status, _, close = await asyncio.wait_for(read_response(reader), timeout=30.0)
        except (TimeoutError, OSError, ConnectionError, asyncio.IncompleteReadError):
            phase.errors += 1
            writer.close()
            writer = None
            continue
        phase.latencies.append(time.perf_counter() - t0)
        phase.statuses[status] = phase.statuses.get(status, 0) + 1
        if status != 200:
            phase.errors += 1
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def run_phase(port: int, path: str, schema: dict[str, Any], clients: int,
                    phase: Phase) -> None:
    deadline = time.perf_counter() + phase.seconds
    await asyncio.gather(*(client(i, port, path, schema, deadline, phase) for i in range(clients)))


def monitor(port: int, ws: str, runs: list[str], seconds: float) -> list[tuple[float, str, float]]:
    """(time, status of the first unfinished run, its progress), once a second, in a thread."""
    out: list[tuple[float, str, float]] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for run in runs:
            s = call(port, "GET", f"/api/workspaces/{ws}/runs/{run}")
            if s["status"] not in ("done", "failed"):
                out.append((time.monotonic() - t0, s["status"], float(s["progress"])))
                break
        else:
            out.append((time.monotonic() - t0, "idle", 1.0))
        time.sleep(1.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--baseline", type=float, default=10.0, help="seconds without a study (0: skip)")
    ap.add_argument("--json", type=str, default=None, help="write the results here as JSON")
    args = ap.parse_args()

    port = free_port()
    data = tempfile.mkdtemp(prefix="smesurvival-load-")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, data, str(port)], env=env)
    try:
        t0 = time.monotonic()
        while True:
            try:
                demo = call(port, "GET", "/api/demo", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.3)
        ws_demo, run_demo = demo["workspace"], demo["run"]["id"]
        print(f"server on {HOST}:{port}; waiting for the built-in study ...", flush=True)
        wait_done(port, ws_demo, run_demo, 900)
        path = f"/api/workspaces/{ws_demo}/runs/{run_demo}/whatif"
        schema = call(port, "GET", path)
        phases: list[Phase] = []
        if args.baseline > 0:
            base = Phase("baseline (no study running)", args.baseline)
            asyncio.run(run_phase(port, path, schema, args.clients, base))
            phases.append(base)
            print(json.dumps(base.summary()), flush=True)

        ws = call(port, "POST", "/api/workspaces")["id"]
        ds = call(port, "POST", f"/api/workspaces/{ws}/datasets/builtin", {"n": 1612, "seed": 2012})
        runs = [call(port, "POST", f"/api/workspaces/{ws}/runs",
                     {"dataset_id": ds["dataset"]["id"], "options": {"bootstrap": 1000}})["id"]
                for _ in range(2)]
        while call(port, "GET", f"/api/workspaces/{ws}/runs/{runs[0]}")["status"] != "running":
            time.sleep(0.2)
        load = Phase(f"{args.clients} clients with a study running", args.seconds)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            watch = pool.submit(monitor, port, ws, runs, args.seconds)
            asyncio.run(run_phase(port, path, schema, args.clients, load))
            timeline = watch.result()
        phases.append(load)
        running = [p for _, s, p in timeline if s == "running"]
        study = {"samples": len(timeline), "running_share": len(running) / max(len(timeline), 1),
                 "progress_first": running[0] if running else None,
                 "progress_last": running[-1] if running else None}
        summaries = [p.summary() for p in phases]
        report = {"clients": args.clients, "endpoint": "POST /api/workspaces/{ws}/runs/{run}/whatif",
                  "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
                  "phases": summaries, "study_during_load": study}
        print("\n| phase | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in summaries:
            print(f"| {s['phase']} | {s['requests']:,} | {s['errors']} | {s['throughput_per_s']:.0f} | "
                  f"{s['p50_ms']:.0f} | {s['p95_ms']:.0f} | {s['p99_ms']:.0f} | {s['max_ms']:.0f} |")
        print(f"\nstudy job: running in {study['running_share']:.0%} of the {args.seconds:.0f} s "
              f"window; progress {study['progress_first']} -> {study['progress_last']}")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        ok = all(s["errors"] == 0 for s in summaries) and study["running_share"] > 0.9
        print("OK: no errors, and a study ran throughout the load window" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        import shutil

        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
