#!/usr/bin/env python3
"""Per-frame mask IoU of a user's clip on a real background, over the whole clip (worst frame and mean).

    python scripts/bench_masks.py [--scenes crane,snake,blob] [--backgrounds white,busy,moving] [--frames 16]

Clips: the benchmark-dev input frames (Cycles renders with true alpha) composited on
- ``white``;
- ``busy``: a procedural desk (wood-like grain, clutter of boxes, discs and pens in many colours,
  slightly out of focus: what filming a toy on a desk gives), still;
- ``moving``: the same desk panning behind the object (a camera following the object);
plus a synthetic ``thin-fast`` clip (dynapose4d.testing.synthetic_video: a thin arm swinging
120 degrees on a textured background, exact masks).

Each clip is masked by the user-video path's segmentation with the support (frame 0 on white and
its true mask, as the job has it) three ways: ``flow`` (the first release of this front end: one
mask carried forward by optical flow), ``anchored`` (now: every frame seeded by the support
found in it and compared with a background plate made from the clip, ``video/masks.py``), the
share of sure pixels near the object, and ``job``: what ``FileVideoSource`` uses (the flow-carried
masks on a plain background, the anchored ones otherwise). The last line is ``RESULT {json}``
with ``mask_iou_worst_frame`` / ``mask_iou_mean`` (the job's, over the busy and moving clips) and
the flow-carried ones as ``*_flow``.

The background generator and :func:`composite` are shared with ``bench_animate_e2e.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
DEV_DIR = Path(os.environ.get("DYNAPOSE4D_BENCHMARK_DEV") or ROOT.parent / "shared" / "benchmark-dev")
SCENES = ("crane", "snake", "blob")
BACKGROUNDS = ("white", "busy", "moving")
PAN_PX_PER_FRAME = (2.5, 0.8)  # ``moving``: the desk's motion behind the object, pixels per source frame
BLUR_SIGMA = 1.2  # out of focus behind the object


def busy_background(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """A desk seen close up: a wood-like grain, clutter (boxes, discs, pens) of many colours, blurred.
    ``[H, W, 3]`` float32 in [0, 1]; the same ``seed`` gives the same desk."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grain = np.sin(xx / w * 40 + 3 * cv2.resize(rng.random((8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC))
    wood = np.array([0.55, 0.40, 0.25], np.float32) * (0.8 + 0.15 * grain[..., None])
    noise = cv2.resize(rng.random((h // 6, w // 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    bg = np.clip(wood + 0.12 * (noise - 0.5), 0, 1)
    for _ in range(max(20, h * w // 1800)):
        colour = tuple(float(c) for c in rng.random(3) * 0.9 + 0.05)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        kind = rng.random()
        if kind < 0.45:  # boxes, books, sticky notes
            dx, dy = int(rng.integers(8, max(10, w // 5))), int(rng.integers(8, max(10, h // 5)))
            cv2.rectangle(bg, (x, y), (x + dx, y + dy), colour, -1)
            cv2.rectangle(bg, (x, y), (x + dx, y + dy), tuple(0.6 * c for c in colour), 1)
        elif kind < 0.75:  # mugs, tape rolls
            cv2.circle(bg, (x, y), int(rng.integers(5, max(6, w // 12))), colour, -1)
        else:  # pens, cables
            angle = rng.random() * np.pi
            length = int(rng.integers(w // 8, w // 3))
            end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
            cv2.line(bg, (x, y), end, colour, int(rng.integers(2, 5)))
    return np.clip(cv2.GaussianBlur(bg, (0, 0), BLUR_SIGMA), 0, 1).astype(np.float32)


def composite(rgba: np.ndarray, background: str, seed: int = 0) -> np.ndarray:
    """``rgba [T, H, W, 4]`` frames on ``background`` (:data:`BACKGROUNDS`): ``[T, H, W, 3]`` float32."""
    t, h, w = rgba.shape[:3]
    alpha = rgba[..., 3:]
    if background == "white":
        return rgba[..., :3] * alpha + (1 - alpha)
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}; got {background!r}")
    pan = np.array(PAN_PX_PER_FRAME if background == "moving" else (0.0, 0.0))
    margin = int(np.ceil(np.abs(pan).max() * t)) + 2
    desk = busy_background(seed, (h + margin, w + margin))
    out = []
    for i in range(t):
        x, y = (pan * i).round().astype(int)
        bg = desk[y:y + h, x:x + w]
        out.append(rgba[i, ..., :3] * alpha[i] + bg * (1 - alpha[i]))
    return np.stack(out).astype(np.float32)


def load_rgba(scene_dir: Path) -> np.ndarray:
    """``input/*.png`` of a benchmark-dev scene: ``[T, H, W, 4]`` float32."""
    files = sorted((scene_dir / "input").glob("*.png"))
    return np.stack([np.asarray(Image.open(f).convert("RGBA"), np.float32) / 255 for f in files])


def _ious(masks, truth) -> list[float]:
    from dynapose4d.imaging.masks import mask_iou

    return [mask_iou(m, t) for m, t in zip(masks, truth)]


def mask_rows(frames: np.ndarray, truth: np.ndarray, support) -> dict:
    """Per-frame IoU of the flow-carried masks and the anchored ones (with their confidence)."""
    from dynapose4d.imaging.masks import grabcut_sequence
    from dynapose4d.video.masks import anchored_masks, plain_background

    flow = grabcut_sequence(list(frames), support)
    now = anchored_masks(list(frames), support)
    row = {}
    for name, masks in (("flow", flow), ("anchored", now.masks)):
        ious = _ious(masks, truth)
        row[name] = {"worst": min(ious), "worst_frame": int(np.argmin(ious)), "mean": statistics.mean(ious)}
    row["sure"] = float(np.mean([st["sure"] for st in now.stats]))
    row["job"] = row["flow"] if plain_background(list(frames)) else row["anchored"]  # what FileVideoSource uses
    row["warning"] = now.warning()
    return row


def thin_fast_clip(size: int, frames: int):
    from dynapose4d.testing.synthetic_video import make_video

    clip = make_video(size=size, num_frames=frames, background="textured", arm_swing_deg=120.0, seed=3)
    return clip.frames, clip.masks, (clip.reference, clip.reference_mask)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default=",".join(SCENES))
    ap.add_argument("--backgrounds", default=",".join(BACKGROUNDS))
    ap.add_argument("--frames", type=int, default=16, help="frames sampled evenly from the 32")
    ap.add_argument("--dev-dir", type=Path, default=DEV_DIR)
    args = ap.parse_args()
    clips = []
    if args.dev_dir.is_dir():
        for scene in args.scenes.split(","):
            rgba = load_rgba(args.dev_dir / scene)
            idx = np.round(np.linspace(0, len(rgba) - 1, args.frames)).astype(int)
            rgba = rgba[idx]
            a0 = rgba[0, ..., 3:]
            support = (rgba[0, ..., :3] * a0 + (1 - a0), (a0[..., 0] > 0.5).astype(np.float32))
            for bg in args.backgrounds.split(","):
                clips.append((scene, bg, composite(rgba, bg, seed=SCENES.index(scene) if scene in SCENES else 0),
                              (rgba[..., 3] > 0.5).astype(np.float32), support))
    frames, truth, support = thin_fast_clip(192, args.frames)
    clips.append(("synthetic", "thin-fast", frames, truth, support))
    print(f"{'scene':<10}{'background':<11}{'flow worst':>11}{'(frame)':>8}{'flow mean':>10}{'now worst':>10}{'(frame)':>8}"
          f"{'now mean':>9}{'sure':>6}{'job worst':>10}{'job mean':>9}  warning", flush=True)
    rows = []
    for scene, bg, frames, truth, support in clips:
        r = mask_rows(frames, truth, support)
        r.update(scene=scene, background=bg)
        rows.append(r)
        f, n = r["flow"], r["anchored"]
        print(f"{scene:<10}{bg:<11}{f['worst']:>11.3f}{f['worst_frame']:>8}{f['mean']:>10.3f}{n['worst']:>10.3f}"
              f"{n['worst_frame']:>8}{n['mean']:>9.3f}{r['sure']:>6.2f}{r['job']['worst']:>10.3f}{r['job']['mean']:>9.3f}"
              f"  {'yes' if r['warning'] else '-'}", flush=True)
    cluttered = [r for r in rows if r["background"] != "white"] or rows
    white = [r for r in rows if r["background"] == "white"]
    result = {
        "mask_iou_worst_frame": round(min(r["job"]["worst"] for r in cluttered), 4),
        "mask_iou_mean": round(statistics.mean(r["job"]["mean"] for r in cluttered), 4),
        "mask_iou_worst_frame_flow": round(min(r["flow"]["worst"] for r in cluttered), 4),
        "mask_iou_mean_flow": round(statistics.mean(r["flow"]["mean"] for r in cluttered), 4),
        "frames": args.frames,
    }
    if white:
        result["mask_iou_worst_frame_white"] = round(min(r["job"]["worst"] for r in white), 4)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
