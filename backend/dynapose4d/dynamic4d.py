"""The 4D result: static Gaussians + a deformation, sampled at any time.

The deformation is continuous in normalised time t in [0, 1] (t = tau / (T - 1) over the driving
video), so exports are sampled at the user's frame rate and frame count, not only at the T
video frames.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .cameras import Cameras
from .deform.anchors import Anchors
from .deform.deformations import Binding, Deformation, DeformConfig, Deformed, make_deformation
from .gaussians import Gaussians

TIME_MODES = ("clamp", "loop", "pingpong")


@dataclass
class Keypoints3D:
    """Keypoint anchors of a 4D model: names, skeleton edges ``[E, 2]``, and the anchors."""

    names: tuple[str, ...]
    edges: Tensor
    anchors: Anchors


@dataclass
class Dynamic4D:
    static: Gaussians
    deform_config: DeformConfig
    deform_state: dict
    keypoints: Keypoints3D
    camera: Cameras  # the reference view (a single camera)
    video_fps: float
    num_frames: int  # T, the driving video's frame count
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self._deformation = None

    @classmethod
    def still(cls, static: Gaussians, camera: Cameras, info: dict | None = None) -> "Dynamic4D":
        """A static model shown as a 4D one (no motion, no keypoints): the static stage's snapshots."""
        dtype = static.means.dtype
        empty = Anchors(torch.zeros(0, 3, dtype=dtype), torch.zeros(0, dtype=torch.bool), Binding(torch.zeros(0, 1, dtype=torch.long), torch.zeros(0, 1, dtype=dtype)))
        config = DeformConfig(mode="still")
        state = make_deformation(static, config).state_dict()
        return cls(static, config, state, Keypoints3D((), torch.zeros(0, 2, dtype=torch.long), empty), camera, 1.0, 2, info or {})

    @property
    def duration_s(self) -> float:
        return (self.num_frames - 1) / self.video_fps

    def deformation(self) -> Deformation:
        """The deformation network, built from its saved state on first use."""
        if self._deformation is None:
            self._deformation = make_deformation(self.static, self.deform_config, self.deform_state).eval()
        return self._deformation

    def times(self, frame_count: int, fps: float, mode: str = "clamp") -> Tensor:
        """Normalised times ``[frame_count]`` of frames at ``fps`` (frame i at i / fps seconds).

        Past the clip's duration: ``clamp`` holds the last pose, ``loop`` restarts, ``pingpong``
        plays backwards.
        """
        if mode not in TIME_MODES:
            raise ValueError(f"time mode must be one of {TIME_MODES}, got {mode!r}")
        if frame_count < 1 or not fps > 0:
            raise ValueError(f"need frame_count >= 1 and fps > 0, got {frame_count} and {fps}")
        u = torch.arange(frame_count, dtype=torch.float64) / fps / self.duration_s
        if mode == "loop":
            u = torch.remainder(u, 1.0)
            # A frame that lands exactly on the end of a loop shows the end pose, not the start.
            u = torch.where((u == 0) & (torch.arange(frame_count) > 0), torch.ones_like(u), u)
        elif mode == "pingpong":
            u = 1.0 - (torch.remainder(u, 2.0) - 1.0).abs()
        return u.clamp(0.0, 1.0).to(self.static.means.dtype)

    @torch.no_grad()
    def sample(self, times: Tensor, chunk: int = 16) -> tuple[Gaussians, Tensor]:
        """Gaussians with batch shape ``[F]`` and keypoints ``[F, P, 3]`` at ``times [F]``."""
        deformation = self.deformation()
        parts, kps = [], []
        for i in range(0, len(times), chunk):
            d = deformation(self.static, times[i : i + chunk])
            parts.append(d.gaussians(self.static))
            kps.append(self.keypoints.anchors.positions(d))
        return Gaussians.cat_batch(parts), torch.cat(kps)

    @torch.no_grad()
    def sample_keypoints(self, times: Tensor, chunk: int = 64) -> Tensor:
        """Keypoints ``[F, P, 3]`` at ``times [F]`` without deforming every Gaussian."""
        anchors = self.keypoints.anchors
        return torch.cat([anchors.positions(self.handle_motion(times[i : i + chunk])) for i in range(0, len(times), chunk)])

    @torch.no_grad()
    def handle_motion(self, times: Tensor, chunk: int = 64) -> Deformed:
        """The handles' motion at ``times [F]``, evaluated ``chunk`` times at a time: the field's
        intermediates take about 1 kB per handle and time, the motion itself under 100 bytes."""
        deformation = self.deformation()
        return Deformed.cat_times([deformation.handle_motion(self.static, times[i : i + chunk]) for i in range(0, len(times), chunk)])

    # -- persistence --------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        anchors = self.keypoints.anchors
        blob = {
            "format": "dynapose4d.dynamic4d/1",
            "static": self.static.detach().tensors(),
            "deform_config": self.deform_config.to_dict(),
            "deform_state": {k: v.detach().cpu() for k, v in self.deform_state.items()},
            "keypoints": {
                "names": list(self.keypoints.names),
                "edges": self.keypoints.edges,
                "rest": anchors.rest,
                "valid": anchors.valid,
                "index": anchors.binding.index,
                "weights": anchors.binding.weights,
            },
            "camera": {"c2w": self.camera.c2w, "fovy": self.camera.fovy, "width": self.camera.width, "height": self.camera.height},
            "video_fps": self.video_fps,
            "num_frames": self.num_frames,
            "info": json.dumps(self.info),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Dynamic4D":
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != "dynapose4d.dynamic4d/1":
            raise ValueError(f"{path}: not a DynaPose4D model file")
        kp = blob["keypoints"]
        cam = blob["camera"]
        return cls(
            static=Gaussians(**blob["static"]),
            deform_config=DeformConfig.from_dict(blob["deform_config"]),
            deform_state=blob["deform_state"],
            keypoints=Keypoints3D(
                tuple(kp["names"]), kp["edges"], Anchors(kp["rest"], kp["valid"], Binding(kp["index"], kp["weights"]))
            ),
            camera=Cameras(cam["c2w"], cam["fovy"], cam["width"], cam["height"]),
            video_fps=float(blob["video_fps"]),
            num_frames=int(blob["num_frames"]),
            info=json.loads(blob["info"]),
        )


def default_frame_count(model: Dynamic4D, fps: float) -> int:
    """Frames that cover the clip once at ``fps`` (at least 2)."""
    return max(2, int(math.floor(model.duration_s * fps + 1e-6)) + 1)
