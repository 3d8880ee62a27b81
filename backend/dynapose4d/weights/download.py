"""Downloading a registered model (the only step that uses the network), licence first."""

from __future__ import annotations

import sys
from pathlib import Path

from .layout import missing_files, weight_file_names
from .registry import _WEIGHT_STEMS, ModelDownloadError, ModelSpec, get_spec


def select_download_files(repo_files: list[str], spec: ModelSpec, *, full_precision: bool = False) -> list[str]:
    """The files of a repository we need: ``model_index.json``, each component's configs, and one
    set of weights per component (safetensors before .bin; ``spec.download_variant`` first unless
    ``full_precision``; all weight files of a component whose weights are sharded). Root-level
    original checkpoints and unused components are skipped."""
    wanted = ["model_index.json"] if "model_index.json" in repo_files else []
    prefer = [None] if full_precision or spec.download_variant is None else [spec.download_variant, None]
    prefer += [v for v in (None, "fp16") if v not in prefer]
    for component, storage in spec.components.items():
        inside = [f for f in repo_files if f.startswith(component + "/") and f.count("/") == 1]
        wanted += [f for f in inside if f.endswith((".json", ".txt")) and ".index." not in f]
        if storage not in _WEIGHT_STEMS:
            continue
        names = {f.split("/", 1)[1] for f in inside}
        for variant in prefer:
            hit = next((c for c in weight_file_names(storage, variant) if c in names), None)
            if hit:
                wanted.append(f"{component}/{hit}")
                break
        else:  # sharded or unusual naming: take every weights file of the component
            wanted += [f for f in inside if f.endswith((".safetensors", ".bin", ".index.json"))]
    return sorted(set(wanted))


def download_model(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    token: str | None = None,
    full_precision: bool = False,
    endpoint: str | None = None,
    out=None,
) -> Path:
    """Download a registered model into the HF cache (or ``local_dir``), showing its licence.

    Only the diffusers-layout files we load are fetched (:func:`select_download_files`): SVD's
    fp16 weights unless ``full_precision``, never the multi-GB original checkpoints at the root.

    Raises:
        ModelDownloadError: no network, gated model without access, unknown repository, ...
    """
    spec = get_spec(name)
    out = sys.stdout if out is None else out
    # 1. Show the licence before anything is fetched.
    print(f"{spec.title} ({spec.repo_id})", file=out)
    print(f"  licence: {spec.license_name}", file=out)
    print(f"  {spec.license_note}", file=out)
    print(f"  model page: {spec.page_url}", file=out)
    if spec.gated:
        print(
            "  This model is gated: open the model page while logged in, accept the licence, then log in here\n"
            "  with `hf auth login` (or set HF_TOKEN) before downloading.",
            file=out,
        )
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        raise ModelDownloadError(
            "downloading models needs huggingface_hub; install the backend's diffusion extra (dynapose4d[diffusion])"
        ) from None
    # 2. Choose the files and fetch them (huggingface_hub draws the progress bars).
    try:
        where = dict(cache_dir=cache_dir, local_dir=local_dir, token=token, endpoint=endpoint)
        # A dry run lists the repository in one request (and fails fast when offline).
        listing = snapshot_download(spec.repo_id, dry_run=True, **where)
        files = select_download_files([info.filename for info in listing], spec, full_precision=full_precision)
        path = snapshot_download(spec.repo_id, allow_patterns=files, **where)
    except GatedRepoError:
        raise ModelDownloadError(
            f"{spec.repo_id} is gated and this account has no access yet: open {spec.page_url} while logged in, "
            "accept the licence, then run `hf auth login` (or set HF_TOKEN) and try again"
        ) from None
    except RepositoryNotFoundError:
        raise ModelDownloadError(
            f"{spec.repo_id} was not found on the hub (or is private/gated and no token was given); "
            f"check the id, log in with `hf auth login`, or point {spec.env_var} to a local copy"
        ) from None
    except Exception as exc:  # network errors come in many classes (httpx, OSError, hub errors)
        gated = (
            f"If you are online: this model is gated, so accept its licence at {spec.page_url} and log in "
            "(`hf auth login` or HF_TOKEN).\n"
            if spec.gated
            else ""
        )
        raise ModelDownloadError(
            f"could not download {spec.repo_id}: {type(exc).__name__}: {_first_line(exc)}\n{gated}"
            "Check the internet connection (and HF_ENDPOINT / proxy settings). On a machine without internet, "
            f"download the folder elsewhere and set {spec.env_var}=/path/to/folder or pass {spec.option} /path/to/folder."
        ) from None
    # 3. Check what arrived.
    missing = missing_files(path, spec.kind)
    if missing:
        raise ModelDownloadError(f"downloaded {spec.repo_id} to {path} but it lacks {', '.join(missing)}")
    print(f"done: {path}", file=out)
    return Path(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"

