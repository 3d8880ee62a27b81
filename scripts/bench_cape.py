#!/usr/bin/env python3
"""CAPE benchmark: PoseAnything's cost, its parity with the original, and the cape+tracker fusion.

    python scripts/bench_cape.py [--frames 25] [--keypoints 14] [--batch 8] [--threads 1]
                                 [--dev-dir ../shared/benchmark-dev] [--kinds ...] [--skip-accuracy]

1. Cost: the full-size network (the released demo layout, 58.7 M parameters) with *random* weights,
   ``poseanything`` on a 25-frame 256x256 sequence with 14 keypoints: time per frame and peak
   memory on the CPU (and on CUDA when present), beside the weight-free tracker on the same frames
   (the ratio is measured in the same run). Random weights measure cost, not accuracy.
2. Parity: our network against the original's golden outputs (tests/data/poseanything): the
   largest difference of the final keypoints (normalised units) and of every stored tensor
   relative to its tolerance (10x the float64 gap, floor 1e-6).
3. Fusion accuracy, with stand-ins for CAPE (no real weights here):
   - ``cape=tracker``: the tracker alone as CAPE's stand-in (the fusion must not lose accuracy);
   - ``cape=sim``: a *simulated* detector, ground truth + 4 px Gaussian jitter + 10 % outliers
     (20-60 px off, confidence unrelated to the error), to show what the fusion does with a
     memory-less detector of that quality. It is not PoseAnything's accuracy.
   on the synthetic sequences and benchmark-dev (skipped when absent). Columns as in
   scripts/bench_keypoints.py.
4. Multi-view depth (benchmark-dev, ground truth in keypoints3d.json): the support keypoints
   lifted from static_gt.ply's rendered depth, then refined by detections in three other views
   of frame 0 (the Cycles static_views at azimuth 60, 300 and elevation 20; stand-ins for
   Zero-1-to-3 samples) given by the simulated detector (true projections + 3 px noise), since
   random CAPE weights cannot find anything. 3D error of the anchors before and after (scene units;
   the objects are about 1 unit tall).

Last line: ``RESULT {json}`` with ``ms_per_frame_cpu``, ``peak_mb``, ``parity_max_err`` and more.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dynapose4d.keypoints import TrackResult, make_estimator
from dynapose4d.keypoints.base import KeypointEstimator
from dynapose4d.keypoints.evaluate import Outcome, load_dev_scene
from dynapose4d.keypoints.hybrid import CapeTrackerEstimator
from dynapose4d.keypoints.poseanything import DEMO_B, PoseAnything, PoseAnythingConfig
from dynapose4d.keypoints.poseanything.estimator import PoseAnythingEstimator
from dynapose4d.keypoints.synthetic import KINDS, make_sequence

ROOT = Path(__file__).resolve().parents[1]
DEV_DIR = ROOT.parent / "shared" / "benchmark-dev"
DEV_SCENES = ("crane", "snake", "blob")
GOLDEN = [ROOT / "tests" / "data" / "poseanything" / "golden_small.pt", ROOT.parent / "shared" / "poseanything" / "golden_small.pt"]
COLUMNS = [("sequence", 17, None), ("estimator", 18, None), ("median", 7, "median_err_px"), ("p90", 7, "p90_err_px"),
           ("<=3px", 6, "within_3px"), ("trusted", 7, "trusted"), ("bad.fl", 6, "bad_flagged"), ("sec", 6, "seconds")]


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def _row(cells) -> str:
    return " ".join(f"{_fmt(c):>{w}}" if i > 1 else f"{_fmt(c):<{w}}" for i, (c, (_, w, _)) in enumerate(zip(cells, COLUMNS)))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class SimulatedDetector(KeypointEstimator):
    """Ground truth + jitter + outliers: a stand-in for a memory-less per-frame detector."""

    name = "simulated-cape"

    def __init__(self, truth: np.ndarray, sigma_px: float = 4.0, outliers: float = 0.1, seed: int = 0):
        self.truth, self.sigma, self.outliers, self.seed = truth, sigma_px, outliers, seed

    def estimate(self, support, frames, masks=None) -> TrackResult:
        rng = np.random.default_rng(self.seed)
        t, n = self.truth.shape[:2]
        scale = max(np.asarray(frames[0]).shape[:2]) / 256.0
        xy = self.truth + rng.normal(0, self.sigma * scale, self.truth.shape)
        bad = rng.random((t, n)) < self.outliers
        angle = rng.uniform(0, 2 * np.pi, (t, n))
        dist = rng.uniform(20, 60, (t, n)) * scale
        xy[bad] += np.stack([np.cos(angle), np.sin(angle)], -1)[bad] * dist[bad, None]
        conf = rng.uniform(0.5, 1.0, (t, n))
        kp = support.keypoints
        return TrackResult(xy.astype(np.float32), conf.astype(np.float32), np.ones((t, n), bool), kp.names, kp.edges,
                           self.name)


def cost(frames: int, keypoints: int, batch: int, device: str) -> dict:
    """Time per frame and peak memory of the full-size network with random weights."""
    seq = make_sequence("articulated", frames, 256, n_keypoints=keypoints, seed=0)
    torch.manual_seed(0)
    base_rss = _peak_rss_mb()
    model = PoseAnything(DEMO_B).eval().to(device)
    est = PoseAnythingEstimator(model=model, device=device, batch_size=batch)
    est.estimate(seq.support, seq.frames[:2])  # warm-up (allocator, kernels)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    res = est.estimate(seq.support, seq.frames)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {"device": device, "frames": frames, "keypoints": res.xy.shape[1], "batch": batch,
           "ms_per_frame": 1000 * seconds / frames, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": base_rss}
    if device == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    del model, est
    if device == "cpu":
        start = time.perf_counter()
        make_estimator("tracker").estimate(seq.support, seq.frames, seq.masks)
        out["tracker_ms_per_frame"] = 1000 * (time.perf_counter() - start) / frames
    return out


def parity() -> dict:
    path = next((p for p in GOLDEN if p.is_file()), None)
    if path is None:
        return {"parity_max_err": None}
    g = torch.load(path, weights_only=True)
    model = PoseAnything(PoseAnythingConfig.from_original(g["config"]["model"])).eval()
    model.load_state_dict(g["state_dict"], strict=True)
    worst_kp, worst_ratio = 0.0, 0.0
    for case in ("demo_query1", "demo_query2", "batch2_predict"):
        inp = g["inputs"][case]
        if case == "batch2_predict":
            img_s, tgt = torch.cat(inp["img_s_elements"])[None], torch.cat(inp["target_s_elements"])[None]
            img_q, skel = torch.cat(inp["img_q_elements"]), [m["sample_skeleton"][0] for m in inp["img_metas"]]
        else:
            img_s, tgt, img_q = torch.stack(inp["img_s"]), torch.stack(inp["target_s"]), inp["img_q"]
            skel = [inp["img_metas"][0]["sample_skeleton"][0]]
        mask = torch.stack(inp["target_weight_s"]).prod(0)[..., 0] > 0
        with torch.no_grad():
            out = model(img_q, img_s, tgt, mask, skel)
        for name in ("output", "initial_proposals", "similarity_map"):
            err = (out[name].double() - g["outputs"][case][f"predict.{name}"].double()).abs().max().item()
            tol = max(10 * g["fp64_gap"][f"outputs/{case}/predict.{name}"], 1e-6)
            worst_ratio = max(worst_ratio, err / tol)
            if name == "output":
                worst_kp = max(worst_kp, err)
    return {"parity_max_err": worst_kp, "parity_worst_err_over_tolerance": worst_ratio}


def accuracy(sequences, label: str) -> dict[str, list[Outcome]]:
    pooled: dict[str, list[Outcome]] = {}
    for seq in sequences:
        candidates = {
            "tracker": make_estimator("tracker"),
            "cape+tracker(cape=tracker)": CapeTrackerEstimator(detector=make_estimator("tracker")),
            "cape=sim (alone)": SimulatedDetector(seq.xy),
            "cape+tracker(cape=sim)": CapeTrackerEstimator(detector=SimulatedDetector(seq.xy)),
        }
        for name, est in candidates.items():
            start = time.perf_counter()
            res = est.estimate(seq.support, seq.frames, seq.masks)
            seconds = time.perf_counter() - start
            outcome = Outcome.of(res, seq.xy, seq.visible)
            pooled.setdefault(name, []).append(outcome)
            stats = {**outcome.summary(), "seconds": seconds}
            print(_row([seq.name, name] + [stats[k] for _, _, k in COLUMNS[2:]]), flush=True)
    for name, outcomes in pooled.items():
        stats = {**Outcome.pool(outcomes).summary(), "seconds": float("nan")}
        print(_row([f"ALL {label}", name] + [stats[k] for _, _, k in COLUMNS[2:]]))
    return pooled


def multiview_depth(dev_dir: Path, noise_px: float = 3.0) -> dict | None:
    """3D anchor errors before/after multi-view refinement per benchmark-dev scene."""
    from dynapose4d.cameras import Cameras
    from dynapose4d.deform import lift_keypoints
    from dynapose4d.gaussians import Z_UP_TO_Y_UP
    from dynapose4d.io import read_ply
    from dynapose4d.keypoints.multiview import ViewDetections, refine_anchor_depths

    if not dev_dir.is_dir():
        return None
    rng = np.random.default_rng(0)
    ref = Cameras.orbit(0.0, 0.0, 2.0, width=256)
    before_all, after_all = [], []
    print(f"{'scene':<8} {'mean before':>12} {'max before':>11} {'mean after':>11} {'max after':>10} {'changed':>8}")
    for name in DEV_SCENES:
        scene = dev_dir / name
        g = read_ply(scene / "static_gt.ply", up_axis="z")
        kp2 = torch.tensor(json.loads((scene / "keypoints2d_input.json").read_text())[0])
        kp3 = torch.tensor(json.loads((scene / "keypoints3d.json").read_text())[0]) @ Z_UP_TO_Y_UP.T
        lifted, ok = lift_keypoints(g, ref, kp2)
        views = []
        for elevation, azimuth in ((0.0, 60.0), (0.0, 300.0), (20.0, 0.0)):
            cam = Cameras.orbit(elevation, azimuth, 2.0, width=256)
            xy, _ = cam.project(kp3)
            views.append(ViewDetections(cam, xy.numpy() + rng.normal(0, noise_px, xy.shape), np.full(len(xy), 0.9)))
        res = refine_anchor_depths(lifted, ref, views, valid=ok)
        before, after = (lifted - kp3).norm(dim=-1).numpy(), (res.points - kp3).norm(dim=-1).numpy()
        before_all.append(before)
        after_all.append(after)
        print(f"{name:<8} {before.mean():>12.4f} {before.max():>11.4f} {after.mean():>11.4f} {after.max():>10.4f} "
              f"{int(res.changed.sum()):>5}/{len(before)}")
    b, a = np.concatenate(before_all), np.concatenate(after_all)
    print(f"{'ALL':<8} {b.mean():>12.4f} {b.max():>11.4f} {a.mean():>11.4f} {a.max():>10.4f}")
    return {"mv_anchor_err_before": round(float(b.mean()), 4), "mv_anchor_err_after": round(float(a.mean()), 4),
            "mv_anchor_max_err_before": round(float(b.max()), 4), "mv_anchor_max_err_after": round(float(a.max()), 4)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--keypoints", type=int, default=14)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--dev-dir", type=Path, default=DEV_DIR)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--accuracy-frames", type=int, default=14)
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict = {}

    print(f"1. cost: full-size PoseAnything ({sum(p.numel() for p in PoseAnything(DEMO_B).parameters()) / 1e6:.1f} M "
          f"parameters, random weights), {args.frames} frames at 256x256, batch {args.batch}, {args.threads} CPU thread(s)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{'device':<7} {'ms/frame':>9} {'peak RSS MB':>12} {'RSS before MB':>14} {'peak CUDA MB':>13} {'tracker ms/frame':>17} {'ratio':>6}")
    for device in devices:
        c = cost(args.frames, args.keypoints, args.batch, device)
        ratio = c["ms_per_frame"] / c["tracker_ms_per_frame"] if "tracker_ms_per_frame" in c else float("nan")
        print(f"{device:<7} {c['ms_per_frame']:>9.1f} {c['peak_rss_mb']:>12.0f} {c['rss_before_mb']:>14.0f} "
              f"{_fmt(c.get('peak_cuda_mb', float('nan'))):>13} {_fmt(c.get('tracker_ms_per_frame', float('nan'))):>17} "
              f"{_fmt(ratio):>6}", flush=True)
        if device == "cpu":
            result.update(ms_per_frame_cpu=round(c["ms_per_frame"], 1), peak_mb=round(c["peak_rss_mb"]),
                          tracker_ms_per_frame_cpu=round(c["tracker_ms_per_frame"], 1),
                          cape_over_tracker_time=round(ratio, 2), keypoints=c["keypoints"], threads=args.threads)
        else:
            result.update(ms_per_frame_cuda=round(c["ms_per_frame"], 2), peak_cuda_mb=round(c["peak_cuda_mb"]))

    p = parity()
    print(f"\n2. parity with the original (golden data): max |final keypoints diff| = {p['parity_max_err']}, "
          f"worst output error / tolerance = {p.get('parity_worst_err_over_tolerance')}")
    result.update(parity_max_err=p["parity_max_err"],
                  parity_worst_err_over_tolerance=round(p.get("parity_worst_err_over_tolerance") or 0, 3))

    if not args.skip_accuracy:
        print("\n3. fusion accuracy with CAPE stand-ins (px over frames 1..T-1; cape=sim is simulated, not PoseAnything)")
        header = _row([c for c, _, _ in COLUMNS])
        print(header + "\n" + "-" * len(header))
        syn = accuracy((make_sequence(k, args.accuracy_frames, 256, seed=i) for i, k in enumerate(args.kinds)), "synthetic")
        dev = None
        if args.dev_dir.is_dir():
            print("-" * len(header) + "\nbenchmark-dev (hidden points counted)")
            dev = accuracy((load_dev_scene(args.dev_dir / s) for s in DEV_SCENES if (args.dev_dir / s).is_dir()),
                           "benchmark-dev")
        for prefix, pooled in (("", syn), ("dev_", dev)):
            if pooled is None:
                result[prefix + "tracker_median_err_px"] = None
                continue
            for key, name in (("tracker", "tracker"), ("hybrid_tracker", "cape+tracker(cape=tracker)"),
                              ("sim", "cape=sim (alone)"), ("hybrid_sim", "cape+tracker(cape=sim)")):
                result[f"{prefix}{key}_median_err_px"] = round(Outcome.pool(pooled[name]).summary()["median_err_px"], 3)
    print("\n4. multi-view anchor depth on benchmark-dev (3D error, scene units; simulated detections in real views)")
    mv = multiview_depth(args.dev_dir)
    if mv is None:
        print(f"benchmark-dev not found at {args.dev_dir}: skipped")
    result.update(mv or {"mv_anchor_err_before": None})
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
