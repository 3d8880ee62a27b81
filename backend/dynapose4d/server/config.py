"""The server's settings in one plain object, filled by ``dynapose4d serve`` (or by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..video.frame_folder import FrameZipLimits

MIB = 1024 * 1024


@dataclass
class UploadLimits:
    """Byte limits, enforced while the request body streams in.

    Each file is also capped by ``max_request_bytes``. The class of a file comes from its suffix
    (images, videos, JSON, PLY); any other suffix is capped by the request limit only.
    """

    max_request_bytes: int = 2048 * MIB
    image_bytes: int = 64 * MIB
    video_bytes: int = 1024 * MIB
    json_bytes: int = 1 * MIB
    ply_bytes: int = 2048 * MIB
    field_bytes: int = 64 * 1024  # a text field (kind, settings)
    max_parts: int = 16
    # 25 Mpx: a 6000x4000 camera photo passes; the pipeline resizes to 256-1024 px anyway, and
    # a bigger image only costs decode time and memory (issue 13: 7000x7000 took 2-4 s, 1 GB).
    max_image_pixels: int = 25_000_000
    max_file_checks: int = 2  # uploads whose files are decoded and checked at the same time
    frame_zip: FrameZipLimits = field(default_factory=FrameZipLimits)  # a zip of frames: members, bytes, ratio


@dataclass
class ServerConfig:
    jobs_dir: Path
    token: str
    host: str = "127.0.0.1"
    port: int = 0  # the bound port (0 until bound)
    max_jobs: int = 1  # jobs running at once; 0 accepts and queues jobs without running them
    cancel_grace_s: float = 1.5  # a worker that has not stopped by then is killed
    orphan_timeout_s: float = 10.0  # a worker whose server is gone exits after this at the latest
    extra_hosts: tuple[str, ...] = ()  # Host names accepted besides loopback (--allow-remote only)
    limits: UploadLimits = field(default_factory=UploadLimits)
    frame_cache_bytes: int = 256 * MIB
    work_memory_bytes: int = 1024 * MIB  # what one frames/keypoints/mesh request may allocate (limits.py); more is 413
    poll_interval_s: float = 0.01  # how often running workers' event files are read
    auto_resume: bool = True  # queue interrupted jobs again when the server starts
    header_timeout_s: float = 10.0  # a connection that has not sent its request head by then is closed
    body_timeout_s: float = 30.0  # a request body that stalls this long is dropped (408)
    executor: str = "local"  # where workers run: "local" (child processes) or "ray" (executors.py)
    ray_address: str | None = None  # --executor ray: "auto", "ray://head:10001", "local", or host:port
