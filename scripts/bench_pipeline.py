#!/usr/bin/env python3
"""Image-to-4D pipeline benchmark: time per stage and peak memory of a ``generate`` job.

    python scripts/bench_pipeline.py                 # tiny random-weight models (CPU, offline)
    python scripts/bench_pipeline.py --real          # the registered models (needs the weights)
    python scripts/bench_pipeline.py --preset fast --device cuda

The tiny models run the real code path at toy size, so on a CPU the figures measure our
overhead, not the models. With the real models on a GPU the goal is the default preset in
<= 5 minutes on an H100-class GPU and <= 20 GB peak VRAM. Prints a table; the last line is
``RESULT {json}`` with ``total_s``, per-stage seconds and peak memory (``peak_rss_mb``,
``peak_vram_mb``).
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
    args = ap.parse_args()

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

        starts, seconds = {}, {}
        t0 = time.perf_counter()

        def emit(event):
            if isinstance(event, StageEvent) and event.status == "started":
                starts[event.stage] = time.perf_counter()
            elif isinstance(event, StageEvent) and event.status in ("finished", "stopped") and event.stage in starts:
                seconds[event.stage] = time.perf_counter() - starts[event.stage]

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        summary = run_job(job, emit)
        total = time.perf_counter() - t0

    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_vram = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    print(f"{'stage':<12}{'seconds':>10}")
    for stage in ("static", "video", "keypoints", "dynamic"):
        print(f"{stage:<12}{seconds.get(stage, float('nan')):>10.1f}")
    other = total - sum(seconds.values())
    print(f"{'other':<12}{other:>10.1f}   (loading, reference image, outputs)")
    print(f"{'total':<12}{total:>10.1f}")
    print(f"peak RSS {peak_rss:.0f} MB" + (f", peak VRAM {peak_vram:.0f} MB" if peak_vram is not None else ""))
    result = {
        "models": "real" if args.real else "tiny",
        "device": args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "preset": args.preset,
        "total_s": round(total, 1),
        **{f"{k}_s": round(v, 1) for k, v in seconds.items()},
        "peak_rss_mb": round(peak_rss),
        "peak_vram_mb": None if peak_vram is None else round(peak_vram),
        "status": summary.get("status"),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
