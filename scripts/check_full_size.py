#!/usr/bin/env python3
"""Full-size models (random weights) through the production code path, on the CPU.

    python scripts/make_full_size_models.py /tmp/dp4d-fullsize        # once (~9 GB of disk)
    python scripts/check_full_size.py --cache /tmp/dp4d-fullsize/hf-cache [--models ...] [--svd-size 256] [--full-res]

Each model runs in its own child process (load, step, exit: one model in memory at a time) while
the parent watches its resident memory and stops it above ``--max-rss-gb``. Models are found by
their registered names through ``dynapose4d.weights`` (offline, from the given Hugging Face cache)
and loaded by the classes the stages use:

- Zero-1-to-3 (zero123-xl, stable-zero123): ``Zero123Guidance``; one SDS step of the static
  stage's ``NovelViewSDS`` on a 256x256 render of 4,000 Gaussians, with the gradient checked on
  the Gaussians, then one DDIM step of novel-view sampling;
- SVD (svd, svd-xt): ``SVDSource``; one denoising step for the model's 14 / 25 frames at
  ``--svd-size`` (square, as the pipeline uses it), and with ``--full-res`` one frame at the
  model's native 576x1024 through the same loaded pipeline.

Shapes, finiteness and gradients are checked; the table gives load time, step time and peak
resident memory per model. Not part of the tests (it needs the multi-GB folders and minutes).
The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "backend") not in sys.path:
    sys.path.insert(0, str(ROOT / "backend"))

MODELS = ("zero123-xl", "stable-zero123", "svd", "svd-xt")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _reference_image(size: int = 256):
    """A render of the built-in sphere scene from the input view, on white (any image would do)."""
    import torch

    from dynapose4d.cameras import Cameras
    from dynapose4d.evaluation.scenes import sphere_scene
    from dynapose4d.render import render

    with torch.no_grad():
        return render(sphere_scene(4000, seed=1), Cameras.orbit(0.0, 0.0, 2.0, width=size), 1.0).rgb.float()


def check_zero123(name: str, row: dict) -> dict:
    import torch

    from dynapose4d.evaluation.scenes import sphere_scene
    from dynapose4d.guidance import OrbitPose
    from dynapose4d.guidance.zero123 import Zero123Config, Zero123Guidance
    from dynapose4d.stages.novel_view import NovelViewConfig, NovelViewSDS

    t0 = time.perf_counter()
    guidance = Zero123Guidance(Zero123Config(model=name), device="cpu")
    row["load_s"] = time.perf_counter() - t0
    row["path"] = str(guidance.model_path)
    unet, proj = guidance.unet.config, guidance.camera_projection.proj
    row["shapes"] = {
        "unet_in_channels": unet.in_channels,
        "cross_attention_dim": unet.cross_attention_dim,
        "camera_projection": [proj.in_features, proj.out_features],
        "clip_size": guidance.clip_size,
        "latent_size": guidance.latent_size,
        "variant": guidance.variant,
    }
    assert unet.in_channels == 8 and unet.cross_attention_dim == 768 and (proj.in_features, proj.out_features) == (772, 768)

    guidance.set_reference(_reference_image())
    assert guidance.reference_latents.shape == (1, 4, 32, 32), guidance.reference_latents.shape

    # One SDS step as the static stage takes it: render 256x256 from a random orbit camera, score, backprop.
    scene = sphere_scene(4000, seed=2)
    params = {k: getattr(scene, k).clone().requires_grad_(True) for k in ("means", "sh_dc", "opacity_logits", "log_scales")}
    for k, v in params.items():
        setattr(scene, k, v)
    sds = NovelViewSDS(guidance, NovelViewConfig(views=1, resolution=256))
    t0 = time.perf_counter()
    losses = sds(scene, step_fraction=0.5)
    losses["loss_sds"].backward()
    row["sds_step_s"] = time.perf_counter() - t0
    loss = float(losses["loss_sds"].detach())
    grads = {k: v.grad for k, v in params.items()}
    row["sds"] = {
        "loss": loss,
        "grad_norm_latents": float(guidance.last_stats["grad_norm"]),
        "gaussians_with_grad": int((grads["means"].abs().sum(-1) > 0).sum()),
        "grads_finite": all(bool(torch.isfinite(g).all()) for g in grads.values() if g is not None),
    }
    assert torch.isfinite(losses["loss_sds"]), "SDS loss is not finite"
    assert row["sds"]["grads_finite"] and row["sds"]["gaussians_with_grad"] > 0, "no finite gradient reached the Gaussians"

    t0 = time.perf_counter()
    views = guidance.sample(OrbitPose.of(0.0, 90.0, 2.0), steps=1, seed=0)
    row["sample_step_s"] = time.perf_counter() - t0
    assert views.shape == (1, 256, 256, 3) and bool(torch.isfinite(views).all()), views.shape
    row["step_s"] = row["sds_step_s"] + row["sample_step_s"]
    return row


def check_svd(name: str, size: int, full_res: bool, row: dict) -> dict:
    import numpy as np
    import torch

    from dynapose4d.guidance.svd import SVDConfig, SVDSource

    source = SVDSource(SVDConfig(model=name, steps=1, size=size, decode_chunk_size=2), device="cpu")
    t0 = time.perf_counter()
    pipe = source.load()
    row["load_s"] = time.perf_counter() - t0
    row["path"] = str(source.resolved.path)
    frames = source.num_frames()
    row["shapes"] = {
        "num_frames": frames,
        "unet_in_channels": pipe.unet.config.in_channels,
        "cross_attention_dim": pipe.unet.config.cross_attention_dim,
        "image_embed_dim": pipe.image_encoder.config.projection_dim,
        "size": size,
    }
    image = _reference_image(size)
    t0 = time.perf_counter()
    video = source.generate(image)
    row["step_s"] = time.perf_counter() - t0
    assert video.frames.shape == (frames, size, size, 3), video.frames.shape
    assert bool(torch.isfinite(video.frames).all())
    row["frames_shape"] = list(video.frames.shape)
    if full_res:
        # The model's native size, one frame, through the same loaded pipeline (SVDSource itself makes square videos).
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = pipe(
                source.input_image(image).resize((1024, 576)), height=576, width=1024, num_frames=1,
                num_inference_steps=1, decode_chunk_size=1, output_type="np",
                # One frame: a constant CFG scale (with num_frames 1, diffusers doubles the image conditioning
                # for CFG at the max scale, then its per-frame ramp is just the min scale 1.0: no CFG, a shape mismatch).
                min_guidance_scale=3.0, max_guidance_scale=3.0,
                generator=torch.Generator("cpu").manual_seed(0),
            )
        arr = np.asarray(out.frames[0])
        row["full_res_step_s"] = time.perf_counter() - t0
        row["full_res_shape"] = list(arr.shape)
        assert arr.shape == (1, 576, 1024, 3) and np.isfinite(arr).all(), arr.shape
    return row


def run_one(args) -> int:
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    t0 = time.perf_counter()
    row: dict = {"model": args.one}  # filled as the check goes, so a failure keeps what it measured
    try:
        if args.one.startswith("svd"):
            check_svd(args.one, args.svd_size, args.full_res, row)
        else:
            check_zero123(args.one, row)
        row["ok"] = True
    except Exception as exc:  # report what broke, with its type, for the table
        row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000])
        import traceback

        traceback.print_exc()
    row["total_s"] = time.perf_counter() - t0
    row["peak_rss_gb"] = _peak_rss_gb()
    print("ROW " + json.dumps(row), flush=True)
    return 0 if row["ok"] else 1


def _watch(cmd: list[str], env: dict, max_rss_gb: float, timeout_s: float) -> tuple[str, str]:
    """Run a child, stop it if its resident memory passes the limit; returns (stdout, why stopped)."""
    import psutil

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    ps, stopped, t0 = psutil.Process(proc.pid), "", time.perf_counter()
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss / 2**30
        except psutil.NoSuchProcess:
            break
        if rss > max_rss_gb:
            stopped = f"stopped at {rss:.1f} GB resident (limit {max_rss_gb} GB)"
        elif time.perf_counter() - t0 > timeout_s:
            stopped = f"stopped after {timeout_s:.0f} s"
        if stopped:
            proc.kill()
            break
        time.sleep(0.5)
    out, _ = proc.communicate()
    return out, stopped


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=False, help="the HF cache made by make_full_size_models.py (OUT/hf-cache)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--svd-size", type=int, default=256, help="square SVD size for the 14/25-frame step (default 256)")
    ap.add_argument("--full-res", action="store_true", help="also one SVD step at 576x1024, one frame")
    ap.add_argument("--max-rss-gb", type=float, default=12.0)
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds per model")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return run_one(args)
    if args.cache is None or not args.cache.is_dir():
        ap.error("--cache must be the hf-cache folder written by scripts/make_full_size_models.py")

    env = dict(os.environ, HF_HUB_CACHE=str(args.cache.resolve()), HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = str(ROOT / "backend") + os.pathsep + env.get("PYTHONPATH", "")
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        cmd = [sys.executable, __file__, "--one", name, "--svd-size", str(args.svd_size)] + (["--full-res"] if args.full_res else [])
        out, stopped = _watch(cmd, env, args.max_rss_gb, args.timeout)
        line = next((l for l in reversed(out.splitlines()) if l.startswith("ROW ")), None)
        row = json.loads(line[4:]) if line else {"model": name, "ok": False, "error": stopped or "no result (crashed)"}
        if stopped:
            row.update(ok=False, error=stopped)
        rows.append(row)
        print(f"{name}: {'ok' if row['ok'] else 'FAILED: ' + row.get('error', '')}", flush=True)

    print()
    print(f"{'model':<16}{'ok':>4}{'load s':>9}{'step s':>9}{'peak RSS GB':>13}   detail")
    for r in rows:
        detail = r.get("error", "")
        if r["ok"] and "sds" in r:
            detail = f"SDS {r['sds_step_s']:.1f} s + sample {r['sample_step_s']:.1f} s; grad on {r['sds']['gaussians_with_grad']} Gaussians"
        elif r["ok"]:
            detail = f"{r['frames_shape']}" + (f"; 576x1024 x1 in {r['full_res_step_s']:.1f} s" if "full_res_step_s" in r else "")
        print(f"{r['model']:<16}{'yes' if r['ok'] else 'NO':>4}{r.get('load_s', float('nan')):>9.1f}{r.get('step_s', float('nan')):>9.1f}"
              f"{r.get('peak_rss_gb', float('nan')):>13.2f}   {detail}")
    result = {
        "models": {r["model"]: {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items() if k in ("ok", "load_s", "step_s", "peak_rss_gb", "full_res_step_s", "error")} for r in rows},
        "all_ok": all(r["ok"] for r in rows),
        "svd_size": args.svd_size,
    }
    print("RESULT " + json.dumps(result))
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
