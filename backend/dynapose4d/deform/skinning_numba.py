"""Linear blend skinning fused into numba loops, with an analytic backward pass: the CPU path
behind :meth:`ControlDeformation.blend` (training steps, frames for the add-on, exports).

The PyTorch path (``deformations.skin_torch``) gathers the K control transforms of every
Gaussian into ``[F, N, K, ...]`` tensors and reduces them, about ten passes over memory per
frame and as many again backward; at 100k Gaussians that is 40-60 ms a frame on one core, and
at 30k Gaussians and 4 frames a third of a training step. Here each Gaussian reads its K
controls' maps from a table small enough for the cache (M x 19 floats a frame) and writes its
result once.

Same arithmetic as the PyTorch path, in float64 accumulators: the blended affine map applied
to the rest position (equal to blending the moved points, the map being affine), the blended
quaternion normalised then composed with the Gaussian's own rotation, log-scales shifted by
the blended log-scale change. The backward pass walks the Gaussians again (in fixed chunks,
each with its own table of control gradients), so no two threads write the same row and the
result does not depend on the thread count.

The kernels are cached on disk (``cache=True``); the first call on a machine compiles them
(about 5 s on 2 cores).
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from ..render.numba_threads import numba_parallel

# Per-control columns of the map table: rotation (9, row-major), offset (3), quaternion (4,
# wxyz), log-scale change (3).
MAP_COLUMNS = 19


@njit(cache=True, nogil=True)
def _softmax(logits, out):
    """Softmax of one row of skin logits into ``out`` (the PyTorch path's weights)."""
    top = logits[0]
    for a in range(1, logits.shape[0]):
        top = max(top, logits[a])
    total = 0.0
    for a in range(logits.shape[0]):
        out[a] = np.exp(logits[a] - top)
        total += out[a]
    for a in range(logits.shape[0]):
        out[a] /= total


@njit(cache=True, nogil=True)
def _skin(maps, knn, logits, means, quats, log_scales, out_means, out_quats, out_log_scales):
    n_frames = maps.shape[0]
    n, k = knn.shape
    w = np.empty(k)
    for i in range(n):
        _softmax(logits[i], w)
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


# The backward pass sums each control's gradient over the Gaussians that use it. Gaussians
# are split into a fixed number of chunks (a function of the problem size, not of the thread
# count), each summing into its own [F, M, 19] table; the tables are added in order at the end.
# So no two threads write one row and the result does not depend on the threads, without a
# per-Gaussian [N, F, 19] intermediate (146 MB at 30k Gaussians and 32 frames).
MAX_CHUNKS = 16
CHUNK_TABLES_BYTES = 64 * 2**20  # all chunks' tables together stay under this


@njit(parallel=True, cache=True, nogil=True)
def _skin_backward(maps, knn, logits, means, quats, g_means, g_quats, g_log_scales,
                   g_chunk_maps, g_logits, g_rest_means, g_rest_quats):
    """Gradients of the blend w.r.t. the per-control maps (``g_chunk_maps [chunks, F, M, 19]``,
    zeros, one table per chunk of Gaussians), the skin logits and the rest pose. Log-scales
    pass theirs through unchanged (the caller sums ``g_log_scales`` over frames)."""
    n_frames = maps.shape[0]
    n, k = knn.shape
    n_chunks = g_chunk_maps.shape[0]
    for chunk in prange(n_chunks):
        table = g_chunk_maps[chunk]
        w = np.empty(k)
        g_w = np.empty(k)
        b = np.empty(13)  # the blended rotation (9) and quaternion (4)
        gb = np.empty(MAP_COLUMNS)  # dL/d(the blended 19 numbers)
        for i in range(chunk * n // n_chunks, (chunk + 1) * n // n_chunks):
            _softmax(logits[i], w)
            g_w[:] = 0.0
            x0, x1, x2 = means[i, 0], means[i, 1], means[i, 2]
            pw, px, py, pz = quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]
            gx0 = gx1 = gx2 = 0.0
            gpw = gpx = gpy = gpz = 0.0
            for f in range(n_frames):
                # The blend again (only what the backward needs: the rotation and the quaternion).
                b[:] = 0.0
                for a in range(k):
                    r = maps[f, knn[i, a]]
                    for c in range(9):
                        b[c] += w[a] * r[c]
                    for c in range(4):
                        b[9 + c] += w[a] * r[12 + c]
                # means = R_blend x + offset_blend
                gm0, gm1, gm2 = g_means[f, i, 0], g_means[f, i, 1], g_means[f, i, 2]
                gb[0], gb[1], gb[2] = gm0 * x0, gm0 * x1, gm0 * x2
                gb[3], gb[4], gb[5] = gm1 * x0, gm1 * x1, gm1 * x2
                gb[6], gb[7], gb[8] = gm2 * x0, gm2 * x1, gm2 * x2
                gb[9], gb[10], gb[11] = gm0, gm1, gm2
                gx0 += b[0] * gm0 + b[3] * gm1 + b[6] * gm2
                gx1 += b[1] * gm0 + b[4] * gm1 + b[7] * gm2
                gx2 += b[2] * gm0 + b[5] * gm1 + b[8] * gm2
                # quats = normalise(q_blend) * rest quaternion (Hamilton product).
                norm_raw = np.sqrt(b[9] * b[9] + b[10] * b[10] + b[11] * b[11] + b[12] * b[12])
                norm = max(norm_raw, 1e-12)
                aw, ax, ay, az = b[9] / norm, b[10] / norm, b[11] / norm, b[12] / norm
                gow, gox, goy, goz = g_quats[f, i, 0], g_quats[f, i, 1], g_quats[f, i, 2], g_quats[f, i, 3]
                gaw = gow * pw + gox * px + goy * py + goz * pz
                gax = -gow * px + gox * pw - goy * pz + goz * py
                gay = -gow * py + gox * pz + goy * pw - goz * px
                gaz = -gow * pz - gox * py + goy * px + goz * pw
                gpw += gow * aw + gox * ax + goy * ay + goz * az
                gpx += -gow * ax + gox * aw + goy * az - goz * ay
                gpy += -gow * ay - gox * az + goy * aw + goz * ax
                gpz += -gow * az + gox * ay - goy * ax + goz * aw
                # Through the normalisation (F.normalize: x / max(|x|, eps)).
                dot = (aw * gaw + ax * gax + ay * gay + az * gaz) if norm_raw > 1e-12 else 0.0
                gb[12], gb[13], gb[14], gb[15] = (gaw - aw * dot) / norm, (gax - ax * dot) / norm, (gay - ay * dot) / norm, (gaz - az * dot) / norm
                gb[16], gb[17], gb[18] = g_log_scales[f, i, 0], g_log_scales[f, i, 1], g_log_scales[f, i, 2]
                # The blend is linear in the weights and in the controls' maps.
                for a in range(k):
                    j = knn[i, a]
                    r = maps[f, j]
                    acc = 0.0
                    for c in range(MAP_COLUMNS):
                        acc += gb[c] * r[c]
                        table[f, j, c] += w[a] * gb[c]
                    g_w[a] += acc
            # Softmax: dL/dlogit_a = w_a (dL/dw_a - sum_b w_b dL/dw_b).
            mean = 0.0
            for a in range(k):
                mean += w[a] * g_w[a]
            for a in range(k):
                g_logits[i, a] = w[a] * (g_w[a] - mean)
            g_rest_means[i, 0], g_rest_means[i, 1], g_rest_means[i, 2] = gx0, gx1, gx2
            g_rest_quats[i, 0], g_rest_quats[i, 1], g_rest_quats[i, 2], g_rest_quats[i, 3] = gpw, gpx, gpy, gpz


def can_skin(*tensors: Tensor) -> bool:
    """Whether the fused kernels apply: CPU float tensors (with or without gradients)."""
    return all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)


class _Skin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, maps, knn, logits, means, quats, log_scales):
        dtype = means.dtype
        f, n = maps.shape[0], means.shape[0]
        out = [torch.empty(f, n, c, dtype=dtype) for c in (3, 4, 3)]
        arrays = [t.detach().contiguous().numpy() for t in (maps.to(dtype), knn, logits.to(dtype), means, quats, log_scales)]
        _skin(*arrays, *(o.numpy() for o in out))
        ctx.save_for_backward(maps, knn, logits, means, quats)
        return tuple(out)

    @staticmethod
    def backward(ctx, g_means, g_quats, g_log_scales):
        maps, knn, logits, means, quats = ctx.saved_tensors
        f, m = maps.shape[:2]
        n, k = knn.shape
        as64 = [t.detach().to(torch.float64).contiguous().numpy() for t in (maps, logits, means, quats, g_means, g_quats, g_log_scales)]
        table_bytes = f * m * MAP_COLUMNS * 8
        chunks = max(1, min(MAX_CHUNKS, n, CHUNK_TABLES_BYTES // max(table_bytes, 1)))
        g_chunk_maps = np.zeros((chunks, f, m, MAP_COLUMNS))
        g_logits, g_rest_means, g_rest_quats = np.empty((n, k)), np.empty((n, 3)), np.empty((n, 4))
        with numba_parallel():
            _skin_backward(as64[0], knn.contiguous().numpy(), *as64[1:], g_chunk_maps, g_logits, g_rest_means, g_rest_quats)
        g_maps = g_chunk_maps[0]
        for chunk in range(1, chunks):  # in order: the same sums whatever the threads
            g_maps += g_chunk_maps[chunk]
        need = ctx.needs_input_grad
        return (
            torch.from_numpy(g_maps).to(maps.dtype) if need[0] else None,
            None,
            torch.from_numpy(g_logits).to(logits.dtype) if need[2] else None,
            torch.from_numpy(g_rest_means).to(means.dtype) if need[3] else None,
            torch.from_numpy(g_rest_quats).to(quats.dtype) if need[4] else None,
            g_log_scales.sum(0) if need[5] else None,
        )


def skin(maps: Tensor, knn: Tensor, logits: Tensor, means: Tensor, quats: Tensor, log_scales: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Blended ``(means [F, N, 3], quats [F, N, 4], log_scales [F, N, 3])`` from per-control
    ``maps [F, M, 19]`` (see ``MAP_COLUMNS``), ``knn [N, K]``, the skinning ``logits [N, K]``
    (softmax weights over each row) and the rest Gaussians. Differentiable w.r.t. the maps,
    the logits and the rest pose."""
    return _Skin.apply(maps, knn, logits, means, quats, log_scales)


def warm_up() -> None:
    """Compile (first run on a machine) or load (later) the kernel now, on a tiny input."""
    eye = torch.tensor([[1.0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]])
    rest = torch.zeros(1, 3)
    with torch.no_grad():
        skin(eye[None], torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1), rest, torch.tensor([[1.0, 0, 0, 0]]), rest)
