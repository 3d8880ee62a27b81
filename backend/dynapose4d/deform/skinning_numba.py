"""Linear blend skinning without autograd, fused into one numba loop: the CPU path behind
:meth:`ControlDeformation.blend` when no gradient is needed (frames for the add-on, exports,
evaluation renders).

The PyTorch path gathers the K control transforms of every Gaussian into ``[F, N, K, ...]``
tensors and reduces them, about ten passes over memory per frame; at 100k Gaussians that is
40-60 ms a frame on one core, the bulk of serving a frame. Here each Gaussian reads its K
controls' maps from a table small enough for the cache (M x 14 floats a frame) and writes its
result once.

Same arithmetic as the PyTorch path, in float64 accumulators: the blended affine map applied
to the rest position (equal to blending the moved points, the map being affine), the blended
quaternion normalised then composed with the Gaussian's own rotation, log-scales shifted by
the blended log-scale change.

The kernel is cached on disk (``cache=True``); the first call on a machine compiles it.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

# Per-control columns of the map table: rotation (9, row-major), offset (3), quaternion (4,
# wxyz), log-scale change (3).
MAP_COLUMNS = 19


@njit(cache=True, nogil=True)
def _skin(maps, knn, logits, means, quats, log_scales, out_means, out_quats, out_log_scales):
    n_frames = maps.shape[0]
    n, k = knn.shape
    w = np.empty(k)
    for i in range(n):
        top = logits[i, 0]
        for a in range(1, k):
            top = max(top, logits[i, a])
        total = 0.0
        for a in range(k):
            w[a] = np.exp(logits[i, a] - top)
            total += w[a]
        for a in range(k):  # softmax weights, as the PyTorch path's
            w[a] /= total
        x0, x1, x2 = means[i, 0], means[i, 1], means[i, 2]
        bw, bx, by, bz = quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]
        for f in range(n_frames):  # frames inside: the weights are computed once per Gaussian
            m0 = m1 = m2 = 0.0
            qw = qx = qy = qz = 0.0
            s0 = s1 = s2 = 0.0
            for a in range(k):
                r = maps[f, knn[i, a]]
                wa = w[a]
                m0 += wa * (r[0] * x0 + r[1] * x1 + r[2] * x2 + r[9])
                m1 += wa * (r[3] * x0 + r[4] * x1 + r[5] * x2 + r[10])
                m2 += wa * (r[6] * x0 + r[7] * x1 + r[8] * x2 + r[11])
                qw += wa * r[12]
                qx += wa * r[13]
                qy += wa * r[14]
                qz += wa * r[15]
                s0 += wa * r[16]
                s1 += wa * r[17]
                s2 += wa * r[18]
            norm = max(np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)  # F.normalize's eps
            qw, qx, qy, qz = qw / norm, qx / norm, qy / norm, qz / norm
            out_means[f, i, 0] = m0
            out_means[f, i, 1] = m1
            out_means[f, i, 2] = m2
            out_quats[f, i, 0] = qw * bw - qx * bx - qy * by - qz * bz
            out_quats[f, i, 1] = qw * bx + qx * bw + qy * bz - qz * by
            out_quats[f, i, 2] = qw * by - qx * bz + qy * bw + qz * bx
            out_quats[f, i, 3] = qw * bz + qx * by - qy * bx + qz * bw
            out_log_scales[f, i, 0] = log_scales[i, 0] + s0
            out_log_scales[f, i, 1] = log_scales[i, 1] + s1
            out_log_scales[f, i, 2] = log_scales[i, 2] + s2


def can_skin(*tensors: Tensor) -> bool:
    """Whether the fused kernel applies: no gradient wanted, CPU float tensors."""
    return not torch.is_grad_enabled() and all(
        t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors
    )


def skin(maps: Tensor, knn: Tensor, logits: Tensor, means: Tensor, quats: Tensor, log_scales: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Blended ``(means [F, N, 3], quats [F, N, 4], log_scales [F, N, 3])`` from per-control
    ``maps [F, M, 19]`` (see ``MAP_COLUMNS``), ``knn [N, K]``, the skinning ``logits [N, K]``
    (softmax weights over each row) and the rest Gaussians."""
    dtype = means.dtype
    f, n = maps.shape[0], means.shape[0]
    out = [torch.empty(f, n, c, dtype=dtype) for c in (3, 4, 3)]
    arrays = [t.detach().contiguous().numpy() for t in (maps.to(dtype), knn, logits.to(dtype), means, quats, log_scales)]
    _skin(*arrays, *(o.numpy() for o in out))
    return out[0], out[1], out[2]


def warm_up() -> None:
    """Compile (first run on a machine) or load (later) the kernel now, on a tiny input."""
    eye = torch.tensor([[1.0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]])
    rest = torch.zeros(1, 3)
    with torch.no_grad():
        skin(eye[None], torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1), rest, torch.tensor([[1.0, 0, 0, 0]]), rest)
