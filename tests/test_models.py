"""Model registry: resolution from folders, environment variables and the HF cache; messages."""

import io
import shutil

import pytest

from dynapose4d.weights import (
    MODELS,
    ModelDownloadError,
    ModelNotFoundError,
    check_model,
    download_model,
    get_spec,
    missing_files,
    resolve_model,
    select_download_files,
    weights_variant,
)

pytest_plugins = ["tests.conftest_models"]

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens there: downloads fail at once, with or without internet


def test_registry_records_ids_licences_and_gating():
    assert set(MODELS) == {"zero123-xl", "stable-zero123", "svd", "svd-xt"}
    assert get_spec("zero123-xl").repo_id == "ashawkey/zero123-xl-diffusers"
    assert get_spec("stable-zero123").repo_id == "ashawkey/stable-zero123-diffusers"
    assert get_spec("svd").repo_id == "stabilityai/stable-video-diffusion-img2vid"
    assert get_spec("svd-xt").repo_id == "stabilityai/stable-video-diffusion-img2vid-xt"
    assert get_spec("svd").gated and get_spec("svd-xt").gated and not get_spec("zero123-xl").gated
    assert (get_spec("svd").num_frames, get_spec("svd-xt").num_frames) == (14, 25)
    assert get_spec("zero123-xl").camera_embedding == "zero123"
    assert get_spec("stable-zero123").camera_embedding == "stable-zero123"
    assert get_spec("zero123-xl").env_var == "DYNAPOSE4D_ZERO123"
    for spec in MODELS.values():
        assert spec.license_name and spec.license_note
        assert spec.page_url.endswith("/" + spec.repo_id)
    assert "Stability" in get_spec("svd").license_name and "Non-Commercial" in get_spec("stable-zero123").license_name
    with pytest.raises(ValueError, match="known models: zero123-xl, stable-zero123, svd, svd-xt"):
        get_spec("zero124")


def test_missing_model_message_says_how_to_download_and_point_to_a_folder(tmp_path):
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model("svd", cache_dir=tmp_path, env={})
    text = str(err.value)
    assert "'svd'" in text and "stabilityai/stable-video-diffusion-img2vid" in text
    assert "dynapose4d models download svd" in text
    assert "DYNAPOSE4D_SVD=/path/to/folder" in text and "--svd /path/to/folder" in text
    assert "gated" in text and "Stability AI Community License" in text
    assert str(tmp_path) in text  # says where it looked
    assert "Traceback" not in text

    with pytest.raises(ModelNotFoundError, match="DYNAPOSE4D_ZERO123=/path/to/folder"):
        resolve_model("zero123-xl", cache_dir=tmp_path, env={})


def test_environment_variable_folder(tiny_zero123, tmp_path):
    folder = tiny_zero123["zero123-xl"]
    resolved = resolve_model("zero123-xl", cache_dir=tmp_path, env={"DYNAPOSE4D_ZERO123": str(folder)})
    assert resolved.path == folder and resolved.source == "$DYNAPOSE4D_ZERO123" and resolved.kind == "zero123"

    # A broken explicit folder is an error naming the variable, not a silent fallback.
    with pytest.raises(ModelNotFoundError, match=r"\$DYNAPOSE4D_ZERO123=/nowhere/at/all is not a folder"):
        resolve_model("zero123-xl", env={"DYNAPOSE4D_ZERO123": "/nowhere/at/all"})
    status = check_model("zero123-xl", cache_dir=tmp_path, env={"DYNAPOSE4D_ZERO123": str(tmp_path)})
    assert not status.available and "lacks unet/config.json" in status.summary()


def test_resolution_from_the_hf_cache(tiny_hf_cache, tiny_zero123):
    for name in ("zero123-xl", "stable-zero123"):
        resolved = resolve_model(name, cache_dir=tiny_hf_cache, env={})
        assert resolved.source == "hf-cache" and resolved.spec.name == name
        assert resolved.path.parent.name == "snapshots"
        assert resolved.path.parts[-3] == "models--" + MODELS[name].repo_id.replace("/", "--")
        assert not missing_files(resolved.path, "zero123")
    # by hub id as well
    assert resolve_model("ashawkey/zero123-xl-diffusers", cache_dir=tiny_hf_cache, env={}).spec.name == "zero123-xl"
    # the environment variable wins over the cache
    other = tiny_zero123["stable-zero123"]
    assert resolve_model("zero123-xl", cache_dir=tiny_hf_cache, env={"DYNAPOSE4D_ZERO123": str(other)}).path == other
    # an unregistered hub id that is not cached
    with pytest.raises(ModelNotFoundError, match="'someone/else' is not in the Hugging Face cache"):
        resolve_model("someone/else", cache_dir=tiny_hf_cache, env={})
    # a registered name of the wrong kind
    with pytest.raises(ValueError, match="'zero123-xl' is a zero123 model, not a svd model"):
        resolve_model("zero123-xl", kind="svd", cache_dir=tiny_hf_cache, env={})


def test_folder_layout_checks(tiny_zero123, tiny_svd, tmp_path):
    assert resolve_model(tiny_zero123["zero123-xl"]).kind == "zero123"
    assert resolve_model(str(tiny_svd)).kind == "svd"
    with pytest.raises(ModelNotFoundError, match="missing clip_camera_projection/config.json"):
        resolve_model(tiny_svd, kind="zero123")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "absent")

    broken = tmp_path / "broken"
    shutil.copytree(tiny_zero123["zero123-xl"], broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    assert missing_files(broken, "zero123") == ["unet/diffusion_pytorch_model[.fp16].safetensors"]
    with pytest.raises(ModelNotFoundError, match=r"missing unet/diffusion_pytorch_model\[\.fp16\]\.safetensors"):
        resolve_model(broken, kind="zero123")


def test_weights_variant(tmp_path):
    (tmp_path / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"x")
    assert weights_variant(tmp_path) == "fp16"
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    assert weights_variant(tmp_path) is None
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "pytorch_model.bin").write_bytes(b"x")
    assert weights_variant(tmp_path / "enc", "transformers") is None
    with pytest.raises(FileNotFoundError, match="has no weights"):
        weights_variant(tmp_path / "enc")


def test_download_selects_one_set_of_weights_per_component():
    svd_repo = [
        "model_index.json", "svd.safetensors", "svd_image_decoder.safetensors", "README.md", "LICENSE.md",
        "feature_extractor/preprocessor_config.json", "scheduler/scheduler_config.json",
        "image_encoder/config.json", "image_encoder/model.safetensors", "image_encoder/model.fp16.safetensors",
        "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
    ]  # fmt: skip
    fp16 = select_download_files(svd_repo, get_spec("svd"))
    assert fp16 == sorted([
        "model_index.json", "feature_extractor/preprocessor_config.json", "scheduler/scheduler_config.json",
        "image_encoder/config.json", "image_encoder/model.fp16.safetensors",
        "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors",
    ])  # fmt: skip
    full = select_download_files(svd_repo, get_spec("svd"), full_precision=True)
    assert "unet/diffusion_pytorch_model.safetensors" in full and not any(".fp16." in f for f in full)
    # A Zero123 repository with .bin weights only, a safety checker we do not load, and a shard set.
    z_repo = [
        "model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.bin",
        "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin",
        "image_encoder/config.json", "image_encoder/model-00001-of-00002.safetensors",
        "image_encoder/model-00002-of-00002.safetensors", "image_encoder/model.safetensors.index.json",
        "clip_camera_projection/config.json", "clip_camera_projection/diffusion_pytorch_model.bin",
        "safety_checker/config.json", "safety_checker/pytorch_model.bin",
        "scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json",
    ]  # fmt: skip
    chosen = select_download_files(z_repo, get_spec("zero123-xl"))
    assert "unet/diffusion_pytorch_model.bin" in chosen and "vae/diffusion_pytorch_model.safetensors" in chosen
    assert "vae/diffusion_pytorch_model.bin" not in chosen and not any(f.startswith("safety_checker") for f in chosen)
    assert {"image_encoder/model-00001-of-00002.safetensors", "image_encoder/model.safetensors.index.json"} <= set(chosen)


def test_download_failure_is_a_clear_message(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the hub client's retries back off for ~20 s
    out = io.StringIO()
    with pytest.raises(ModelDownloadError) as err:
        download_model("svd", cache_dir=tmp_path, endpoint=UNREACHABLE, out=out)
    text = str(err.value)
    assert "could not download stabilityai/stable-video-diffusion-img2vid" in text
    assert "DYNAPOSE4D_SVD=/path/to/folder" in text and "internet" in text
    shown = out.getvalue()
    assert "licence: Stability AI Community License" in shown
    assert "gated" in shown and "accept the licence" in shown and "hf auth login" in shown


def test_models_cli(tiny_zero123, tmp_path, monkeypatch, capsys):
    from dynapose4d.cli.main import build_parser

    ap = build_parser()
    for var in ("DYNAPOSE4D_ZERO123", "DYNAPOSE4D_SVD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DYNAPOSE4D_ZERO123", str(tiny_zero123["zero123-xl"]))

    args = ap.parse_args(["models", "check", "zero123-xl", "--cache-dir", str(tmp_path)])
    assert args.func(args) == 0
    assert f"zero123-xl: available ($DYNAPOSE4D_ZERO123: {tiny_zero123['zero123-xl']})" in capsys.readouterr().out

    args = ap.parse_args(["models", "check", "svd", "--cache-dir", str(tmp_path)])
    assert args.func(args) == 1
    assert "get it with: dynapose4d models download svd" in capsys.readouterr().out

    args = ap.parse_args(["models", "list", "--cache-dir", str(tmp_path)])
    assert args.func(args) == 0
    listing = capsys.readouterr().out
    assert "stabilityai/stable-video-diffusion-img2vid-xt" in listing and "not downloaded" in listing

    with pytest.raises(SystemExit):  # argparse rejects unknown names for download
        ap.parse_args(["models", "download", "nope"])
    args = ap.parse_args(["models", "check", "nope"])
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        args.func(args)
