#!/usr/bin/env python3
"""Driving-video front end benchmark: masks, stabilisation and the candidate scorer.

    python scripts/bench_video.py [--dev-dir ../shared/benchmark-dev] [--size 192] [--frames 12] [--seeds 2]

Clips:
- synthetic (dynapose4d.testing.synthetic_video): a textured body with a swinging arm on white or
  on a cluttered textured background, filmed by a camera with known pan / zoom / roll, with
  exact masks; cases: still camera, moving camera, fast object motion, object touching the border.
- benchmark-dev (Cycles renders, not ours; skipped when the folder is absent): crane, snake, blob
  input frames, (a) on white as SVD would give them, (b) pasted on a textured background and
  filmed by a camera with an injected pan, zoom and roll.

Tables:
1. Mask IoU against ground truth, per clip: the first release (frame 0 seeded by colours, later
   frames by the previous mask in place: ``seed=colour, propagate=previous``) and now (frame 0
   seeded by the registered support, later frames by the flow-carried mask); on white also the
   SVD path (``masks_on_white``).
2. Stabilisation error (px): mean and max over frames of the distance between where the
   estimated and the true camera motion put the frame's corners (benchmark-dev: its 14 ground
   truth keypoints), beside the do-nothing baseline (no stabilisation: the true motion itself).
   The ``frames`` rows go through a frame folder read by ``FileVideoSource`` (the user's path).
3. Scorer ranking: every clip with object motion against every clip without (still, pure pan,
   pure zoom, pan+zoom+roll): the share of pairs the scorer orders right, beside a camera-blind
   baseline (mean absolute difference of each frame to frame 0, which a pan fools).

The last line is ``RESULT {json}`` with ``mask_iou`` (white backgrounds, now), ``mask_iou_textured``
(textured backgrounds, now), ``stab_err_px`` (mean over clips), ``rank_accuracy`` (all pairs) and
their before / baseline counterparts. Timings on this shared 2-core machine are noisy; quality
numbers are deterministic.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dynapose4d.imaging.masks import grabcut_sequence, mask_iou, masks_on_white
from dynapose4d.video.stabilise import estimate_camera_motion
from dynapose4d.testing.synthetic_video import SyntheticVideo, make_video, paste_and_film, standard_set
from dynapose4d.video.clip import FileVideoSource
from dynapose4d.video.score import score_video

DEV_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "benchmark-dev"
DEV_SCENES = ("crane", "snake", "blob")
DEV_CAMERA = dict(pan=(30.0, -12.0), zoom=1.15, roll_deg=4.0)
MASK_CASES = {
    "still-camera": dict(arm_swing_deg=70.0),
    "moving-camera": dict(arm_swing_deg=50.0, pan=(0.2, 0.08), zoom=1.2, roll_deg=5.0),
    "fast-motion": dict(arm_swing_deg=120.0, object_shift=(0.26, 0.0)),
    "border": dict(arm_swing_deg=50.0, centre=(0.2, 0.75), object_shift=(-0.1, 0.05)),
}
STAB_CASES = {
    "pan": dict(pan=(0.16, 0.05)),
    "zoom": dict(zoom=1.3),
    "pan+zoom+roll": dict(pan=(0.15, -0.05), zoom=1.2, roll_deg=6.0),
    "pan+zoom+roll+arm": dict(pan=(0.15, -0.05), zoom=1.2, roll_deg=6.0, arm_swing_deg=60.0),
}
MOVING = {"moving", "moving_pan"}


def _scaled(kw: dict, size: int) -> dict:
    """Fractions of the frame in a case -> pixels."""
    out = dict(kw)
    for key in ("pan", "object_shift"):
        if key in out:
            out[key] = (out[key][0] * size, out[key][1] * size)
    return out


def _corner_err(matrices: np.ndarray, truth: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``[T]`` mean distance (px) between ``points`` moved by the two motions (per frame points ``[T, P, 2]`` or ``[P, 2]``)."""
    pts = np.broadcast_to(points, (len(truth),) + points.shape[-2:])
    a = np.einsum("tij,tpj->tpi", matrices[:, :2, :2], pts) + matrices[:, None, :2, 2]
    b = np.einsum("tij,tpj->tpi", truth[:, :2, :2], pts) + truth[:, None, :2, 2]
    return np.linalg.norm(a - b, axis=-1).mean(-1)


def _ious(masks, truth) -> list[float]:
    return [mask_iou(m, g) for m, g in zip(masks, truth)]


def _load_dev(dev: Path, scene: str, frames: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.linspace(0, 31, frames).round().astype(int)
    rgba = np.stack([np.asarray(Image.open(dev / scene / "input" / f"{i:04d}.png").convert("RGBA"), np.float32) / 255 for i in idx])
    kps = np.asarray(json.loads((dev / scene / "keypoints2d_input.json").read_text()), np.float64)[idx]
    return rgba, kps


def _on_white(rgba: np.ndarray, name: str) -> SyntheticVideo:
    a = rgba[..., 3:]
    frames = rgba[..., :3] * a + (1 - a)
    masks = (a[..., 0] > 0.5).astype(np.float32)
    return SyntheticVideo(frames.astype(np.float32), masks, np.repeat(np.eye(3)[None], len(rgba), 0), frames[0], masks[0], name)


def _row(cells, widths) -> str:
    out = []
    for c, w in zip(cells, widths):
        out.append(f"{c:>{w}.3f}" if isinstance(c, float) else f"{str(c):>{w}}")
    return " ".join(out)


def mask_table(size: int, frames: int, seeds: int, dev: Path | None) -> dict:
    widths = (26, 10, 8, 8, 8, 8, 6)
    print("\n1. Mask IoU vs ground truth (mean over frames; min in brackets)")
    print(_row(("clip", "background", "before", "b.min", "now", "now.min", "sec"), widths))
    pooled = {"white": {"before": [], "now": [], "svd": []}, "textured": {"before": [], "now": []}}
    clips = []
    for background in ("white", "textured"):
        for case, kw in MASK_CASES.items():
            for seed in range(1, seeds + 1):
                clips.append((f"{case} s{seed}", background, make_video(size=size, num_frames=frames, background=background,
                                                                         seed=seed, **_scaled(kw, size))))
    if dev is not None:
        for scene in DEV_SCENES:
            rgba, _ = _load_dev(dev, scene, frames)
            clips.append((f"dev {scene}", "white", _on_white(rgba, scene)))
            clips.append((f"dev {scene} filmed", "textured", paste_and_film(rgba, seed=3, **DEV_CAMERA)))
    for name, background, clip in clips:
        support = (clip.reference, clip.reference_mask)
        t = time.perf_counter()
        now = _ious(grabcut_sequence(list(clip.frames), support), clip.masks)
        sec = time.perf_counter() - t
        before = _ious(grabcut_sequence(list(clip.frames), support, seed="colour", propagate="previous"), clip.masks)
        pooled[background]["now"] += now
        pooled[background]["before"] += before
        print(_row((name, background, float(np.mean(before)), float(np.min(before)), float(np.mean(now)), float(np.min(now)), sec), widths))
        if background == "white":
            m = masks_on_white(clip.frames)
            pooled["white"]["svd"] += _ious(m, clip.masks)
    for background, p in pooled.items():
        print(_row((f"ALL {background}", background, float(np.mean(p["before"])), float(np.min(p["before"])),
                    float(np.mean(p["now"])), float(np.min(p["now"])), ""), widths))
    print(f"   SVD path on white (masks_on_white): mean IoU {np.mean(pooled['white']['svd']):.3f}")
    return {
        "mask_iou": round(float(np.mean(pooled["white"]["now"])), 4),
        "mask_iou_textured": round(float(np.mean(pooled["textured"]["now"])), 4),
        "mask_iou_before": round(float(np.mean(pooled["white"]["before"])), 4),
        "mask_iou_textured_before": round(float(np.mean(pooled["textured"]["before"])), 4),
        "mask_iou_svd_white": round(float(np.mean(pooled["white"]["svd"])), 4),
    }


def stab_table(size: int, frames: int, dev: Path | None) -> dict:
    widths = (26, 10, 10, 8, 8, 9, 9, 6)
    print("\n2. Stabilisation error (px): estimated vs true camera motion at the frame corners (dev: keypoints)")
    print(_row(("clip", "background", "source", "mean", "max", "none.mean", "none.max", "sec"), widths))
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    errs, nones = [], []

    def report(name, background, motion, truth, points, sec):
        e = _corner_err(motion.matrices, truth, points)
        n = _corner_err(np.repeat(np.eye(3)[None], len(truth), 0), truth, points)
        errs.append(float(e.mean()))
        nones.append(float(n.mean()))
        source = "/".join(sorted(set(motion.sources[1:])))
        print(_row((name, background, source, float(e.mean()), float(e.max()), float(n.mean()), float(n.max()), sec), widths))

    for background in ("white", "textured"):
        for case, kw in STAB_CASES.items():
            clip = make_video(size=size, num_frames=frames, background=background, seed=1, **_scaled(kw, size))
            t = time.perf_counter()
            motion = estimate_camera_motion(clip.frames, clip.masks)
            report(case, background, motion, clip.camera, corners, time.perf_counter() - t)
    # The user's path: a frame folder (no alpha) read, masked and measured by FileVideoSource.
    for case in ("pan+zoom+roll", "pan+zoom+roll+arm"):
        clip = make_video(size=size, num_frames=frames, background="textured", seed=1, **_scaled(STAB_CASES[case], size))
        with tempfile.TemporaryDirectory() as tmp:
            for i, f in enumerate(clip.frames):
                Image.fromarray((f * 255 + 0.5).astype(np.uint8)).save(Path(tmp) / f"{i:04d}.png")
            t = time.perf_counter()
            video = FileVideoSource(tmp, num_frames=frames, size=size).generate(clip.reference, clip.reference_mask)
            sec = time.perf_counter() - t
        from dynapose4d.video.stabilise import CameraMotion

        report(f"frames {case}", "textured", CameraMotion.from_dict(video.meta["stabilisation"]), clip.camera, corners, sec)
    if dev is not None:
        for scene in DEV_SCENES:
            rgba, kps = _load_dev(dev, scene, frames)
            clip = paste_and_film(rgba, seed=3, **DEV_CAMERA)
            t = time.perf_counter()
            masks = grabcut_sequence(list(clip.frames), (clip.reference, clip.reference_mask))
            motion = estimate_camera_motion(clip.frames, np.stack(masks))
            # The ground-truth keypoints of frame t, as filmed, taken back by the estimate.
            report(f"dev {scene} filmed", "textured", motion, clip.camera, kps, time.perf_counter() - t)
    print(_row(("ALL", "", "", float(np.mean(errs)), float(np.max(errs)), float(np.mean(nones)), float(np.max(nones)), ""), widths))
    return {"stab_err_px": round(float(np.mean(errs)), 4), "stab_err_px_none": round(float(np.mean(nones)), 4)}


def rank_table(size: int, frames: int, seeds: int, dev: Path | None) -> dict:
    widths = (26, 8, 8, 8, 8, 8, 8, 8)
    print("\n3. Scorer: components per clip, and pairs ranked right (object motion above still / camera-only)")
    print(_row(("clip", "total", "object", "camera", "flicker", "mask", "identity", "naive"), widths))
    groups = []  # (moving clips, non-moving clips) scored against each other
    for seed in range(seeds):
        group = {}
        for name, kw in standard_set(size=size, num_frames=frames).items():
            clip = make_video(name=name, seed=seed, **kw)
            group[name] = clip
        groups.append((f"s{seed}", group))
    if dev is not None:
        for scene in DEV_SCENES:
            rgba, _ = _load_dev(dev, scene, frames)
            moving = _on_white(rgba, scene)
            still = _on_white(np.repeat(rgba[:1], frames, 0), scene)
            group = {"moving": moving, "still": still}
            # Camera-only clips: frame 0 panned / zoomed on white.
            for cam_name, cam in (("pan", dict(pan=(40.0, 10.0))), ("zoom", dict(zoom=1.3))):
                from dynapose4d.imaging.warp import warp
                from dynapose4d.testing.synthetic_video import camera_path

                mats = camera_path(frames, rgba.shape[2:0:-1], **cam)
                f0 = rgba[0]
                filmed = np.stack([np.concatenate([warp(f0[..., :3] * f0[..., 3:] + 1 - f0[..., 3:], m[:2], rgba.shape[2:0:-1], (1.0, 1.0, 1.0)),
                                                   warp(f0[..., 3:], m[:2], rgba.shape[2:0:-1], 0.0)[..., None]], -1) for m in mats])
                group[cam_name] = _on_white(np.concatenate([filmed[..., :3], filmed[..., 3:]], -1), scene)
            groups.append((f"dev {scene}", group))
    right = naive_right = total = 0
    for label, group in groups:
        scores, naive = {}, {}
        for name, clip in group.items():
            video = clip.driving_video()
            s = score_video(video, clip.reference, clip.reference_mask)
            scores[name] = s
            naive[name] = float(np.abs(clip.frames - clip.frames[:1]).mean())
            print(_row((f"{label} {name}", s.total, s.object_motion, s.camera_motion, s.flicker, s.mask_stability,
                        s.identity_drift, naive[name]), widths))
        for m in (n for n in group if n in MOVING):
            for o in (n for n in group if n not in MOVING):
                total += 1
                right += scores[m].total > scores[o].total
                naive_right += naive[m] > naive[o]
    print(f"   pairs ranked right: scorer {right}/{total}, camera-blind baseline {naive_right}/{total}")
    return {"rank_accuracy": round(right / total, 4), "rank_accuracy_naive": round(naive_right / total, 4), "rank_pairs": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev-dir", type=Path, default=DEV_DIR)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    dev = args.dev_dir if args.dev_dir.is_dir() else None
    print(f"bench_video: {args.size} px, {args.frames} frames, {args.seeds} seeds; benchmark-dev: {dev or 'absent (rows skipped)'}")
    t = time.perf_counter()
    result = {}
    result.update(mask_table(args.size, args.frames, args.seeds, dev))
    result.update(stab_table(args.size, args.frames, dev))
    result.update(rank_table(min(args.size, 160), args.frames, args.seeds + 1, dev))
    result["seconds"] = round(time.perf_counter() - t, 1)
    result["benchmark_dev"] = dev is not None
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
