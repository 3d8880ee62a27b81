#!/usr/bin/env python3
"""Image-to-4D pipeline benchmark: time per stage and peak memory of a ``generate`` job.

    python scripts/bench_pipeline.py                 # tiny random-weight models (CPU, offline)
    python scripts/bench_pipeline.py --real          # the registered models (needs the weights)
    python scripts/bench_pipeline.py --preset fast --device cuda
    python scripts/bench_pipeline.py --real --preset standard --device cuda --result r.json   # the GPU check

The tiny models run the real code path at toy size, so on a CPU the figures measure our
overhead, not the models. With the real models on a GPU the goal is the default preset in
<= 5 minutes on an H100-class GPU and <= 20 GB peak VRAM. Prints a table; the last line is
``RESULT {json}`` with ``total_s``, per-stage seconds and peak memory (``peak_rss_mb``,
``peak_vram_mb``), and ``stages``: each stage's start, wall time and (on CUDA) peak VRAM.
Each stage prints ``STAGE {json}`` as it ends, and ``--result FILE`` is rewritten then with the
figures so far, so a run cut off by a timeout keeps the stages that finished.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dynapose4d.evaluation.articulated import make_articulated
from dynapose4d.cameras import Cameras
from dynapose4d.events import StageEvent
from dynapose4d.pipeline import run_job, write_job
from dynapose4d.render import render


def sample_image(path: Path) -> None:
    """The demo object's front view as an RGBA PNG (nothing to download)."""
    obj = make_articulated("lamp", 4000)
    with torch.no_grad():
        out = render(obj.static, Cameras.orbit(0.0, 0.0, 2.0, width=384), 1.0)
    rgba = np.concatenate([out.rgb.clamp(0, 1).numpy(), out.alpha.numpy()[..., None]], -1)
    Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", action="store_true", help="use the registered models instead of tiny ones")
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--static-iterations", type=int, default=0, help="0: the preset's (tiny models: 20)")
    ap.add_argument("--iterations", type=int, default=0, help="0: the preset's (tiny models: 20)")
    ap.add_argument("--result", type=Path, help="also write the result (JSON) here, after every stage and at the end")
    args = ap.parse_args()
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"

    from dynapose4d.render import choose_backend

    result = {
        "models": "real" if args.real else "tiny",
        "device": device.type,
        "preset": args.preset,
        "renderer": choose_backend(device),
        "stages": [],
    }

    def save():
        if args.result:
            args.result.write_text(json.dumps(result))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        settings = {"preset": args.preset, "device": args.device, "previews": False}
        if not args.real:
            from dynapose4d.testing.tiny_models import make_all

            models = make_all(tmp / "models")
            settings.update(zero123=str(models["zero123-xl"]), svd=str(models["svd"]), svd_steps=4, svd_size=128)
            settings.update(static_iterations=args.static_iterations or 20, iterations=args.iterations or 20)
        else:
            settings.update(static_iterations=args.static_iterations, iterations=args.iterations)
        job = tmp / "job"
        (job / "inputs").mkdir(parents=True)
        sample_image(job / "inputs" / "sample.png")
        write_job(job, "generate", settings, {"image": "sample.png"})

        starts, seconds, peaks = {}, {}, {}
        peak_all = 0

        def emit(event):
            # Per-stage peak VRAM: the allocator's peak is read and reset at every stage event and
            # credited to every stage open then (stages nest: the candidates inside the video).
            nonlocal peak_all
            if not isinstance(event, StageEvent):
                return
            now = time.perf_counter()
            if cuda:
                peak = torch.cuda.max_memory_allocated()
                peak_all = max(peak_all, peak)
                for stage in starts:
                    peaks[stage] = max(peaks.get(stage, 0), peak)
                torch.cuda.reset_peak_memory_stats()
            if event.status == "started":
                starts[event.stage], peaks[event.stage] = now, 0
            elif event.status in ("finished", "stopped") and event.stage in starts:
                begun = starts.pop(event.stage)
                seconds[event.stage] = now - begun
                row = {"stage": event.stage, "status": event.status, "start_s": round(begun - t0, 1),
                       "seconds": round(now - begun, 1)}
                if cuda:
                    row["peak_vram_mb"] = round(peaks.pop(event.stage) / 2**20)
                    result["peak_vram_mb"] = round(peak_all / 2**20)
                result["stages"].append(row)
                result[f"{event.stage}_s"] = row["seconds"]
                print("STAGE " + json.dumps(row), flush=True)
                save()

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        save()
        summary = run_job(job, emit)
        total = time.perf_counter() - t0

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_vram = max(peak_all, torch.cuda.max_memory_allocated()) / 2**20 if cuda else None
    print(f"{'stage':<20}{'start s':>9}{'seconds':>10}{'peak VRAM MB':>14}")
    for row in result["stages"]:
        vram = f"{row['peak_vram_mb']:>14d}" if "peak_vram_mb" in row else f"{'-':>14}"
        print(f"{row['stage']:<20}{row['start_s']:>9.1f}{row['seconds']:>10.1f}{vram}")
    covered, end = 0.0, 0.0  # the time inside some stage (the union of their intervals)
    for row in sorted(result["stages"], key=lambda r: r["start_s"]):
        start, stop = row["start_s"], row["start_s"] + row["seconds"]
        covered += max(0.0, stop - max(start, end))
        end = max(end, stop)
    other = total - covered
    print(f"{'other':<20}{'':>9}{other:>10.1f}   (loading, reference image, outputs)")
    print(f"{'total':<20}{'':>9}{total:>10.1f}")
    print(f"peak RSS {peak_rss:.0f} MB" + (f", peak VRAM {peak_vram:.0f} MB" if peak_vram is not None else ""))
    result.update(
        total_s=round(total, 1),
        peak_rss_mb=round(peak_rss),
        peak_vram_mb=None if peak_vram is None else round(peak_vram),
        peak_reserved_mb=round(torch.cuda.max_memory_reserved() / 2**20) if cuda else None,
        status=summary.get("status"),
    )
    save()
    print("RESULT " + json.dumps(result))
    return 0 if result["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
