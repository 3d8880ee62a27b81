"""The paper's pipeline: one image (or an existing PLY) + a driving video -> 4D Gaussians.

``generate``: image -> reference layout -> static Gaussians (Zero-1-to-3 SDS) -> driving video
(Stable Video Diffusion, or the user's video) -> keypoints (support on the reference image,
tracked through the video) -> dynamic stage (Pose Alignment Loss + novel-view SDS conditioned on
each frame) -> results.

``animate``: an existing 3DGS PLY registered into our frame -> its reference-view render is the
support image -> the user's video -> keypoints -> dynamic stage -> results.

Every step writes its product into the job folder and is skipped when that product exists
(:func:`.steps.resumable`), so a job run again resumes where it stopped; the stages resume from
their checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..cameras import Cameras
from ..devices import resolve_device
from ..dynamic4d import Dynamic4D
from ..events import EventSink, LogEvent
from ..gaussians import Gaussians
from ..imaging.images import ReferenceImage, prepare_reference
from ..io import read_ply, write_ply
from ..io.job_folder import JobFolder
from ..keypoints import Support, SupportKeypoints, TrackResult, auto_support_keypoints, parse_keypoints_json
from ..keypoints.registry import job_estimator
from ..render import render
from ..stages.dynamic import DynamicStage
from ..userframe import UserFrame
from ..video.clip import DrivingVideo, align_video
from ..video.framing import mask_agreement, record_framing
from .candidates import WAITING, CandidatePlan, chosen_video, run_candidates
from .configs import REFERENCE_SIZE, ImageTo4DConfig, animate_config, generate_config
from .outputs import write_results
from .static_sources import PlyStatic, Zero123Static, reference_camera
from .steps import resumable

CAPE_ESTIMATORS = ("poseanything", "cape+tracker")  # per-image estimators: they can match separate views
MULTIVIEW_AZIMUTHS = (-60.0, -30.0, 30.0, 60.0)  # Zero-1-to-3 views for multi-view keypoints (elevation 0)


@dataclass
class JobRun:
    """The job being run: its folder, where its events go, and whether to stop."""

    folder: JobFolder
    emit: EventSink
    should_stop: Callable[[], bool]


@dataclass
class Scene:
    """What the shared tail of both job kinds starts from.

    Attributes:
        static: the static Gaussians (backend frame), on the job's device.
        camera: the reference camera (the input view).
        video: the driving video, framed like the reference view.
        support_image, support_mask: ``[S, S, 3]`` / ``[S, S]`` the support of the keypoints.
        to_reference: maps pixels of the user's keypoints file into the support image (None: the
            file is already in its pixels).
        user_frame: how results go back to the user's frame (userframe.py).
        warnings: the framing guard rails' warnings, for the job's summary.
        zero123: the loaded Zero-1-to-3 guidance (generate), for multi-view keypoints.
    """

    static: Gaussians
    camera: Cameras
    video: DrivingVideo
    support_image: np.ndarray
    support_mask: np.ndarray
    to_reference: Callable[[np.ndarray], np.ndarray] | None = None
    user_frame: UserFrame | None = None
    warnings: list[str] | None = None
    zero123: object | None = None  # the loaded Zero-1-to-3 guidance (generate), for multi-view keypoints


def generate(folder: JobFolder, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    run = JobRun(folder, emit, should_stop)
    cfg = generate_config(settings, user_video="video" in inputs)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)

    # 1. The input image in the reference layout (recentred, on white, with its mask).
    reference = resumable(
        folder.reference / "reference.json",
        make=lambda: prepare_reference(folder.input(inputs["image"]), size=REFERENCE_SIZE),
        save=lambda ref: ref.save(folder.reference),
        load=lambda: ReferenceImage.load(folder.reference),
    )
    camera = reference_camera(REFERENCE_SIZE)

    # 2. Static Gaussians.
    source = Zero123Static(cfg.static, cfg.zero123, device)
    static = resumable(
        folder.static,
        make=lambda: source.static(reference, camera, emit, should_stop, folder.checkpoint("static")),
        save=lambda g: write_ply(folder.static, g, sh_degree=None),  # its own degree: reads back exactly
        load=lambda: read_ply(folder.static),
    )
    if static is None:
        return {"status": "stopped", "stage": "static"}

    # 3. The driving video: the user's, or the chosen one of K generated candidates (candidates.py),
    # framed like the reference layout (video/framing.py); the static model's reference render is
    # checked against it.
    chosen = None
    if "video" not in inputs and not folder.video_file.exists():
        chosen = _candidates(run, cfg, reference, device)
        if chosen in ("stopped", WAITING):
            return {"status": chosen, "stage": "candidates"}

    def make_video() -> DrivingVideo:
        from ..video.clip import FileVideoSource

        if chosen is not None:
            return chosen_video(folder, chosen)
        video_source = FileVideoSource(folder.input(inputs["video"]), num_frames=cfg.video_frames, fps=cfg.video_fps, size=REFERENCE_SIZE,
                                       **cfg.front_end.file_source_options(device.type))
        video = video_source.generate(reference.image, reference.mask)
        if "framing" not in video.meta:
            video, _ = align_video(video, reference.image, reference.mask)
        return video

    video = _video(folder, make_video, emit)
    with torch.no_grad():
        static_alpha = render(static, camera, 1.0).alpha
    warnings = record_framing(folder.framing, video, emit, {"static_render": mask_agreement(reference.mask, static_alpha)})

    # 4. The dynamic stage, with novel-view SDS conditioned on each frame (DG4D).
    guidance = z123 = None
    if cfg.novel_view_sds:
        from ..guidance.zero123 import Zero123Guidance
        from ..stages.novel_view import DynamicNovelViews, NovelViewConfig, NovelViewSDS

        z123 = Zero123Guidance(cfg.zero123, device=device)
        z123.set_reference(video.frames)
        guidance = DynamicNovelViews(NovelViewSDS(z123, NovelViewConfig(views=cfg.preset.novel_views), seed=cfg.seed))
    scene = Scene(static.to(device), camera, video, reference.image.numpy(), reference.mask.numpy(), reference.to_reference,
                  UserFrame.backend(), warnings, z123)
    return _animate_scene(run, cfg, scene, inputs, guidance)


def animate(folder: JobFolder, settings: dict, inputs: dict, emit: EventSink, should_stop) -> dict:
    from ..video.clip import FileVideoSource

    run = JobRun(folder, emit, should_stop)
    cfg = animate_config(settings)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)

    # 1. Register the PLY and render its reference view: the support image.
    source = PlyStatic(folder.input(inputs["ply"]), cfg.registration)
    static = source.static()
    camera = reference_camera(REFERENCE_SIZE)
    with torch.no_grad():
        view = render(static, camera, 1.0)
    folder.registration.write_text(json.dumps(source.transform, indent=1))
    user_frame = UserFrame.from_registration(source.transform, cfg.registration.up_axis)
    support_image, support_mask = view.rgb.clamp(0, 1), view.alpha

    # 2. The user's video, framed like the support render (video/framing.py).
    def make_video() -> DrivingVideo:
        video_source = FileVideoSource(folder.input(inputs["video"]), num_frames=cfg.video_frames, fps=cfg.video_fps, size=REFERENCE_SIZE,
                                       **cfg.front_end.file_source_options(device.type))
        return video_source.generate(support_image, support_mask)

    video = _video(folder, make_video, emit)
    warnings = record_framing(folder.framing, video, emit)

    # 3-4. Keypoints (a user's file is in pixels of the reference-view render), dynamic stage;
    # results go back to the PLY's own frame (userframe.py).
    scene = Scene(static.to(device), camera, video, support_image.numpy(), support_mask.numpy(), None, user_frame, warnings)
    return _animate_scene(run, cfg, scene, inputs, None)


def _candidates(run: JobRun, cfg: ImageTo4DConfig, reference: ReferenceImage, device) -> int | str:
    from ..guidance.svd import SVDSource

    plan = CandidatePlan(cfg.svd, cfg.video_candidates, cfg.choose_video)
    return run_candidates(run.folder, plan, (reference.image.numpy(), reference.mask.numpy()), run.emit, run.should_stop,
                          make_source=lambda config: SVDSource(config, device))


def _video(folder: JobFolder, make: Callable[[], DrivingVideo], emit: EventSink) -> DrivingVideo:
    return resumable(
        folder.video_file,
        make=make,
        save=lambda video: video.save(folder.video),
        load=lambda: DrivingVideo.load(folder.video),
        stage="video",
        emit=emit,
        describe=lambda v: f"{v.num_frames} frames at {v.fps:g} fps ({v.source})",
    )


def _animate_scene(run: JobRun, cfg: ImageTo4DConfig, scene: Scene, inputs: dict, guidance) -> dict:
    """The tail both kinds share: keypoints, the dynamic stage, the results."""
    keypoints = _keypoints(run, cfg, scene, inputs)
    views = _keypoint_views(run, cfg, scene, keypoints[0])
    model = _dynamic(run, cfg, scene, keypoints, guidance, views)
    if model is None:
        return {"status": "stopped", "stage": "dynamic"}
    write_results(run.folder, model, previews=cfg.previews)
    summary = {"status": "finished", "gaussians": model.static.num, "frames": scene.video.num_frames, "keypoints": keypoints[0].n,
               "masks": scene.video.meta.get("masks", "generated")}  # which masks drove it (alpha, segmenter <name>, ...)
    return {**summary, "warnings": list(scene.warnings or [])}


def _keypoints(run: JobRun, cfg: ImageTo4DConfig, scene: Scene, inputs: dict) -> tuple[SupportKeypoints, TrackResult]:
    """Support keypoints on the support image (the user's JSON, or automatic ones) and their
    tracks through the video; both saved in ``keypoints/``."""
    folder = run.folder
    image, mask = scene.support_image, scene.support_mask > 0.5
    size = (image.shape[1], image.shape[0])

    def make() -> tuple[SupportKeypoints, TrackResult]:
        if "keypoints" in inputs:
            given = parse_keypoints_json(folder.input(inputs["keypoints"]).read_text())
            xy = scene.to_reference(given.xy) if scene.to_reference else given.xy
            support = SupportKeypoints(np.asarray(xy, np.float32), given.visible, given.names, given.edges, image_size=size)
        else:
            support = auto_support_keypoints(image, mask, n=cfg.keypoints.count)
        video = scene.video
        estimator = job_estimator(cfg.keypoints.estimator, weights=cfg.keypoints.weights, device=cfg.device)
        track = estimator.estimate(Support(image, support, mask), video.frames.numpy(), video.masks.numpy() > 0.5)
        return support, track

    def save(product: tuple[SupportKeypoints, TrackResult]) -> None:
        folder.keypoints.mkdir(parents=True, exist_ok=True)
        product[0].save(folder.support_keypoints)
        product[1].save(folder.track)  # written last: the step's marker

    return resumable(
        folder.track,
        make=make,
        save=save,
        load=lambda: (SupportKeypoints.load(folder.support_keypoints, image_size=size), TrackResult.load(folder.track)),
        stage="keypoints",
        emit=run.emit,
        describe=lambda p: f"{p[0].n} keypoints over {p[1].num_frames} frames ({p[1].estimator})",
    )


def _keypoint_views(run: JobRun, cfg: ImageTo4DConfig, scene: Scene, support: SupportKeypoints) -> list | None:
    """The paper's multi-view keypoints: CAPE on Zero-1-to-3 views of the reference image, saved
    in ``keypoints/views.npz``; the dynamic stage refines its anchors' depths with them. Only for
    a CAPE estimator (a tracker cannot match separate views) with the Zero-1-to-3 model loaded."""
    if not (cfg.multiview_keypoints and scene.zero123 is not None and cfg.keypoints.estimator in CAPE_ESTIMATORS):
        return None
    from ..keypoints.multiview import load_views, save_views, view_detections, zero123_views

    folder = run.folder

    def make() -> list:
        images, cameras = zero123_views(scene.zero123, scene.support_image, MULTIVIEW_AZIMUTHS, seed=cfg.seed)
        scene.zero123.set_reference(scene.video.frames)  # the dynamic stage's SDS is conditioned on the video
        detector = job_estimator("poseanything", weights=cfg.keypoints.weights, device=cfg.device)
        support_in = Support(scene.support_image, support, scene.support_mask > 0.5)
        return view_detections(detector, support_in, images, cameras)

    return resumable(
        folder.keypoint_views,
        make=make,
        save=lambda views: save_views(folder.keypoint_views, views),
        load=lambda: load_views(folder.keypoint_views),
        stage="multiview_keypoints",
        emit=run.emit,
        describe=lambda views: f"keypoints in {len(views)} Zero-1-to-3 views (azimuths {', '.join(f'{a:g}' for a in MULTIVIEW_AZIMUTHS)})",
    )


def _dynamic(run: JobRun, cfg: ImageTo4DConfig, scene: Scene, keypoints: tuple[SupportKeypoints, TrackResult], guidance,
             views: list | None = None) -> Dynamic4D | None:
    config = cfg.dynamic_for(scene.video.num_frames, novel_view_sds=guidance is not None, device_type=scene.static.means.device.type)
    info = {"user_frame": scene.user_frame.to_dict()} if scene.user_frame is not None else None
    stage = DynamicStage(config, scene.static, scene.video, *keypoints, scene.camera, guidance, info=info, anchor_views=views)
    checkpoint = run.folder.checkpoint("dynamic")
    if checkpoint.exists():
        stage.load_checkpoint(checkpoint)
        run.emit(LogEvent(f"resuming the dynamic stage at iteration {stage.step}"))
    if stage.run(run.emit, run.should_stop, checkpoint) == "stopped":
        return None
    return stage.result()
