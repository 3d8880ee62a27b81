#!/usr/bin/env python3
"""Write the full-size diffusion models with random weights, in the Hugging Face cache layout.

    python scripts/make_full_size_models.py OUT [--models zero123-xl,stable-zero123,svd,svd-xt]

The cost and the shapes of a network do not depend on its weight values, so these folders check
our loading and stepping code at the real sizes without any download. For each registered model
(``dynapose4d.weights.MODELS``) the architecture comes from the configuration files of its public
repository, copied into ``scripts/model_configs/`` (``MANIFEST.tsv`` says which are verbatim and
which are reconstructed), and the folder is written as ``snapshot_download`` leaves it:

    OUT/hf-cache/models--<org>--<name>/{refs/main, blobs/<hash>, snapshots/<commit>/<files> -> ../../blobs/<hash>}

with the repositories' own file names and precision: the ashawkey Zero-1-to-3 repositories ship
fp16 tensors under the plain names (``diffusion_pytorch_model.safetensors``, ``model.safetensors``);
the SVD repositories' ``fp16`` variant files (``*.fp16.safetensors``) are what
``dynapose4d models download`` fetches. The published config files are written byte for byte
(not the ones ``save_pretrained`` would write). Blobs with equal content are hard links (svd and
svd-xt differ only in their UNet config), so all four take about 9 GB of disk.

Use them with ``HF_HUB_CACHE=OUT/hf-cache`` (e.g. ``scripts/check_full_size.py``,
``scripts/gpu_check.sh``). The outputs are noise: never judge quality with them.
One component is built at a time (peak memory about the largest component in fp16 plus its
serialisation: ~7 GB for the SVD UNet). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "scripts" / "model_configs"
if str(ROOT / "backend") not in sys.path:
    sys.path.insert(0, str(ROOT / "backend"))

# Registered model -> (config folder, weights variant of the files we write).
REPOS = {
    "zero123-xl": ("ashawkey__zero123-xl-diffusers", None),
    "stable-zero123": ("ashawkey__stable-zero123-diffusers", None),
    "svd": ("stabilityai__stable-video-diffusion-img2vid", "fp16"),
    "svd-xt": ("stabilityai__stable-video-diffusion-img2vid-xt", "fp16"),
}
FILE_LIMIT = 1 << 40  # one weights file per component, as the repositories have


def _fake_commit(repo_id: str) -> str:
    return hashlib.sha1(f"dynapose4d random weights {repo_id}".encode()).hexdigest()


def _build(component: str, config: dict, seed: int):
    """A randomly initialised module of ``component`` from its published config (fp16)."""
    import torch
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder, UNet2DConditionModel, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from dynapose4d.guidance.zero123 import CLIPCameraProjection

    classes = {
        "UNet2DConditionModel": UNet2DConditionModel,
        "UNetSpatioTemporalConditionModel": UNetSpatioTemporalConditionModel,
        "AutoencoderKL": AutoencoderKL,
        "AutoencoderKLTemporalDecoder": AutoencoderKLTemporalDecoder,
        "CLIPCameraProjection": CLIPCameraProjection,
    }
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)  # initialise in fp16: half the peak memory of fp32-then-cast
    try:
        if component == "image_encoder":
            keys = {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures", "torch_dtype", "transformers_version")}
            return CLIPVisionModelWithProjection(CLIPVisionConfig(**keys)).half().eval()
        cls = classes[config["_class_name"]]
        return cls.from_config(config).half().eval()
    finally:
        torch.set_default_dtype(previous)


def _save_component(module, folder: Path, component: str, variant: str | None, config_bytes: bytes) -> None:
    if component == "image_encoder":
        module.save_pretrained(folder, safe_serialization=True, variant=variant)
    else:
        module.save_pretrained(folder, safe_serialization=True, variant=variant, max_shard_size=FILE_LIMIT)
    (folder / "config.json").write_bytes(config_bytes)  # the published file, not save_pretrained's
    for extra in folder.glob("*.index.json"):
        raise RuntimeError(f"{extra}: weights were sharded; the public repositories hold one file per component")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def _commit_to_cache(staging: Path, repo_dir: Path, commit: str, blob_index: dict[str, Path]) -> Path:
    """Move ``staging`` into the cache layout: blobs named by their hash (sha256 for LFS-stored
    weights, the git blob sha1 for the rest, as the hub does) and relative symlinks."""
    snapshot = repo_dir / "snapshots" / commit
    blobs = repo_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = path.relative_to(staging)
        digest = _sha256(path) if path.suffix in (".safetensors", ".bin") else _git_blob_sha1(path.read_bytes())
        blob = blobs / digest
        if not blob.exists():
            if digest in blob_index and blob_index[digest].exists():
                os.link(blob_index[digest], blob)  # same random weights in another repository
                path.unlink()
            else:
                shutil.move(str(path), blob)
        else:
            path.unlink()
        blob_index[digest] = blob
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    shutil.rmtree(staging)
    return snapshot


def make_model(name: str, cache: Path, *, seed: int = 0, blob_index: dict | None = None, log=print) -> Path:
    """Write registered model ``name`` into the cache ``cache``; returns its snapshot folder."""
    from dynapose4d.weights import get_spec, missing_files

    spec = get_spec(name)
    config_dir, variant = REPOS[name]
    src = CONFIGS / config_dir
    repo_dir = cache / ("models--" + spec.repo_id.replace("/", "--"))
    commit = _fake_commit(spec.repo_id)
    staging = repo_dir / "staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    shutil.copyfile(src / "model_index.json", staging / "model_index.json")
    for component, storage in spec.components.items():
        out = staging / component
        out.mkdir()
        if storage in ("scheduler", "processor"):
            for f in (src / component).iterdir():
                shutil.copyfile(f, out / f.name)
            continue
        config_bytes = (src / component / "config.json").read_bytes()
        t0 = time.perf_counter()
        module = _build(component, json.loads(config_bytes), seed + sum(map(ord, component)))
        params = sum(p.numel() for p in module.parameters())
        _save_component(module, out, component, variant, config_bytes)
        del module
        log(f"  {name}/{component}: {params / 1e6:,.1f} M parameters, {time.perf_counter() - t0:.0f} s")
    snapshot = _commit_to_cache(staging, repo_dir, commit, blob_index if blob_index is not None else {})
    missing = missing_files(snapshot, spec.kind)
    if missing:
        raise RuntimeError(f"{snapshot} lacks {missing}")
    return snapshot


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output folder (outside the repository; OUT/hf-cache is created)")
    ap.add_argument("--models", default=",".join(REPOS), help=f"comma-separated, from {', '.join(REPOS)}")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = args.out.resolve()
    if out == ROOT or ROOT in out.parents:
        ap.error("write the models outside the repository (they are several GB)")
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in REPOS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; choose from {', '.join(REPOS)}")
    cache = out / "hf-cache"
    blob_index: dict = {}
    for blob in cache.glob("models--*/blobs/*"):
        blob_index[blob.name] = blob
    for name in names:
        t0 = time.perf_counter()
        print(f"{name}:", flush=True)
        snapshot = make_model(name, cache, seed=args.seed, blob_index=blob_index, log=lambda s: print(s, flush=True))
        print(f"  -> {snapshot} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"HF_HUB_CACHE={cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
