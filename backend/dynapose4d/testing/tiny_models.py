"""Tiny random-weight models in the real folder layouts, for tests and offline development.

The real classes at toy size (diffusers' ``get_dummy_components`` habit): UNets with
``block_out_channels=(32, 64)``, a CLIP vision tower with hidden size 32, and 4-block VAEs (a
2-block VAE puts its attention over huge token counts and is slow, DESIGN.md §5). Weights are
seeded, so every build of a folder is identical. Nothing here downloads anything.

    save_tiny_zero123(folder, "zero123-xl")      # or "stable-zero123": same layout
    save_tiny_svd(folder)
    fake_hf_cache(cache_dir, "org/name", folder)  # models--org--name/snapshots/<hash>/... + refs/main

and the evaluation networks of ``dynapose4d eval`` (:mod:`dynapose4d.evaluation.perceptual`):

    save_tiny_clip(folder)            # transformers CLIPModel folder (openai/clip-vit-base-patch32 layout)
    save_random_lpips(folder)         # vgg16-397923af.pth (torchvision keys, full size) + LPIPS vgg.pth
    save_stand_in_i3d(path)           # a TorchScript file with the I3D detector's call signature
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..guidance.zero123 import CLIP_MEAN, CLIP_STD

__all__ = [
    "save_tiny_zero123",
    "save_tiny_svd",
    "save_tiny_clip",
    "save_random_lpips",
    "save_stand_in_i3d",
    "fake_hf_cache",
    "make_all",
    "FAKE_COMMIT",
]

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
CROSS_DIM = 32  # CLIP projection dim = UNet cross-attention dim
CLIP_IMAGE_SIZE = 224  # the SVD pipeline resizes to 224 itself; zero123 reads it from the config


def _clip_vision(seed: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=CROSS_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=CLIP_IMAGE_SIZE,
        patch_size=32,
    )
    return CLIPVisionModelWithProjection(config).eval()


def _write_processor(folder: Path) -> None:
    """``feature_extractor/preprocessor_config.json`` with CLIP's constants (as the real repos)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {
        "crop_size": {"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE},
        "do_center_crop": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(CLIP_MEAN),
        "image_processor_type": "CLIPImageProcessor",
        "image_std": list(CLIP_STD),
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": CLIP_IMAGE_SIZE},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2))


def _write_index(folder: Path, class_name: str, components: dict[str, list]) -> None:
    index = {"_class_name": class_name, "_diffusers_version": "0.42.1", **components}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def save_tiny_zero123(folder: str | Path, variant: str = "zero123-xl", *, seed: int = 0) -> Path:
    """A tiny Zero-1-to-3 folder in the layout of ``*/zero123-xl-diffusers`` / ``*/stable-zero123-diffusers``.

    Both variants share the layout (they differ only in the camera embedding), so ``variant``
    only seeds the weights differently.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    from ..guidance.zero123 import CLIPCameraProjection

    folder = Path(folder)
    seed = seed + (0 if variant == "zero123-xl" else 1000)
    # 1. UNet: 8 input channels = 4 noisy + 4 reference latents.
    torch.manual_seed(seed)
    UNet2DConditionModel(
        sample_size=32,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CROSS_DIM,
        attention_head_dim=8,
        norm_num_groups=32,
    ).save_pretrained(folder / "unet")
    # 2. VAE with 4 blocks: 8x downsampling like SD's, attention only at the smallest size.
    torch.manual_seed(seed + 1)
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
        scaling_factor=0.18215,
    ).save_pretrained(folder / "vae")
    # 3. CLIP image encoder, camera projection, processor constants, scheduler.
    _clip_vision(seed + 2).save_pretrained(folder / "image_encoder")
    torch.manual_seed(seed + 3)
    CLIPCameraProjection(embedding_dim=CROSS_DIM, additional_embeddings=4).save_pretrained(folder / "clip_camera_projection")
    _write_processor(folder / "feature_extractor")
    DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    ).save_pretrained(folder / "scheduler")
    _write_index(
        folder,
        "Zero123Pipeline",
        {
            "clip_camera_projection": ["zero123", "CLIPCameraProjection"],
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
    )
    return folder


def save_tiny_svd(folder: str | Path, *, seed: int = 0, num_frames: int = 14) -> Path:
    """A tiny Stable Video Diffusion folder in the layout of ``stabilityai/stable-video-diffusion-img2vid``."""
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel

    folder = Path(folder)
    torch.manual_seed(seed)
    UNetSpatioTemporalConditionModel(
        sample_size=32,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=CROSS_DIM,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,  # 3 added time ids x addition_time_embed_dim
        num_frames=num_frames,
    ).save_pretrained(folder / "unet")
    torch.manual_seed(seed + 1)
    # The temporal decoder's group norms use 32 groups: channels must be multiples of 32.
    AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        sample_size=256,
    ).save_pretrained(folder / "vae")
    _clip_vision(seed + 2).save_pretrained(folder / "image_encoder")
    _write_processor(folder / "feature_extractor")
    EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        prediction_type="v_prediction",
        sigma_min=0.002,
        sigma_max=700.0,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        use_karras_sigmas=True,
    ).save_pretrained(folder / "scheduler")
    _write_index(
        folder,
        "StableVideoDiffusionPipeline",
        {
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
            "scheduler": ["diffusers", "EulerDiscreteScheduler"],
            "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
            "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
        },
    )
    return folder


def fake_hf_cache(cache_dir: str | Path, repo_id: str, source: str | Path, *, commit: str = FAKE_COMMIT) -> Path:
    """Copy ``source`` into a Hugging Face cache layout; returns the snapshot folder.

    ``cache_dir/models--org--name/{refs/main, snapshots/<commit>/...}``: what ``snapshot_download``
    leaves behind (real caches hold blobs and symlinks; plain files resolve the same offline).
    """
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def make_all(root: str | Path) -> dict[str, Path]:
    """Every tiny model under ``root``: ``zero123-xl``, ``stable-zero123``, ``svd`` folders."""
    root = Path(root)
    return {
        "zero123-xl": save_tiny_zero123(root / "zero123-xl", "zero123-xl"),
        "stable-zero123": save_tiny_zero123(root / "stable-zero123", "stable-zero123"),
        "svd": save_tiny_svd(root / "svd"),
    }


# -------------------------------------------------------------------------------------------------
# evaluation networks


def save_tiny_clip(folder: str | Path, *, seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` (text and vision towers, projection 16) with CLIP's processor constants."""
    from transformers import CLIPConfig, CLIPModel

    folder = Path(folder)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, vocab_size=99),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    _write_processor(folder)
    cfg = json.loads((folder / "preprocessor_config.json").read_text())
    cfg.update(crop_size={"height": 32, "width": 32}, size={"shortest_edge": 32})
    (folder / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2))
    return folder


def save_random_lpips(folder: str | Path, *, seed: int = 0) -> Path:
    """Random LPIPS weights at full size in the real files: torchvision's ``vgg16-397923af.pth``
    (``features.<i>.weight/bias`` keys; the classifier is left out) and LPIPS' ``vgg.pth``
    (``lin<k>.model.1.weight``, non-negative as trained ones are)."""
    from ..evaluation.perceptual import LPIPS, LPIPS_LIN_FILE, VGG16_FILE

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = LPIPS()
    for m in net.features:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.zeros_(m.bias)
    torch.save({f"features.{k}": v for k, v in net.features.state_dict().items()}, folder / VGG16_FILE)
    lins = {f"lin{k}.model.1.weight": torch.rand_like(lin.weight) for k, lin in enumerate(net.lins)}
    torch.save(lins, folder / LPIPS_LIN_FILE)
    return folder


class _StandInI3D(torch.nn.Module):
    """The I3D detector's interface (``[B, 3, T, H, W]`` in [0, 255] -> ``[B, 400]``), random weights."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, 3, stride=2)
        self.head = torch.nn.Linear(8, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            t = x.shape[2]
            x = torch.nn.functional.interpolate(x, size=(t, 224, 224), mode="trilinear", align_corners=False)
        feats = self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))
        return feats if return_features else torch.softmax(feats, -1)


def save_stand_in_i3d(path: str | Path, *, seed: int = 0) -> Path:
    """A TorchScript file with the call signature of ``i3d_torchscript.pt``. I3D itself is in no
    installed library, so this checks the loading and calling path only, not the architecture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.jit.script(_StandInI3D().eval()).save(str(path))
    return path
