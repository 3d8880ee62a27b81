"""Keypoint anchors: support keypoints lifted to 3D at t = 0 and carried by the deformation.

Running a keypoint estimator on rendered frames gives no useful gradient, so (DESIGN.md §2) the
support keypoints are lifted to 3D from the reference-view depth of the static model, bound to
nearby handles (control points), moved with the same deformation, and projected back into the
reference camera. KML compares these projections with the estimator's keypoints; the 3D
trajectories are also what the Blender rig needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..cameras import Cameras
from ..gaussians import Gaussians
from ..render import render
from .deformations import Binding, Deformed, move_bound_points


@dataclass
class Anchors:
    """``rest [P, 3]`` lifted positions, ``valid [P]`` (False where the pixel hit nothing),
    and the binding to handles."""

    rest: Tensor
    valid: Tensor
    binding: Binding

    def positions(self, deformed: Deformed) -> Tensor:
        """``[F, P, 3]`` anchor positions at the deformed times."""
        return move_bound_points(deformed, self.rest, self.binding)


@torch.no_grad()
def lift_keypoints(
    static: Gaussians,
    camera: Cameras,
    pixels: Tensor,
    *,
    min_alpha: float = 0.5,
    search: int = 3,
) -> tuple[Tensor, Tensor]:
    """3D points ``[P, 3]`` under ``pixels [P, 2]`` of a single camera, and a validity mask ``[P]``.

    Depth is the rendered expected z-depth. At silhouette edges it mixes surface and background,
    so only pixels with alpha >= ``min_alpha`` are used: the keypoint's own pixel if it is solid,
    else the most opaque pixel within ``search`` pixels (then the keypoint's own (x, y) is kept
    and only that depth is borrowed).
    """
    out = render(static, camera)
    alpha, depth = out.alpha, out.depth
    H, W = alpha.shape
    col = pixels[:, 0].floor().long().clamp(0, W - 1)
    row = pixels[:, 1].floor().long().clamp(0, H - 1)
    offsets = torch.arange(-search, search + 1, device=alpha.device)
    dr, dc = torch.meshgrid(offsets, offsets, indexing="ij")
    dist = (dr**2 + dc**2).reshape(-1).to(alpha.dtype)
    rr = (row[:, None] + dr.reshape(-1)).clamp(0, H - 1)
    cc = (col[:, None] + dc.reshape(-1)).clamp(0, W - 1)
    a = alpha[rr, cc]  # [P, window]
    # Prefer the nearest solid pixel; among equally near ones, the most opaque.
    score = torch.where(a >= min_alpha, -dist + a * 0.5, torch.full_like(a, -1e9))
    best = score.argmax(1)
    ok = a.gather(1, best[:, None])[:, 0] >= min_alpha
    z = depth[rr.gather(1, best[:, None])[:, 0], cc.gather(1, best[:, None])[:, 0]]
    # A keypoint over empty background still needs a finite 3D point (it gets no weight): put it
    # at the object's median depth, or at the orbit centre's distance if nothing was rendered.
    solid = depth[alpha >= min_alpha]
    fallback = solid.median() if solid.numel() else camera.c2w[:3, 3].norm()
    z = torch.where(ok, z, fallback)
    points = camera.unproject(pixels.to(alpha.dtype), z)
    return points, ok


def make_anchors(static: Gaussians, camera: Cameras, pixels: Tensor, handles_rest: Tensor, k: int = 4) -> Anchors:
    points, valid = lift_keypoints(static, camera, pixels)
    return Anchors(points, valid, Binding.nearest(points, handles_rest, k))
