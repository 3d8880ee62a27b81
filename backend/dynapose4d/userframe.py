"""The user's frame: where results go back to, by inverting the registration in one place.

An ``animate`` job registers the input PLY into the backend frame (recentred, scaled to a
sphere of radius 0.5, turned so the chosen reference view is azimuth 0; +Y up), and everything
the optimisation makes lives in that frame. A user expects the result on top of the splat it
was made from, so every product that leaves the backend (the PLY sequence and its keypoints,
the frames and keypoint tracks the server serves, the model's exports) passes through
:func:`to_user`, the one place that applies the inverse of the registration.

Two variants of the user's frame exist, and only the up axis differs:

- ``up="file"``: the input PLY's own coordinates, units and up axis (a +Z-up Blender export
  comes back +Z up). Files (``sequence/frame_*.ply``, ``sequence.json``) use it, so they open
  on top of the input in any splat viewer.
- ``up="y"``: the same place and size expressed +Y up, i.e. the file's coordinates after
  ``read_ply(up_axis=...)`` turned them +Y up. The wire to the Blender add-on uses it, because
  the add-on converts +Y-up data to Blender's +Z up (``blender_addon.format.coords``), which
  for a +Z-up file gives back exactly the file's coordinates.

For ``generate`` there is no user file: the user frame is the documented backend frame
(:meth:`UserFrame.backend`), and :func:`to_user` changes nothing.

Formula (``R`` orthonormal, ``s`` > 0, column vectors)::

    x_user_y = s * R @ x_backend + t          # backend -> user frame, +Y up
    x_user_file = U.T @ x_user_y              # U = Z_UP_TO_Y_UP for a +Z-up file, else identity
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .gaussians import Z_UP_TO_Y_UP, Gaussians, transform_gaussians

FRAME_INPUT = "input-ply"  # the input PLY's own frame (animate)
FRAME_BACKEND = "backend"  # the backend's documented frame (generate: +Y up, object within radius ~0.5)
UPS = ("file", "y")


@dataclass(frozen=True)
class UserFrame:
    """A similarity from the backend frame to the user's frame (see the module docstring).

    Attributes:
        name: :data:`FRAME_INPUT` or :data:`FRAME_BACKEND`.
        rotation: ``[3, 3]`` backend -> user (+Y up) rotation.
        scale: the user's units per backend unit.
        translation: ``[3]`` in the user's units (+Y up).
        up_axis: the input file's up axis, ``"y"`` or ``"z"``.
    """

    name: str
    rotation: tuple = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    scale: float = 1.0
    translation: tuple = (0.0, 0.0, 0.0)
    up_axis: str = "y"

    def __post_init__(self):
        r = np.asarray(self.rotation, np.float64)
        if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-5) or np.linalg.det(r) < 0:
            raise ValueError(f"UserFrame: rotation must be a proper 3x3 rotation, got {r.tolist()}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"UserFrame: scale must be positive, got {self.scale}")
        if self.up_axis not in ("y", "z"):
            raise ValueError(f"UserFrame: up_axis must be 'y' or 'z', got {self.up_axis!r}")

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def backend(cls) -> "UserFrame":
        return cls(FRAME_BACKEND)

    @classmethod
    def from_registration(cls, transform: dict, up_axis: str) -> "UserFrame":
        """The inverse of :func:`dynapose4d.pipeline.static_sources.register_gaussians`'s transform.

        Registration: ``x_reg = k * M @ (x - c)`` (``x`` the file's points turned +Y up), so
        the inverse is ``x = (1 / k) * M.T @ x_reg + c``.
        """
        m = np.asarray(transform["rotation"], np.float64)
        return cls(
            FRAME_INPUT,
            rotation=_tuple(m.T),
            scale=1.0 / float(transform["scale"]),
            translation=tuple(float(v) for v in transform["centre"]),
            up_axis=up_axis,
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "rotation": [list(r) for r in self.rotation],
            "scale": self.scale,
            "translation": list(self.translation),
            "up_axis": self.up_axis,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> "UserFrame":
        if not d:
            return cls.backend()
        return cls(d["name"], _tuple(d["rotation"]), float(d["scale"]), tuple(map(float, d["translation"])), d["up_axis"])

    # -- the map ------------------------------------------------------------------------------
    @property
    def is_identity(self) -> bool:
        return self.name == FRAME_BACKEND or (
            np.allclose(self.rotation, np.eye(3)) and self.scale == 1.0 and not any(self.translation) and self.up_axis == "y"
        )

    def up_label(self, up: str) -> str:
        """The up axis of data in variant ``up`` (``"+y"`` or ``"+z"``)."""
        _check_up(up)
        return "+z" if up == "file" and self.up_axis == "z" else "+y"

    def _rigid(self, up: str, dtype=torch.float32) -> tuple[Tensor, Tensor]:
        """``(R [3, 3], t [3])`` such that ``x_out = scale * R @ x + t`` for variant ``up``."""
        _check_up(up)
        r = torch.tensor(self.rotation, dtype=torch.float64)
        t = torch.tensor(self.translation, dtype=torch.float64)
        if up == "file" and self.up_axis == "z":
            u = Z_UP_TO_Y_UP.to(torch.float64).T  # +Y up -> the file's +Z up
            r, t = u @ r, u @ t
        return r.to(dtype), t.to(dtype)

    def gaussians(self, g: Gaussians, up: str = "file") -> Gaussians:
        """Gaussians (any batch shape) moved, turned and scaled into the user's frame."""
        r, t = self._rigid(up, g.means.dtype)
        return transform_gaussians(g, r, t, self.scale)

    def points(self, xyz: Tensor, up: str = "file") -> Tensor:
        """Points ``[..., 3]`` (keypoints) into the user's frame."""
        r, t = self._rigid(up, xyz.dtype)
        return self.scale * xyz @ r.T.to(xyz.device) + t.to(xyz.device)

    def c2w(self, c2w: Tensor, up: str = "file") -> Tensor:
        """Camera-to-world ``[..., 4, 4]`` of a backend camera, in the user's frame (same image)."""
        r, t = self._rigid(up, c2w.dtype)
        out = c2w.clone()
        out[..., :3, :3] = r @ c2w[..., :3, :3]
        out[..., :3, 3] = self.scale * c2w[..., :3, 3] @ r.T + t
        return out


def _check_up(up: str) -> None:
    if up not in UPS:
        raise ValueError(f"up must be one of {UPS}, got {up!r}")


def _tuple(m) -> tuple:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(m, np.float64))


def user_frame_of(model) -> UserFrame:
    """The user frame a 4D model records in its ``info`` (the backend frame when it has none)."""
    return UserFrame.from_dict(model.info.get("user_frame"))


def to_user(model, gaussians: Gaussians | None, keypoints: Tensor | None, up: str = "file"):
    """The one exit from the backend frame: ``model``'s samples in the user's frame.

    ``gaussians`` (any batch shape) and ``keypoints [..., 3]`` sampled from ``model`` (either may
    be None); returns them moved into the frame ``model.info["user_frame"]`` names, variant ``up``.
    """
    frame = user_frame_of(model)
    if frame.is_identity:
        return gaussians, keypoints
    g = None if gaussians is None else frame.gaussians(gaussians, up)
    k = None if keypoints is None else frame.points(keypoints, up)
    return g, k

