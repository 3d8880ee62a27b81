#!/usr/bin/env python3
"""Job-server benchmark on loopback: frame fetch throughput and event latency, idle and busy.

Two real servers run in subprocesses (``dynapose4d serve``):

- server A never runs jobs (``--max-jobs 0``); this script plays its worker: it plants a snapshot
  of 100k Gaussians (the renderer benchmark scene of DESIGN.md §6, with a random deformation and
  14 keypoints) in a queued job, and appends events to the job's ``events.jsonl``.
- server B runs a real demo job (2000 Gaussians, all CPU threads) that keeps the CPU busy.

Measured, first with nothing else running (idle), then while B trains (busy):

- frame fetch: every frame of a 25-frame clip, in order, one request each over one keep-alive
  connection (as the add-on fetches a sequence), float32 and float16 (sampling the deformation +
  encoding + transfer + decoding with the add-on's numpy decoder); also a second pass over the
  same frames (cached). Each phase samples at its own fps, so no phase finds another's frames
  in the server's cache;
- first frame of a new snapshot: the snapshot file is replaced (as the worker replaces it) and
  frame 0 fetched at once: loading the model, sampling, transfer and decoding;
- event latency: time from an event's write (its ``time`` field, set just before the append)
  to its arrival in an SSE client. Idle: events this script appends for A's job; busy: the
  training job's own progress events streamed from B (plus the planted events on A).

The last line is ``RESULT {json}``: ``frames_per_s_100k`` (float32, busy, not cached),
``event_latency_ms`` (median, busy, the training job's progress events), ``first_frame_s``
(busy, new snapshot to decoded frame 0), and the other figures.

    python scripts/bench_server.py [--frames 25] [--events 60]
"""

from __future__ import annotations

import argparse
import http.client
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

from blender_addon.format.wire import decode_frame  # noqa: E402
from tests.server_fixtures import Server, start_server  # noqa: E402

N_GAUSSIANS = 100_000
PHASE_FPS = {"idle": 24.0, "busy": 25.0}


def make_snapshot(path: Path, n: int = N_GAUSSIANS, version: int = 1) -> None:
    """A 4D model of ``n`` Gaussians with a non-trivial deformation, saved as a worker would."""
    import torch

    from dynapose4d.cameras import Cameras
    from dynapose4d.deform.anchors import Anchors
    from dynapose4d.deform.deformations import Binding, DeformConfig, make_deformation
    from dynapose4d.dynamic4d import Dynamic4D, Keypoints3D
    from dynapose4d.evaluation.scenes import sphere_scene

    torch.manual_seed(0)
    static = sphere_scene(n)
    config = DeformConfig()
    deformation = make_deformation(static, config)
    with torch.no_grad():  # the heads start at zero (identity); give them some motion
        for p in deformation.parameters():
            p.add_(0.01 * torch.randn_like(p))
    rest = static.means[torch.randperm(n)[:14]]
    anchors = Anchors(rest, torch.ones(14, dtype=torch.bool), Binding.nearest(rest, deformation.handles_rest))
    edges = torch.stack([torch.arange(13), torch.arange(1, 14)], 1)
    model = Dynamic4D(
        static=static,
        deform_config=config,
        deform_state={k: v.detach().clone() for k, v in deformation.state_dict().items()},
        keypoints=Keypoints3D(tuple(f"kp{i:02d}" for i in range(14)), edges, anchors),
        camera=Cameras.orbit(0.0, 0.0, 2.0, width=256),
        video_fps=7.0,
        num_frames=14,
        info={"snapshot": {"version": version, "iteration": 0, "stage": "bench"}},
    )
    model.save(path)


def fetch_frames(server: Server, job_id: str, dtype: str, frame_count: int, fps: float, indices: list[int] | None = None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    indices = list(range(frame_count)) if indices is None else indices
    nbytes, t0 = 0, time.perf_counter()
    for index in indices:
        conn.request("GET", f"/v1/jobs/{job_id}/frames/{index}?fps={fps}&frame_count={frame_count}&dtype={dtype}", headers=server.auth)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body[:200]
        frame = decode_frame(body)
        assert frame.count == N_GAUSSIANS
        nbytes += len(body)
    seconds = time.perf_counter() - t0
    conn.close()
    return {"frames": len(indices), "mb": nbytes / 1e6, "s": seconds, "mb_per_s": nbytes / 1e6 / seconds, "frames_per_s": len(indices) / seconds}


def first_frame_of_new_snapshot(server: Server, job_id: str, version: int, frame_count: int) -> float:
    """Seconds from a new snapshot replacing the old one to its frame 0 decoded by the client."""
    path = server.jobs_dir / job_id / "snapshots" / "latest.pt"
    staged = path.with_name("bench-staged.pt")
    make_snapshot(staged, version=version)
    t0 = time.perf_counter()
    os.replace(staged, path)
    fetch_frames(server, job_id, "float32", frame_count, 30.0, [0])
    return time.perf_counter() - t0


class Latency:
    """Follows a job's SSE stream in a thread; records (receive time - event time) per event."""

    def __init__(self, server: Server, job_id: str, after: int, kinds: tuple[str, ...]):
        self.samples: list[float] = []
        self.kinds = kinds
        self._stop = False
        self._thread = threading.Thread(target=self._run, args=(server, job_id, after), daemon=True)
        self._thread.start()

    def _run(self, server, job_id, after):
        for kind, _, data in server.events(job_id, after=after, timeout=600):
            now = time.time()
            if self._stop:
                return
            if kind in self.kinds and "time" in data:
                self.samples.append((now - data["time"]) * 1000.0)

    def stop(self) -> dict:
        self._stop = True
        s = sorted(self.samples)
        if not s:
            return {"n": 0, "median_ms": float("nan"), "p95_ms": float("nan")}
        return {"n": len(s), "median_ms": statistics.median(s), "p95_ms": s[min(len(s) - 1, int(0.95 * len(s)))]}


def planted_events(server: Server, job_id: str, count: int, interval_s: float = 0.05) -> dict:
    """Append ``count`` events to the job's event file as a worker does; measure their arrival."""
    status = server.status(job_id)
    watch = Latency(server, job_id, after=status["events"] - 1, kinds=("log",))
    time.sleep(0.5)  # let the stream open
    path = server.jobs_dir / job_id / "events.jsonl"
    with open(path, "ab") as fh:
        for i in range(count):
            line = {"type": "log", "time": time.time(), "level": "info", "message": f"bench {i}"}
            fh.write((json.dumps(line) + "\n").encode())
            fh.flush()
            time.sleep(interval_s)
    time.sleep(0.5)
    return watch.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=25, help="frames of the clip fetched per measurement")
    ap.add_argument("--events", type=int, default=60, help="planted events per latency measurement")
    ap.add_argument("--busy-seconds", type=float, default=15.0, help="extra time to record the training job's progress events")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dp4d-bench-server-"))
    rows, latency, first_frame = [], {}, {}
    a = start_server(tmp / "a", "--max-jobs", "0", threads=None)  # the server samples frames with torch's default threads
    b = None
    try:
        # 1. Server A: a queued job with a planted 100k-Gaussian snapshot.
        held = a.create_job("demo", {"previews": False}).json()["id"]
        make_snapshot(a.jobs_dir / held / "snapshots" / "latest.pt")
        fetch_frames(a, held, "float32", 2, 30.0)  # load the model once (not timed)

        def measure(phase: str) -> None:
            for dtype in ("float32", "float16"):
                cold = fetch_frames(a, held, dtype, args.frames, PHASE_FPS[phase])
                warm = fetch_frames(a, held, dtype, args.frames, PHASE_FPS[phase])
                rows.append((phase, dtype, "sampled", cold))
                rows.append((phase, dtype, "cached", warm))
            first_frame[phase] = first_frame_of_new_snapshot(a, held, len(first_frame) + 2, args.frames)

        # 2. Idle.
        measure("idle")
        latency["idle, planted events"] = planted_events(a, held, args.events)
        # 3. Busy: a training job on server B (torch's default threads: every core).
        b = start_server(tmp / "b", threads=None)
        job = b.create_job("demo", {"iterations": 100_000, "gaussians": 2000, "previews": False}).json()["id"]
        b.wait(job, lambda s: (s["iteration"] or 0) >= 3, timeout=300, what="training to start")
        progress = Latency(b, job, after=b.status(job)["events"] - 1, kinds=("progress",))
        measure("busy")
        latency["busy, planted events"] = planted_events(a, held, args.events)
        time.sleep(args.busy_seconds)
        latency["busy, training job's progress"] = progress.stop()
        b.post(f"/v1/jobs/{job}/cancel")
    finally:
        a.stop()
        if b is not None:
            b.stop()

    print(f"frame fetch: {N_GAUSSIANS:,} Gaussians per frame, all {args.frames} frames of a clip in order, loopback")
    print(f"{'phase':<6} {'dtype':<8} {'path':<8} {'frames':>6} {'MB':>8} {'s':>7} {'MB/s':>8} {'frames/s':>9}")
    for phase, dtype, path, r in rows:
        print(f"{phase:<6} {dtype:<8} {path:<8} {r['frames']:>6} {r['mb']:>8.1f} {r['s']:>7.2f} {r['mb_per_s']:>8.1f} {r['frames_per_s']:>9.1f}")
    print()
    for phase, seconds in first_frame.items():
        print(f"first frame of a new snapshot, {phase}: {seconds:.3f} s")
    print()
    print(f"{'event latency':<34} {'n':>5} {'median ms':>10} {'p95 ms':>8}")
    for name, r in latency.items():
        print(f"{name:<34} {r['n']:>5} {r['median_ms']:>10.1f} {r['p95_ms']:>8.1f}")

    def pick(phase, dtype, path="sampled"):
        return next(r for p, d, k, r in rows if (p, d, k) == (phase, dtype, path))

    result = {
        "frames_per_s_100k": round(pick("busy", "float32")["frames_per_s"], 2),
        "event_latency_ms": round(latency["busy, training job's progress"]["median_ms"], 2),
        "mb_per_s_100k": round(pick("busy", "float32")["mb_per_s"], 1),
        "frames_per_s_100k_f16": round(pick("busy", "float16")["frames_per_s"], 2),
        "mb_per_s_100k_f16": round(pick("busy", "float16")["mb_per_s"], 1),
        "frames_per_s_100k_idle": round(pick("idle", "float32")["frames_per_s"], 2),
        "frames_per_s_100k_cached_busy": round(pick("busy", "float32", "cached")["frames_per_s"], 2),
        "event_latency_ms_idle": round(latency["idle, planted events"]["median_ms"], 2),
        "event_latency_p95_ms": round(latency["busy, training job's progress"]["p95_ms"], 2),
        "first_frame_s": round(first_frame["busy"], 3),
        "first_frame_s_idle": round(first_frame["idle"], 3),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
