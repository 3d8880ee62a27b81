"""The configuration data behind scripts/make_full_size_models.py: the published configs build the
real architectures (counted on the meta device: no memory, no weights), and the cache layout the
script writes resolves through the model registry offline."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from dynapose4d.weights import missing_files, resolve_model
from dynapose4d.testing.tiny_models import save_tiny_zero123

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "scripts" / "model_configs"


def _script():
    spec = importlib.util.spec_from_file_location("make_full_size_models", ROOT / "scripts" / "make_full_size_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _params_on_meta(component: str, repo: str) -> int:
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder, UNet2DConditionModel, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from dynapose4d.guidance.zero123 import CLIPCameraProjection

    cfg = json.loads((CONFIGS / repo / component / "config.json").read_text())
    classes = {c.__name__: c for c in (UNet2DConditionModel, UNetSpatioTemporalConditionModel, AutoencoderKL, AutoencoderKLTemporalDecoder, CLIPCameraProjection)}
    with torch.device("meta"):
        if component == "image_encoder":
            keys = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures", "torch_dtype", "transformers_version")}
            model = CLIPVisionModelWithProjection(CLIPVisionConfig(**keys))
        else:
            model = classes[cfg["_class_name"]].from_config(cfg)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "repo, component, millions",
    [
        ("ashawkey__zero123-xl-diffusers", "unet", 859.5),  # SD 1.x UNet with 8 input channels
        ("ashawkey__zero123-xl-diffusers", "image_encoder", 304.0),  # CLIP ViT-L/14 + projection to 768
        ("ashawkey__zero123-xl-diffusers", "vae", 83.7),  # SD VAE
        ("ashawkey__stable-zero123-diffusers", "clip_camera_projection", 0.59),  # Linear(772, 768)
        ("stabilityai__stable-video-diffusion-img2vid", "unet", 1524.6),
        ("stabilityai__stable-video-diffusion-img2vid", "image_encoder", 632.1),  # CLIP ViT-H/14
        ("stabilityai__stable-video-diffusion-img2vid-xt", "vae", 97.7),  # temporal decoder VAE
    ],
)
def test_published_configs_build_the_real_architectures(repo, component, millions):
    assert _params_on_meta(component, repo) / 1e6 == pytest.approx(millions, abs=0.05)


def test_manifest_lists_every_config_file_with_its_status():
    rows = [l.split("\t") for l in (CONFIGS / "MANIFEST.tsv").read_text().splitlines()[1:]]
    listed = {r[0]: r[1] for r in rows}
    files = {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.json")}
    assert set(listed) == files
    assert set(listed.values()) <= {"VERBATIM", "RECONSTRUCTED", "INFERRED"}
    assert all(listed[f] == "VERBATIM" for f in files if f.startswith("stabilityai__stable-video-diffusion-img2vid-xt/"))
    for name, (folder, _) in _script().REPOS.items():
        assert (CONFIGS / folder / "model_index.json").is_file(), name


def test_cache_layout_resolves_by_registered_name_offline(tmp_path):
    script = _script()
    staging = save_tiny_zero123(tmp_path / "cache" / "models--ashawkey--zero123-xl-diffusers" / "staging")
    repo_dir = staging.parent
    snapshot = script._commit_to_cache(staging, repo_dir, script._fake_commit("ashawkey/zero123-xl-diffusers"), {})
    assert not staging.exists() and not missing_files(snapshot, "zero123")
    link = snapshot / "unet" / "diffusion_pytorch_model.safetensors"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    blob = link.resolve()
    assert blob.parent == repo_dir / "blobs" and len(blob.name) == 64  # weights: sha256, as LFS files are named
    config_blob = (snapshot / "unet" / "config.json").resolve()
    assert len(config_blob.name) == 40  # other files: the git blob sha1
    resolved = resolve_model("zero123-xl", cache_dir=tmp_path / "cache", env={})
    assert resolved.source == "hf-cache" and resolved.path == snapshot
