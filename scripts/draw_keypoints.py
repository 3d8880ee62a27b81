#!/usr/bin/env python3
"""Track keypoints on a sequence and draw them: a GIF and a PNG strip, for a visual check.

    python scripts/draw_keypoints.py --synthetic articulated --frames 25 --out /tmp/articulated
    python scripts/draw_keypoints.py --dev crane --out /tmp/crane
    python scripts/draw_keypoints.py --video-dir frames/ --keypoints kp.json --out /tmp/mine

Points are coloured by confidence (red 0 -> yellow 0.5 -> green 1), hollow where the estimator
marks them invisible; white crosses are the ground truth where there is one. ``--video-dir``
takes a folder of images (sorted by name; frame 0 is the support unless ``--support`` names
another image) and support keypoints as JSON (schema in dynapose4d.keypoints.base), or
picks them automatically without ``--keypoints``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dynapose4d.imaging.images import load_on_white
from dynapose4d.keypoints import ESTIMATORS, Support, make_estimator
from dynapose4d.keypoints.draw import crop_box, draw_track, save_gif, save_strip
from dynapose4d.keypoints.evaluate import LabelledSequence, load_dev_scene
from dynapose4d.keypoints import auto_support_keypoints, parse_keypoints_json
from dynapose4d.keypoints.support import WHITE_THRESHOLD
from dynapose4d.imaging.masks import masks_on_white
from dynapose4d.keypoints.synthetic import KINDS, make_sequence

DEV_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "benchmark-dev"


def _from_video_dir(args) -> LabelledSequence:
    paths = sorted(p for p in Path(args.video_dir).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not paths:
        sys.exit(f"no .png/.jpg images in {args.video_dir}")
    images = [load_on_white(p) for p in paths]
    frames = np.stack([im for im, _ in images])
    masks = np.stack([m for _, m in images]) if all(m is not None for _, m in images) else None
    image, mask = load_on_white(args.support) if args.support else images[0]
    mask = masks_on_white(image, threshold=WHITE_THRESHOLD)[0] > 0.5 if mask is None else mask
    h, w = image.shape[:2]
    if args.keypoints:
        kp = parse_keypoints_json(Path(args.keypoints).read_text(), image_size=(w, h))
    else:
        kp = auto_support_keypoints(image, mask, args.n)
    return LabelledSequence(Path(args.video_dir).name, Support(image, kp, mask), frames, masks, None, None)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--synthetic", choices=KINDS, help="a synthetic sequence of this kind")
    src.add_argument("--dev", help="a benchmark-dev scene name (crane, snake, blob)")
    src.add_argument("--video-dir", help="a folder of frames")
    ap.add_argument("--dev-dir", type=Path, default=DEV_DIR, help=f"benchmark-dev location (default {DEV_DIR})")
    ap.add_argument("--frames", type=int, default=25, help="synthetic: number of frames")
    ap.add_argument("--size", type=int, default=256, help="synthetic: frame size (px)")
    ap.add_argument("--seed", type=int, default=0, help="synthetic: seed")
    ap.add_argument("--support", help="video-dir: the support image (default: the first frame)")
    ap.add_argument("--keypoints", help="video-dir: support keypoints JSON (default: automatic)")
    ap.add_argument("--n", type=int, default=14, help="video-dir: number of automatic keypoints")
    ap.add_argument("--estimator", default="tracker", choices=sorted(ESTIMATORS))
    ap.add_argument("--scale", type=int, default=2, help="drawing upscale factor")
    ap.add_argument("--every", type=int, default=1, help="draw every k-th frame in the strip")
    ap.add_argument("--columns", type=int, default=6, help="strip columns")
    ap.add_argument("--no-crop", action="store_true", help="draw whole frames, not the object's box")
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix: writes OUT.gif and OUT.png")
    args = ap.parse_args(argv)

    if args.synthetic:
        seq = make_sequence(args.synthetic, args.frames, args.size, seed=args.seed)
    elif args.dev:
        scene = args.dev_dir / args.dev
        if not scene.is_dir():
            sys.exit(f"benchmark-dev scene {scene} not found (pass --dev-dir)")
        seq = load_dev_scene(scene)
    else:
        seq = _from_video_dir(args)

    result = make_estimator(args.estimator).estimate(seq.support, seq.frames, seq.masks)
    box = None if args.no_crop or seq.masks is None else crop_box(seq.masks, margin=12)
    images = draw_track(seq.frames, result, seq.xy, scale=args.scale, box=box)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_gif(images, args.out.with_suffix(".gif"))
    save_strip(images[:: args.every], args.out.with_suffix(".png"), columns=args.columns)
    reg = result.info.get("registration", {})
    print(f"{seq.name}: {result.num_frames} frames, {len(result.names)} keypoints, registration "
          f"{'ok' if reg.get('success') else 'FAILED: ' + reg.get('reason', '?')}; "
          f"mean confidence {result.confidence.mean():.2f}, visible {result.visible.mean():.0%}")
    print(f"wrote {args.out.with_suffix('.gif')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
