"""Downloading a registered model (the only step that uses the network), licence first.

A download is three steps, each callable alone (the server's downloads run them in a process of
their own, :mod:`.fetch`; ``dynapose4d models download`` runs them here):

1. :func:`plan_download`: list the repository (one API call), pick the files we load
   (:func:`select_download_files`), and ask the hub about each of them (a dry run: its size,
   whether it is cached, and whether this account may fetch it: a gated model answers 401/403
   here, before anything is fetched);
2. :func:`free_space_problem`: is there room for what is not cached yet?
3. :func:`fetch`: huggingface_hub's ``snapshot_download`` of those files, while a watcher thread
   measures the bytes on disk (:class:`Progress`: bytes, speed, ETA).

Resuming: complete files stay in the cache, so a download that was cancelled or cut off starts
again after the last complete file. Within a file huggingface_hub resumes a dropped connection
itself (an HTTP ``Range`` request); a file cut off by a cancel or a crash starts over (the version
tested, 2.4, writes each attempt to a file of its own and discards it).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .layout import missing_files, weight_file_names
from .registry import _WEIGHT_STEMS, ModelDownloadError, ModelSpec, get_spec

# Room kept free beyond the files themselves (the cache's small files, the filesystem's slack).
FREE_SPACE_MARGIN = 50_000_000
# huggingface_hub 2.x's temporary files: <etag>.<8 hex>.incomplete, one per attempt, never resumed.
_ATTEMPT_FILE = re.compile(r".+\.[0-9a-f]{8}\.incomplete$")


class DownloadRefused(ModelDownloadError):
    """A download that cannot start: ``kind`` says why (``gated``, ``disk``, ``network``, ``missing``)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


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


# -- 1. the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedFile:
    name: str  # path in the repository
    size: int  # bytes
    cached: bool  # already complete in the cache


@dataclass
class DownloadPlan:
    """What a download fetches: the files, their sizes, and where they land."""

    spec: ModelSpec
    files: list[PlannedFile]
    commit: str | None
    storage: Path  # the repository's folder in the Hugging Face cache (models--org--name)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def cached_bytes(self) -> int:
        return sum(f.size for f in self.files if f.cached)

    @property
    def missing_bytes(self) -> int:
        return self.total_bytes - self.cached_bytes

    def on_disk_bytes(self, since: float = 0.0) -> int:
        """Bytes of the plan's files on disk now: the complete ones in the snapshot, plus the
        partial files huggingface_hub is writing (``blobs/*.incomplete`` changed after ``since``)."""
        done = 0
        snapshot = self.storage / "snapshots" / (self.commit or "")
        for f in self.files:
            try:
                done += os.path.getsize(snapshot / f.name) if self.commit else 0
            except OSError:
                pass
        for part in (self.storage / "blobs").glob("*.incomplete"):
            try:
                st = part.stat()
            except OSError:  # moved into place meanwhile: counted with the snapshot next time
                continue
            if st.st_mtime >= since - 1.0:
                done += st.st_size
        return min(done, self.total_bytes)


def cache_folder(cache_dir: str | Path | None = None) -> Path:
    """The Hugging Face hub cache in use (``cache_dir``, else HF_HUB_CACHE / HF_HOME's)."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(_hub().constants.HF_HUB_CACHE)


def repo_folder(spec: ModelSpec, cache_dir: str | Path | None = None) -> Path:
    return cache_folder(cache_dir) / ("models--" + spec.repo_id.replace("/", "--"))


def plan_download(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    full_precision: bool = False,
) -> DownloadPlan:
    """Ask the hub what downloading ``name`` would fetch (sizes, what is cached, access).

    ``token``: None lets huggingface_hub find one (HF_TOKEN, then ``hf auth login``'s).
    Raises :class:`DownloadRefused` (gated without access, no network, unknown repository)."""
    spec = get_spec(name)
    hub = _hub()
    with hub_errors(spec):
        api = hub.HfApi(endpoint=endpoint, token=token)
        sizes = {f.path: f.size for f in api.list_repo_tree(spec.repo_id, recursive=True) if getattr(f, "size", None) is not None}
        chosen = select_download_files(list(sizes), spec, full_precision=full_precision)
        where = dict(cache_dir=cache_dir, token=token, endpoint=endpoint)
        infos = hub.snapshot_download(spec.repo_id, allow_patterns=chosen, dry_run=True, **where)
    found = {info.filename: info for info in infos}
    files = [
        PlannedFile(n, int(found[n].file_size if n in found and found[n].file_size is not None else sizes[n]),
                    bool(n in found and found[n].is_cached))
        for n in chosen
    ]
    commit = next((info.commit_hash for info in infos), None)
    storage = repo_folder(spec, cache_dir)
    _remove_stale_attempts(storage)
    return DownloadPlan(spec, files, commit, storage)


def _remove_stale_attempts(storage: Path, older_than_s: float = 60.0) -> None:
    """Partial files of earlier attempts that were killed (never resumed: see the module's doc)."""
    now = time.time()
    for part in (storage / "blobs").glob("*.incomplete"):
        try:
            if _ATTEMPT_FILE.match(part.name) and now - part.stat().st_mtime > older_than_s:
                part.unlink()
        except OSError:
            pass


# -- 2. free space ---------------------------------------------------------------------------------


def free_space_problem(plan: DownloadPlan, free_bytes: int | None = None) -> str | None:
    """Why the plan's missing files do not fit on the cache's disk, or None when they do.
    ``free_bytes``: the free space (default: measured on the cache's disk)."""
    need = plan.missing_bytes + FREE_SPACE_MARGIN
    where = _existing_parent(plan.storage)
    free = shutil.disk_usage(where).free if free_bytes is None else free_bytes
    if free >= need:
        return None
    return (
        f"not enough free disk space for {plan.spec.title}: the download needs {format_bytes(plan.missing_bytes)}, "
        f"and {where} has {format_bytes(free)} free. Free some space there, or choose a Model Cache folder on "
        "another disk (the add-on's preferences, or HF_HOME for the backend)"
    )


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def format_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


# -- 3. the fetch -----------------------------------------------------------------------------------


@dataclass
class Progress:
    """Bytes on disk of a running download, and how fast they grow."""

    done: int
    total: int
    speed: float | None = None  # bytes/s over the last few seconds
    eta_s: float | None = None


@dataclass
class _Watcher:
    """Measures a plan's bytes on disk every ``interval_s`` on a thread and reports them."""

    plan: DownloadPlan
    report: Callable[[Progress], None]
    interval_s: float = 0.5
    window_s: float = 5.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _samples: list = field(default_factory=list)

    def __post_init__(self):
        self.started = time.time()
        self._thread = threading.Thread(target=self._run, name="dynapose4d-download-progress", daemon=True)

    def measure(self) -> Progress:
        now, done = time.monotonic(), self.plan.on_disk_bytes(self.started)
        self._samples = [(t, d) for t, d in self._samples if now - t <= self.window_s] + [(now, done)]
        (t0, d0), speed, eta = self._samples[0], None, None
        if now - t0 > 0.2:
            speed = max(0.0, (done - d0) / (now - t0))
            eta = (self.plan.total_bytes - done) / speed if speed > 0 else None
        return Progress(done, self.plan.total_bytes, speed, eta)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.report(self.measure())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def fetch(plan: DownloadPlan, *, cache_dir: str | Path | None = None, token: str | None = None, endpoint: str | None = None,
          on_progress: Callable[[Progress], None] | None = None, interval_s: float = 0.5) -> Path:
    """Download the plan's files into the cache (or finish them); the snapshot folder.
    ``on_progress`` is called from a watcher thread every ``interval_s``."""
    hub = _hub()
    with hub_errors(plan.spec), _Watcher(plan, on_progress or (lambda p: None), interval_s):
        path = hub.snapshot_download(plan.spec.repo_id, allow_patterns=[f.name for f in plan.files],
                                     cache_dir=cache_dir, token=token, endpoint=endpoint)
    missing = missing_files(path, plan.spec.kind)
    if missing:
        raise ModelDownloadError(f"downloaded {plan.spec.repo_id} to {path} but it lacks {', '.join(missing)}")
    return Path(path)


# -- the command line's download --------------------------------------------------------------------


def licence_text(spec: ModelSpec) -> str:
    """What a user reads before a download: the licence, what it means, where to accept it."""
    lines = [f"{spec.title} ({spec.repo_id})", f"  licence: {spec.license_name}", f"  {spec.license_note}",
             f"  model page: {spec.page_url}"]
    if spec.gated:
        lines.append(
            "  This model is gated: open the model page while logged in and accept the licence, then give a\n"
            "  Hugging Face token: log in here with `hf auth login` (or set HF_TOKEN, or paste it in the add-on's preferences)."
        )
    return "\n".join(lines)


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
    """Download a registered model into the HF cache (or ``local_dir``), showing its licence and
    its progress on ``out``.

    Only the diffusers-layout files we load are fetched (:func:`select_download_files`): SVD's
    fp16 weights unless ``full_precision``, never the multi-GB original checkpoints at the root.

    Raises:
        ModelDownloadError: no network, gated model without access, not enough disk, ...
    """
    spec = get_spec(name)
    out = sys.stdout if out is None else out
    # 1. Show the licence before anything is fetched.
    print(licence_text(spec), file=out)
    if local_dir is not None:
        return _download_to_folder(spec, local_dir, token, endpoint, full_precision)
    # 2. What to fetch, and whether it fits.
    plan = plan_download(name, cache_dir=cache_dir, token=token, endpoint=endpoint, full_precision=full_precision)
    print(f"  {len(plan.files)} files, {format_bytes(plan.total_bytes)} ({format_bytes(plan.cached_bytes)} already here)", file=out)
    problem = free_space_problem(plan)
    if problem:
        raise DownloadRefused(problem, "disk")

    # 3. Fetch, with one progress line.
    def show(p: Progress) -> None:
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        print(f"\r  {format_bytes(p.done)} of {format_bytes(p.total)}{eta}    ", end="", file=out, flush=True)

    path = fetch(plan, cache_dir=cache_dir, token=token, endpoint=endpoint, on_progress=show, interval_s=1.0)
    print(f"\ndone: {path}", file=out)
    return path


def _download_to_folder(spec: ModelSpec, local_dir, token, endpoint, full_precision) -> Path:
    """``--local-dir``: the same files into a plain folder (no plan, no progress)."""
    hub = _hub()
    with hub_errors(spec):
        files = select_download_files(hub.HfApi(endpoint=endpoint, token=token).list_repo_files(spec.repo_id), spec,
                                      full_precision=full_precision)
        path = hub.snapshot_download(spec.repo_id, allow_patterns=files, local_dir=local_dir, token=token, endpoint=endpoint)
    missing = missing_files(path, spec.kind)
    if missing:
        raise ModelDownloadError(f"downloaded {spec.repo_id} to {path} but it lacks {', '.join(missing)}")
    return Path(path)


# -- huggingface_hub and its errors ----------------------------------------------------------------


def _hub():
    try:
        import huggingface_hub
        from huggingface_hub import constants  # noqa: F401  (huggingface_hub.constants below)
    except ImportError:
        raise ModelDownloadError(
            "downloading models needs huggingface_hub; install the backend's diffusion extra (dynapose4d[diffusion])"
        ) from None
    return huggingface_hub


@contextmanager
def hub_errors(spec: ModelSpec):
    """The hub's many error classes as one :class:`DownloadRefused` that says what to do."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        yield
    except ModelDownloadError:
        raise
    except GatedRepoError as exc:
        raise DownloadRefused(_gated_message(spec, _status(exc)), "gated") from None
    except RepositoryNotFoundError as exc:
        if spec.gated and _status(exc) in (401, 403):
            raise DownloadRefused(_gated_message(spec, _status(exc)), "gated") from None
        raise DownloadRefused(
            f"{spec.repo_id} was not found on the hub (or is private/gated and no token was given); "
            f"check the id, give a Hugging Face token, or point {spec.env_var} to a local copy", "missing",
        ) from None
    except Exception as exc:  # network errors come in many classes (httpx, OSError, hub errors)
        cause = _gated_cause(exc)
        if cause is not None:
            raise DownloadRefused(_gated_message(spec, _status(cause)), "gated") from None
        gated = (f"If you are online: this model is gated, so accept its licence at {spec.page_url} and give a "
                 "Hugging Face token.\n" if spec.gated else "")
        raise DownloadRefused(
            f"could not download {spec.repo_id}: {type(exc).__name__}: {_first_line(exc)}\n{gated}"
            "Check the internet connection (and HF_ENDPOINT / proxy settings). On a machine without internet, "
            f"download the folder elsewhere and set {spec.env_var}=/path/to/folder or pass {spec.option} /path/to/folder.",
            "network",
        ) from None


def _gated_cause(exc: BaseException):
    """A GatedRepoError inside ``exc``'s chain (a dry run wraps it), or None."""
    from huggingface_hub.errors import GatedRepoError

    seen = exc
    while seen is not None:
        if isinstance(seen, GatedRepoError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _gated_message(spec: ModelSpec, status: int | None) -> str:
    who = ("no Hugging Face token was given (or it is not valid)" if status == 401
           else "the account of this Hugging Face token has not accepted its licence yet")
    return (
        f"{spec.title} ({spec.repo_id}) is gated and {who}: open {spec.page_url} while logged in, accept the licence, "
        "then give a token of that account (a read token from huggingface.co/settings/tokens: the add-on's "
        "preferences, HF_TOKEN, or `hf auth login`) and download again"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"
