"""The paper's pipeline: one image (or an existing PLY) + a driving video -> 4D Gaussians.

``generate``: image -> reference layout -> static Gaussians (Zero-1-to-3 SDS) -> driving video
(Stable Video Diffusion, or the user's video) -> keypoints (support on the reference image,
tracked through the video) -> dynamic stage (Pose Alignment Loss + novel-view SDS conditioned on
each frame) -> results.

``animate``: an existing 3DGS PLY registered into our frame -> its reference-view render is the
support image -> the user's video -> keypoints -> dynamic stage -> results.

Every step writes its product into the job folder and is skipped when that product exists, so a
job run again resumes where it stopped (the stages resume from their checkpoints). Products are
read back right after they are written, so a first run and a resumed one see the same (saved,
e.g. 8-bit) data, and the stages' checkpoints match their inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .cameras import Cameras
from .events import EventSink, LogEvent, StageEvent
from .framing import align_video, mask_agreement, record_framing
from .gaussians import Gaussians
from .images import ReferenceImage, prepare_reference
from .io import read_ply, write_ply
from .keypoints import Support, SupportKeypoints, TrackResult, auto_support_keypoints, make_estimator, parse_keypoints_json
from .model4d import Dynamic4D
from .outputs import write_results
from .render import render
from .sources import PlyRegistration, PlyStatic, Zero123Static, reference_camera
from .stages.dynamic import DynamicConfig, DynamicStage
from .userframe import UserFrame
from .video import DrivingVideo

REFERENCE_SIZE = 256  # the paper's reference size


@dataclass(frozen=True)
class Preset:
    static_iterations: int
    dynamic_iterations: int
    svd: str  # registry name: 14 frames (svd) or 25 (svd-xt)
    novel_views: int
    frames_per_step: int  # 0 = all frames every step
    low_vram: bool = False


PRESETS = {
    "fast": Preset(300, 300, "svd", 1, 0),
    "standard": Preset(500, 500, "svd", 1, 0),  # the paper's settings
    "high": Preset(800, 800, "svd-xt", 2, 0),
    "low-vram": Preset(500, 500, "svd", 1, 4, low_vram=True),
}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Step:
    """A resumable step of a job: ``done`` when its product file exists."""

    def __init__(self, job_dir: Path, name: str, product: str, emit: EventSink):
        self.path, self.name, self.emit = job_dir / product, name, emit

    @property
    def done(self) -> bool:
        return self.path.exists()

    def start(self) -> None:
        self.emit(StageEvent(self.name, "started"))

    def finish(self, message: str = "") -> None:
        self.emit(StageEvent(self.name, "finished", message))


def _keypoints(job_dir: Path, settings: dict, inputs: dict, support_image: np.ndarray, support_mask: np.ndarray,
               video: DrivingVideo, to_reference: Callable | None, emit: EventSink) -> tuple[SupportKeypoints, TrackResult]:
    """Support keypoints on the reference image (the user's JSON, or automatic ones) and their
    tracks through the video; both saved in ``keypoints/``."""
    folder = job_dir / "keypoints"
    support_path, track_path = folder / "support.json", folder / "track.npz"
    size = (support_image.shape[1], support_image.shape[0])
    if support_path.exists() and track_path.exists():
        return SupportKeypoints.load(support_path, image_size=size), TrackResult.load(track_path)
    folder.mkdir(parents=True, exist_ok=True)
    emit(StageEvent("keypoints", "started"))
    if "keypoints" in inputs:
        given = parse_keypoints_json((job_dir / "inputs" / inputs["keypoints"]).read_text())
        xy = to_reference(given.xy) if to_reference else given.xy
        support = SupportKeypoints(np.asarray(xy, np.float32), given.visible, given.names, given.edges, image_size=size)
    else:
        support = auto_support_keypoints(support_image, support_mask > 0.5, n=settings["num_keypoints"])
    track = make_estimator(settings["estimator"]).estimate(
        Support(support_image, support, support_mask > 0.5), video.frames.numpy(), video.masks.numpy() > 0.5
    )
    support.save(support_path)
    track.save(track_path)
    emit(StageEvent("keypoints", "finished", f"{support.n} keypoints over {track.num_frames} frames ({track.estimator})"))
    return support, track


def _dynamic(job_dir: Path, settings: dict, preset: Preset, static: Gaussians, video: DrivingVideo, support, track,
             camera: Cameras, guidance, emit: EventSink, should_stop, info: dict | None = None) -> Dynamic4D | None:
    from .deform import DeformConfig, HexPlaneConfig

    cfg = DynamicConfig(
        iterations=settings["iterations"] or preset.dynamic_iterations,
        frames_per_step=preset.frames_per_step,
        lambda_kml=settings["lambda_kml"],
        lambda_scl=settings["lambda_scl"],
        kml_robust_scale=settings["kml_robust_scale"],
        seed=settings["seed"],
        lambda_sds=1.0 if guidance is not None else 0.0,
        snapshot_every=settings["snapshot_every"],
        checkpoint_every=settings["checkpoint_every"],
        deform=DeformConfig(hexplane=HexPlaneConfig(time_res=video.num_frames)),
    )
    stage = DynamicStage(cfg, static, video, support, track, camera, guidance, info=info)
    checkpoint = job_dir / "checkpoints" / "dynamic.pt"
    if checkpoint.exists():
        stage.load_checkpoint(checkpoint)
        emit(LogEvent(f"resuming the dynamic stage at iteration {stage.step}"))
    if stage.run(emit, should_stop, checkpoint) == "stopped":
        return None
    return stage.result()


def _zero123_config(settings: dict, preset: Preset):
    from .guidance.zero123 import Zero123Config

    return Zero123Config(model=settings["zero123"], attention_slicing=preset.low_vram)


def generate(job_dir: Path, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from .stages.novel_view import DynamicNovelViews, NovelViewConfig, NovelViewSDS
    from .stages.static import StaticConfig

    preset = PRESETS[settings["preset"]]
    device = _device(settings["device"])
    torch.manual_seed(settings["seed"])

    # 1. The input image in the reference layout (recentred, on white, with its mask).
    ref_dir = job_dir / "reference"
    if (ref_dir / "reference.json").exists():
        reference = ReferenceImage.load(ref_dir)
    else:
        prepare_reference(job_dir / "inputs" / inputs["image"], size=REFERENCE_SIZE).save(ref_dir)
        reference = ReferenceImage.load(ref_dir)
    camera = reference_camera(REFERENCE_SIZE)

    # 2. Static Gaussians.
    static_path = job_dir / "static.ply"
    if static_path.exists():
        static = read_ply(static_path)
    else:
        novel = NovelViewConfig(views=preset.novel_views)
        cfg = StaticConfig(
            iterations=settings["static_iterations"] or preset.static_iterations,
            novel=novel,
            seed=settings["seed"],
            snapshot_every=settings["snapshot_every"],
            checkpoint_every=settings["checkpoint_every"],
        )
        source = Zero123Static(cfg, _zero123_config(settings, preset), device)
        static = source.static(reference, camera, emit, should_stop, job_dir / "checkpoints" / "static.pt")
        if static is None:
            return {"status": "stopped", "stage": "static"}
        write_ply(static_path, static)
        static = read_ply(static_path)

    # 3. The driving video, framed like the reference layout (framing.py); the static model's
    # reference render is checked against the same layout.
    video = _video(job_dir, settings, inputs, preset, reference, device, emit)
    with torch.no_grad():
        static_alpha = render(static, camera, 1.0).alpha
    warnings = record_framing(job_dir, video, emit, {"static_render": mask_agreement(reference.mask, static_alpha)})

    # 4. Keypoints.
    support, track = _keypoints(job_dir, settings, inputs, reference.image.numpy(), reference.mask.numpy(), video, reference.to_reference, emit)

    # 5. The dynamic stage, with novel-view SDS conditioned on each frame (DG4D).
    guidance = None
    if settings["dynamic_sds"]:
        from .guidance.zero123 import Zero123Guidance

        z123 = Zero123Guidance(_zero123_config(settings, preset), device=device)
        z123.set_reference(video.frames)
        guidance = DynamicNovelViews(NovelViewSDS(z123, NovelViewConfig(views=preset.novel_views), seed=settings["seed"]))
    info = {"user_frame": UserFrame.backend().to_dict()}
    model = _dynamic(job_dir, settings, preset, static.to(device), video, support, track, camera, guidance, emit, should_stop, info)
    if model is None:
        return {"status": "stopped", "stage": "dynamic"}
    write_results(job_dir, model, previews=settings["previews"])
    return {"status": "finished", "gaussians": model.static.num, "frames": video.num_frames, "keypoints": support.n, "warnings": warnings}


def _video(job_dir: Path, settings: dict, inputs: dict, preset: Preset, reference: ReferenceImage, device, emit) -> DrivingVideo:
    from .video import FileVideoSource, SVDConfig, SVDSource

    folder = job_dir / "video"
    if (folder / "video.json").exists():
        return DrivingVideo.load(folder)
    emit(StageEvent("video", "started"))
    if "video" in inputs:
        frames = settings["frames"] or 14
        source = FileVideoSource(job_dir / "inputs" / inputs["video"], num_frames=frames, size=REFERENCE_SIZE)
    else:
        svd = settings["svd"] or preset.svd
        config = SVDConfig(
            model=svd,
            seed=settings["seed"],
            steps=settings["svd_steps"],
            size=settings["svd_size"],
            motion_bucket_id=settings["motion_bucket"],
            cpu_offload=preset.low_vram,
            output_size=REFERENCE_SIZE,
        )
        if settings["frames"]:
            config = replace(config, num_frames=settings["frames"])
        if preset.low_vram:
            config = replace(config, decode_chunk_size=2)
        source = SVDSource(config, device)
    video = source.generate(reference.image, reference.mask)
    if "framing" not in video.meta:  # SVD regenerates frame 0: bring it onto the reference too
        video, _ = align_video(video, reference.image, reference.mask)
    video.save(folder)
    video = DrivingVideo.load(folder)
    emit(StageEvent("video", "finished", f"{video.num_frames} frames at {video.fps:g} fps ({video.source})"))
    return video


def animate(job_dir: Path, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from .video import FileVideoSource

    device = _device(settings["device"])
    torch.manual_seed(settings["seed"])
    preset = PRESETS["standard"]

    # 1. Register the PLY and render its reference view: the support image.
    reg = PlyRegistration(up_axis=settings["up_axis"], elevation=settings["reference_elevation"], azimuth=settings["reference_azimuth"])
    source = PlyStatic(job_dir / "inputs" / inputs["ply"], reg)
    static = source.static()
    camera = reference_camera(REFERENCE_SIZE)
    with torch.no_grad():
        view = render(static, camera, 1.0)
    (job_dir / "registration.json").write_text(json.dumps(source.transform, indent=1))
    user_frame = UserFrame.from_registration(source.transform, settings["up_axis"])
    support_image, support_mask = view.rgb.clamp(0, 1).numpy(), view.alpha.numpy()

    # 2. The user's video, framed like the support render (framing.py).
    folder = job_dir / "video"
    if (folder / "video.json").exists():
        video = DrivingVideo.load(folder)
    else:
        emit(StageEvent("video", "started"))
        FileVideoSource(job_dir / "inputs" / inputs["video"], num_frames=settings["frames"], size=REFERENCE_SIZE).generate(
            view.rgb.clamp(0, 1), view.alpha
        ).save(folder)
        video = DrivingVideo.load(folder)
        emit(StageEvent("video", "finished", f"{video.num_frames} frames at {video.fps:g} fps"))
    warnings = record_framing(job_dir, video, emit)

    # 3. Keypoints (user keypoints are given on the reference-view render).
    support, track = _keypoints(job_dir, settings, inputs, support_image, support_mask, video, None, emit)

    # 4. The dynamic stage; its results go back to the PLY's own frame (userframe.py).
    info = {"user_frame": user_frame.to_dict()}
    model = _dynamic(job_dir, settings, preset, static.to(device), video, support, track, camera, None, emit, should_stop, info)
    if model is None:
        return {"status": "stopped", "stage": "dynamic"}
    write_results(job_dir, model, previews=settings["previews"])
    return {"status": "finished", "gaussians": model.static.num, "frames": video.num_frames, "keypoints": support.n, "warnings": warnings}
