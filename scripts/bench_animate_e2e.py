#!/usr/bin/env python3
"""End-to-end quality of ``dynapose4d animate`` through the user's path, beside the static PLY.

For each ``../shared/benchmark-dev`` scene: an MP4 is encoded from ``input/`` composited on white
(OpenCV's VideoWriter, the same FFmpeg-backed library ``video/clip.py`` reads it with), and the real
CLI runs on files, exactly as a user would::

    python -m dynapose4d animate static_gt.ply --video input.mp4 --up-axis z --frames F --iterations I

The result (``sequence/frame_*.ply``) is then read back and scored in the PLY's own frame at the
four evaluation views against ``eval_K/`` (PSNR, SSIM, and PSNR masked to the object: the true
alpha, dilated 3 px), beside the do-nothing baseline: ``static_gt.ply`` held still. The framing
is scored too: the job's own residual (mask IoU, centroid offset, from ``framing.json``) and the
true one (``err_px``: where the job's similarity maps each Gaussian's video pixel vs where the
support render shows it). A result
written by older code in the registered frame (its ``sequence.json`` names no frame) is put back
with ``registration.json`` first, so the numbers before and after a change compare.

Variants: ``cropped`` (the video framed like the reference render) and ``zoomed`` (the same
frames with the object at 60% of its size, off centre, in a 320x256 frame).

    python scripts/bench_animate_e2e.py [--scenes crane,snake,blob] [--variants cropped,zoomed]
        [--background white,busy,moving] [--iterations 150] [--frames 16] [--out out/bench_animate_e2e]
        [--backend DIR] [--reuse]

``--backend DIR`` runs the CLI from another checkout's backend folder (e.g. the base commit), so
a before/after table comes from the same scoring code. The last line is ``RESULT {json}`` with
``psnr``, ``psnr_static``, ``masked_psnr``, ``masked_psnr_static``, ``worst_scene_gain_db`` of
the first variant run, and the same keys per variant under ``variants``.

Backgrounds (``--background``, default white): the frames composited on ``bench_masks.py``'s
procedural desk, still (``busy``) or panning behind the object (``moving``), before encoding.
Each row also has the worst frame's mask IoU of the job's driving-video masks against the true
alpha mapped by the job's framing. RESULT then has ``clutter_masked_gain_mean`` and
``clutter_worst_scene_gain_db`` (masked PSNR gain over the static PLY, rows not on white) and
``mask_iou_worst_frame`` (over those rows; all rows when only white ran).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# DYNAPOSE4D_BENCHMARK_DEV points elsewhere (the GPU check carries the crane inside the checkout).
DEV_DIR = Path(os.environ.get("DYNAPOSE4D_BENCHMARK_DEV") or ROOT.parent / "shared" / "benchmark-dev")
sys.path.insert(0, str(ROOT / "backend"))

from bench_masks import BACKGROUNDS, composite, load_rgba  # noqa: E402  (scripts/ beside this file)
from dynapose4d.cameras import Cameras  # noqa: E402
from dynapose4d.evaluation.metrics import psnr, ssim  # noqa: E402
from dynapose4d.io import read_ply  # noqa: E402
from dynapose4d.io.sequence import read_sequence  # noqa: E402
from dynapose4d.render import render  # noqa: E402
from dynapose4d.userframe import FRAME_INPUT, UserFrame  # noqa: E402
from dynapose4d.video.clip import sample_indices  # noqa: E402

SCENES = ("crane", "snake", "blob")
VARIANTS = ("cropped", "zoomed")
ZOOM, ZOOM_CANVAS, ZOOM_AT = 0.6, (320, 256), (30, 70)  # scale, (width, height), top-left of the frame
MASK_DILATE_PX = 3


def rgba_on_white(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(Image.open(path).convert("RGBA")).astype(np.float32) / 255
    return img[..., :3] * img[..., 3:] + (1 - img[..., 3:]), img[..., 3]


def write_mp4(scene_dir: Path, path: Path, variant: str, fps: float, background: str = "white") -> None:
    """``input/`` on ``background`` (bench_masks.py's white, busy or moving desk) as an MP4
    (``zoomed``: 60% size, off centre, 320x256, white around the frame)."""
    rgba = load_rgba(scene_dir)
    h, w = rgba.shape[1:3]
    size = (w, h) if variant == "cropped" else ZOOM_CANVAS
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise RuntimeError("OpenCV's VideoWriter cannot write MP4 (mp4v) here")
    seed = SCENES.index(scene_dir.name) if scene_dir.name in SCENES else 0
    for rgb in composite(rgba, background, seed=seed):
        if variant == "zoomed":
            small = cv2.resize(rgb, (round(w * ZOOM), round(h * ZOOM)), interpolation=cv2.INTER_AREA)
            canvas = np.ones((size[1], size[0], 3), np.float32)
            x0, y0 = ZOOM_AT
            canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
            rgb = canvas
        writer.write(cv2.cvtColor(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()


def run_cli(ply: Path, video: Path, job: Path, args, log: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(args.backend), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    cmd = [sys.executable, "-m", "dynapose4d", "animate", str(ply), "--video", str(video), "--up-axis", "z",
           "--frames", str(args.frames), "--iterations", str(args.iterations), "--no-previews", "-o", str(job), "--restart"]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        raise RuntimeError(f"the CLI failed (exit {rc}); see {log}")
    return time.perf_counter() - t0


def result_in_ply_frame(job: Path) -> list:
    """The sequence's Gaussians per frame, in the input PLY's frame turned +Y up (as
    ``read_ply(up_axis="z")`` reads the input)."""
    seq = read_sequence(job / "sequence" / "sequence.json")
    if seq.get("coordinates") == FRAME_INPUT:
        up = "z" if seq.get("up") == "+z" else "y"
        return [read_ply(p, up_axis=up) for p in seq["paths"]]
    # Older code wrote the registered frame: put it back with registration.json.
    frame = UserFrame.from_registration(json.loads((job / "registration.json").read_text()), "z")
    return [frame.gaussians(read_ply(p), up="y") for p in seq["paths"]]


@torch.no_grad()
def score(scene_dir: Path, frames: list, picked: np.ndarray, size: int) -> dict:
    views = Cameras.evaluation_views(elevation_deg=0.0, radius=2.0, size=size)
    static = read_ply(scene_dir / "static_gt.ply", up_axis="z")
    still = render(static, views, 1.0).rgb  # [4, H, W, 3], the same at every frame
    ours, static_r, gts, masks = [], [], [], []
    for g, i in zip(frames, picked):
        gt = [rgba_on_white(scene_dir / f"eval_{k}" / f"{i:04d}.png") for k in range(4)]
        gts.append(torch.from_numpy(np.stack([a for a, _ in gt])))
        masks.append(torch.from_numpy(np.stack([m for _, m in gt])) > 0.5)
        ours.append(render(g, views, 1.0).rgb)
        static_r.append(still)
    gt, ours, static_r = torch.stack(gts), torch.stack(ours), torch.stack(static_r)
    m = torch.stack(masks).float().reshape(-1, 1, size, size)
    m = F.max_pool2d(m, 2 * MASK_DILATE_PX + 1, stride=1, padding=MASK_DILATE_PX).reshape(gt.shape[:-1]) > 0
    return {
        "psnr": psnr(ours, gt), "psnr_static": psnr(static_r, gt),
        "masked_psnr": psnr(ours, gt, m), "masked_psnr_static": psnr(static_r, gt, m),
        "ssim": ssim(ours.flatten(0, 1), gt.flatten(0, 1)), "ssim_static": ssim(static_r.flatten(0, 1), gt.flatten(0, 1)),
    }


def mask_ious(job: Path, scene_dir: Path, variant: str, picked: np.ndarray) -> list[float]:
    """Per-frame IoU of the job's driving-video masks (``video/mask_*.png``, framed like the
    support) and the true alpha of the same frames mapped by the job's framing (``framing.json``)."""
    path = job / "framing.json"
    if not path.exists() or not (job / "video" / "mask_0000.png").exists():
        return []
    m = np.asarray(json.loads(path.read_text())["matrix"], np.float64)
    if variant == "zoomed":  # the true alpha in the zoomed frame's pixels
        m = m @ np.array([[ZOOM, 0, ZOOM_AT[0]], [0, ZOOM, ZOOM_AT[1]], [0, 0, 1.0]])
    ious = []
    for k, i in enumerate(picked):
        ours = np.asarray(Image.open(job / "video" / f"mask_{k:04d}.png"), np.float32) / 255 > 0.5
        alpha = np.asarray(Image.open(scene_dir / "input" / f"{i:04d}.png").convert("RGBA"), np.float32)[..., 3] / 255
        truth = cv2.warpAffine(alpha, m[:2].astype(np.float32), ours.shape[::-1], flags=cv2.INTER_LINEAR) > 0.5
        union = (ours | truth).sum()
        ious.append(float((ours & truth).sum() / union) if union else 1.0)
    return ious


def framing_of(job: Path, scene_dir: Path, variant: str, size: int) -> dict:
    """The job's own residual (mask IoU, centroid offset) and the true one: the RMS distance,
    over the PLY's opaque Gaussians, between where the job's framing puts each one's video pixel
    and where the support render shows it (both projections known here, not to the job)."""
    path = job / "framing.json"
    if not path.exists():
        return {}
    f = json.loads(path.read_text())
    out = {"iou": f.get("iou"), "offset_px": f.get("offset_px")}
    reg = json.loads((job / "registration.json").read_text())
    g = read_ply(scene_dir / "static_gt.ply", up_axis="z")
    x = g.means[g.opacities.reshape(-1) > 0.2].double()
    cam = Cameras.orbit(0.0, 0.0, 2.0, width=size, dtype=torch.float64)
    video_px, _ = cam.project(x)
    if variant == "zoomed":
        video_px = video_px * (round(size * ZOOM) / size) + torch.tensor(ZOOM_AT, dtype=torch.float64)
    rot, centre = torch.tensor(reg["rotation"], dtype=torch.float64), torch.tensor(reg["centre"], dtype=torch.float64)
    support_px, _ = cam.project(reg["scale"] * (x - centre) @ rot.T)
    m = torch.tensor(f["matrix"], dtype=torch.float64)
    mapped = video_px @ m[:, :2].T + m[:, 2]
    out["true_err_px"] = float((mapped - support_px).norm(dim=-1).pow(2).mean().sqrt())
    return out


def run_one(args, variant: str, background: str, scene: str) -> dict:
    """One CLI run (or a finished one with ``--reuse``), scored."""
    scene_dir = DEV_DIR / scene
    meta = json.loads((scene_dir / "meta.json").read_text())
    work = args.out / variant / background / scene
    work.mkdir(parents=True, exist_ok=True)
    video = work / "input.mp4"
    if args.reuse and (work / "job" / "sequence" / "sequence.json").exists() and (work / "seconds.txt").exists():
        seconds = float((work / "seconds.txt").read_text())  # a finished run at these settings
    else:
        write_mp4(scene_dir, video, variant, float(meta["fps"]), background)
        seconds = run_cli(scene_dir / "static_gt.ply", video, work / "job", args, work / "cli.log")
        (work / "seconds.txt").write_text(f"{seconds:.1f}")
    picked, _ = sample_indices(int(meta["frames"]), float(meta["fps"]), args.frames)
    row = {"variant": variant, "background": background, "scene": scene,
           **score(scene_dir, result_in_ply_frame(work / "job"), picked, int(meta["res"]))}
    row["gain_db"] = row["masked_psnr"] - row["masked_psnr_static"]
    ious = mask_ious(work / "job", scene_dir, variant, picked)
    row["mask_iou_worst"] = min(ious) if ious else None
    row["mask_iou_mean"] = statistics.mean(ious) if ious else None
    row.update(framing_of(work / "job", scene_dir, variant, int(meta["res"])), seconds=round(seconds))
    return row


def summary(sel: list[dict]) -> dict:
    out = {k: round(statistics.mean(r[k] for r in sel), 4) for k in ("psnr", "psnr_static", "masked_psnr", "masked_psnr_static", "ssim", "ssim_static")}
    out["mean_gain_db"] = round(statistics.mean(r["gain_db"] for r in sel), 4)
    out["worst_scene_gain_db"] = round(min(r["gain_db"] for r in sel), 4)
    ious = [r["mask_iou_worst"] for r in sel if r["mask_iou_worst"] is not None]
    out["mask_iou_worst_frame"] = round(min(ious), 4) if ious else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default=",".join(SCENES))
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--background", default="white", help=f"comma-separated, of {', '.join(BACKGROUNDS)} (bench_masks.py)")
    ap.add_argument("--iterations", type=int, default=500, help="dynamic-stage steps (the animate default: 500)")
    ap.add_argument("--frames", type=int, default=16, help="frames the CLI samples from the 32-frame video")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_animate_e2e")
    ap.add_argument("--backend", type=Path, default=ROOT / "backend", help="the backend folder the CLI runs from")
    ap.add_argument("--json", type=Path, help="also write all rows to this file")
    ap.add_argument("--reuse", action="store_true", help="score finished runs in --out again instead of rerunning them")
    args = ap.parse_args()
    if not DEV_DIR.is_dir():
        print(f"benchmark-dev not found at {DEV_DIR}; nothing to run")
        print("RESULT " + json.dumps({"skipped": "no benchmark-dev"}))
        return 0
    scenes, variants, backgrounds = args.scenes.split(","), args.variants.split(","), args.background.split(",")
    unknown = sorted(set(backgrounds) - set(BACKGROUNDS))
    if unknown:
        ap.error(f"unknown background(s) {', '.join(unknown)}; choose from {', '.join(BACKGROUNDS)}")
    print(f"budget: {args.iterations} iterations, {args.frames} frames; backend {args.backend}", flush=True)
    cols = ("psnr", "psnr_static", "masked_psnr", "masked_psnr_static", "ssim", "ssim_static")
    header = (f"{'variant':<8} {'bg':<7}{'scene':<6}" + "".join(f"{c:>19}" for c in cols)
              + f"{'gain_dB':>9}{'iou_worst':>10}{'iou':>7}{'off_px':>8}{'err_px':>8}{'sec':>6}")
    rows = []
    for variant in variants:
        print(header, flush=True)
        for background in backgrounds:
            for scene in scenes:
                row = run_one(args, variant, background, scene)
                rows.append(row)
                iou, off, worst = row.get("iou"), row.get("offset_px"), row["mask_iou_worst"]
                print(f"{variant:<8} {background:<7}{scene:<6}" + "".join(f"{row[c]:>19.4f}" for c in cols) + f"{row['gain_db']:>9.2f}"
                      + (f"{worst:>10.3f}" if worst is not None else f"{'-':>10}")
                      + (f"{iou:>7.3f}{off:>8.2f}{row['true_err_px']:>8.2f}" if iou is not None else f"{'-':>7}{'-':>8}{'-':>8}")
                      + f"{row['seconds']:>6.0f}", flush=True)
    groups = {(v, b): summary([r for r in rows if r["variant"] == v and r["background"] == b]) for v in variants for b in backgrounds}
    print("\nmean over scenes:")
    for (v, b), s in groups.items():
        print(f"  {v:<8}{b:<7}" + "  ".join(f"{k} {val:.3f}" for k, val in s.items() if val is not None))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    first = [r for r in rows if r["variant"] == variants[0]]
    result = dict(summary(first), variant=variants[0], variants={v: summary([r for r in rows if r["variant"] == v]) for v in variants},
                  backgrounds={f"{v}/{b}": s for (v, b), s in groups.items()}, scenes=scenes, iterations=args.iterations, frames=args.frames)
    clutter = [r for r in rows if r["background"] != "white"]
    if clutter:
        result["clutter_masked_gain_mean"] = round(statistics.mean(r["gain_db"] for r in clutter), 4)
        result["clutter_worst_scene_gain_db"] = round(min(r["gain_db"] for r in clutter), 4)
    ious = [r["mask_iou_worst"] for r in (clutter or rows) if r["mask_iou_worst"] is not None]
    result["mask_iou_worst_frame"] = round(min(ious), 4) if ious else None
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
