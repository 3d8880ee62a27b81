#!/usr/bin/env python3
"""Keypoint accuracy benchmark: the weight-free tracker against the do-nothing baseline.

    python scripts/bench_keypoints.py [--dev-dir ../shared/benchmark-dev] [--frames 14 25] [--seed 0] [--kinds ...]

Sequences:
- synthetic (dynapose4d.keypoints.synthetic): affine, tps, articulated, occlusion and brightness
  motions of textured objects on white, 256 px, 14 and 25 frames, with exact ground truth and
  visibility; the video is offset from the support by a small similarity, so registration to
  frame 0 is exercised. Support keypoints are chosen automatically (N = 14).
- benchmark-dev (Cycles renders, not ours): crane, snake, blob; support = input/0000.png with
  keypoints2d_input.json[0]. The file has no visibility, so errors count every point, hidden
  ones included; these rows are reported separately and skipped when the folder is absent.

Per sequence and estimator: median / 90th-percentile error (px, frames 1..T-1, visible points),
share within 3 px, share trusted (confidence >= 0.5 and marked visible), median error of trusted
and of flagged points, share of > 5 px errors that were flagged, share of hidden points flagged,
and seconds. The last line is ``RESULT {json}`` with pooled numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from dynapose4d.keypoints import make_estimator
from dynapose4d.keypoints.evaluate import Outcome, load_dev_scene
from dynapose4d.keypoints.synthetic import KINDS, make_sequence

DEV_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "benchmark-dev"
DEV_SCENES = ("crane", "snake", "blob")
ESTIMATORS = ("tracker", "static")
COLUMNS = [
    ("sequence", 17, None), ("estimator", 9, None), ("median", 7, "median_err_px"), ("p90", 7, "p90_err_px"),
    ("<=3px", 6, "within_3px"), ("trusted", 7, "trusted"), ("med.tr", 7, "median_err_trusted_px"),
    ("med.fl", 7, "median_err_flagged_px"), ("bad.fl", 6, "bad_flagged"), ("hid.fl", 6, "hidden_flagged"),
    ("sec", 6, "seconds"),
]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def _row(cells) -> str:
    parts = [f"{_fmt(c):>{w}}" if i > 1 else f"{_fmt(c):<{w}}" for i, (c, (_, w, _)) in enumerate(zip(cells, COLUMNS))]
    return " ".join(parts)


def run(sequences, estimators) -> dict[str, list[Outcome]]:
    """Track each sequence with each estimator, print one row each; outcomes per estimator."""
    pooled: dict[str, list[Outcome]] = {name: [] for name in estimators}
    for seq in sequences:
        for name in estimators:
            start = time.perf_counter()
            result = make_estimator(name).estimate(seq.support, seq.frames, seq.masks)
            seconds = time.perf_counter() - start
            outcome = Outcome.of(result, seq.xy, seq.visible)
            pooled[name].append(outcome)
            stats = {**outcome.summary(), "seconds": seconds}
            reg = result.info.get("registration", {})
            note = "" if reg.get("success", True) else f"  (registration failed: {reg.get('reason')})"
            print(_row([seq.name, name] + [stats[key] for _, _, key in COLUMNS[2:]]) + note, flush=True)
    return pooled


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev-dir", type=Path, default=DEV_DIR, help=f"benchmark-dev folder (default {DEV_DIR})")
    ap.add_argument("--frames", type=int, nargs="+", default=[14, 25], help="synthetic sequence lengths")
    ap.add_argument("--size", type=int, default=256, help="synthetic frame size (px)")
    ap.add_argument("--seed", type=int, default=0, help="synthetic seed")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS, help="synthetic motions")
    args = ap.parse_args(argv)

    header = _row([c for c, _, _ in COLUMNS])
    print("errors in px over frames 1..T-1; synthetic rows count visible points, benchmark-dev rows all points")
    print(header)
    print("-" * len(header))
    synthetic = (make_sequence(kind, t, args.size, seed=args.seed + i)
                 for t in args.frames for i, kind in enumerate(args.kinds))
    syn = run(synthetic, ESTIMATORS)
    dev = None
    if args.dev_dir.is_dir():
        print("-" * len(header) + "\nbenchmark-dev (Cycles renders; no visibility in the files, hidden points counted)")
        dev = run((load_dev_scene(args.dev_dir / s) for s in DEV_SCENES if (args.dev_dir / s).is_dir()), ESTIMATORS)
    else:
        print(f"benchmark-dev not found at {args.dev_dir}: skipped (pass --dev-dir)")

    print("-" * len(header))
    result: dict = {}
    for label, pooled in (("synthetic", syn), ("benchmark-dev", dev)):
        if pooled is None:
            continue
        for name in ESTIMATORS:
            stats = Outcome.pool(pooled[name]).summary()
            print(_row([f"ALL {label}", name] + [stats.get(key, float("nan")) for _, _, key in COLUMNS[2:]]))
        prefix = "" if label == "synthetic" else "dev_"
        track, static = Outcome.pool(pooled["tracker"]).summary(), Outcome.pool(pooled["static"]).summary()
        for key in ("median_err_px", "p90_err_px", "within_3px", "bad_flagged", "trusted"):
            result[prefix + key] = round(track[key], 4)
        result[prefix + "static_median_err_px"] = round(static["median_err_px"], 4)
        result[prefix + "static_within_3px"] = round(static["within_3px"], 4)
        if label == "synthetic":
            result["hidden_flagged"] = round(track["hidden_flagged"], 4)
    if dev is None:
        result["dev_median_err_px"] = None
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
