"""Finding a model on disk, offline: an explicit folder, its environment variable, or the HF cache."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .layout import missing_files
from .registry import MODELS, ModelNotFoundError, ModelSpec, _spec_for_repo, get_spec


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
    """The cached snapshot folder of ``repo_id`` (offline lookup), or None.

    Read from the cache's documented layout (``models--org--name/refs/main`` names the commit
    under ``snapshots/``) rather than asked of huggingface_hub: since 2.x its offline lookup
    refuses a snapshot that lacks any file of the repository's listing, and we download only the
    files we load (:func:`~.download.select_download_files`). Whether the folder has those is
    :func:`~.layout.missing_files`'s to say."""
    repo = _cache_root(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    try:
        commit = (repo / "refs" / "main").read_text().strip()
    except OSError:
        commit = ""
    if commit and (repo / "snapshots" / commit).is_dir():
        return repo / "snapshots" / commit
    try:  # no ref (a copied cache): the newest snapshot
        snapshots = [p for p in (repo / "snapshots").iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(snapshots, key=lambda p: p.stat().st_mtime) if snapshots else None


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



@dataclass
class OnDisk:
    """A registered model's files on this machine: ``present`` (complete), ``partial`` (some
    files: an interrupted download, or a folder that lacks some) or ``missing``."""

    state: str
    bytes: int  # on disk now
    path: Path | None = None
    source: str | None = None  # as ModelStatus.source
    lacks: list[str] = field(default_factory=list)


def model_on_disk(name: str, *, cache_dir: str | Path | None = None, env: dict | None = None) -> OnDisk:
    """Is ``name`` here, complete or in part, and how many bytes does it hold?"""
    status = check_model(name, cache_dir=cache_dir, env=env)
    env = os.environ if env is None else env
    if status.available:
        return OnDisk("present", _folder_bytes(_store_of(status.path)), status.path, status.source)
    spec = status.spec
    folder = env.get(spec.env_var)
    if folder and Path(folder).is_dir():  # an explicit folder that lacks files: the user's to fix
        return OnDisk("partial", _folder_bytes(Path(folder)), Path(folder), f"${spec.env_var}", missing_files(folder, spec.kind))
    store = _cache_root(cache_dir) / ("models--" + spec.repo_id.replace("/", "--"))
    held = _folder_bytes(store)
    return OnDisk("partial", held, store, "hf-cache") if held else OnDisk("missing", 0)


def _store_of(path: Path) -> Path:
    """A cached snapshot's repository folder (its blobs hold the bytes), else the folder itself."""
    return path.parents[1] if path.parent.name == "snapshots" else path


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        return Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub")


def _folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed: a cache's snapshot links
    point into its blobs, counted once)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total
