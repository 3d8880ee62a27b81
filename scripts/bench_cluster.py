#!/usr/bin/env python3
"""Local executor vs Ray executor on this machine: N small demo jobs through a real server each.

Both servers run ``dynapose4d serve`` in a subprocess with the same number of jobs at once
(``--max-jobs``, default 2: the two CPUs of the Ray cluster this script starts with ``ray.init``,
one CPU per job). All N jobs are submitted at once and followed over SSE, each in its own thread.

Measured per executor, in the same run:

- total: from the first submission to the end of the last job's event stream;
- start delay: from a job's submission (just before the POST) to the arrival of its first worker
  event (``started``) over SSE, for the jobs that start at once (the first ``--max-jobs``; the
  others also wait for a slot); the Ray executor's overhead per job is the difference of the two
  executors' means (actor creation and scheduling, on top of the worker's own start);
- event latency: from a progress event's write (its ``time`` field) to its arrival over SSE.

The last line is ``RESULT {json}`` with ``jobs``, ``local_s``, ``ray_s``, ``ray_overhead_s`` and
``event_latency_ms`` (median, Ray executor), and the other figures.

    python scripts/bench_cluster.py [--jobs 4] [--iterations 10] [--max-jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server_fixtures import TINY, start_server  # noqa: E402


def run_jobs(server, n: int, settings: dict, at_once: int) -> dict:
    """Submit ``n`` demo jobs at once and follow them to the end."""
    records = [dict(submitted=None, first_event=None, ended=None, latencies=[], state=None) for _ in range(n)]

    def follow(job_id: str, rec: dict) -> None:
        for kind, _, data in server.events(job_id, timeout=600):
            now = time.time()
            if kind == "worker" and rec["first_event"] is None:
                rec["first_event"] = now
            elif kind == "progress":
                rec["latencies"].append(now - data["time"])
            elif kind == "status":
                rec["state"] = data["state"]
        rec["ended"] = time.time()

    threads = []
    t0 = time.time()
    for i, rec in enumerate(records):
        rec["submitted"] = time.time()
        reply = server.create_job("demo", dict(settings, seed=i))
        assert reply.status == 201, reply.body
        thread = threading.Thread(target=follow, args=(reply.json()["id"], rec))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    bad = [r["state"] for r in records if r["state"] != "done"]
    if bad:
        raise SystemExit(f"jobs did not finish: {bad}")
    delays = [r["first_event"] - r["submitted"] for r in records[:at_once]]
    latencies = [x for r in records for x in r["latencies"]]
    return {
        "total_s": max(r["ended"] for r in records) - t0,
        "start_delay_s": statistics.mean(delays),
        "start_delay_max_s": max(delays),
        "event_latency_ms": 1000 * statistics.median(latencies),
        "event_latency_p95_ms": 1000 * statistics.quantiles(latencies, n=20)[-1],
        "events": len(latencies),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--max-jobs", type=int, default=2)
    args = ap.parse_args(argv)
    import ray

    # The servers and the cluster's workers import this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "backend"), str(ROOT), os.environ.get("PYTHONPATH")) if p)
    settings = dict(TINY, iterations=args.iterations)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        tmp = Path(tmp)
        server = start_server(tmp / "local", "--max-jobs", str(args.max_jobs))
        try:
            results["local"] = run_jobs(server, args.jobs, settings, args.max_jobs)
        finally:
            server.stop()
        t0 = time.monotonic()
        ray.init(num_cpus=args.max_jobs, include_dashboard=False, object_store_memory=150 * 1024 * 1024, log_to_driver=False)
        ray_init_s = time.monotonic() - t0
        try:
            server = start_server(tmp / "ray", "--executor", "ray", "--ray-address", ray.get_runtime_context().gcs_address,
                                  "--max-jobs", str(args.jobs))
            try:
                results["ray"] = run_jobs(server, args.jobs, settings, args.max_jobs)
            finally:
                server.stop()
        finally:
            ray.shutdown()

    print(f"{args.jobs} demo jobs ({settings['gaussians']} Gaussians, {settings['frames']} frames, {args.iterations} steps), "
          f"{args.max_jobs} at once; Ray: a local cluster of {args.max_jobs} CPUs (ray.init {ray_init_s:.1f} s, not counted)")
    print(f"{'executor':<9} {'total s':>8} {'start delay s':>14} {'max s':>6} {'event latency ms':>17} {'p95 ms':>7} {'events':>7}")
    for name, r in results.items():
        print(f"{name:<9} {r['total_s']:>8.2f} {r['start_delay_s']:>14.2f} {r['start_delay_max_s']:>6.2f} "
              f"{r['event_latency_ms']:>17.1f} {r['event_latency_p95_ms']:>7.1f} {r['events']:>7}")
    local, on_ray = results["local"], results["ray"]
    print(f"ray / local total time: {on_ray['total_s'] / local['total_s']:.2f}")
    result = {
        "jobs": args.jobs,
        "local_s": round(local["total_s"], 2),
        "ray_s": round(on_ray["total_s"], 2),
        "ray_overhead_s": round(on_ray["start_delay_s"] - local["start_delay_s"], 3),
        "event_latency_ms": round(on_ray["event_latency_ms"], 1),
        "event_latency_ms_local": round(local["event_latency_ms"], 1),
        "start_delay_s_local": round(local["start_delay_s"], 3),
        "start_delay_s_ray": round(on_ray["start_delay_s"], 3),
        "ray_vs_local": round(on_ray["total_s"] / local["total_s"], 3),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
