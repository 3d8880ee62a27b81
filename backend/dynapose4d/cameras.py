"""Cameras and the project's geometric conventions (DESIGN.md §4), each pinned in one place.

World: right-handed, +Y up; objects fit a sphere of radius ~0.5 around the origin.

Orbit cameras (elevation e, azimuth a in degrees, radius r) look at the origin from
``(r cos e sin a, r sin e, r cos e cos a)``: positive elevation is above the object, azimuth 0
is on +Z (the input view) and azimuth 90 on +X (counter-clockwise seen from above).

Camera frames are camera-to-world matrices in the OpenGL convention (x right, y up, looking
down -Z). gsplat wants world-to-camera matrices in the OpenCV convention (x right, y down,
+Z forward): ``viewmat = diag(1, -1, -1, 1) @ inverse(c2w)``.

Pixels are continuous with the origin at the top-left image corner; the centre of pixel
(row i, column j) is at (x, y) = (j + 0.5, i + 0.5). OpenCV puts pixel centres on integers.

Depth means z-depth: the distance along the optical axis (OpenCV +Z), not along the ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_FOVY_DEG = 49.1
DEFAULT_RADIUS = 2.0
# The Consistent4D test views: same elevation and radius as the input view.
EVAL_AZIMUTHS_DEG = (-75.0, 15.0, 105.0, 195.0)

_GL_TO_CV = (1.0, -1.0, -1.0)


def orbit_c2w(
    elevation_deg: Tensor | float,
    azimuth_deg: Tensor | float,
    radius: Tensor | float = DEFAULT_RADIUS,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """OpenGL camera-to-world matrices of orbit cameras looking at the origin.

    Arguments broadcast against each other; the result is ``[..., 4, 4]``. The camera's right
    vector depends on the azimuth only, so the frame stays well defined at elevation +-90.
    """
    e, a, r = torch.broadcast_tensors(
        *(torch.as_tensor(v, dtype=dtype, device=device) for v in (elevation_deg, azimuth_deg, radius))
    )
    e, a = torch.deg2rad(e), torch.deg2rad(a)
    back = torch.stack([torch.cos(e) * torch.sin(a), torch.sin(e), torch.cos(e) * torch.cos(a)], -1)
    right = torch.stack([torch.cos(a), torch.zeros_like(a), -torch.sin(a)], -1)
    up = torch.linalg.cross(back, right)
    c2w = torch.zeros(e.shape + (4, 4), dtype=dtype, device=device)
    c2w[..., :3, 0] = right
    c2w[..., :3, 1] = up
    c2w[..., :3, 2] = back
    c2w[..., :3, 3] = back * r[..., None]
    c2w[..., 3, 3] = 1.0
    return c2w


def look_at_c2w(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """OpenGL camera-to-world matrices for cameras at ``eye [..., 3]`` looking at ``target``.

    ``up`` defaults to +Y; it must not be parallel to the viewing direction.
    """
    eye, target = torch.broadcast_tensors(eye, target)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device) if up is None else up
    back = torch.nn.functional.normalize(eye - target, dim=-1)
    right = torch.linalg.cross(up.expand_as(back), back)
    norm = right.norm(dim=-1, keepdim=True)
    if bool((norm < 1e-8).any()):
        raise ValueError("look_at: the up vector is parallel to the viewing direction; pass another `up`")
    right = right / norm
    true_up = torch.linalg.cross(back, right)
    c2w = torch.zeros(back.shape[:-1] + (4, 4), dtype=eye.dtype, device=eye.device)
    c2w[..., :3, 0], c2w[..., :3, 1], c2w[..., :3, 2], c2w[..., :3, 3] = right, true_up, back, eye
    c2w[..., 3, 3] = 1.0
    return c2w


def rigid_inverse(m: Tensor) -> Tensor:
    """Inverse of rigid 4x4 transforms ``[..., 4, 4]`` (exact, unlike a general inverse)."""
    rot_t = m[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(m)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ m[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def c2w_gl_to_viewmat_cv(c2w: Tensor) -> Tensor:
    """World-to-camera OpenCV view matrices (gsplat's ``viewmats``) from OpenGL c2w ``[..., 4, 4]``."""
    flip = torch.tensor(_GL_TO_CV + (1.0,), dtype=c2w.dtype, device=c2w.device)
    return flip[:, None] * rigid_inverse(c2w)


def focal_from_fovy(fovy_rad: Tensor | float, height: int) -> Tensor:
    """Focal length in pixels: ``fy = (H / 2) / tan(fovy / 2)``."""
    return (height / 2.0) / torch.tan(torch.as_tensor(fovy_rad) / 2.0)


def intrinsics(fovy_rad: Tensor, width: int, height: int) -> Tensor:
    """Pinhole intrinsics ``[..., 3, 3]`` from the vertical field of view, square pixels."""
    f = focal_from_fovy(fovy_rad, height)
    K = torch.zeros(f.shape + (3, 3), dtype=f.dtype, device=f.device)
    K[..., 0, 0] = f
    K[..., 1, 1] = f
    K[..., 0, 2] = width / 2.0
    K[..., 1, 2] = height / 2.0
    K[..., 2, 2] = 1.0
    return K


def pixel_centers(height: int, width: int, *, dtype=torch.float32, device=None) -> Tensor:
    """``[H, W, 2]`` (x, y) coordinates of pixel centres: pixel (i, j) -> (j + 0.5, i + 0.5)."""
    ys = torch.arange(height, dtype=dtype, device=device) + 0.5
    xs = torch.arange(width, dtype=dtype, device=device) + 0.5
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], -1)


def pixels_from_opencv(xy):
    """OpenCV puts pixel centres on integers; ours are at +0.5."""
    return xy + 0.5


def pixels_to_opencv(xy):
    return xy - 0.5


@dataclass(frozen=True)
class Cameras:
    """A batch of pinhole cameras sharing one image size.

    Attributes:
        c2w: ``[..., 4, 4]`` OpenGL camera-to-world matrices.
        fovy: ``[...]`` vertical field of view in radians.
        width, height: image size in pixels.
    """

    c2w: Tensor
    fovy: Tensor
    width: int
    height: int

    def __post_init__(self):
        if self.c2w.shape[-2:] != (4, 4):
            raise ValueError(f"Cameras: c2w must be [..., 4, 4], got {tuple(self.c2w.shape)}")
        if self.fovy.shape != self.c2w.shape[:-2]:
            raise ValueError(f"Cameras: fovy shape {tuple(self.fovy.shape)} != batch shape {tuple(self.c2w.shape[:-2])}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"Cameras: image size must be positive, got {self.width}x{self.height}")
        if not bool(torch.isfinite(self.c2w).all()) or not bool(torch.isfinite(self.fovy).all()):
            raise ValueError("Cameras: c2w and fovy must be finite")
        if bool(((self.fovy <= 0) | (self.fovy >= math.pi)).any()):
            raise ValueError("Cameras: fovy must be in (0, pi) radians")

    @classmethod
    def orbit(
        cls,
        elevation_deg,
        azimuth_deg,
        radius=DEFAULT_RADIUS,
        *,
        fovy_deg: float = DEFAULT_FOVY_DEG,
        width: int = 256,
        height: int | None = None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> "Cameras":
        c2w = orbit_c2w(elevation_deg, azimuth_deg, radius, dtype=dtype, device=device)
        fovy = torch.full(c2w.shape[:-2], math.radians(fovy_deg), dtype=dtype, device=device)
        return cls(c2w, fovy, width, width if height is None else height)

    @classmethod
    def evaluation_views(cls, *, elevation_deg: float = 0.0, radius: float = DEFAULT_RADIUS, size: int = 512, **kw):
        """The four Consistent4D evaluation views (azimuths -75, 15, 105, 195)."""
        return cls.orbit(elevation_deg, torch.tensor(EVAL_AZIMUTHS_DEG), radius, width=size, **kw)

    @property
    def batch_shape(self) -> torch.Size:
        return self.c2w.shape[:-2]

    @property
    def viewmats(self) -> Tensor:
        """``[..., 4, 4]`` OpenCV world-to-camera matrices (gsplat's ``viewmats``)."""
        return c2w_gl_to_viewmat_cv(self.c2w)

    @property
    def Ks(self) -> Tensor:
        """``[..., 3, 3]`` intrinsics (gsplat's ``Ks``)."""
        return intrinsics(self.fovy, self.width, self.height)

    @property
    def positions(self) -> Tensor:
        return self.c2w[..., :3, 3]

    def to(self, device=None, dtype=None) -> "Cameras":
        return Cameras(self.c2w.to(device, dtype), self.fovy.to(device, dtype), self.width, self.height)

    def __getitem__(self, index) -> "Cameras":
        c2w = self.c2w[index]
        return Cameras(c2w, self.fovy[index], self.width, self.height)

    def resized(self, width: int, height: int | None = None) -> "Cameras":
        """The same cameras with another image size (the vertical fov is kept)."""
        return Cameras(self.c2w, self.fovy, width, width if height is None else height)

    def world_to_camera(self, points: Tensor) -> Tensor:
        """``points [..., P, 3]`` world -> ``[..., P, 3]`` OpenCV camera coordinates."""
        vm = self.viewmats
        return points @ vm[..., :3, :3].transpose(-1, -2) + vm[..., None, :3, 3]

    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """World ``points [..., P, 3]`` -> pixels ``[..., P, 2]`` and z-depths ``[..., P]``.

        Points behind the camera get depth <= 0; their pixel coordinates are meaningless.
        """
        pc = self.world_to_camera(points)
        K = self.Ks
        z = pc[..., 2]
        x = K[..., None, 0, 0] * pc[..., 0] / z + K[..., None, 0, 2]
        y = K[..., None, 1, 1] * pc[..., 1] / z + K[..., None, 1, 2]
        return torch.stack([x, y], -1), z

    def unproject(self, pixels: Tensor, depth: Tensor) -> Tensor:
        """Pixels ``[..., P, 2]`` with z-depths ``[..., P]`` -> world points ``[..., P, 3]``."""
        K = self.Ks
        x = (pixels[..., 0] - K[..., None, 0, 2]) / K[..., None, 0, 0] * depth
        y = (pixels[..., 1] - K[..., None, 1, 2]) / K[..., None, 1, 1] * depth
        pc = torch.stack([x, y, depth], -1)
        c2w_cv = rigid_inverse(self.viewmats)
        return pc @ c2w_cv[..., :3, :3].transpose(-1, -2) + c2w_cv[..., None, :3, 3]

    def ray_directions(self) -> Tensor:
        """World-space unit ray directions through every pixel centre, ``[..., H, W, 3]``."""
        pix = pixel_centers(self.height, self.width, dtype=self.c2w.dtype, device=self.c2w.device)
        pix = pix.reshape(1, -1, 2).expand(self.batch_shape + (-1, -1)) if self.batch_shape else pix.reshape(-1, 2)
        depth = torch.ones(pix.shape[:-1], dtype=pix.dtype, device=pix.device)
        dirs = self.unproject(pix, depth) - self.positions[..., None, :]
        dirs = torch.nn.functional.normalize(dirs, dim=-1)
        return dirs.reshape(self.batch_shape + (self.height, self.width, 3))
