"""Stable Video Diffusion as a driving-video source (img2vid, 14 frames; img2vid-xt, 25 frames).

The diffusion model sits here beside Zero-1-to-3 (:mod:`dynapose4d.guidance.zero123`); what it
produces is an ordinary :class:`dynapose4d.video.clip.DrivingVideo`, masked on its white
background and stabilised like any other clip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import torch
from PIL import Image

from ..devices import resolve_device
from ..imaging.masks import masks_on_white
from ..imaging.pixels import to_uint8
from ..video.clip import DrivingVideo, VideoError, VideoSource, input_mask, input_rgb
from ..video.stabilise import stabilise_video

__all__ = ["SVDConfig", "SVDSource"]


@dataclass
class SVDConfig:
    """Settings of :class:`SVDSource` (DG4D's: 512 px, fps 7, motion bucket 127, noise aug 0.02).

    Attributes:
        model: registered name (``svd``, ``svd-xt``), hub id in the HF cache, or a folder.
        num_frames: frames to generate; None = the model's (14 or 25).
        steps: denoising steps.
        size: the input is composited on white and resized to ``size`` x ``size``; frames come
            out at this size.
        output_size: resize the frames (and masks) to this afterwards (None: keep ``size``).
        fps, motion_bucket_id, noise_aug_strength: SVD's micro-conditioning.
        min_guidance_scale, max_guidance_scale: SVD's per-frame CFG ramp.
        seed: the generator seed (one video per seed).
        decode_chunk_size: frames decoded at once by the VAE (lower = less memory).
        cpu_offload: keep each model on the CPU until it runs (needs the accelerate package).
        fp16: half precision; None = on CUDA only.
        mask_threshold: :func:`dynapose4d.imaging.masks.masks_on_white` threshold.
        stabilise: remove the camera's pan, zoom and roll (:mod:`dynapose4d.video.stabilise`; SVD
            often moves the camera instead of the object); it is measured and recorded either way.
    """

    model: str = "svd"
    num_frames: int | None = None
    steps: int = 25
    size: int = 512
    output_size: int | None = None
    fps: int = 7
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    min_guidance_scale: float = 1.0
    max_guidance_scale: float = 3.0
    seed: int = 0
    decode_chunk_size: int = 8
    cpu_offload: bool = False
    fp16: bool | None = None
    mask_threshold: float = 0.1
    cache_dir: str | None = None
    stabilise: bool = True


class SVDSource(VideoSource):
    """Driving video from Stable Video Diffusion.

    The model folder is resolved at construction (a missing model fails here, with the
    download instructions); weights load on the first :meth:`generate` and stay until
    :meth:`unload`. ``progress(step, total)`` is called after each denoising step.
    """

    def __init__(
        self,
        config: SVDConfig | None = None,
        device: torch.device | str | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ):
        from ..weights import resolve_model

        self.config = config = config or SVDConfig()
        self.device = resolve_device(device)
        use_fp16 = config.fp16 if config.fp16 is not None else self.device.type == "cuda"
        self.dtype = torch.float16 if use_fp16 else torch.float32
        self.resolved = resolve_model(config.model, kind="svd", cache_dir=config.cache_dir)
        self.progress = progress
        self.pipeline = None

    def load(self):
        """Build the diffusers pipeline from the folder's components (idempotent)."""
        if self.pipeline is not None:
            return self.pipeline
        from diffusers import (
            AutoencoderKLTemporalDecoder,
            EulerDiscreteScheduler,
            StableVideoDiffusionPipeline,
            UNetSpatioTemporalConditionModel,
        )
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        from ..weights import weights_variant

        path = self.resolved.path
        kw = dict(torch_dtype=self.dtype)
        pipe = StableVideoDiffusionPipeline(
            vae=AutoencoderKLTemporalDecoder.from_pretrained(path, subfolder="vae", variant=weights_variant(path / "vae"), **kw),
            image_encoder=CLIPVisionModelWithProjection.from_pretrained(
                path / "image_encoder", dtype=self.dtype, variant=weights_variant(path / "image_encoder", "transformers")
            ),
            unet=UNetSpatioTemporalConditionModel.from_pretrained(
                path, subfolder="unet", variant=weights_variant(path / "unet"), **kw
            ),
            scheduler=EulerDiscreteScheduler.from_pretrained(path, subfolder="scheduler"),
            feature_extractor=CLIPImageProcessor.from_pretrained(path / "feature_extractor"),
        )
        pipe.set_progress_bar_config(disable=True)
        if self.config.cpu_offload:
            if self.device.type != "cuda":
                raise ValueError("SVD cpu_offload only helps on a GPU; leave it off on the CPU")
            try:
                pipe.enable_model_cpu_offload(device=self.device)
            except ImportError:
                raise RuntimeError("SVD cpu_offload needs the 'accelerate' package: pip install accelerate") from None
        else:
            pipe.to(self.device)
        self.pipeline = pipe
        return pipe

    def unload(self) -> None:
        """Free the pipeline's memory (the next generate loads it again)."""
        self.pipeline = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def num_frames(self) -> int:
        if self.config.num_frames is not None:
            return self.config.num_frames
        if self.resolved.spec is not None and self.resolved.spec.num_frames:
            return self.resolved.spec.num_frames
        config = json.loads((self.resolved.path / "unet" / "config.json").read_text())
        return int(config.get("num_frames", 14))

    def input_image(self, image, mask=None) -> Image.Image:
        """The conditioning image: composited on white (by ``mask`` or alpha), ``size`` x ``size``."""
        rgb = input_rgb(image, "the reference image")
        if rgb.shape[-1] == 4:
            rgb, mask = rgb[..., :3], rgb[..., 3] if mask is None else mask
        m = input_mask(mask, rgb.shape[:2], "the reference mask")
        if m is not None:
            rgb = rgb * m[..., None] + (1.0 - m[..., None])
        size = self.config.size
        if rgb.shape[:2] != (size, size):
            if rgb.shape[0] != rgb.shape[1]:
                raise VideoError(f"the SVD input must be square (the reference layout); got {rgb.shape[1]}x{rgb.shape[0]}")
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA if size < rgb.shape[0] else cv2.INTER_CUBIC)
        return Image.fromarray(to_uint8(rgb), "RGB")

    def generate(self, image, mask=None) -> DrivingVideo:
        """Generate ``num_frames`` frames from the reference ``image [S, S, 3]`` (and ``mask``)."""
        cfg = self.config
        # 1. Inputs.
        cond = self.input_image(image, mask)
        num_frames = self.num_frames()
        pipe = self.load()
        generator = torch.Generator("cpu").manual_seed(cfg.seed)
        callback = None
        if self.progress is not None:

            def callback(pipeline, step, timestep, kwargs):
                self.progress(step + 1, cfg.steps)
                return {}

        # 2. Denoise and decode.
        with torch.inference_mode():
            out = pipe(
                cond,
                height=cfg.size,
                width=cfg.size,
                num_frames=num_frames,
                num_inference_steps=cfg.steps,
                min_guidance_scale=cfg.min_guidance_scale,
                max_guidance_scale=cfg.max_guidance_scale,
                fps=cfg.fps,
                motion_bucket_id=cfg.motion_bucket_id,
                noise_aug_strength=cfg.noise_aug_strength,
                decode_chunk_size=min(cfg.decode_chunk_size, num_frames),
                generator=generator,
                output_type="np",
                callback_on_step_end=callback,
            )
        frames = np.clip(np.asarray(out.frames[0], dtype=np.float32), 0.0, 1.0)  # [T, H, W, 3]
        # 3. Masks (SVD keeps the white background).
        masks = masks_on_white(frames, threshold=cfg.mask_threshold)
        # 4. The camera's motion, measured and (by default) removed.
        frames, masks, stabilisation = stabilise_video(frames, masks, remove=cfg.stabilise)
        name = self.resolved.spec.name if self.resolved.spec else str(self.resolved.path)
        video = DrivingVideo(
            torch.from_numpy(frames),
            torch.from_numpy(masks),
            float(cfg.fps),
            f"SVD {name}, seed {cfg.seed}, motion bucket {cfg.motion_bucket_id}",
            {"generator": "svd", "model": name, "model_path": str(self.resolved.path), "num_frames": num_frames,
             **_plain(cfg), "stabilisation": stabilisation},
        )
        return video.resized(cfg.output_size) if cfg.output_size else video


def _plain(cfg) -> dict:
    return {k: v for k, v in vars(cfg).items() if isinstance(v, (int, float, str, bool, type(None)))}
