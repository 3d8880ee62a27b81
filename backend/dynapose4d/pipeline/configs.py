"""Job settings -> the stages' typed configs, made once per job.

The declared settings (:mod:`.settings`) are plain JSON values; the stages take dataclasses.
This is the one place that maps one to the other, so a setting means the same in every job kind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..deform import DeformConfig, HexPlaneConfig
from ..stages.dynamic import DynamicConfig
from .settings import PRESETS, Preset
from .static_sources import PlyRegistration

if TYPE_CHECKING:  # the stages below import diffusers; a job that needs them imports them
    from ..guidance.svd import SVDConfig
    from ..guidance.zero123 import Zero123Config
    from ..stages.static import StaticConfig

REFERENCE_SIZE = 256  # the paper's reference size: support image, video frames, reference render


@dataclass(frozen=True)
class KeypointsConfig:
    """Support keypoints (automatic ones when the job has no keypoints file) and their tracker."""

    count: int = 14
    estimator: str = "tracker"
    weights: str = ""  # a converted PoseAnything folder ('': the default location)


@dataclass(frozen=True)
class VideoFrontEnd:
    """What is done to a driving video before the dynamic stage: stabilisation (``auto``: for
    generated videos only) and a user's ONNX segmentation model for a user video's masks."""

    stabilise: str = "auto"
    segmentation_model: str = ""

    def removes_camera(self, *, user_video: bool) -> bool:
        return self.stabilise == "on" or (self.stabilise == "auto" and not user_video)

    def file_source_options(self, device: str = "cpu") -> dict:
        """Keyword arguments of :class:`dynapose4d.video.clip.FileVideoSource` (loads the model)."""
        segmenter = None
        if self.segmentation_model:
            from ..imaging.masks import OnnxSegmenter

            segmenter = OnnxSegmenter(self.segmentation_model, device=device)
        return {"stabilise": self.removes_camera(user_video=True), "segmenter": segmenter}


def dynamic_config(settings: dict, base: DynamicConfig) -> DynamicConfig:
    """``base`` with the settings every job kind declares: iterations (0 keeps ``base``'s),
    the Pose Alignment Loss weights, the seed and the snapshot/checkpoint intervals."""
    return replace(
        base,
        iterations=settings["iterations"] or base.iterations,
        lambda_kml=settings["lambda_kml"],
        lambda_scl=settings["lambda_scl"],
        kml_robust_scale=settings["kml_robust_scale"],
        seed=settings["seed"],
        snapshot_every=settings["snapshot_every"],
        checkpoint_every=settings["checkpoint_every"],
    )


@dataclass(frozen=True)
class ImageTo4DConfig:
    """Everything a ``generate`` or ``animate`` job runs with.

    Attributes:
        preset: the ``generate`` preset (``animate`` runs the standard one).
        dynamic: the dynamic stage's config before the video is known (:meth:`dynamic_for`).
        static, zero123: generate only: the static stage and its Zero-1-to-3 guidance.
        svd: generate without a user video: the video model's config.
        video_frames: frames sampled from a user's video.
        novel_view_sds: novel-view SDS in the dynamic stage (generate).
        multiview_keypoints: generate with a CAPE estimator: refine the anchors' depths from CAPE
            on Zero-1-to-3 views of the reference image (the paper's multi-view keypoints).
        registration: animate only: how the PLY is brought into the backend frame.
        video_fps: a user video's frame rate (None: a file's own; 7 for a frame folder).
        video_candidates, choose_video: generate with SVD: how many driving videos to generate
            and score, and whether the best is used (``auto``) or the job waits for a choice
            (``ask``); see candidates.py.
        front_end: stabilisation and segmentation of the driving video.
    """

    device: str
    seed: int
    previews: bool
    preset: Preset
    keypoints: KeypointsConfig
    dynamic: DynamicConfig
    video_frames: int
    static: StaticConfig | None = None
    zero123: Zero123Config | None = None
    svd: SVDConfig | None = None
    novel_view_sds: bool = False
    multiview_keypoints: bool = False
    registration: PlyRegistration | None = None
    video_fps: float | None = None
    video_candidates: int = 1
    choose_video: str = "auto"
    front_end: VideoFrontEnd = VideoFrontEnd()
    frames_per_step: int = 0  # the job's setting; 0: the preset's for the device

    def dynamic_for(self, num_frames: int, *, novel_view_sds: bool, device_type: str = "cuda") -> DynamicConfig:
        """The dynamic stage's config for a video of ``num_frames`` frames on ``device_type``."""
        return replace(
            self.dynamic,
            frames_per_step=self.frames_per_step or self.preset.frames_per_step_on(device_type),
            lambda_sds=1.0 if novel_view_sds else 0.0,
            deform=DeformConfig(hexplane=HexPlaneConfig(time_res=num_frames)),
        )


def _common(settings: dict, preset: Preset, video_frames: int) -> dict:
    base = DynamicConfig(iterations=preset.dynamic_iterations, frames_per_step=preset.frames_per_step)
    return dict(
        device=settings["device"],
        seed=settings["seed"],
        previews=settings["previews"],
        preset=preset,
        keypoints=KeypointsConfig(count=settings["num_keypoints"], estimator=settings["estimator"], weights=settings["keypoint_weights"]),
        dynamic=dynamic_config(settings, base),
        video_frames=video_frames,
        video_fps=settings["video_fps"] or None,
        front_end=VideoFrontEnd(stabilise=settings["stabilise"], segmentation_model=settings["segmentation_model"]),
        frames_per_step=settings["frames_per_step"],
    )


def generate_config(settings: dict, *, user_video: bool) -> ImageTo4DConfig:
    from ..guidance.svd import SVDConfig
    from ..guidance.zero123 import Zero123Config
    from ..stages.novel_view import NovelViewConfig
    from ..stages.static import StaticConfig

    preset = PRESETS[settings["preset"]]
    static = StaticConfig(
        iterations=settings["static_iterations"] or preset.static_iterations,
        novel=NovelViewConfig(views=preset.novel_views),
        seed=settings["seed"],
        snapshot_every=settings["snapshot_every"],
        checkpoint_every=settings["checkpoint_every"],
    )
    common = _common(settings, preset, video_frames=settings["frames"] or 14)
    svd = None
    if not user_video:
        svd = SVDConfig(
            model=settings["svd"] or preset.svd,
            seed=settings["seed"],
            steps=settings["svd_steps"],
            size=settings["svd_size"],
            motion_bucket_id=settings["motion_bucket"],
            cpu_offload=preset.low_vram,
            output_size=REFERENCE_SIZE,
            num_frames=settings["frames"] or None,
            decode_chunk_size=2 if preset.low_vram else SVDConfig.decode_chunk_size,
            stabilise=common["front_end"].removes_camera(user_video=False),
        )
    return ImageTo4DConfig(
        **common,
        static=static,
        zero123=Zero123Config(model=settings["zero123"], attention_slicing=preset.low_vram),
        svd=svd,
        novel_view_sds=settings["dynamic_sds"],
        multiview_keypoints=settings["multiview_keypoints"],
        video_candidates=settings["video_candidates"] or preset.video_candidates,
        choose_video=settings["choose_video"],
    )


def animate_config(settings: dict) -> ImageTo4DConfig:
    registration = PlyRegistration(
        up_axis=settings["up_axis"], elevation=settings["reference_elevation"], azimuth=settings["reference_azimuth"]
    )
    return ImageTo4DConfig(**_common(settings, PRESETS["standard"], video_frames=settings["frames"]), registration=registration)


def demo_config(settings: dict):
    """The demo's config: its own defaults (sized for a CPU) with the job's settings."""
    from .demo import DemoConfig

    cfg = DemoConfig(motion=settings["motion"], seed=settings["seed"], gaussians=settings["gaussians"], frames=settings["frames"])
    cfg.previews = settings["previews"]
    cfg.dynamic = dynamic_config(settings, cfg.dynamic)
    return cfg
