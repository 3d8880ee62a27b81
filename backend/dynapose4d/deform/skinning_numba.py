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
the blended log-scale change. The backward pass runs per Gaussian (its blend's gradient, its
skin logits and rest pose), then per control (the sum over the Gaussians that use it), so no
two threads write the same row and the result does not depend on the thread count.

The kernels are cached on disk (``cache=True``); the first call on a machine compiles them
(about 5 s on 2 cores).
"""
from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
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


@njit(parallel=True, cache=True, nogil=True)
def _skin_backward_gaussians(maps, knn, logits, means, quats, g_means, g_quats, g_log_scales,
                             g_blend, weights, g_logits, g_rest_means, g_rest_quats, scratch):
    """Backward, step 1 (parallel over Gaussians, each owning its rows): the gradient of each
    Gaussian's blended 19 numbers ``g_blend [N, F, 19]`` (Gaussian-major: step 2 reads one
    Gaussian's frames together), its softmax weights ``weights [N, K]`` (for step 2), and the
    gradients of its skin logits and rest pose. Log-scales pass theirs through unchanged (the
    caller sums ``g_log_scales`` over frames). ``scratch [N, 13]``: room for each Gaussian's
    blended rotation and quaternion, so the loop allocates nothing."""
    n_frames = maps.shape[0]
    n, k = knn.shape
    for i in prange(n):
        top = logits[i, 0]
        for a in range(1, k):
            top = max(top, logits[i, a])
        total = 0.0
        for a in range(k):
            weights[i, a] = np.exp(logits[i, a] - top)
            total += weights[i, a]
        for a in range(k):
            weights[i, a] /= total
        x0, x1, x2 = means[i, 0], means[i, 1], means[i, 2]
        pw, px, py, pz = quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]
        gx0 = gx1 = gx2 = 0.0
        gpw = gpx = gpy = gpz = 0.0
        for a in range(k):
            g_logits[i, a] = 0.0  # holds dL/dw until the softmax's backward below
        for f in range(n_frames):
            # The blend again (only what the backward needs: the rotation and the quaternion).
            b = scratch[i]
            b[:] = 0.0
            for a in range(k):
                r = maps[f, knn[i, a]]
                wa = weights[i, a]
                for c in range(9):
                    b[c] += wa * r[c]
                for c in range(4):
                    b[9 + c] += wa * r[12 + c]
            gm0, gm1, gm2 = g_means[f, i, 0], g_means[f, i, 1], g_means[f, i, 2]
            gb = g_blend[i, f]
            # means = R_blend x + offset_blend
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
            for a in range(k):
                r = maps[f, knn[i, a]]
                acc = 0.0
                for c in range(MAP_COLUMNS):
                    acc += gb[c] * r[c]
                g_logits[i, a] += acc
        # Softmax: dL/dlogit_a = w_a (dL/dw_a - sum_b w_b dL/dw_b).
        mean = 0.0
        for a in range(k):
            mean += weights[i, a] * g_logits[i, a]
        for a in range(k):
            g_logits[i, a] = weights[i, a] * (g_logits[i, a] - mean)
        g_rest_means[i, 0], g_rest_means[i, 1], g_rest_means[i, 2] = gx0, gx1, gx2
        g_rest_quats[i, 0], g_rest_quats[i, 1], g_rest_quats[i, 2], g_rest_quats[i, 3] = gpw, gpx, gpy, gpz


@njit(cache=True, nogil=True)
def _users_by_control(knn, m):
    """The (Gaussian, slot) entries ``i * K + a`` of ``knn [N, K]`` grouped by control, in
    increasing order (a counting sort): ``(start [M + 1], entries [N * K])``."""
    flat = knn.reshape(-1)
    start = np.zeros(m + 1, np.int64)
    for e in range(flat.shape[0]):
        start[flat[e] + 1] += 1
    for j in range(m):
        start[j + 1] += start[j]
    fill = start[:-1].copy()
    entries = np.empty(flat.shape[0], np.int64)
    for e in range(flat.shape[0]):
        entries[fill[flat[e]]] = e
        fill[flat[e]] += 1
    return start, entries


@njit(parallel=True, cache=True, nogil=True)
def _skin_backward_controls(knn, weights, g_blend, g_maps):
    """Backward, step 2 (parallel over controls): ``g_maps [F, M, 19]``, each control summing
    the weighted ``g_blend`` of the Gaussians that use it in a fixed order, so no two threads
    write one row."""
    n_frames, m = g_maps.shape[0], g_maps.shape[1]
    k = knn.shape[1]
    start, entries = _users_by_control(knn, m)
    for j in prange(m):
        for e in range(start[j], start[j + 1]):
            i, a = entries[e] // k, entries[e] % k
            wa = weights[i, a]
            for f in range(n_frames):
                for c in range(MAP_COLUMNS):
                    g_maps[f, j, c] += wa * g_blend[i, f, c]


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
        from ..render.numba_raster import _parallel  # one threading policy for every numba kernel

        maps, knn, logits, means, quats = ctx.saved_tensors
        f, m = maps.shape[:2]
        n, k = knn.shape
        as64 = [t.detach().to(torch.float64).contiguous().numpy() for t in (maps, logits, means, quats, g_means, g_quats, g_log_scales)]
        knn_np = knn.contiguous().numpy()
        g_blend = np.empty((n, f, MAP_COLUMNS))
        weights, g_logits = np.empty((n, k)), np.empty((n, k))
        g_rest_means, g_rest_quats, scratch = np.empty((n, 3)), np.empty((n, 4)), np.empty((n, 13))
        g_maps = np.zeros((f, m, MAP_COLUMNS))
        with _parallel():
            _skin_backward_gaussians(as64[0], knn_np, *as64[1:], g_blend, weights, g_logits, g_rest_means, g_rest_quats, scratch)
            _skin_backward_controls(knn_np, weights, g_blend, g_maps)
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
