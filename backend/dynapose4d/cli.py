"""Command line: ``dynapose4d <command>``.

    demo     the built-in job: no downloaded weights, nothing outside the repository
    render   render a 3DGS PLY (or the built-in scene) from orbit cameras to PNG / GIF
    info     version, torch, device and which renderer would be used
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__


def _save_png(path: Path, rgb: torch.Tensor) -> None:
    from PIL import Image

    Image.fromarray((rgb.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)).save(path)


def _save_gif(path: Path, frames: torch.Tensor, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray((f.detach().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name}: this torch build has no CUDA device (see README, GPU setup)")
    return torch.device(name)


def turntable(gaussians, out_dir: Path, *, size: int, views: int, elevation: float, radius: float, device, renderer):
    """Render ``views`` orbit views around the object: a GIF plus the input view as PNG."""
    from .cameras import Cameras
    from .render import render

    out_dir.mkdir(parents=True, exist_ok=True)
    azimuths = torch.arange(views, dtype=torch.float32) * (360.0 / views)
    cams = Cameras.orbit(elevation, azimuths, radius, width=size, device=device)
    g = gaussians.to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        frames = torch.cat([render(g, cams[i : i + 8], 1.0, backend=renderer).rgb for i in range(0, views, 8)])
    seconds = time.perf_counter() - t0
    _save_png(out_dir / "front.png", frames[0])
    _save_gif(out_dir / "turntable.gif", frames, fps=12)
    return seconds


def cmd_render(args) -> int:
    from .io import read_ply
    from .scenes import sphere_scene

    g = read_ply(args.ply, up_axis=args.up_axis) if args.ply else sphere_scene(args.gaussians)
    device = _device(args.device)
    out = Path(args.output)
    seconds = turntable(
        g, out, size=args.size, views=args.views, elevation=args.elevation, radius=args.radius, device=device, renderer=args.renderer
    )
    print(f"rendered {args.views} views of {g.num:,} Gaussians at {args.size}^2 in {seconds:.2f} s -> {out}/turntable.gif")
    return 0


def cmd_demo(args) -> int:
    from dataclasses import replace

    from .demo import DemoConfig, run_demo
    from .progress import ConsoleProgress

    cfg = DemoConfig(motion=args.motion, seed=args.seed)
    if args.iterations:
        cfg.dynamic = replace(cfg.dynamic, iterations=args.iterations)
    out = Path(args.output)
    print(f"DynaPose4D demo: recovering the '{cfg.motion}' motion ({cfg.frames} frames) on {torch.get_num_threads()} CPU thread(s)")
    model, metrics = run_demo(out, cfg, emit=ConsoleProgress())
    rows = [
        ("reference-view PSNR (dB)", "ref_psnr"),
        ("moving-region PSNR (dB)", "moving_psnr"),
        ("novel-view PSNR (dB)", "novel_psnr"),
        ("novel-view SSIM", "novel_ssim"),
        ("3D keypoint error", "kp_err"),
        ("  image-plane part", "kp_err_plane"),
        ("  depth part", "kp_err_depth"),
        ("jitter", "jitter"),
    ]
    print()
    print(f"{'metric':<28}{'DynaPose4D':>12}{'static baseline':>18}")
    for label, key in rows:
        print(f"{label:<28}{metrics[key]:>12.4g}{metrics[key + '_static_baseline']:>18.4g}")
    print(f"\nwrote {out}/model.pt, {out}/sequence/ (PLY per frame + sequence.json), previews and metrics.json")
    result = {k: metrics[k] for k in ("ref_psnr", "novel_psnr", "novel_psnr_static_baseline", "moving_psnr", "kp_err", "jitter", "seconds")}
    result["status"] = metrics["status"]
    print("RESULT " + json.dumps(result))
    return 0


def cmd_info(args) -> int:
    from .render import choose_backend

    device = _device(args.device)
    info = {
        "dynapose4d": __version__,
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "renderer": choose_backend(device),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dynapose4d", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"dynapose4d {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="recover a known motion on the CPU (no downloaded weights)")
    demo.add_argument("-o", "--output", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--motion", default="lamp", help="lamp (default), swing or bend")
    demo.add_argument("--iterations", type=int, default=0, help="override the demo's iteration count")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    render = sub.add_parser("render", help="render a 3DGS PLY from orbit cameras")
    render.add_argument("ply", nargs="?", help="3DGS PLY file (default: the built-in scene)")
    render.add_argument("-o", "--output", default="out/render")
    render.add_argument("--up-axis", choices=("y", "z"), default="y", help="z for files from Blender and other +Z-up tools")
    render.add_argument("--size", type=int, default=256)
    render.add_argument("--views", type=int, default=24)
    render.add_argument("--elevation", type=float, default=15.0, help="degrees, positive = camera above")
    render.add_argument("--radius", type=float, default=2.0)
    render.add_argument("--gaussians", type=int, default=20_000, help="size of the built-in scene")
    render.add_argument("--renderer", choices=("auto", "torch", "gsplat"), default="auto")
    render.add_argument("--device", default="auto")
    render.set_defaults(func=cmd_render)

    info = sub.add_parser("info", help="show versions, device and renderer")
    info.add_argument("--device", default="auto")
    info.set_defaults(func=cmd_info)

    from .models import add_models_cli

    add_models_cli(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as exc:
        # Our errors name the problem; a traceback adds nothing for a user.
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
