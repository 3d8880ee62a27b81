"""Zero-1-to-3 guidance: score distillation (SDS) and novel-view sampling on diffusers components.

Zero-1-to-3 (and Zero123-XL, Stable Zero123) is a Stable Diffusion UNet fine-tuned to denoise a
novel view of an object given one reference image and the relative camera. It is not part of the
diffusers package, so this module wires the pieces of the public diffusers-layout folders itself:

- ``unet/``: ``UNet2DConditionModel`` with 8 input channels (4 noisy latents + 4 reference latents),
- ``vae/``: ``AutoencoderKL`` (images 256x256 -> latents 4x32x32),
- ``image_encoder/``: ``CLIPVisionModelWithProjection`` (the reference's CLIP image embedding),
- ``clip_camera_projection/``: a ``Linear(D + 4, D)`` on [CLIP embedding, camera embedding],
  whose output is the UNet's cross-attention context (one token),
- ``scheduler/`` (DDIM settings), ``feature_extractor/`` (CLIP normalisation constants).

Conditioning (DESIGN.md §4): the reference latents are the VAE posterior mode *unscaled*
(not multiplied by the VAE scaling factor: the model was trained that way), while the latents
being denoised are scaled as usual. Classifier-free guidance uses all-zero cross-attention and
reference latents as the unconditional input.

Camera embedding, our elevation sign (positive = above), reference pose (e_ref, a_ref, r_ref),
target pose (e, a, r), angles in degrees:

    zero123:         [rad(e_ref - e), sin(rad(a - a_ref)), cos(rad(a - a_ref)), r - r_ref]
    stable-zero123:  [rad(e_ref - e), sin(rad(a - a_ref)), cos(rad(a - a_ref)), rad(90 - e_ref)]

SDS (DreamFusion, as DreamGaussian runs it): t from the annealed schedule, eps ~ N(0, I),
z_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps, eps_hat = eps_u + s (eps_c - eps_u),
w = 1 - abar_t, grad = w (eps_hat - eps), and

    loss_sds = 0.5 * sum((z - stopgrad(z - grad))^2) / B

so d loss_sds / d z = grad / B: the per-image gradient DreamGaussian uses at batch 1, averaged
over the batch (as threestudio does), so the loss scale does not grow with the number of views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor

from ..devices import resolve_device
from . import OrbitPose

__all__ = [
    "Zero123Config",
    "Zero123Guidance",
    "CLIPCameraProjection",
    "camera_embedding",
    "annealed_timestep",
    "VARIANTS",
]

VARIANTS = ("zero123", "stable-zero123")
# CLIP's image normalisation (used when a folder has no feature_extractor constants).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_REFERENCE = (0.0, 0.0, 2.0)


def camera_embedding(pose: OrbitPose, reference: OrbitPose, variant: str = "zero123") -> Tensor:
    """Zero-1-to-3 camera embedding ``[B, 4]`` of target ``pose`` relative to ``reference``.

    ``reference`` has length 1 or B. Angles in degrees, our elevation sign (positive = above);
    see the module docstring for the formula of each variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown Zero123 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    e, a, r = pose.elevation, pose.azimuth, pose.radius
    e_ref, a_ref, r_ref = (v.to(e) for v in (reference.elevation, reference.azimuth, reference.radius))
    d_az = torch.deg2rad(a - a_ref)
    if variant == "zero123":
        fourth = r - r_ref
    else:
        fourth = torch.deg2rad(90.0 - e_ref).expand_as(e)
    return torch.stack([torch.deg2rad(e_ref - e), torch.sin(d_az), torch.cos(d_az), fourth], dim=-1)


def annealed_timestep(step_fraction: float, num_train_timesteps: int, t_range: tuple[float, float]) -> int:
    """Timestep for training progress ``step_fraction`` in [0, 1]: linear from max to min.

    ``t_range = (0.02, 0.98)`` with 1000 training steps gives t = 980 at the start and t = 20
    at the end (noisy early for the global shape, clean late for detail).
    """
    if not 0.0 <= step_fraction <= 1.0:
        raise ValueError(f"step_fraction must be in [0, 1], got {step_fraction}")
    t_min, t_max = (int(num_train_timesteps * p) for p in t_range)
    return int(round(t_max + (t_min - t_max) * step_fraction))


# -------------------------------------------------------------------------------------------------
# the camera projection layer (a component of the public folders, defined in no library)


class CLIPCameraProjection(ModelMixin, ConfigMixin):
    """``Linear(embedding_dim + additional_embeddings, embedding_dim)`` on [CLIP, camera] embeddings.

    Config keys and the ``proj.weight`` / ``proj.bias`` parameters match the
    ``clip_camera_projection/`` folder of the public diffusers conversions.
    """

    @register_to_config
    def __init__(self, embedding_dim: int = 768, additional_embeddings: int = 4):
        super().__init__()
        self.proj = torch.nn.Linear(embedding_dim + additional_embeddings, embedding_dim)

    def forward(self, embedding: Tensor) -> Tensor:
        """``[..., D + 4]`` -> ``[..., D]``."""
        return self.proj(embedding)


# -------------------------------------------------------------------------------------------------
# guidance


@dataclass
class Zero123Config:
    """Settings of :class:`Zero123Guidance` (threestudio-style: one dataclass, plain values).

    Attributes:
        model: registered name (``zero123-xl``, ``stable-zero123``), hub id in the HF cache, or a
            folder in the diffusers layout.
        variant: camera embedding, ``"zero123"`` or ``"stable-zero123"``. None: from the registry
            for registered names, else ``stable-zero123`` when the folder name contains "stable".
        guidance_scale: classifier-free guidance scale (DreamGaussian: 5).
        t_range: timestep range as fractions of the training steps; annealed from max to min.
        image_size: renders and the reference are resized to this before the VAE (256 for the
            public models: 32x32 latents).
        fp16: half-precision weights; None = on CUDA only.
        attention_slicing: slice attention (saves memory, slower; SDPA is used either way).
        vae_slicing: encode/decode a batch one image at a time.
        grad_clip: clamp the SDS gradient to [-c, c] (None: no clamp).
        cache_dir: Hugging Face cache folder (None: the default).
    """

    model: str = "zero123-xl"
    variant: str | None = None
    guidance_scale: float = 5.0
    t_range: tuple[float, float] = (0.02, 0.98)
    image_size: int = 256
    fp16: bool | None = None
    attention_slicing: bool = False
    vae_slicing: bool = True
    grad_clip: float | None = None
    cache_dir: str | None = None


class Zero123Guidance:
    """Zero-1-to-3 SDS guidance and novel-view sampler (implements :class:`Guidance`).

    Usage::

        guidance = Zero123Guidance(Zero123Config(model="zero123-xl"), device="cuda")
        guidance.set_reference(reference_image)                  # [256, 256, 3] on white
        losses = guidance(renders, OrbitPose.of(e, a, 2.0), step / iters)
        losses["loss_sds"].backward()

    After each call, ``last_stats`` holds the timesteps used and the SDS gradient norm.
    """

    def __init__(self, config: Zero123Config | None = None, device: torch.device | str | None = None):
        from ..weights import resolve_model

        self.config = config = config or Zero123Config()
        self.device = resolve_device(device)
        use_fp16 = config.fp16 if config.fp16 is not None else self.device.type == "cuda"
        self.dtype = torch.float16 if use_fp16 else torch.float32
        if not 0.0 <= config.t_range[0] < config.t_range[1] <= 1.0:
            raise ValueError(f"t_range must satisfy 0 <= min < max <= 1, got {config.t_range}")

        # 1. Find the folder (no network) and the camera-embedding variant.
        resolved = resolve_model(config.model, kind="zero123", cache_dir=config.cache_dir)
        self.model_path = resolved.path
        if config.variant is not None:
            variant = config.variant
        elif resolved.spec is not None:
            variant = resolved.spec.camera_embedding
        else:
            variant = "stable-zero123" if "stable" in Path(str(config.model)).name.lower() else "zero123"
        if variant not in VARIANTS:
            raise ValueError(f"unknown Zero123 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.variant = variant

        # 2. Load the components.
        self._load(resolved.path)
        self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.vae_scale = float(self.vae.config.scaling_factor)

        self.clip_embeddings: Tensor | None = None  # [R, 1, D]
        self.reference_latents: Tensor | None = None  # [R, 4, h, w], unscaled
        self.reference_pose = OrbitPose.of(*DEFAULT_REFERENCE)
        self.last_stats: dict[str, Tensor] = {}

    # -- loading ------------------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPVisionModelWithProjection

        from ..weights import weights_variant

        kw = dict(torch_dtype=self.dtype)
        self.unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", variant=weights_variant(path / "unet"), **kw)
        self.vae = AutoencoderKL.from_pretrained(path, subfolder="vae", variant=weights_variant(path / "vae"), **kw)
        self.image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            path / "image_encoder", dtype=self.dtype, variant=weights_variant(path / "image_encoder", "transformers")
        )
        self.camera_projection = CLIPCameraProjection.from_pretrained(
            path, subfolder="clip_camera_projection", variant=weights_variant(path / "clip_camera_projection"), **kw
        )
        # DDIM for add_noise and sampling, with the model's noise schedule.
        self.scheduler = DDIMScheduler.from_config(DDIMScheduler.load_config(path, subfolder="scheduler"))

        embed_dim = self.image_encoder.config.projection_dim
        if self.unet.config.in_channels != 8:
            raise ValueError(f"{path}/unet takes {self.unet.config.in_channels} input channels; a Zero-1-to-3 UNet takes 8")
        if self.camera_projection.config.embedding_dim != embed_dim:
            raise ValueError(
                f"{path}: clip_camera_projection expects {self.camera_projection.config.embedding_dim}-d CLIP "
                f"embeddings but the image encoder gives {embed_dim}"
            )
        for module in (self.unet, self.vae, self.image_encoder, self.camera_projection):
            module.requires_grad_(False)
            module.eval()
            module.to(self.device)
        if self.config.attention_slicing:
            self.unet.set_attention_slice("auto")
        if self.config.vae_slicing:
            self.vae.enable_slicing()

        # CLIP input: size from the encoder, normalisation from feature_extractor/ when present.
        self.clip_size = int(self.image_encoder.config.image_size)
        mean, std = CLIP_MEAN, CLIP_STD
        processor = path / "feature_extractor" / "preprocessor_config.json"
        if processor.is_file():
            cfg = json.loads(processor.read_text())
            mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
        self.clip_mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.clip_std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    # -- image <-> latents --------------------------------------------------------------------------
    def _to_bchw(self, images: Tensor, what: str) -> Tensor:
        if images.dim() == 3:
            images = images[None]
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"{what} must be [B, H, W, 3] (or [H, W, 3]) RGB in [0, 1]; got {tuple(images.shape)}")
        x = images.to(self.device).permute(0, 3, 1, 2).float().contiguous()
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, (size, size), mode="bilinear", align_corners=False, antialias=True)
        return x

    def clip_pixels(self, images_bchw: Tensor) -> Tensor:
        """CLIP encoder input ``[B, 3, S, S]`` from images ``[B, 3, H, W]`` in [0, 1]."""
        size = (self.clip_size, self.clip_size)
        x = F.interpolate(images_bchw.float(), size, mode="bicubic", align_corners=False, antialias=True)
        return ((x.clamp(0, 1) - self.clip_mean) / self.clip_std).to(self.dtype)

    def encode_images(self, images_bchw: Tensor, *, sample: bool = True, generator=None) -> Tensor:
        """Scaled latents ``[B, 4, h, w]`` of images ``[B, 3, H, W]`` in [0, 1] (differentiable)."""
        posterior = self.vae.encode((images_bchw * 2.0 - 1.0).to(self.dtype)).latent_dist
        z = posterior.sample(generator) if sample else posterior.mode()
        return z * self.vae_scale

    def decode_latents(self, latents: Tensor) -> Tensor:
        """Images ``[B, H, W, 3]`` in [0, 1] from scaled latents ``[B, 4, h, w]``."""
        x = self.vae.decode((latents / self.vae_scale).to(self.dtype)).sample
        return (x.float() * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)

    # -- conditioning -------------------------------------------------------------------------------
    @torch.no_grad()
    def set_reference(self, images: Tensor, pose: OrbitPose | None = None) -> None:
        """Encode reference image(s) ``[R, H, W, 3]`` (or ``[H, W, 3]``) in [0, 1] on white.

        ``pose``: the orbit pose of the reference camera (default elevation 0, azimuth 0, radius 2).
        Several references (e.g. every driving-video frame) are selected per call with
        ``reference_index``.
        """
        x = self._to_bchw(images, "reference images")
        self.clip_embeddings = self.image_encoder(self.clip_pixels(x)).image_embeds[:, None]  # [R, 1, D]
        # Unscaled posterior mode: what Zero-1-to-3 was trained with (DESIGN.md §4).
        self.reference_latents = self.encode_images(x, sample=False) / self.vae_scale
        pose = pose if pose is not None else OrbitPose.of(*DEFAULT_REFERENCE)
        if len(pose) != 1:
            raise ValueError("set_reference: give one reference pose (the input camera) shared by all references")
        self.reference_pose = OrbitPose.of(pose.elevation, pose.azimuth, pose.radius, device=self.device)

    def conditioning(self, pose: OrbitPose, reference_index: Tensor | int | None = None) -> tuple[Tensor, Tensor]:
        """Cross-attention context ``[B, 1, D]`` and reference latents ``[B, 4, h, w]`` for target poses."""
        if self.clip_embeddings is None:
            raise RuntimeError("Zero123Guidance: call set_reference(image) before scoring or sampling")
        n = len(pose)
        num_refs = self.clip_embeddings.shape[0]
        idx = torch.as_tensor(0 if reference_index is None else reference_index, dtype=torch.long, device=self.device)
        idx = idx.reshape(-1).expand(n) if idx.numel() == 1 else idx
        if idx.shape != (n,) or int(idx.min()) < 0 or int(idx.max()) >= num_refs:
            raise ValueError(f"reference_index must be {n} indices in [0, {num_refs}); got {reference_index}")
        pose = OrbitPose.of(pose.elevation, pose.azimuth, pose.radius, device=self.device)
        cam = camera_embedding(pose, self.reference_pose, self.variant).to(self.dtype)[:, None]  # [B, 1, 4]
        context = self.camera_projection(torch.cat([self.clip_embeddings[idx], cam], dim=-1))
        return context, self.reference_latents[idx]

    def _predict_noise(self, noisy: Tensor, t: Tensor, context: Tensor, concat: Tensor, scale: float) -> Tensor:
        """CFG noise prediction: conditional and all-zero unconditional inputs in one UNet batch."""
        x_in = torch.cat([torch.cat([noisy, concat], 1), torch.cat([noisy, torch.zeros_like(concat)], 1)])
        ctx = torch.cat([context, torch.zeros_like(context)])
        t_in = torch.cat([t, t]) if t.dim() else t
        eps_cond, eps_uncond = self.unet(x_in.to(self.dtype), t_in, encoder_hidden_states=ctx).sample.float().chunk(2)
        return eps_uncond + scale * (eps_cond - eps_uncond)

    # -- SDS ------------------------------------------------------------------------------------------
    def timesteps(self, batch: int, step_fraction: float | None, generator=None) -> Tensor:
        """``[B]`` long timesteps: annealed for a step fraction, uniform in the range otherwise."""
        if step_fraction is not None:
            t = annealed_timestep(step_fraction, self.num_train_timesteps, self.config.t_range)
            return torch.full((batch,), t, dtype=torch.long, device=self.device)
        t_min, t_max = (int(self.num_train_timesteps * p) for p in self.config.t_range)
        device = generator.device if generator is not None else self.device
        return torch.randint(t_min, t_max + 1, (batch,), generator=generator, device=device).to(self.device)

    def _randn(self, shape, generator=None) -> Tensor:
        """Float32 normal noise on our device, drawn on the generator's device (a CPU generator
        gives the same numbers on every device)."""
        device = generator.device if generator is not None else self.device
        return torch.randn(shape, generator=generator, device=device, dtype=torch.float32).to(self.device)

    def __call__(
        self,
        images: Tensor,
        pose: OrbitPose,
        step_fraction: float | None = None,
        *,
        reference_index: Tensor | int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """SDS loss of renders ``images [B, H, W, 3]`` in [0, 1] seen from ``pose`` (B target poses).

        Returns ``{"loss_sds": scalar}``; gradients flow into ``images`` through the VAE encoder.
        """
        # 1. Check inputs.
        if images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3] in [0, 1]; got {tuple(images.shape)}")
        batch = images.shape[0]
        if len(pose) not in (1, batch):
            raise ValueError(f"got {len(pose)} poses for {batch} images")
        pose = OrbitPose.of(pose.elevation, pose.azimuth, pose.radius, batch, device=self.device)
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale

        # 2. Encode the renders (with gradient).
        latents = self.encode_images(self._to_bchw(images, "images"), generator=generator)

        # 3. Noise them at the scheduled timesteps and predict the noise, without gradient.
        t = self.timesteps(batch, step_fraction, generator)
        with torch.no_grad():
            noise = self._randn(latents.shape, generator)
            noisy = self.scheduler.add_noise(latents.detach().float(), noise, t)
            context, concat = self.conditioning(pose, reference_index)
            eps_hat = self._predict_noise(noisy, t, context, concat, scale)

        # 4. SDS gradient, applied through the reparametrised loss (module docstring).
        w = (1.0 - self.alphas_cumprod[t]).view(batch, 1, 1, 1)
        grad = torch.nan_to_num(w * (eps_hat - noise))
        if self.config.grad_clip is not None:
            grad = grad.clamp(-self.config.grad_clip, self.config.grad_clip)
        target = (latents.float() - grad).detach()
        loss = 0.5 * F.mse_loss(latents.float(), target, reduction="sum") / batch
        self.last_stats = {"t": t.detach(), "grad_norm": grad.norm().detach()}
        return {"loss_sds": loss}

    # -- sampling -------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        pose: OrbitPose,
        *,
        reference_index: Tensor | int | None = None,
        steps: int = 50,
        guidance_scale: float | None = None,
        seed: int | None = None,
        eta: float = 0.0,
    ) -> Tensor:
        """Novel views ``[B, S, S, 3]`` in [0, 1] (S = ``image_size``) by DDIM with ``steps`` steps.

        For previews, diagnostics and multi-view keypoints; ``pose`` as in ``__call__``.
        """
        from diffusers import DDIMScheduler

        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        # 1. Conditioning.
        pose = OrbitPose.of(pose.elevation, pose.azimuth, pose.radius, device=self.device)
        context, concat = self.conditioning(pose, reference_index)
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        # 2. Start from noise.
        scheduler = DDIMScheduler.from_config(self.scheduler.config)
        scheduler.set_timesteps(steps, device=self.device)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        latents = self._randn(concat.shape, generator) * scheduler.init_noise_sigma
        # 3. Denoise.
        for t in scheduler.timesteps:
            eps = self._predict_noise(latents, t.to(self.device), context, concat, scale)
            latents = scheduler.step(eps, t, latents, eta=eta, generator=generator).prev_sample
        # 4. Decode.
        return self.decode_latents(latents)

    @property
    def latent_size(self) -> int:
        return self.config.image_size // (2 ** (len(self.vae.config.block_out_channels) - 1))

    def __repr__(self) -> str:
        return f"Zero123Guidance(variant={self.variant!r}, model={str(self.model_path)!r}, dtype={self.dtype})"

