"""The registered models: short names, hub ids, component layouts and licences."""

from __future__ import annotations

import os
from dataclasses import dataclass


class ModelNotFoundError(RuntimeError):
    """A model is not available locally. The message says how to get it; show it as is."""


class ModelDownloadError(RuntimeError):
    """A download failed (no network, gated model without access, ...). The message says why."""


# Component folder -> how its weights are stored. "diffusers" and "transformers" folders need a
# config and a weights file; the others only a config file.
_ZERO123_COMPONENTS = {
    "unet": "diffusers",
    "vae": "diffusers",
    "image_encoder": "transformers",
    "clip_camera_projection": "diffusers",
    "scheduler": "scheduler",
    "feature_extractor": "processor",
}
_SVD_COMPONENTS = {
    "unet": "diffusers",
    "vae": "diffusers",
    "image_encoder": "transformers",
    "scheduler": "scheduler",
    "feature_extractor": "processor",
}
_CONFIG_FILE = {
    "diffusers": "config.json",
    "transformers": "config.json",
    "scheduler": "scheduler_config.json",
    "processor": "preprocessor_config.json",
}
_WEIGHT_STEMS = {"diffusers": "diffusion_pytorch_model", "transformers": "model"}


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model.

    Attributes:
        name: short name used on the command line (``dynapose4d models download <name>``).
        title: human-readable name.
        kind: ``"zero123"`` (novel-view diffusion for SDS) or ``"svd"`` (image-to-video).
        repo_id: default Hugging Face hub id (diffusers layout).
        env_var: environment variable that points to a local folder with the same layout.
        option: the command-line option of ``generate``/``animate`` that takes a folder.
        license_name, license_note: the licence as the hub lists it, and what it means for users.
        gated: the hub asks users to accept the licence (logged in) before downloading.
        camera_embedding: Zero-1-to-3 variant (``"zero123"`` or ``"stable-zero123"``), DESIGN.md §4.
        num_frames: frames SVD was trained to generate.
        download_variant: weights variant to prefer when downloading (``"fp16"`` for SVD, whose
            repositories hold both precisions; None = the default files).
        used_by: which job kinds need it, in words (Demo and Animate need no model: :data:`NO_MODEL_KINDS`).
        approx_bytes: about how much a download fetches (the files :func:`~.download.select_download_files`
            picks), to show before the hub is asked; a download plan has the exact figure.
    """

    name: str
    title: str
    kind: str
    repo_id: str
    env_var: str
    option: str
    license_name: str
    license_note: str
    gated: bool
    camera_embedding: str | None = None
    num_frames: int | None = None
    download_variant: str | None = None
    description: str = ""
    used_by: str = ""
    approx_bytes: int = 0

    @property
    def components(self) -> dict[str, str]:
        """Component subfolder -> storage kind (``diffusers``, ``transformers``, ``scheduler``, ``processor``)."""
        return dict(_ZERO123_COMPONENTS if self.kind == "zero123" else _SVD_COMPONENTS)

    @property
    def page_url(self) -> str:
        """The model's hub page (licence text, and the button to accept it for gated models)."""
        return f"{_hub_endpoint()}/{self.repo_id}"


# The two SVD variants share their licence.
_SVD_LICENSE = "Stability AI Community License (stable-video-diffusion-community)"
_SVD_LICENSE_NOTE = "free below Stability's revenue threshold; accept it on the model page first."
GB = 1_000_000_000
# What the demo and Animate jobs need: no diffusion model at all (said beside the models list).
NO_MODEL_KINDS = "Demo and Animate need no model"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="zero123-xl",
            title="Zero123-XL",
            kind="zero123",
            repo_id="ashawkey/zero123-xl-diffusers",
            env_var="DYNAPOSE4D_ZERO123",
            option="--zero123",
            license_name="MIT (as tagged on the hub)",
            license_note="Zero-1-to-3 weights trained on Objaverse; check the model page for its terms.",
            gated=False,
            camera_embedding="zero123",
            description="novel-view diffusion used for SDS in the static and dynamic stages (default)",
            used_by="Generate (the default View Model)",
            approx_bytes=5 * GB,  # fp32 UNet 3.4 GB + CLIP ViT-L/14 vision 1.2 GB + VAE 0.3 GB
        ),
        ModelSpec(
            name="stable-zero123",
            title="Stable Zero123",
            kind="zero123",
            repo_id="ashawkey/stable-zero123-diffusers",
            env_var="DYNAPOSE4D_STABLE_ZERO123",
            option="--zero123",
            license_name="Stability AI Non-Commercial Research Community License (stabilityai/stable-zero123)",
            license_note="non-commercial research use only; commercial use needs a Stability AI licence.",
            gated=False,
            camera_embedding="stable-zero123",
            description="Stability's Zero-1-to-3 fine-tune (better views, non-commercial licence)",
            used_by="Generate, when chosen as its View Model",
            approx_bytes=5 * GB,
        ),
        ModelSpec(
            name="svd",
            title="Stable Video Diffusion img2vid (14 frames)",
            kind="svd",
            repo_id="stabilityai/stable-video-diffusion-img2vid",
            env_var="DYNAPOSE4D_SVD",
            option="--svd",
            license_name=_SVD_LICENSE,
            license_note=_SVD_LICENSE_NOTE,
            gated=True,
            num_frames=14,
            download_variant="fp16",
            description="driving video generator, 14 frames (default)",
            used_by="Generate without a video of yours (presets fast, standard, low-vram)",
            approx_bytes=45 * GB // 10,  # fp16 UNet 3.0 GB + CLIP ViT-H/14 vision 1.3 GB + VAE 0.2 GB
        ),
        ModelSpec(
            name="svd-xt",
            title="Stable Video Diffusion img2vid-xt (25 frames)",
            kind="svd",
            repo_id="stabilityai/stable-video-diffusion-img2vid-xt",
            env_var="DYNAPOSE4D_SVD_XT",
            option="--svd",
            license_name=_SVD_LICENSE,
            license_note=_SVD_LICENSE_NOTE,
            gated=True,
            num_frames=25,
            download_variant="fp16",
            description="driving video generator, 25 frames",
            used_by="Generate without a video of yours (preset high)",
            approx_bytes=45 * GB // 10,
        ),
    )
}


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT.rstrip("/")
    except ImportError:  # the diffusion extra is not installed; the page is still worth naming
        return os.environ.get("HF_ENDPOINT", "the Hugging Face Hub").rstrip("/")


def get_spec(name: str) -> ModelSpec:
    """The registered model called ``name``; ValueError naming the known ones otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def _spec_for_repo(repo_id: str) -> ModelSpec | None:
    return next((s for s in MODELS.values() if s.repo_id == repo_id), None)

