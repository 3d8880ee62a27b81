"""The built-in demo: recover a known articulated motion on a CPU, with no downloaded weights.

1. Ground truth: a procedural articulated object (``evaluation/articulated.py``) and its motion; the driving
   video and masks are its renders from the reference view; its rest pose is the static model.
2. Keypoints: automatic support keypoints on frame 0, tracked through the video by the
   weight-free estimator (the same path a real job takes).
3. The dynamic stage recovers the motion from the video and the keypoints.
4. Evaluation beside a do-nothing baseline (the static model at every frame), measured in the
   same run: reference-view PSNR, PSNR/SSIM at the four Consistent4D views, PSNR on the moving
   region, 3D keypoint error (image-plane and depth parts), jitter.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..cameras import Cameras
from ..deform.deformations import DeformConfig
from ..deform.hexplane import HexPlaneConfig
from ..dynamic4d import Dynamic4D
from ..evaluation.articulated import ArticulatedObject, make_articulated
from ..evaluation.ground_truth import GroundTruth, consistent4d_views, evaluate
from ..events import EventSink, LogEvent, ignore
from ..io.job_folder import JobFolder
from ..keypoints import Support, TrackResult, auto_support_keypoints, make_estimator
from ..render import render
from ..stages.dynamic import DynamicConfig, DynamicStage
from ..video.clip import DrivingVideo


def demo_dynamic_config(frames: int) -> DynamicConfig:
    """Settings sized for a 2-core CPU (the paper's 500 iterations on every frame need a GPU)."""
    return DynamicConfig(
        iterations=200,
        frames_per_step=4,
        resolution=128,
        lambda_arap=10000.0,
        train_static=False,  # the demo's static model is the ground truth rest pose
        snapshot_every=50,
        checkpoint_every=50,
        deform=DeformConfig(hexplane=HexPlaneConfig(time_res=frames)),
    )


@dataclass
class DemoConfig:
    motion: str = "lamp"
    gaussians: int = 4000
    frames: int = 14  # like Stable Video Diffusion img2vid
    video_fps: float = 7.0
    video_size: int = 256  # the driving video (the tracker likes detail)
    eval_size: int = 256  # evaluate at the video resolution: a 128 render is not an area-downsampled 256 one (caps PSNR at ~28.6 dB)
    keypoints: int = 14  # the paper's N
    estimator: str = "tracker"
    outlier_fraction: float = 0.0  # replace this share of tracked keypoints by random points (ablation)
    previews: bool = True
    seed: int = 0
    dynamic: DynamicConfig | None = None

    def __post_init__(self):
        if self.dynamic is None:
            self.dynamic = demo_dynamic_config(self.frames)


@dataclass
class DemoInputs:
    object: ArticulatedObject
    camera: Cameras
    video: DrivingVideo
    support: Support
    track: TrackResult
    times: torch.Tensor
    info: dict = field(default_factory=dict)


@torch.no_grad()
def make_demo_inputs(cfg: DemoConfig) -> DemoInputs:
    obj = make_articulated(cfg.motion, cfg.gaussians, seed=cfg.seed)
    times = torch.linspace(0, 1, cfg.frames)
    camera = Cameras.orbit(0.0, 0.0, 2.0, width=cfg.video_size)
    out = render(obj.gaussians_at(times), camera, 1.0)
    video = DrivingVideo(out.rgb.clamp(0, 1), out.alpha.clamp(0, 1), cfg.video_fps)
    frames = video.frames.numpy()
    masks = video.masks.numpy()
    kps = auto_support_keypoints(frames[0], masks[0] > 0.5, n=cfg.keypoints)
    support = Support(frames[0], kps, masks[0] > 0.5)
    t0 = time.perf_counter()
    track = make_estimator(cfg.estimator).estimate(support, frames, masks > 0.5)
    info = {"tracking_s": round(time.perf_counter() - t0, 2)}
    if cfg.outlier_fraction > 0:
        track, info["outliers"] = _with_outliers(track, cfg.outlier_fraction, cfg.video_size, cfg.seed)
    return DemoInputs(obj, camera, video, support, track, times, info)


def _with_outliers(track: TrackResult, fraction: float, size: int, seed: int) -> tuple[TrackResult, int]:
    """Replace ``fraction`` of the keypoint observations in frames 1.. by uniform random pixels,
    keeping their confidence (an estimator that fails silently)."""
    rng = np.random.default_rng(seed + 1)
    xy = track.xy.copy()
    pick = rng.random(xy.shape[:2]) < fraction
    pick[0] = False
    xy[pick] = rng.uniform(0, size, size=(int(pick.sum()), 2))
    return TrackResult(xy, track.confidence, track.visible, track.names, track.edges, track.estimator, track.info), int(pick.sum())


@torch.no_grad()
def ground_truth(model: Dynamic4D, inputs: DemoInputs, size: int) -> GroundTruth:
    """The object's true renders and the true paths of the model's keypoint anchors (each lifted
    point carried by the part it lies on)."""
    obj, times = inputs.object, inputs.times
    truth = obj.gaussians_at(times)
    camera = inputs.camera.resized(size)
    rest = model.keypoints.anchors.rest
    return GroundTruth(
        times=times,
        reference=render(truth, camera, 1.0).rgb,
        camera=camera,
        novel=render(truth, consistent4d_views(camera), 1.0).rgb,
        keypoints=obj.move_points(rest, obj.nearest_part(rest), times),
    )


def run_demo(
    out_dir: str | Path,
    cfg: DemoConfig = DemoConfig(),
    emit: EventSink = ignore,
    should_stop: Callable[[], bool] = lambda: False,
    write_outputs: bool = True,
) -> tuple[Dynamic4D, dict]:
    """Run the demo end to end; returns the 4D model and the metrics (``status`` says whether
    it finished or was stopped; a stopped run resumes from its checkpoint when run again)."""
    folder = JobFolder(out_dir)
    folder.root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    # 1-2. Ground truth, driving video, keypoints.
    inputs = make_demo_inputs(cfg)
    emit(LogEvent(f"driving video: {cfg.frames} frames; {inputs.support.keypoints.n} keypoints tracked in {inputs.info['tracking_s']} s"))
    # 3. The dynamic stage (resuming from a checkpoint of an interrupted run).
    stage = DynamicStage(cfg.dynamic, inputs.object.static, inputs.video, inputs.support.keypoints, inputs.track, inputs.camera)
    checkpoint = folder.checkpoint("dynamic")
    if checkpoint.exists():
        try:
            stage.load_checkpoint(checkpoint)
            emit(LogEvent(f"resuming from {checkpoint} at iteration {stage.step}"))
        except ValueError as exc:
            emit(LogEvent(f"ignoring {checkpoint}: {exc}", "warning"))
    status = stage.run(emit, should_stop, checkpoint_path=checkpoint)
    model = stage.result()
    if status == "stopped":  # a stop must be quick: evaluate and write results when finished
        return model, {"status": status, "iterations": stage.step, "seconds": round(time.perf_counter() - t0, 1)}
    # 4. Evaluation and outputs.
    metrics = {"status": status, "iterations": stage.step, **evaluate(model, ground_truth(model, inputs, cfg.eval_size))}
    metrics["seconds"] = round(time.perf_counter() - t0, 1)
    metrics.update(inputs.info)
    if write_outputs:
        _write_outputs(folder, model, inputs, metrics, cfg)
    return model, metrics


def _write_outputs(folder: JobFolder, model: Dynamic4D, inputs: DemoInputs, metrics: dict, cfg: DemoConfig) -> None:
    from ..keypoints.draw import draw_track, save_gif
    from .outputs import write_results

    write_results(folder, model, previews=cfg.previews)
    save_gif(draw_track(inputs.video.frames.numpy(), inputs.track), folder.keypoints_gif, fps=cfg.video_fps)
    folder.metrics.write_text(json.dumps({"metrics": metrics, "config": asdict(cfg)}, indent=1))
