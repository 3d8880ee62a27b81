"""Response bodies of the API, as plain dataclasses (FastAPI publishes them in the OpenAPI spec)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ErrorBody:
    detail: Any  # a message (ours), or FastAPI's list of parameter errors


@dataclass
class SnapshotInfo:
    version: int
    iteration: int | None = None
    stage: str | None = None
    stage_version: int | None = None
    num_frames: int | None = None
    video_fps: float | None = None
    duration_s: float | None = None
    gaussians: int | None = None
    keypoints: int | None = None


@dataclass
class JobStatus:
    id: str
    kind: str
    state: str  # queued, running, waiting, done, failed, cancelled, interrupted
    created_at: float
    settings: dict[str, Any]
    inputs: dict[str, Any]
    attempts: int
    events: int  # events so far; pass as ``after`` to the event stream to skip the history
    frames_available: int  # driving-video frames covered by the snapshot (0: none yet)
    results_available: bool
    resumable: bool
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    exit_code: int | None = None
    stage: str | None = None
    iteration: int | None = None
    total: int | None = None
    progress: float | None = None
    losses: dict[str, float | None] = field(default_factory=dict)
    elapsed_s: float | None = None
    eta_s: float | None = None
    snapshot: SnapshotInfo | None = None
    message: str | None = None
    worker_pid: int | None = None


@dataclass
class CandidateInfo:
    index: int
    seed: int
    motion_bucket: int
    chosen: bool
    num_frames: int
    fps: float
    source: str = ""
    score: dict[str, float] | None = None  # total (higher is better) and its components; None: not scored


@dataclass
class CandidateList:
    candidates: list[CandidateInfo]
    waiting: bool  # the job waits for a choice (POST .../candidates/{index}/choose)
    chosen: int | None = None
    chosen_by: str | None = None  # auto (the best score) or user


@dataclass
class JobList:
    jobs: list[JobStatus]


@dataclass
class Deleted:
    id: str
    deleted: bool = True


@dataclass
class GpuInfo:
    name: str
    memory_total_mb: int
    memory_free_mb: int
    count: int = 1


@dataclass
class ModelInfo:
    name: str
    title: str
    kind: str
    available: bool
    license: str
    gated: bool


@dataclass
class JobCounts:
    queued: int
    running: int
    total: int


@dataclass
class Health:
    status: str
    version: str
    api: str
    pid: int
    max_jobs: int
    jobs: JobCounts
    device: str | None = None  # "cuda" or "cpu"; None while the first probe runs
    gpu: GpuInfo | None = None
    torch: str | None = None
    models: list[ModelInfo] = field(default_factory=list)
    probe_error: str | None = None


@dataclass
class InputInfo:
    required: bool
    suffixes: list[str]
    max_bytes: int


@dataclass
class KindInfo:
    settings: dict[str, dict[str, Any]]  # name -> JSON-schema-like description
    inputs: dict[str, InputInfo]


@dataclass
class CameraInfo:
    c2w: list[list[float]]  # 4x4 OpenGL camera-to-world
    fovy_deg: float
    width: int
    height: int


@dataclass
class KeypointTracks:
    snapshot: SnapshotInfo
    fps: float
    frame_count: int
    time_mode: str
    times: list[float]  # normalised time of each frame
    names: list[str]
    edges: list[list[int]]
    valid: list[bool]
    positions: list[list[list[float]]]  # [frame][keypoint][x, y, z], backend world units (+Y up)
    camera: CameraInfo
    video_fps: float
    video_frames: int
    up: str = "+y"


@dataclass
class DownloadInfo:
    """A model's download (the latest one since the server started)."""

    name: str
    state: str  # starting, checking, downloading, done, failed, cancelled
    done_bytes: int
    started_at: float
    total_bytes: int | None = None
    cached_bytes: int = 0  # already on disk when it started (a resumed download)
    speed: float | None = None  # bytes/s
    eta_s: float | None = None
    error: str | None = None
    error_kind: str | None = None  # gated, disk, network, missing, other
    message: str = ""
    finished_at: float | None = None


@dataclass
class ModelEntry:
    """One model the backend can use: its licence, what of it is on disk, and its download."""

    name: str
    title: str
    kind: str  # zero123, svd, keypoints
    license: str
    license_note: str
    page_url: str
    gated: bool
    used_by: str  # which job kinds need it, in words
    state: str  # present, partial, missing
    bytes_on_disk: int
    download_bytes: int | None  # what a download fetches (about, until download_bytes_exact)
    download_bytes_exact: bool
    downloadable: bool  # False: fetched by hand (how_to_get says how)
    how_to_get: str
    repo_id: str | None = None
    description: str = ""
    source: str | None = None  # where it was found: hf-cache, $DYNAPOSE4D_..., folder
    path: str | None = None  # on the backend's machine
    download: DownloadInfo | None = None


@dataclass
class ModelList:
    models: list[ModelEntry]
    no_model_kinds: str  # which job kinds need no model at all
    cache: str  # the Hugging Face cache the downloads fill (on the backend's machine)
