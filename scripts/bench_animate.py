#!/usr/bin/env python3
"""Speed of ``dynapose4d animate`` at its default, against the old default, in one run.

The benchmark-dev crane (30,000 Gaussians, a 32-frame 256x256 Cycles video) goes through the
user's path, the real CLI on files (``scripts/bench_animate_e2e.py`` encodes the MP4 and scores
the result), twice:

- **before**: the old default, every frame rendered each step (``--frames-per-step 64``), 500
  iterations. It takes about 13 minutes on 2 idle cores, so ``--before-iterations N`` runs N
  of them and extrapolates the time to 500 from the measured seconds per iteration; the table
  marks such a row, and its quality is that of N iterations, not of 500.
- **after**: the default as shipped (on a CPU: 4 frames per step, every frame visited in turn,
  OpenMP threads that spin briefly before sleeping).

Both get the scene's true support keypoints (frame 0 of ``keypoints3d.json``, projected into
the registered PLY's reference render and given with ``--keypoints``), so the 3D keypoint error
compares trajectories with the truth: the true displacement applied to the lifted rest
position (as ``bench_ablation.py`` scores it), over keypoints lifted within 0.05 of the truth.
Novel-view PSNR is against the four Cycles evaluation views (whole frame and masked to the
object), beside the static PLY held still.

Then a profile of single steps (``stages/profile.py``) of both settings on the same inputs:
where a step's time goes (deformation, projection, rasteriser, losses; forward and backward;
optimiser). On the CPU only.

``--device cuda`` runs both jobs on the GPU (``animate --device cuda``): there "before" is still
every frame per step (the CUDA default) and "after" is ``--after-frames-per-step K`` (the GPU
check gives 4), so the table compares every frame per step with K per step on CUDA.

    python scripts/bench_animate.py [--before-iterations 500] [--iterations 500] [--frames 32]
        [--profile-steps 4] [--skip before,after,profile] [--scene crane] [--out out/bench_animate] [--reuse]
        [--device cpu|cuda] [--after-frames-per-step K]

Without ``../shared/benchmark-dev`` there is no Cycles ground truth: it says so and stops. The
last line is ``RESULT {json}`` with ``seconds``, ``seconds_before``, ``speedup``,
``novel_psnr``, ``novel_psnr_before``, ``kp_err``, ``kp_err_before`` (and the rest of the rows).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))
sys.path.insert(0, str(ROOT / "scripts"))

import dynapose4d  # noqa: E402,F401  (first: it chooses OpenMP's waiting before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

import bench_animate_e2e as e2e  # noqa: E402
from dynapose4d.cameras import Cameras  # noqa: E402
from dynapose4d.evaluation.metrics import keypoint_error  # noqa: E402
from dynapose4d.gaussians import Z_UP_TO_Y_UP  # noqa: E402
from dynapose4d.io.sequence import read_sequence  # noqa: E402
from dynapose4d.keypoints import SupportKeypoints, TrackResult  # noqa: E402
from dynapose4d.pipeline.configs import REFERENCE_SIZE, animate_config  # noqa: E402
from dynapose4d.io.job_folder import JobFolder  # noqa: E402
from dynapose4d.pipeline.settings import validate_settings  # noqa: E402
from dynapose4d.pipeline.static_sources import PlyRegistration, PlyStatic, reference_camera  # noqa: E402
from dynapose4d.stages.dynamic import DynamicStage  # noqa: E402
from dynapose4d.stages.profile import format_profile, profile_steps  # noqa: E402
from dynapose4d.video.clip import DrivingVideo, sample_indices  # noqa: E402

DEFAULT_SCENE = "crane"
DEFAULT_ITERATIONS = 500
EVERY_FRAME = 64  # the largest --frames-per-step: at least the frame count, so every frame
KP_VALID = 0.05  # a lifted keypoint this far from the truth at frame 0 is not scored


def support_keypoints_file(scene_dir: Path, path: Path) -> None:
    """The true keypoints of frame 0 in pixels of the registered PLY's reference render (the
    pixels ``animate --keypoints`` takes)."""
    ply = scene_dir / "static_gt.ply"
    source = PlyStatic(ply, PlyRegistration(up_axis="z", elevation=0.0, azimuth=0.0))
    source.static()  # registers the PLY: its transform is known after this
    transform = source.transform
    kp = torch.tensor(json.loads((scene_dir / "keypoints3d.json").read_text())[0], dtype=torch.float64) @ Z_UP_TO_Y_UP.double().T
    rot, centre = torch.tensor(transform["rotation"], dtype=torch.float64), torch.tensor(transform["centre"], dtype=torch.float64)
    cam = reference_camera(REFERENCE_SIZE).to(dtype=torch.float64)
    px, _ = cam.project(transform["scale"] * (kp - centre) @ rot.T)
    entries = [{"name": f"kp{i:02d}", "xy": [round(float(x), 3), round(float(y), 3)]} for i, (x, y) in enumerate(px.tolist())]
    path.write_text(json.dumps({"image_size": [REFERENCE_SIZE, REFERENCE_SIZE], "keypoints": entries}))


def run_cli(scene_dir: Path, video: Path, keypoints: Path, job: Path, iterations: int, frames: int,
            frames_per_step: int | None, env: dict, log: Path, device: str = "cpu") -> float:
    """One ``animate`` through the CLI; its wall seconds."""
    # The backend first, then whatever PYTHONPATH holds (the GPU check's carried wheels).
    path = os.pathsep.join(p for p in (str(ROOT / "backend"), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), **env)
    cmd = [sys.executable, "-m", "dynapose4d", "animate", str(scene_dir / "static_gt.ply"), "--video", str(video),
           "--keypoints", str(keypoints), "--up-axis", "z", "--frames", str(frames), "--iterations", str(iterations),
           "--no-previews", "-o", str(job), "--restart", "--device", device]
    if frames_per_step is not None:
        cmd += ["--frames-per-step", str(frames_per_step)]
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - t0
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-5:])
        raise RuntimeError(f"the CLI failed (exit {rc}); {log} ends with:\n{tail}")
    return seconds


def stage_rate(log: Path) -> dict:
    """The dynamic stage's seconds and seconds per iteration, from the progress lines."""
    # (step, elapsed) of each progress line: the rate between the first and the last leaves out
    # the first step's one-off costs (kernels loading, buffers growing).
    marks = [(int(i), _seconds(e)) for i, e in re.findall(r"\[dynamic\] (\d+)/\d+ .*elapsed (\S+)", log.read_text())]
    (i0, e0), (i1, e1) = marks[0], marks[-1]
    return {"dynamic_seconds": e1, "s_per_iteration": (e1 - e0) / (i1 - i0) if i1 > i0 else e1 / i1}


def _seconds(text: str) -> float:
    parts = [float(p) for p in text.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def keypoint_scores(scene_dir: Path, job: Path, picked: np.ndarray) -> dict:
    """3D keypoint error in the PLY's frame against the true motion of each lifted keypoint."""
    seq = read_sequence(job / "sequence" / "sequence.json")
    pred = torch.tensor(seq["keypoints"]["positions"], dtype=torch.float64)  # [F, P, 3], the PLY's frame
    truth = torch.tensor(json.loads((scene_dir / "keypoints3d.json").read_text()), dtype=torch.float64)[picked]
    valid = (pred[0] - truth[0]).norm(dim=-1) < KP_VALID
    target = pred[:1] + truth - truth[:1]
    c2w = torch.tensor(seq["camera"]["c2w"], dtype=torch.float64)
    out = keypoint_error(pred[:, valid], target[:, valid], c2w)
    out["kp_scored"] = int(valid.sum())
    return out


def profile(job: Path, frames_per_step: dict[str, int], steps: int) -> dict:
    """Profiled steps of each setting on the job's own inputs (its registered PLY, video, tracks)."""
    folder = JobFolder(job)
    spec = json.loads((job / "job.json").read_text())
    cfg = animate_config(validate_settings("animate", spec["settings"]))
    static = PlyStatic(folder.input(spec["inputs"]["ply"]), cfg.registration).static()
    video = DrivingVideo.load(folder.video)
    support = SupportKeypoints.load(folder.support_keypoints, image_size=(REFERENCE_SIZE, REFERENCE_SIZE))
    track = TrackResult.load(folder.track)
    rows = {}
    for name, k in frames_per_step.items():
        config = replace(cfg.dynamic_for(video.num_frames, novel_view_sds=False, device_type="cpu"), frames_per_step=k)
        stage = DynamicStage(config, static, video, support, track, reference_camera(REFERENCE_SIZE))
        profile_steps(stage, 1)  # warm: numba's cache, allocator
        rows[name] = profile_steps(stage, steps)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default=DEFAULT_SCENE, help="the benchmark-dev scene (default: crane, the issue's)")
    ap.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="iterations of the new default (its default: 500)")
    ap.add_argument("--before-iterations", type=int, default=DEFAULT_ITERATIONS,
                    help="iterations of the old default actually run; fewer than 500 extrapolates its time")
    ap.add_argument("--frames", type=int, default=32, help="frames the CLI samples from the 32-frame video")
    ap.add_argument("--profile-steps", type=int, default=4)
    ap.add_argument("--skip", default="", help="comma list of runs to skip: before, after, profile")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_animate")
    ap.add_argument("--reuse", action="store_true", help="score finished runs in --out again instead of rerunning them")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both jobs run (default: cpu)")
    ap.add_argument("--after-frames-per-step", type=int, help="frames per step of the 'after' run (default: the device's default)")
    args = ap.parse_args()
    scene_dir = e2e.DEV_DIR / args.scene
    if not scene_dir.is_dir():
        print(f"benchmark-dev not found at {e2e.DEV_DIR}: no Cycles ground truth to score against; nothing to run")
        print("RESULT " + json.dumps({"skipped": "no benchmark-dev"}))
        return 0
    skip = set(filter(None, args.skip.split(",")))
    meta = json.loads((scene_dir / "meta.json").read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    video, keypoints = args.out / "input.mp4", args.out / "keypoints.json"
    e2e.write_mp4(scene_dir, video, "cropped", float(meta["fps"]))
    support_keypoints_file(scene_dir, keypoints)
    picked, _ = sample_indices(int(meta["frames"]), float(meta["fps"]), args.frames)
    print(f"scene {args.scene}: {meta['samples']} Gaussians, {args.frames} of {meta['frames']} frames at {meta['res']}^2; "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}", flush=True)

    # The old default: every frame each step, and GNU OpenMP's own spin-then-sleep waiting
    # (GOMP_SPINCOUNT at libgomp's default keeps dynapose4d from choosing passive waiting).
    runs = {
        "before": dict(iterations=args.before_iterations, frames_per_step=EVERY_FRAME, env={"GOMP_SPINCOUNT": "300000"}),
        "after": dict(iterations=args.iterations, frames_per_step=args.after_frames_per_step, env={}),
    }
    rows = {}
    for name, run in runs.items():
        if name in skip:
            continue
        job = args.out / name
        print(f"running {name}: {run['iterations']} iterations, frames per step "
              f"{'every frame' if run['frames_per_step'] == EVERY_FRAME else run['frames_per_step'] or 'default'}"
              f" on {args.device}", flush=True)
        log, seconds_file = args.out / f"{name}.log", args.out / f"{name}.seconds"
        if args.reuse and seconds_file.exists() and (job / "sequence" / "sequence.json").exists():
            seconds = float(seconds_file.read_text())  # a finished run at these settings
        else:
            seconds = run_cli(scene_dir, video, keypoints, job, run["iterations"], args.frames, run["frames_per_step"], run["env"], log,
                              args.device)
            seconds_file.write_text(f"{seconds:.1f}")
        row = {"seconds": seconds, **stage_rate(log), "iterations": run["iterations"]}
        row["extrapolated"] = run["iterations"] < DEFAULT_ITERATIONS
        # Fewer iterations than 500: the missing ones at the measured rate, the rest as measured.
        row["seconds_500"] = row["seconds"] + row["s_per_iteration"] * max(0, DEFAULT_ITERATIONS - run["iterations"])
        row.update(e2e.score(scene_dir, e2e.result_in_ply_frame(job), picked, int(meta["res"])))
        row.update(keypoint_scores(scene_dir, job, picked))
        rows[name] = row
        print(f"  {row['seconds']:.0f} s, novel PSNR {row['psnr']:.2f} dB, kp err {row['kp_err']:.4f}", flush=True)

    print()
    head = f"{'run':<8}{'iters':>6}{'seconds':>9}{'s at 500':>10}{'s/iter':>8}{'novel PSNR':>12}{'masked':>8}{'SSIM':>7}{'kp err':>8}{'plane':>8}{'depth':>8}"
    print(head)
    for name, r in rows.items():
        mark = "*" if r["extrapolated"] else ""
        print(f"{name:<8}{r['iterations']:>6}{r['seconds']:>9.0f}{r['seconds_500']:>9.0f}{mark:1}{r['s_per_iteration']:>8.3f}"
              f"{r['psnr']:>12.3f}{r['masked_psnr']:>8.3f}{r['ssim']:>7.3f}{r['kp_err']:>8.4f}{r['kp_err_plane']:>8.4f}{r['kp_err_depth']:>8.4f}")
    if rows:
        any_row = next(iter(rows.values()))
        print(f"{'static':<8}{'':>6}{'':>9}{'':>10}{'':>8}{any_row['psnr_static']:>12.3f}{any_row['masked_psnr_static']:>8.3f}{any_row['ssim_static']:>7.3f}")
    if any(r["extrapolated"] for r in rows.values()):
        print("* extrapolated from the measured seconds per iteration; that row's quality is at its own iteration count, not 500")

    profiles = {}
    if args.device != "cpu" and "profile" not in skip:
        print("\nprofile: CPU only (skipped)")
    elif "profile" not in skip and JobFolder(args.out / "after").track.exists():
        default_k = animate_config(validate_settings("animate", {})).dynamic_for(args.frames, novel_view_sds=False, device_type="cpu").frames_per_step
        profiles = profile(args.out / "after", {"before (every frame)": EVERY_FRAME, f"after ({default_k} per step)": default_k}, args.profile_steps)
        print(f"\nprofile: seconds per step over {args.profile_steps} steps, and share of the step")
        print(format_profile(profiles))

    result = {"scene": args.scene, "frames": args.frames, "load_average": round(os.getloadavg()[0], 2), "device": args.device,
              "frames_per_step_before": "every", "frames_per_step_after": args.after_frames_per_step or "default"}
    if "before" in rows and "after" in rows:
        b, a = rows["before"], rows["after"]
        result.update(
            seconds=round(a["seconds"], 1), seconds_before=round(b["seconds_500"], 1),
            seconds_before_extrapolated=b["extrapolated"], before_iterations=b["iterations"],
            speedup=round(b["seconds_500"] / a["seconds"], 2),
            novel_psnr=round(a["psnr"], 3), novel_psnr_before=round(b["psnr"], 3),
            masked_psnr=round(a["masked_psnr"], 3), masked_psnr_before=round(b["masked_psnr"], 3),
            kp_err=round(a["kp_err"], 5), kp_err_before=round(b["kp_err"], 5),
            novel_psnr_static=round(a["psnr_static"], 3),
        )
    result["runs"] = {k: {kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in r.items()} for k, r in rows.items()}
    result["profile"] = {k: {kk: round(v, 4) for kk, v in p.items()} for k, p in profiles.items()}
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
