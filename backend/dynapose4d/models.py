"""Model registry and management: which diffusion models we use, where they live, how to get them.

Every model has a short name (``zero123-xl``, ``stable-zero123``, ``svd``, ``svd-xt``), a default
Hugging Face hub id, an environment variable that points to a local folder, its licence, and
whether the hub gates it behind a licence agreement. A model resolves, in this order, from

1. an explicit folder (a command-line option such as ``--zero123 /path``, or a config value),
2. its environment variable (``DYNAPOSE4D_ZERO123=/path/to/folder``),
3. the local Hugging Face cache (offline: nothing is fetched while resolving).

Folders use the diffusers layout of the public repositories (one subfolder per component:
``unet/``, ``vae/``, ``image_encoder/``, ``feature_extractor/``, ``scheduler/`` and, for
Zero-1-to-3, ``clip_camera_projection/``). A model that cannot be found raises
:class:`ModelNotFoundError`, whose message says how to download it and how to point to a folder.

Downloading (``dynapose4d models download <name>``) is the only step that uses the network. We
never redistribute weights; the licence is shown before each download.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MODELS",
    "ModelSpec",
    "ModelStatus",
    "ResolvedModel",
    "ModelNotFoundError",
    "ModelDownloadError",
    "get_spec",
    "list_models",
    "check_model",
    "resolve_model",
    "download_model",
    "select_download_files",
    "missing_files",
    "weights_variant",
    "add_models_cli",
]


class ModelNotFoundError(RuntimeError):
    """A model is not available locally. The message says how to get it; show it as is."""


class ModelDownloadError(RuntimeError):
    """A download failed (no network, gated model without access, ...). The message says why."""


# -------------------------------------------------------------------------------------------------
# registry

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


# -------------------------------------------------------------------------------------------------
# folder layout checks


def weights_variant(component_dir: str | Path, storage: str = "diffusers") -> str | None:
    """Which weights a component folder holds: ``None`` (full precision) or ``"fp16"``.

    Full-precision files win when both exist. Raises FileNotFoundError when there are none.
    """
    folder = Path(component_dir)
    stem = _WEIGHT_STEMS[storage]
    legacy = "pytorch_model" if storage == "transformers" else stem
    for variant in (None, "fp16"):
        suffix = "" if variant is None else f".{variant}"
        names = (
            f"{stem}{suffix}.safetensors",
            f"{stem}{suffix}.safetensors.index.json",
            f"{legacy}{suffix}.bin",
            f"{legacy}{suffix}.bin.index.json",
        )
        if any((folder / n).is_file() for n in names):
            return variant
    raise FileNotFoundError(f"{folder} has no weights ({stem}.safetensors or {stem}.fp16.safetensors)")


def missing_files(folder: str | Path, kind: str) -> list[str]:
    """What a folder lacks to be a ``kind`` model in the diffusers layout (empty = complete)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} (not a folder)"]
    components = _ZERO123_COMPONENTS if kind == "zero123" else _SVD_COMPONENTS
    missing = []
    for component, storage in components.items():
        sub = folder / component
        config = sub / _CONFIG_FILE[storage]
        if not config.is_file():
            missing.append(f"{component}/{config.name}")
        if storage in _WEIGHT_STEMS:
            try:
                weights_variant(sub, storage)
            except FileNotFoundError:
                missing.append(f"{component}/{_WEIGHT_STEMS[storage]}[.fp16].safetensors")
    return missing


# -------------------------------------------------------------------------------------------------
# resolution


@dataclass
class ResolvedModel:
    """A model found on disk: its folder and where that folder came from."""

    path: Path
    source: str  # "folder", "env DYNAPOSE4D_...", or "hf-cache"
    spec: ModelSpec | None = None
    kind: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else str(self.path)


@dataclass
class ModelStatus:
    """Whether a model is available locally, and where we looked."""

    spec: ModelSpec
    available: bool
    path: Path | None = None
    source: str | None = None
    looked: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.available:
            return f"available ({self.source}: {self.path})"
        return "not found (" + "; ".join(self.looked) + ")"


def _cache_snapshot(repo_id: str, cache_dir: str | Path | None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` (offline lookup), or None."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        path = snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True)
    except Exception:  # any failure here means "not in the cache"; the caller explains
        return None
    return Path(path)


def _cache_description(cache_dir: str | Path | None) -> str:
    if cache_dir is not None:
        return str(cache_dir)
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return "the Hugging Face cache (huggingface_hub is not installed)"


def check_model(name: str, *, cache_dir: str | Path | None = None, env: dict | None = None) -> ModelStatus:
    """Is the registered model ``name`` available locally (environment variable or HF cache)?"""
    spec = get_spec(name)
    env = os.environ if env is None else env
    looked = []
    folder = env.get(spec.env_var)
    if folder:
        # An explicit folder that is broken is an error, not a reason to use another copy.
        missing = missing_files(folder, spec.kind)
        if not missing:
            return ModelStatus(spec, True, Path(folder), f"${spec.env_var}", looked)
        if not Path(folder).is_dir():
            looked.append(f"${spec.env_var}={folder} is not a folder")
        else:
            looked.append(f"${spec.env_var}={folder} is not a complete {spec.kind} folder: lacks {', '.join(missing[:4])}")
        return ModelStatus(spec, False, None, None, looked)
    else:
        looked.append(f"${spec.env_var} not set")
    snapshot = _cache_snapshot(spec.repo_id, cache_dir)
    if snapshot is not None:
        missing = missing_files(snapshot, spec.kind)
        if not missing:
            return ModelStatus(spec, True, snapshot, "hf-cache", looked)
        looked.append(f"cached snapshot {snapshot} is incomplete: lacks {', '.join(missing[:4])}")
    else:
        looked.append(f"{spec.repo_id} not in the Hugging Face cache at {_cache_description(cache_dir)}")
    return ModelStatus(spec, False, None, None, looked)


def list_models(*, cache_dir: str | Path | None = None) -> list[ModelStatus]:
    """Every registered model with its local status."""
    return [check_model(name, cache_dir=cache_dir) for name in MODELS]


def _not_found(spec: ModelSpec, looked: list[str]) -> ModelNotFoundError:
    lines = [
        f"model {spec.name!r} ({spec.title}, hub id {spec.repo_id}) is not available on this machine.",
        "Looked for it: " + "; ".join(looked) + ".",
        "To fix this, either",
        f"  - download it (once, needs internet): dynapose4d models download {spec.name}",
        f"    licence: {spec.license_name}" + (" (gated: accept it on the model page first)" if spec.gated else ""),
        f"  - or point to a folder in the diffusers layout: {spec.option} /path/to/folder"
        f" or {spec.env_var}=/path/to/folder",
    ]
    return ModelNotFoundError("\n".join(lines))


def resolve_model(
    model: str | Path,
    *,
    kind: str | None = None,
    cache_dir: str | Path | None = None,
    env: dict | None = None,
) -> ResolvedModel:
    """Find a model on disk without touching the network.

    Args:
        model: a registered name (``"zero123-xl"``), a hub id (``"org/name"``, looked up in the
            HF cache), or a folder in the diffusers layout.
        kind: ``"zero123"`` or ``"svd"``: the layout a folder must have (checked), and the kind a
            registered name must be.
        cache_dir: Hugging Face cache folder (default: huggingface_hub's, honouring HF_HUB_CACHE).
        env: environment mapping (default ``os.environ``), for tests.

    Raises:
        ModelNotFoundError: with a message that says how to download the model or point to it.
    """
    env = os.environ if env is None else env
    text = str(model)
    is_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", text) is not None
    # 1. A folder given directly (an existing folder wins over a hub id of the same spelling).
    if isinstance(model, Path) or Path(text).expanduser().is_dir() or (
        text not in MODELS and not is_hub_id and (os.sep in text or "/" in text or text.startswith((".", "~")))
    ):
        return _resolve_folder(Path(text).expanduser(), kind)
    # 2. A registered name (or its hub id): environment variable, then the cache.
    spec = MODELS.get(text) or _spec_for_repo(text)
    if spec is not None:
        if kind is not None and spec.kind != kind:
            raise ValueError(f"model {spec.name!r} is a {spec.kind} model, not a {kind} model")
        status = check_model(spec.name, cache_dir=cache_dir, env=env)
        if not status.available:
            raise _not_found(spec, status.looked)
        return ResolvedModel(status.path, status.source, spec, spec.kind)
    # 3. Any other hub id, from the cache only.
    if is_hub_id:
        snapshot = _cache_snapshot(text, cache_dir)
        if snapshot is None:
            raise ModelNotFoundError(
                f"model {text!r} is not in the Hugging Face cache at {_cache_description(cache_dir)} and is not a folder.\n"
                f"Download it with huggingface_hub (or `hf download {text}`), or give the path of a folder"
                f" in the diffusers layout. Registered models: {', '.join(MODELS)}."
            )
        if kind is not None:
            _check_layout(snapshot, kind, f"the cached snapshot of {text}")
        return ResolvedModel(snapshot, "hf-cache", None, kind)
    raise ModelNotFoundError(
        f"{text!r} is neither a folder nor a known model; known models: {', '.join(MODELS)} "
        "(or give a hub id org/name that is in the Hugging Face cache)"
    )


def _check_layout(folder: Path, kind: str, what: str) -> None:
    missing = missing_files(folder, kind)
    if missing:
        names = [s.name for s in MODELS.values() if s.kind == kind]
        raise ModelNotFoundError(
            f"{what} ({folder}) is not a {kind} model in the diffusers layout: missing {', '.join(missing)}.\n"
            f"Give a complete folder, or download one with `dynapose4d models download <name>` ({', '.join(names)})."
        )


def _resolve_folder(folder: Path, kind: str | None) -> ResolvedModel:
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"model folder {folder} does not exist. Give a folder in the diffusers layout, or a model name "
            f"({', '.join(MODELS)}) to use the Hugging Face cache."
        )
    if kind is None:
        kind = "zero123" if (folder / "clip_camera_projection").is_dir() else "svd"
    _check_layout(folder, kind, "model folder")
    return ResolvedModel(folder, "folder", None, kind)


# -------------------------------------------------------------------------------------------------
# download


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
        stem = _WEIGHT_STEMS[storage]
        legacy = "pytorch_model" if storage == "transformers" else stem
        names = {f.split("/", 1)[1] for f in inside}
        for variant in prefer:
            suffix = "" if variant is None else f".{variant}"
            hit = next((c for c in (f"{stem}{suffix}.safetensors", f"{legacy}{suffix}.bin") if c in names), None)
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


# -------------------------------------------------------------------------------------------------
# command line


def _cmd_list(args) -> int:
    for status in list_models(cache_dir=args.cache_dir):
        spec = status.spec
        where = f"available: {status.path}" if status.available else "not downloaded"
        print(f"{spec.name:<15} {spec.repo_id:<48} {'gated' if spec.gated else '':<5}  {where}")
        print(f"{'':<15} {spec.description}; licence: {spec.license_name}")
    print(_poseanything_weights().status_line())
    return 0


def _cmd_check(args) -> int:
    names = args.names or list(MODELS)
    if "poseanything" in names:  # keypoint weights: converted by hand, not in the HF cache
        names = [n for n in names if n != "poseanything"]
        line = _poseanything_weights().status_line()
        print(line)
        if not names:
            return 0 if "not converted" not in line else 1
    for name in names:
        get_spec(name)  # unknown names fail before anything is printed
    ok = True
    for name in names:
        status = check_model(name, cache_dir=args.cache_dir)
        ok &= status.available
        print(f"{name}: {status.summary()}")
        if not status.available:
            print(f"  get it with: dynapose4d models download {name}   (or set {status.spec.env_var}=/path/to/folder)")
    return 0 if ok else 1


def _cmd_download(args) -> int:
    download_model(
        args.name,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        token=args.token,
        full_precision=args.full_precision,
    )
    return 0


def add_models_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``models list|check|download`` on the main parser's subparsers."""
    models = subparsers.add_parser("models", help="list, check and download the diffusion models")
    msub = models.add_subparsers(dest="models_command", required=True)

    def cache_option(p):
        p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder (default: HF_HUB_CACHE or ~/.cache)")

    p = msub.add_parser("list", help="every model, its licence and whether it is here")
    cache_option(p)
    p.set_defaults(func=_cmd_list)

    p = msub.add_parser("check", help="is a model available locally, and where (exit 1 if not)")
    p.add_argument("names", nargs="*", help=f"models to check ({', '.join(MODELS)}); default all")
    cache_option(p)
    p.set_defaults(func=_cmd_check)

    p = msub.add_parser("download", help="download a model into the Hugging Face cache (shows its licence)")
    p.add_argument("name", choices=list(MODELS))
    cache_option(p)
    p.add_argument("--local-dir", default=None, help="download into this folder instead of the cache")
    p.add_argument("--token", default=None, help="Hugging Face token (default: the logged-in one / HF_TOKEN)")
    p.add_argument("--full-precision", action="store_true", help="SVD: fetch fp32 weights instead of fp16")
    p.set_defaults(func=_cmd_download)

    p = msub.add_parser("convert-poseanything", help="convert the downloaded PoseAnything checkpoint to safetensors")
    p.add_argument("file", help="the mmcv checkpoint (.pth) from the PoseAnything release")
    p.add_argument("--out", default=None, help="output folder (default: $DYNAPOSE4D_POSEANYTHING or the user cache)")
    p.add_argument("--trust", action="store_true", help="allow a full unpickle if the restricted one refuses the file")
    p.set_defaults(func=lambda args: _poseanything_weights().cli_convert(args))
    return models


def _poseanything_weights():
    """The ``poseanything`` entry (keypoint weights from the PoseAnything release, converted once);
    imported lazily because it needs torch. Its spec, checks and converter live there."""
    from .keypoints.poseanything import weights

    return weights
