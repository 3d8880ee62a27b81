"""Frames and keypoint trajectories sampled from a job's latest snapshot model.

The worker saves each snapshot as a whole 4D model (``snapshots/latest.pt``); the deformation is
continuous in time, so a client asks for frame ``index`` of ``frame_count`` frames at ``fps``
(its scene's frame rate), not for one of the T training frames. The loaded model is cached per
job and reloaded when the file changes; encoded frames are cached (bounded by bytes) because a
client typically fetches a sequence, and a re-fetch after a reconnect should be free.

Blocking (torch) work: call these from a worker thread, not from the event loop.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.job_folder import JobFolder
from ..userframe import to_user, user_frame_of
from .limits import MIB, check_keypoints, frames_to_sample
from .wire import encode_frame

MAX_FRAME_COUNT = 10_000
MAX_FPS = 1000.0
MIN_FPS = 0.01  # one frame per 100 s; anything slower makes frame times overflow to infinity


def default_fps(video_fps: float) -> float:
    """The frame rate a request without ``fps`` samples at: the driving video's, within
    [MIN_FPS, MAX_FPS] (a 10-hour clip sampled at 14 frames runs at 4e-4 fps; its result is still
    fetched, at MIN_FPS)."""
    if not (isinstance(video_fps, (int, float)) and math.isfinite(video_fps) and video_fps > 0):
        return 1.0
    return min(MAX_FPS, max(MIN_FPS, float(video_fps)))


class NoSnapshot(LookupError):
    pass


class SnapshotGone(Exception):
    """The client asked for a snapshot version that has been replaced by a newer one."""


class BadFrameRequest(ValueError):
    pass


@dataclass
class _Loaded:
    stamp: tuple
    model: object  # Dynamic4D
    snapshot: dict  # {"version", "iteration", "stage"}


class SnapshotFrames:
    def __init__(self, max_models: int = 4, frame_cache_bytes: int = 256 * 2**20, frames_ahead: int = 8, work_bytes: int = 1024 * MIB):
        self.max_models = max_models
        self.work_bytes = work_bytes  # the memory one request may use (limits.py)
        self.frames_ahead = frames_ahead
        self.frame_cache_bytes = frame_cache_bytes
        self._models: OrderedDict[str, _Loaded] = OrderedDict()
        self._frames: OrderedDict[tuple, bytes] = OrderedDict()
        self._frame_bytes = 0
        self._lock = threading.Lock()  # guards the two caches
        self._load_lock = threading.Lock()

    # -- the model -----------------------------------------------------------------------------
    def load(self, job_id: str, job_dir: Path) -> _Loaded:
        from ..dynamic4d import Dynamic4D

        path = JobFolder(job_dir).snapshot
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NoSnapshot("this job has no snapshot yet; wait for a 'snapshot' event") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cached_model(job_id, stamp)
        if cached is not None:
            return cached
        # One load at a time: two requests for a new snapshot must not both build the model
        # (building the deformation at 100k Gaussians takes a second or two).
        with self._load_lock:
            cached = self._cached_model(job_id, stamp)
            if cached is not None:
                return cached
            model = Dynamic4D.load(path)
            model.deformation()  # build the deformation network now, not in a concurrent first sample
            loaded = _Loaded(stamp, model, dict(model.info.get("snapshot") or {}))
            with self._lock:
                self._models[job_id] = loaded
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
        return loaded

    def _cached_model(self, job_id: str, stamp: tuple) -> _Loaded | None:
        with self._lock:
            cached = self._models.get(job_id)
            if cached is None or cached.stamp != stamp:
                return None
            self._models.move_to_end(job_id)
            return cached

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._models.pop(job_id, None)
            for key in [k for k in self._frames if k[0] == job_id]:
                self._frame_bytes -= len(self._frames.pop(key))

    # -- requests ------------------------------------------------------------------------------
    def request(self, job_id: str, job_dir: Path, version: int | None, fps: float | None, frame_count: int | None,
                mode: str) -> tuple[_Loaded, float, int]:
        """What every snapshot request starts with: the latest snapshot (checked against the
        ``version`` the client asked for) and the fps and frame count to sample it at."""
        loaded = self.load(job_id, job_dir)
        self._check_version(loaded, version)
        fps, frame_count = self._timing(loaded.model, fps, frame_count, mode)
        return loaded, fps, frame_count

    @staticmethod
    def _timing(model, fps: float | None, frame_count: int | None, mode: str) -> tuple[float, int]:
        from ..dynamic4d import TIME_MODES, default_frame_count

        fps = default_fps(model.video_fps) if fps is None else fps
        if not (MIN_FPS <= fps <= MAX_FPS):
            raise BadFrameRequest(f"fps must be in [{MIN_FPS:g}, {MAX_FPS:g}], got {fps}")
        if frame_count is None:  # the clip once, or as much of a long clip as one request may ask for
            span = model.duration_s * fps
            frame_count = MAX_FRAME_COUNT if not math.isfinite(span) or span >= MAX_FRAME_COUNT else default_frame_count(model, fps)
        if not 1 <= frame_count <= MAX_FRAME_COUNT:
            raise BadFrameRequest(f"frame_count must be within 1..{MAX_FRAME_COUNT}, got {frame_count}")
        if mode not in TIME_MODES:
            raise BadFrameRequest(f"mode must be one of {', '.join(TIME_MODES)}, got {mode!r}")
        return fps, frame_count

    def frame(
        self,
        job_id: str,
        job_dir: Path,
        index: int,
        *,
        fps: float | None = None,
        frame_count: int | None = None,
        mode: str = "clamp",
        dtype: str = "float32",
        version: int | None = None,
    ) -> tuple[bytes, dict]:
        """The encoded frame and its snapshot info."""
        loaded, fps, frame_count = self.request(job_id, job_dir, version, fps, frame_count, mode)
        if not 0 <= index < frame_count:
            raise BadFrameRequest(f"frame index {index} is outside 0..{frame_count - 1} (frame_count={frame_count})")
        sequence = (job_id, loaded.snapshot.get("version"), loaded.stamp, float(fps), frame_count, mode, dtype)
        with self._lock:
            data = self._frames.get((*sequence, index))
            if data is not None:
                self._frames.move_to_end((*sequence, index))
                return data, loaded.snapshot
            # A client walking a sequence in order (frame 0, or the one before this is cached) gets
            # this frame and the next few sampled together, ready for its next requests.
            walking = index == 0 or (*sequence, index - 1) in self._frames
            stop = min(index + self.frames_ahead, frame_count) if walking else index + 1
            ahead = [i for i in range(index, stop) if (*sequence, i) not in self._frames]
        ahead = ahead[: frames_to_sample(loaded.model.static.num, len(ahead), self.work_bytes)]
        encoded = self._encode(loaded, ahead, fps, frame_count, mode, dtype)
        with self._lock:
            for i, blob in zip(ahead, encoded):
                key = (*sequence, i)
                if key not in self._frames and len(blob) <= self.frame_cache_bytes:
                    self._frames[key] = blob
                    self._frame_bytes += len(blob)
            while self._frame_bytes > self.frame_cache_bytes:
                self._frame_bytes -= len(self._frames.popitem(last=False)[1])
        return encoded[0], loaded.snapshot

    @staticmethod
    def _check_version(loaded: _Loaded, version: int | None) -> None:
        current = loaded.snapshot.get("version")
        if version is not None and version != current:
            raise SnapshotGone(f"snapshot version {version} has been replaced; the latest is {current} (fetch its frames instead)")

    @staticmethod
    def _encode(loaded: _Loaded, indices: list[int], fps: float, frame_count: int, mode: str, dtype: str) -> list[bytes]:
        import torch

        model = loaded.model
        times = model.times(frame_count, fps, mode)
        picked = torch.as_tensor(indices)
        # Cast before numpy, whose float16 conversion is several times slower than torch's.
        wire = {"float32": torch.float32, "float16": torch.float16}.get(dtype, torch.float32)
        with torch.no_grad():
            # In the user's frame, +Y up: the add-on turns +Y up into Blender's +Z (userframe.py).
            g, keypoints = to_user(model, *model.sample(times[picked]), up="y")
            first = g.map(lambda t: t[0])  # opacity and colour do not move: convert them once
            fields = {"positions": g.means, "rotations": g.rotations, "scales": g.scales}
            fields = {k: v.to(wire).numpy() for k, v in fields.items()}
            still = {"opacities": first.opacities.to(wire).numpy(), "colors": first.rgb.clamp(0.0, 1.0).to(wire).numpy()}
            # View-dependent colour does not move either: sent once, with frame 0 (wire 1.1).
            sh_rest = None if first.sh_rest is None else first.sh_rest.to(wire).numpy()
            keypoints = keypoints.float().numpy()
        out = []
        for row, index in enumerate(indices):
            meta = {
                "frame": {
                    "index": index,
                    "frame_count": frame_count,
                    "fps": fps,
                    "time_mode": mode,
                    "seconds": index / fps,
                    "time": float(times[index]),
                },
                "snapshot": loaded.snapshot,
                "up": "+y",
                "coordinates": user_frame_of(model).name,
            }
            arrays = {**{k: v[row] for k, v in fields.items()}, **still, "keypoints": keypoints[row]}
            if index == 0:
                arrays["sh_rest"] = sh_rest
            out.append(encode_frame(arrays, dtype=dtype, meta=meta))
        return out

    def keypoints(
        self,
        job_id: str,
        job_dir: Path,
        *,
        fps: float | None = None,
        frame_count: int | None = None,
        mode: str = "clamp",
        version: int | None = None,
    ) -> dict:
        """All keypoint trajectories and the skeleton, as JSON-ready data."""
        import torch

        loaded, fps, frame_count = self.request(job_id, job_dir, version, fps, frame_count, mode)
        model = loaded.model
        check_keypoints(frame_count, len(model.keypoints.names), len(model.deformation().handles_rest), self.work_bytes)
        times = model.times(frame_count, fps, mode)
        with torch.no_grad():
            _, positions = to_user(model, None, model.sample_keypoints(times), up="y")  # the handles' motion only
        kp = model.keypoints
        cam = model.camera
        return {
            "snapshot": loaded.snapshot,
            "fps": fps,
            "frame_count": frame_count,
            "time_mode": mode,
            "times": [round(float(t), 6) for t in times],
            "names": list(kp.names),
            "edges": np.asarray(kp.edges).tolist(),
            "valid": [bool(v) for v in kp.anchors.valid.tolist()],
            "positions": np.round(positions.float().cpu().numpy(), 6).tolist(),
            "camera": {
                "c2w": np.asarray(user_frame_of(model).c2w(cam.c2w, up="y")).reshape(4, 4).tolist(),
                "fovy_deg": float(np.degrees(float(cam.fovy))),
                "width": int(cam.width),
                "height": int(cam.height),
            },
            "video_fps": model.video_fps,
            "video_frames": model.num_frames,
            "up": "+y",
            "coordinates": user_frame_of(model).name,
        }
