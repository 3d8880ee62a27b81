"""Deformation models phi(S, t): static Gaussians S -> Gaussians at normalised time t in [0, 1].

Two models share one output type, :class:`Deformed`:

- :class:`ControlDeformation` (default): M control points sampled from the static Gaussians
  (farthest-point sampling weighted by opacity) each get a rigid transform and a log-scale change
  per t from a HexPlane + MLP; dense Gaussians follow by linear blend skinning over their K
  nearest control points with learnable weights. Rotations compose, scales change.
- :class:`PerGaussianDeformation`: DG4D's baseline, a HexPlane + MLP evaluated at every Gaussian
  predicting its own offset, rotation and scale change.

Both expose *handles* (control points, or a fixed subset of Gaussians for the baseline) with
rest positions and per-t rigid transforms: keypoint anchors ride on them and SCL penalises their
motion. Output heads start at zero, so both models start at the static pose.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..gaussians import Gaussians, quat_multiply, quat_to_rotmat
from . import skinning_numba
from .hexplane import HexPlane, HexPlaneConfig


@dataclass
class DeformConfig:
    mode: str = "control"  # "control" (ours), "per_gaussian" (DG4D baseline), "still" (no motion)
    num_controls: int = 512  # M (the paper's value); also the handle count of the baseline
    knn: int = 4  # control points blended per Gaussian
    hidden: int = 64
    hexplane: HexPlaneConfig = field(default_factory=HexPlaneConfig)
    bound: float = 1.0  # half-size of the region the field covers (objects fit radius ~0.5)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DeformConfig":
        d = dict(d)
        hp = d.pop("hexplane", {})
        if "spatial_res" in hp:
            hp["spatial_res"] = tuple(hp["spatial_res"])
        return cls(hexplane=HexPlaneConfig(**hp), **d)


@dataclass
class Deformed:
    """Gaussians and handles at F times.

    means/quats/log_scales [F, N, 3|4|3] (opacity and colour stay those of the static model);
    handles [F, M, 3] handle positions; handle_rot [F, M, 3, 3]; handle_shift [F, M, 3] such
    that a point x bound to handle j moves to ``handle_rot_j (x - rest_j) + rest_j + handle_shift_j``.
    The dense fields are None when only the handles were evaluated (``handle_motion``).
    """

    means: Tensor | None
    quats: Tensor | None
    log_scales: Tensor | None
    handles: Tensor
    handle_rot: Tensor
    handle_shift: Tensor
    handle_quat: Tensor | None = None
    handle_scale: Tensor | None = None

    def select_times(self, index: Tensor) -> "Deformed":
        """The same motion at a subset of its times."""
        return Deformed(*(None if v is None else v[index] for v in (
            self.means, self.quats, self.log_scales, self.handles, self.handle_rot,
            self.handle_shift, self.handle_quat, self.handle_scale,
        )))

    @staticmethod
    def cat_times(parts: list["Deformed"]) -> "Deformed":
        """One motion from motions at consecutive runs of times (the inverse of :meth:`select_times`)."""
        fields = ("means", "quats", "log_scales", "handles", "handle_rot", "handle_shift", "handle_quat", "handle_scale")
        return Deformed(*(None if getattr(parts[0], f) is None else torch.cat([getattr(p, f) for p in parts]) for f in fields))

    def gaussians(self, static: Gaussians) -> Gaussians:
        """The deformed scene as a batch of F Gaussian sets (for the renderer or export)."""
        f = self.means.shape[0]

        def expand(t):
            return None if t is None else t.unsqueeze(0).expand((f,) + t.shape)

        return Gaussians(
            means=self.means,
            quats=self.quats,
            log_scales=self.log_scales,
            opacity_logits=expand(static.opacity_logits),
            sh_dc=expand(static.sh_dc),
            sh_rest=expand(static.sh_rest),
        )


def farthest_point_sample(points: Tensor, count: int, weights: Tensor | None = None) -> Tensor:
    """Indices ``[count]`` of well-spread points; ``weights [N]`` (e.g. opacities) favour heavy points.

    Greedy: start at the heaviest point, then repeatedly take the point maximising
    ``weight * distance to the chosen set``.
    """
    n = points.shape[0]
    count = min(count, n)
    w = torch.ones(n, dtype=points.dtype, device=points.device) if weights is None else weights.detach()
    pts = points.detach()
    chosen = torch.empty(count, dtype=torch.long, device=points.device)
    chosen[0] = torch.argmax(w)
    dist = (pts - pts[chosen[0]]).norm(dim=-1)
    for i in range(1, count):
        chosen[i] = torch.argmax(dist * w)
        dist = torch.minimum(dist, (pts - pts[chosen[i]]).norm(dim=-1))
    return chosen


def axis_angle_to_quat(v: Tensor) -> Tensor:
    """wxyz quaternions ``[..., 4]`` of rotations by ``|v|`` about ``v / |v|``; smooth at 0."""
    angle = v.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    # sin(a/2)/a, with its Taylor expansion near 0 so gradients stay finite.
    k = torch.where(angle > 1e-4, torch.sin(half) / angle.clamp_min(1e-12), 0.5 - angle * angle / 48.0)
    return torch.cat([torch.cos(half), v * k], -1)


def skin_torch(maps: Tensor, knn: Tensor, logits: Tensor, means: Tensor, quats: Tensor, log_scales: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Linear blend skinning in PyTorch (any device): :func:`skinning_numba.skin`'s contract.

    Everything blended is linear in the weights: one gather of the controls' 19 numbers
    (index_select, whose backward is an index_add; fancy indexing's is a much slower
    accumulating index_put on the CPU) and one weighted sum.
    """
    f = maps.shape[0]
    n, k = knn.shape
    w = torch.softmax(logits, -1)  # [N, K]
    gathered = maps.index_select(1, knn.reshape(-1)).reshape(f, n, k, skinning_numba.MAP_COLUMNS)
    blended = torch.einsum("nk,fnkc->fnc", w, gathered)  # [F, N, 19]
    R_blend, offset_blend, q_blend, dscale_blend = blended.split((9, 3, 4, 3), -1)
    # A broadcast multiply-add, not a batched 3x3 matmul (slow for tiny matrices on the CPU).
    moved = (R_blend.reshape(f, n, 3, 3) * means[None, :, None, :]).sum(-1) + offset_blend
    q_blend = torch.nn.functional.normalize(q_blend, dim=-1)
    return moved, quat_multiply(q_blend, quats.unsqueeze(0).expand(f, -1, -1)), log_scales[None] + dscale_blend


def _mlp(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())


def _zero_head(hidden: int, out: int) -> nn.Linear:
    head = nn.Linear(hidden, out)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head


class _FieldMLP(nn.Module):
    """HexPlane features -> (translation, rotation, log-scale change); zero heads at start."""

    def __init__(self, config: DeformConfig):
        super().__init__()
        hp = HexPlaneConfig(**{**asdict(config.hexplane), "bound": config.bound})
        hp.spatial_res = tuple(hp.spatial_res)
        self.field = HexPlane(hp)
        self.mlp = _mlp(self.field.out_dim, config.hidden)
        self.head_shift = _zero_head(config.hidden, 3)
        self.head_rot = _zero_head(config.hidden, 3)
        self.head_scale = _zero_head(config.hidden, 3)

    def forward(self, xyz: Tensor, t: Tensor):
        """``xyz [M, 3]``, ``t [F]`` -> shift ``[F, M, 3]``, rotation quaternion ``[F, M, 4]``,
        log-scale change ``[F, M, 3]``, all relative to t = 0.

        The static model is the pose of frame 0 (the support frame), so the deformation is
        pinned to the identity there. Without this the whole model can slide in depth at every t
        at once, which no loss on the reference view or on motion (SCL, ARAP) can see.
        """
        tt = torch.cat([torch.zeros_like(t[:1]), t])
        h = self.mlp(self.field.forward_grid(xyz, tt))
        shift, rot, scale = self.head_shift(h), axis_angle_to_quat(self.head_rot(h)), self.head_scale(h)
        q0_inv = rot[:1] * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=rot.dtype, device=rot.device)
        return shift[1:] - shift[:1], quat_multiply(rot[1:], q0_inv), scale[1:] - scale[:1]


class Deformation(nn.Module):
    """What the dynamic stage and the 4D result need of a deformation phi(S, t).

    - ``forward(static, t [F]) -> Deformed``: the dense Gaussians (and handles) at times ``t``;
    - ``handles_rest [M, 3]`` and ``handle_motion(static, t)``: the handles keypoint anchors ride
      on and SCL/ARAP act on;
    - ``frames_and_handles(static, all_t, frame_ids)``: one training step's dense frames and the
      handles at every frame;
    - ``parameter_groups()``: trainable parameters by name (``"grid"``, ``"mlp"``, ``"skin"``);
      the stage gives each group the learning rate ``lr_<name>`` of its config;
    - ``regularizers()``: the named loss terms the deformation itself offers (``loss_tv``).
    """

    trainable = True

    @property
    def handles_rest(self) -> Tensor:
        raise NotImplementedError

    def handle_motion(self, static: Gaussians, t: Tensor) -> Deformed:
        raise NotImplementedError

    def frames_and_handles(self, static: Gaussians, all_t: Tensor, frame_ids: Tensor) -> tuple[Deformed, Deformed]:
        return self(static, all_t[frame_ids]), self.handle_motion(static, all_t)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {}

    def regularizers(self) -> dict[str, Tensor]:
        return {}


class _FieldDeformation(Deformation):
    """A deformation driven by a HexPlane + MLP field (``self.net``)."""

    net: _FieldMLP

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {
            "grid": list(self.net.field.parameters()),
            "mlp": [p for n, p in self.net.named_parameters() if not n.startswith("field.")],
        }

    def regularizers(self) -> dict[str, Tensor]:
        return {"loss_tv": self.net.field.tv_loss()}


class ControlDeformation(_FieldDeformation):
    """Control points + linear blend skinning (the default model)."""

    def __init__(self, static: Gaussians, config: DeformConfig = DeformConfig(), saved: dict | None = None):
        super().__init__()
        self.config = config
        if saved is not None:  # the layout is in the saved state; load_state_dict fills in the rest
            controls, idx, knn = saved["controls"], saved["control_index"], saved["knn"]
            logits = torch.empty_like(saved["skin_logits"])
        else:
            means = static.means.detach()
            idx = farthest_point_sample(means, config.num_controls, static.opacities.detach())
            controls = means[idx].clone()
            k = min(config.knn, len(idx))
            dist, knn = torch.cdist(means, controls).topk(k, dim=1, largest=False)
            spacing = torch.cdist(controls, controls).topk(min(2, len(idx)), largest=False).values[:, -1].median()
            logits = -(dist**2) / (2 * spacing.clamp_min(1e-4) ** 2)
        self.register_buffer("controls", controls)  # [M, 3] rest positions
        self.register_buffer("control_index", idx)  # which static Gaussians they came from
        self.register_buffer("knn", knn)  # [N, K]
        self.skin_logits = nn.Parameter(logits)  # [N, K]
        self.net = _FieldMLP(config)

    @property
    def num_handles(self) -> int:
        return self.controls.shape[0]

    @property
    def handles_rest(self) -> Tensor:
        return self.controls

    def motion(self, t: Tensor) -> Deformed:
        """The control points' motion at times ``t [F]`` (dense fields not evaluated).

        ``handle_scale [F, M, 3]`` (log-scale change) rides along for :meth:`blend`.
        """
        shift, q, dscale = self.net(self.controls, t)  # [F, M, 3|4|3]
        out = Deformed(None, None, None, self.controls[None] + shift, quat_to_rotmat(q), shift)
        out.handle_quat, out.handle_scale = q, dscale
        return out

    def handle_motion(self, static: Gaussians, t: Tensor) -> Deformed:
        return self.motion(t)

    def blend(self, static: Gaussians, motion: Deformed) -> Deformed:
        """Dense Gaussians from control motion by linear blend skinning."""
        q, R, shift, dscale = motion.handle_quat, motion.handle_rot, motion.handle_shift, motion.handle_scale
        f, m = q.shape[:2]
        # x -> R_j (x - c_j) + c_j + s_j is affine, so blend the K affine maps first and apply
        # one: same result as blending the moved points, with one 3x3 product per Gaussian.
        offset = self.controls[None] + shift - (R @ self.controls[None, :, :, None])[..., 0]  # [F, M, 3]
        per_handle = torch.cat([R.reshape(f, m, 9), offset, q, dscale], -1)  # [F, M, 19]: skinning_numba.MAP_COLUMNS
        # On the CPU one fused loop per Gaussian (and an analytic backward); elsewhere PyTorch.
        fused = skinning_numba.can_skin(per_handle, self.skin_logits, static.means, static.quats, static.log_scales)
        skin = skinning_numba.skin if fused else skin_torch
        means, quats, log_scales = skin(per_handle, self.knn, self.skin_logits, static.means, static.quats, static.log_scales)
        return Deformed(means, quats, log_scales, motion.handles, R, shift)

    def forward(self, static: Gaussians, t: Tensor) -> Deformed:
        return self.blend(static, self.motion(t))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {**super().parameter_groups(), "skin": [self.skin_logits]}

    def frames_and_handles(self, static: Gaussians, all_t: Tensor, frame_ids: Tensor) -> tuple[Deformed, Deformed]:
        """Dense deformation at ``all_t[frame_ids]`` and handle motion at every ``all_t``, sharing
        one evaluation of the field (the training step needs both)."""
        motion = self.motion(all_t)
        return self.blend(static, motion.select_times(frame_ids)), motion


class PerGaussianDeformation(_FieldDeformation):
    """DG4D's per-Gaussian HexPlane deformation (the paper's baseline)."""

    def __init__(self, static: Gaussians, config: DeformConfig = DeformConfig(mode="per_gaussian"), saved: dict | None = None):
        super().__init__()
        self.config = config
        if saved is not None:
            idx = saved["handle_index"]
        else:
            idx = farthest_point_sample(static.means.detach(), config.num_controls, static.opacities.detach())
        self.register_buffer("handle_index", idx)
        self.register_buffer("rest", static.means.detach()[idx].clone())
        self.net = _FieldMLP(config)

    @property
    def num_handles(self) -> int:
        return self.handle_index.shape[0]

    @property
    def handles_rest(self) -> Tensor:
        return self.rest

    def handle_motion(self, static: Gaussians, t: Tensor) -> Deformed:
        """Only the handles' motion: the field evaluated at the handle Gaussians."""
        shift, q, _ = self.net(static.means[self.handle_index], t)
        means = static.means[self.handle_index][None] + shift
        return Deformed(None, None, None, means, quat_to_rotmat(q), shift)

    def forward(self, static: Gaussians, t: Tensor) -> Deformed:
        shift, q, dscale = self.net(static.means, t)  # [F, N, 3|4|3]
        f = t.shape[0]
        means = static.means[None] + shift
        quats = quat_multiply(q, static.quats.unsqueeze(0).expand(f, -1, -1))
        log_scales = static.log_scales[None] + dscale
        i = self.handle_index
        # A handle moves with its Gaussian: about its own rest position, rotated like it.
        return Deformed(means, quats, log_scales, means[:, i], quat_to_rotmat(q[:, i]), shift[:, i])


class StillDeformation(Deformation):
    """No motion at all: how a static model (the static stage's result) is shown as a 4D one."""

    trainable = False

    def __init__(self, static: Gaussians, config: DeformConfig = DeformConfig(mode="still"), saved: dict | None = None):
        super().__init__()
        self.config = config
        self.register_buffer("rest", static.means.detach()[:0].clone())

    @property
    def handles_rest(self) -> Tensor:
        return self.rest

    def handle_motion(self, static: Gaussians, t: Tensor) -> Deformed:
        return self(static, t)

    def forward(self, static: Gaussians, t: Tensor) -> Deformed:
        f = t.shape[0]
        eye = torch.eye(3, dtype=static.means.dtype, device=static.means.device).expand(f, 0, 3, 3)
        none = self.rest[None].expand(f, 0, 3)
        return Deformed(
            static.means[None].expand(f, -1, -1),
            static.quats[None].expand(f, -1, -1),
            static.log_scales[None].expand(f, -1, -1),
            none, eye, none,
        )


DEFORMATIONS = {"control": ControlDeformation, "per_gaussian": PerGaussianDeformation, "still": StillDeformation}


def make_deformation(static: Gaussians, config: DeformConfig, state: dict | None = None) -> Deformation:
    """A new deformation of ``static``, or with ``state`` (a ``state_dict``) a saved one, whose
    layout (handles, neighbours) is taken from the state rather than sampled again: sampling takes
    over a second at 100k Gaussians, which a client waiting for a new snapshot's first frame sees."""
    if config.mode not in DEFORMATIONS:
        raise ValueError(f"unknown deformation mode {config.mode!r}; choose one of {', '.join(DEFORMATIONS)}")
    deformation = DEFORMATIONS[config.mode](static, config, saved=state)
    if state is not None:
        deformation.load_state_dict(state)
    return deformation


def move_bound_points(deformed: Deformed, rest: Tensor, binding: "Binding") -> Tensor:
    """Positions ``[F, P, 3]`` of points bound to handles (keypoint anchors) at each time."""
    rest_h = deformed.handles[:, binding.index] - deformed.handle_shift[:, binding.index]  # [F, P, K, 3]
    rel = rest[None, :, None, :] - rest_h
    moved = (deformed.handle_rot[:, binding.index] @ rel[..., None])[..., 0] + rest_h + deformed.handle_shift[:, binding.index]
    return (binding.weights[None, ..., None] * moved).sum(2)


@dataclass
class Binding:
    """Points bound to handles: ``index [P, K]`` handle ids, ``weights [P, K]`` summing to 1."""

    index: Tensor
    weights: Tensor

    @classmethod
    def nearest(cls, points: Tensor, handles: Tensor, k: int = 4) -> "Binding":
        """Bind to the ``k`` nearest handles with Gaussian weights on distance (scale: the k-th distance)."""
        k = min(k, handles.shape[0])
        dist, idx = torch.cdist(points, handles).topk(k, dim=1, largest=False)
        sigma = dist[:, -1:].clamp_min(1e-6)
        w = torch.softmax(-(dist**2) / (2 * sigma**2 / math.log(4.0)), dim=1)
        return cls(idx, w)
