"""Procedural articulated objects with known motion: the demo's and the ablation's ground truth.

An object is a small kinematic chain of rigid parts (boxes and a sphere) covered by flat
Gaussians with a trackable procedural texture. Each joint rotates about a fixed axis by an angle
that is a smooth function of normalised time t in [0, 1], so every Gaussian's (and any attached
point's) true position is known at every t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..gaussians import Gaussians, quat_multiply, rgb_to_sh_dc, rotmat_to_quat


@dataclass
class Part:
    name: str
    parent: int  # -1 for the root
    joint: tuple[float, float, float]  # rest position of the joint (world)
    axis: tuple[float, float, float]  # rotation axis (world, at rest)
    angle: Callable[[Tensor], Tensor]  # radians as a function of t [F]


@dataclass
class ArticulatedObject:
    static: Gaussians  # the rest pose, which is also the pose at t = 0
    part_of: Tensor  # [N] part index of every Gaussian
    parts: list[Part]

    def part_transforms(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """World transforms of every part at times ``t [F]``: ``R [F, P, 3, 3]``, ``shift [F, P, 3]``
        mapping rest positions x to ``R x + shift``."""
        dtype = self.static.means.dtype
        rots, shifts = [], []
        for part in self.parts:
            axis = torch.tensor(part.axis, dtype=dtype)
            axis = axis / axis.norm()
            R_local = _axis_angle(axis, part.angle(t).to(dtype))  # [F, 3, 3]
            j = torch.tensor(part.joint, dtype=dtype)
            # Rotate about the joint: x -> R (x - j) + j, then the parent's transform.
            s_local = j - (R_local @ j)
            if part.parent < 0:
                rots.append(R_local)
                shifts.append(s_local)
            else:
                Rp, sp = rots[part.parent], shifts[part.parent]
                rots.append(Rp @ R_local)
                shifts.append((Rp @ s_local[..., None])[..., 0] + sp)
        return torch.stack(rots, 1), torch.stack(shifts, 1)

    def move_points(self, points: Tensor, part_ids: Tensor, t: Tensor) -> Tensor:
        """Positions ``[F, K, 3]`` of rest ``points [K, 3]`` attached to ``part_ids [K]``."""
        R, s = self.part_transforms(t)
        return (R[:, part_ids] @ points[None, ..., None])[..., 0] + s[:, part_ids]

    def gaussians_at(self, t: Tensor) -> Gaussians:
        """The true scene at times ``t [F]`` (batch shape [F])."""
        R, _ = self.part_transforms(t)
        g = self.static
        f = t.shape[0]
        q = rotmat_to_quat(R)[:, self.part_of]  # [F, N, 4]
        return Gaussians(
            means=self.move_points(g.means, self.part_of, t),
            quats=quat_multiply(q, g.quats[None].expand(f, -1, -1)),
            log_scales=g.log_scales[None].expand(f, -1, -1),
            opacity_logits=g.opacity_logits[None].expand(f, -1, -1),
            sh_dc=g.sh_dc[None].expand(f, -1, -1),
        )

    def nearest_part(self, points: Tensor) -> Tensor:
        """The part of the nearest Gaussian to each point (to attach lifted keypoints)."""
        return self.part_of[torch.cdist(points, self.static.means).argmin(1)]


# -- the motions ---------------------------------------------------------------------------------
# Joint angles over t in [0, 1]. "lamp" is the demo: a lamp-like arm that lifts, turns its base
# slightly out of the image plane, and nods. The ablation adds a fast swing and a slow bend.
MOTIONS = {
    "lamp": {
        "base_turn": lambda t: 0.35 * torch.sin(math.pi * t),
        "lower": lambda t: 0.55 * torch.sin(math.pi * t),
        "upper": lambda t: -0.9 * torch.sin(math.pi * t),
        "head": lambda t: 0.6 * torch.sin(2 * math.pi * t),
    },
    "swing": {
        "base_turn": lambda t: 0.0 * t,
        "lower": lambda t: 0.5 * torch.sin(4 * math.pi * t),
        "upper": lambda t: 0.5 * torch.sin(4 * math.pi * t + 1.0),
        "head": lambda t: 0.0 * t,
    },
    "bend": {
        "base_turn": lambda t: 0.2 * t,
        "lower": lambda t: 0.35 * t,
        "upper": lambda t: -0.7 * t,
        "head": lambda t: 0.4 * t,
    },
}


def make_articulated(motion: str = "lamp", n: int = 4000, seed: int = 0) -> ArticulatedObject:
    """A base, two arm links and a head (about 0.9 units tall), ``n`` Gaussians in all."""
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose one of {', '.join(MOTIONS)}")
    gen = torch.Generator().manual_seed(seed)
    angles = MOTIONS[motion]
    parts = [
        Part("base", -1, (0.0, -0.38, 0.0), (0.0, 1.0, 0.0), angles["base_turn"]),
        Part("lower", 0, (0.0, -0.33, 0.0), (0.0, 0.0, 1.0), angles["lower"]),
        Part("upper", 1, (0.0, 0.02, 0.0), (0.0, 0.0, 1.0), angles["upper"]),
        Part("head", 2, (0.0, 0.3, 0.0), (1.0, 0.0, 0.0), angles["head"]),
    ]
    # (part, shape, centre, size or radius, colour), sized by surface area
    shapes = [
        (0, "box", (0.0, -0.4, 0.0), (0.42, 0.08, 0.3), (0.85, 0.35, 0.2)),
        (1, "box", (0.0, -0.155, 0.0), (0.08, 0.35, 0.08), (0.2, 0.45, 0.85)),
        (2, "box", (0.0, 0.16, 0.0), (0.07, 0.28, 0.07), (0.25, 0.7, 0.3)),
        (3, "sphere", (0.0, 0.36, 0.02), 0.1, (0.9, 0.8, 0.2)),
    ]
    areas = torch.tensor([_area(s) for s in shapes])
    counts = torch.floor(areas / areas.sum() * n).long()
    counts[0] += n - counts.sum()
    means, normals, part_of, colours, spacing = [], [], [], [], []
    for (part, kind, centre, size, colour), k in zip(shapes, counts.tolist()):
        p, nrm = _sample_surface(kind, centre, size, k, gen)
        means.append(p)
        normals.append(nrm)
        part_of.append(torch.full((k,), part))
        colours.append(_texture(p - torch.tensor(centre), torch.tensor(colour)))
        spacing.append(torch.full((k,), math.sqrt(_area((part, kind, centre, size, colour)) / k)))
    means, normals, colours, spacing = (torch.cat(x) for x in (means, normals, colours, spacing))
    # Flat Gaussians lying in the surface: in-plane scale from the sample spacing.
    log_scales = torch.log(torch.stack([0.6 * spacing, 0.6 * spacing, 0.1 * spacing], -1))
    static = Gaussians(
        means=means,
        quats=_quat_z_to(normals),
        log_scales=log_scales,
        opacity_logits=torch.full((n, 1), 3.0),
        sh_dc=rgb_to_sh_dc(colours),
    )
    return ArticulatedObject(static, torch.cat(part_of), parts)


def _area(shape) -> float:
    _, kind, _, size, _ = shape
    if kind == "sphere":
        return 4 * math.pi * size**2
    a, b, c = size
    return 2 * (a * b + b * c + a * c)


def _sample_surface(kind, centre, size, k, gen) -> tuple[Tensor, Tensor]:
    centre = torch.tensor(centre)
    if kind == "sphere":
        d = torch.nn.functional.normalize(torch.randn(k, 3, generator=gen), dim=-1)
        return centre + size * d, d
    half = torch.tensor(size) / 2
    face_areas = torch.tensor([size[1] * size[2], size[0] * size[2], size[0] * size[1]]).repeat_interleave(2)
    face = torch.multinomial(face_areas, k, replacement=True, generator=gen)
    u = torch.rand(k, 3, generator=gen) * 2 - 1
    axis = face // 2
    sign = (face % 2) * 2 - 1
    u[torch.arange(k), axis] = sign.float()
    normal = torch.zeros(k, 3)
    normal[torch.arange(k), axis] = sign.float()
    return centre + u * half, normal


def _texture(local: Tensor, colour: Tensor) -> Tensor:
    """A high-contrast procedural pattern (checks plus stripes) so points can be tracked."""
    c = torch.floor(local / 0.045).long().sum(-1) % 2
    stripe = 0.5 + 0.5 * torch.sin(local @ torch.tensor([37.0, 23.0, 29.0]))
    shade = 0.45 + 0.4 * c.float() + 0.15 * stripe
    return (colour[None] * shade[:, None]).clamp(0, 1)


def _quat_z_to(normals: Tensor) -> Tensor:
    """Quaternions rotating +Z onto ``normals [N, 3]``."""
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normals)
    axis = torch.linalg.cross(z, normals)
    s = axis.norm(dim=-1, keepdim=True)
    c = (z * normals).sum(-1, keepdim=True)
    angle = torch.atan2(s, c)
    axis = torch.where(s > 1e-8, axis / s.clamp_min(1e-12), torch.tensor([1.0, 0.0, 0.0]))
    return torch.cat([torch.cos(angle / 2), axis * torch.sin(angle / 2)], -1)


def _axis_angle(axis: Tensor, angle: Tensor) -> Tensor:
    """Rotation matrices ``[F, 3, 3]`` about a unit ``axis [3]`` by ``angle [F]`` (Rodrigues)."""
    K = torch.zeros(3, 3, dtype=axis.dtype)
    K[0, 1], K[0, 2], K[1, 0], K[1, 2], K[2, 0], K[2, 1] = -axis[2], axis[1], axis[2], -axis[0], -axis[1], axis[0]
    a = angle[:, None, None]
    eye = torch.eye(3, dtype=axis.dtype)
    return eye + torch.sin(a) * K + (1 - torch.cos(a)) * (K @ K)
