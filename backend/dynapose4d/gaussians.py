"""3D Gaussian scenes: raw parameters, activations, validation, and densification ops.

Parameters are stored unconstrained, as in 3DGS and gsplat:

    means           [..., N, 3]     world positions
    quats           [..., N, 4]     rotations, wxyz, not necessarily normalised
    log_scales      [..., N, 3]     per-axis standard deviations = exp(log_scales)
    opacity_logits  [..., N, 1]     opacity = sigmoid(opacity_logits)
    sh_dc           [..., N, 3]     degree-0 spherical-harmonic coefficients
    sh_rest         [..., N, K, 3]  higher-degree coefficients, K = (degree + 1)^2 - 1 (K may be 0)

Colour at degree 0 is ``SH_C0 * sh_dc + 0.5`` (clamped at 0 by the renderer, as gsplat does).
The leading ``...`` is an optional batch of scenes sharing N, e.g. T deformed copies of one model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from .sh import C0, rotate_sh

SH_C0 = C0  # degree-0 basis value


class GaussiansError(ValueError):
    """Invalid Gaussian parameters (shape, NaN/Inf)."""


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(sh_dc: Tensor) -> Tensor:
    return sh_dc * SH_C0 + 0.5


def sh_degree_from_rest(k: int) -> int:
    degree = int(round(math.sqrt(k + 1))) - 1
    if (degree + 1) ** 2 - 1 != k:
        raise GaussiansError(f"sh_rest holds {k} coefficients per channel; expected (degree+1)^2 - 1")
    return degree


@dataclass
class Gaussians:
    means: Tensor
    quats: Tensor
    log_scales: Tensor
    opacity_logits: Tensor
    sh_dc: Tensor
    sh_rest: Tensor | None = None

    PARAMS = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_points(
        cls,
        means: Tensor,
        rgb: Tensor,
        scale: float | Tensor = 0.01,
        opacity: float | Tensor = 0.9,
        sh_degree: int = 0,
    ) -> "Gaussians":
        """Isotropic Gaussians at ``means [..., N, 3]`` with colours ``rgb [..., N, 3]`` in [0, 1]."""
        shape = means.shape[:-1]
        kw = dict(dtype=means.dtype, device=means.device)
        scale = torch.as_tensor(scale, **kw).expand(shape)
        opacity = torch.as_tensor(opacity, **kw).clamp(1e-6, 1 - 1e-6).expand(shape)
        quats = torch.zeros(shape + (4,), **kw)
        quats[..., 0] = 1.0
        rest_k = (sh_degree + 1) ** 2 - 1
        return cls(
            means=means.clone(),
            quats=quats,
            log_scales=torch.log(scale)[..., None].expand(shape + (3,)).clone(),
            opacity_logits=torch.logit(opacity)[..., None].clone(),
            sh_dc=rgb_to_sh_dc(rgb).clone(),
            sh_rest=torch.zeros(shape + (rest_k, 3), **kw) if rest_k else None,
        )

    # -- activations --------------------------------------------------------------------
    @property
    def num(self) -> int:
        return self.means.shape[-2]

    @property
    def batch_shape(self) -> torch.Size:
        return self.means.shape[:-2]

    @property
    def sh_degree(self) -> int:
        return 0 if self.sh_rest is None else sh_degree_from_rest(self.sh_rest.shape[-2])

    @property
    def scales(self) -> Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        """``[..., N]`` opacities in (0, 1)."""
        return torch.sigmoid(self.opacity_logits[..., 0])

    @property
    def rotations(self) -> Tensor:
        """Unit quaternions (wxyz)."""
        return torch.nn.functional.normalize(self.quats, dim=-1)

    @property
    def rgb(self) -> Tensor:
        """View-independent (degree-0) colour, clamped at 0 as the renderer does."""
        return sh_dc_to_rgb(self.sh_dc).clamp_min(0.0)

    @property
    def sh_coeffs(self) -> Tensor:
        """All SH coefficients ``[..., N, (degree+1)^2, 3]`` (DC first)."""
        dc = self.sh_dc[..., None, :]
        return dc if self.sh_rest is None else torch.cat([dc, self.sh_rest], -2)

    # -- tensor plumbing ----------------------------------------------------------------
    def tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def map(self, fn) -> "Gaussians":
        """Apply ``fn`` to every parameter tensor."""
        return replace(self, **{k: fn(v) for k, v in self.tensors().items()})

    def to(self, device=None, dtype=None) -> "Gaussians":
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "Gaussians":
        return self.map(Tensor.detach)

    def clone(self) -> "Gaussians":
        return self.map(Tensor.clone)

    def requires_grad_(self, flag: bool = True) -> "Gaussians":
        for t in self.tensors().values():
            t.requires_grad_(flag)
        return self

    def select(self, index: Tensor) -> "Gaussians":
        """Subset along the Gaussian axis by a boolean mask or integer indices ``[N]``."""
        nb = len(self.batch_shape)
        return self.map(lambda t: t[(slice(None),) * nb + (index,)])

    @staticmethod
    def cat(items: list["Gaussians"]) -> "Gaussians":
        first = items[0]
        nb = len(first.batch_shape)
        out = {}
        for name in first.tensors():
            out[name] = torch.cat([getattr(g, name) for g in items], dim=nb)
        return replace(first, **out)

    @staticmethod
    def cat_batch(items: list["Gaussians"]) -> "Gaussians":
        """Concatenate scenes with batch shape [B_i, N] along the batch axis."""
        first = items[0]
        return replace(first, **{name: torch.cat([getattr(g, name) for g in items]) for name in first.tensors()})

    # -- validation ---------------------------------------------------------------------
    def validate(self) -> "Gaussians":
        """Raise :class:`GaussiansError` naming the first bad parameter; returns self."""
        lead = self.means.shape[:-1]
        if self.means.shape[-1:] != (3,):
            raise GaussiansError(f"means must be [..., N, 3], got {tuple(self.means.shape)}")
        expect = {
            "quats": lead + (4,),
            "log_scales": lead + (3,),
            "opacity_logits": lead + (1,),
            "sh_dc": lead + (3,),
        }
        for name, shape in expect.items():
            got = tuple(getattr(self, name).shape)
            if got != tuple(shape):
                raise GaussiansError(f"{name} must have shape {tuple(shape)}, got {got}")
        if self.sh_rest is not None:
            if self.sh_rest.shape[:-2] != lead or self.sh_rest.shape[-1] != 3:
                raise GaussiansError(f"sh_rest must be [..., N, K, 3], got {tuple(self.sh_rest.shape)}")
            sh_degree_from_rest(self.sh_rest.shape[-2])
        for name, t in self.tensors().items():
            bad = ~torch.isfinite(t.detach())
            if bool(bad.any()):
                n_bad = int(bad.reshape(bad.shape[: len(lead)] + (-1,)).any(-1).sum())
                raise GaussiansError(f"{name} has non-finite values (NaN or Inf) in {n_bad} Gaussian(s)")
        if self.num and bool((self.quats.detach().norm(dim=-1) < 1e-12).any()):
            raise GaussiansError("quats contains zero-length quaternions; rotations are undefined")
        return self


# -- densification ops --------------------------------------------------------------------
# Small primitive ops in the style of gsplat's strategy ops: they edit a dict of leaf
# parameters and keep the Adam state aligned (moments of new Gaussians start at zero).


def _edit_params(params: dict[str, Tensor], optimizers: dict, edit_param, edit_state):
    for name, param in list(params.items()):
        new_param = torch.nn.Parameter(edit_param(name, param.detach()), requires_grad=param.requires_grad)
        opt = optimizers.get(name)
        if opt is not None:
            for group in opt.param_groups:
                for i, p in enumerate(group["params"]):
                    if p is not param:
                        continue
                    state = opt.state.pop(p, {})
                    for key, value in list(state.items()):
                        if key != "step" and isinstance(value, Tensor) and value.shape == param.shape:
                            state[key] = edit_state(value)
                    group["params"][i] = new_param
                    opt.state[new_param] = state
        params[name] = new_param


def duplicate(params: dict[str, Tensor], optimizers: dict, mask: Tensor) -> None:
    """Append a copy of the Gaussians selected by ``mask [N]`` (3DGS 'clone')."""
    sel = torch.where(mask)[0]
    _edit_params(
        params,
        optimizers,
        lambda _, p: torch.cat([p, p[sel]]),
        lambda s: torch.cat([s, torch.zeros_like(s[sel])]),
    )


def split(params: dict[str, Tensor], optimizers: dict, mask: Tensor, generator=None, n: int = 2) -> None:
    """Replace each selected Gaussian by ``n`` smaller ones sampled inside it (3DGS 'split').

    The children's means are drawn from the parent's distribution and their scales divided by
    ``1.6`` (the 3DGS factor, a bit less than ``n`` so coverage is kept).
    """
    sel = torch.where(mask)[0]
    rest = torch.where(~mask)[0]
    means, log_scales = params["means"].detach(), params["log_scales"].detach()
    rot = quat_to_rotmat(params["quats"].detach()[sel])
    scales = torch.exp(log_scales[sel])
    noise = torch.randn((n, len(sel), 3), generator=generator, dtype=means.dtype, device=means.device)
    offsets = torch.einsum("nij,knj->kni", rot, noise * scales)
    new_means = (means[sel] + offsets).reshape(-1, 3)

    def edit_param(name, p):
        if name == "means":
            child = new_means
        elif name == "log_scales":
            child = (p[sel] - math.log(1.6)).repeat(n, *[1] * (p.dim() - 1))
        else:
            child = p[sel].repeat(n, *[1] * (p.dim() - 1))
        return torch.cat([p[rest], child])

    _edit_params(
        params,
        optimizers,
        edit_param,
        lambda s: torch.cat([s[rest], torch.zeros((n * len(sel),) + s.shape[1:], dtype=s.dtype, device=s.device)]),
    )


def remove(params: dict[str, Tensor], optimizers: dict, mask: Tensor) -> None:
    """Delete the Gaussians selected by ``mask [N]`` (3DGS 'prune')."""
    keep = torch.where(~mask)[0]
    _edit_params(params, optimizers, lambda _, p: p[keep], lambda s: s[keep])


def reset_opacity(params: dict[str, Tensor], optimizers: dict, value: float) -> None:
    """Clamp opacities to at most ``value`` and zero their Adam moments (3DGS opacity reset)."""
    cap = math.log(value / (1 - value))

    def edit_param(name, p):
        return p.clamp_max(cap) if name == "opacity_logits" else p

    only = {"opacity_logits": params["opacity_logits"]}
    _edit_params(only, optimizers, edit_param, torch.zeros_like)
    params["opacity_logits"] = only["opacity_logits"]


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` (wxyz, normalised here)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(quats.shape[:-1] + (3, 3))


def rotmat_to_quat(R: Tensor) -> Tensor:
    """Unit quaternions (wxyz, w >= 0) ``[..., 4]`` from rotation matrices ``[..., 3, 3]``."""
    m = R
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    candidates = torch.stack(
        [
            torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
        ],
        -2,
    )  # each row is 4 * q * (its largest component); pick the best-conditioned one
    best = torch.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1).argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(best.shape + (1, 4)))[..., 0, :]
    q = torch.nn.functional.normalize(q, dim=-1)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of wxyz quaternions (rotation b, then a)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def transform_gaussians(g: Gaussians, rotation: Tensor, translation: Tensor | None = None, scale: float = 1.0) -> Gaussians:
    """``x -> scale * R x + t`` applied to a scene: means, orientations, sizes and SH colours."""
    R = rotation.to(g.means)
    q = rotmat_to_quat(R).expand_as(g.quats)
    means = scale * g.means @ R.T
    if translation is not None:
        means = means + translation.to(g.means)
    rest = None if g.sh_rest is None else rotate_sh(g.sh_coeffs, R)[..., 1:, :]
    return replace(
        g,
        means=means,
        quats=quat_multiply(q, g.quats),
        log_scales=g.log_scales + math.log(scale),
        sh_rest=rest,
    )


# Blender (and most DCC tools exporting 3DGS) are +Z up; the backend is +Y up.
Z_UP_TO_Y_UP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
