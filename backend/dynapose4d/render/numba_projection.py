"""EWA projection fused into numba loops: the CPU path of :func:`project_gaussians` behind the
numba renderer.

The PyTorch projection is some forty small tensor operations per call, each a pass over
``[C, N]`` memory; at 30k Gaussians and four frames a training step spent more time projecting
(forward and, above all, backward) than rasterising. Here one loop per Gaussian does the whole
chain, rotation matrix to conic and radii, and an analytic backward pass walks it back to the
means, quaternions and scales. Same rules and the same formulas as ``projection.py`` (gsplat's:
the clamped Jacobian, ``eps2d``, the opacity-aware radius), in float64 arithmetic whatever the
input dtype; outputs are cast back to it.

Gradients flow to means, quats and scales, not to the cameras (``render`` uses the PyTorch
projection when a camera needs one). Each Gaussian owns its output rows and sums its cameras
in a fixed order, so results do not depend on the thread count.

The kernels are cached on disk (``cache=True``); the first call on a machine compiles them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from .numba_threads import numba_parallel
from .projection import ALPHA_MIN, EPS2D, NEAR_PLANE, Projected

__all__ = ["project_gaussians_numba"]

CLIP_MARGIN = 0.3  # the Jacobian's point is clamped to the field of view plus 30% (gsplat's)
MAX_EXTEND = 3.33  # the radius never exceeds 3.33 standard deviations
DET_MIN = 1e-10


@njit(cache=True, nogil=True)
def _rotation(q0, q1, q2, q3):
    """Rotation matrix (row-major 9-tuple) of the normalised wxyz quaternion, and the norm."""
    norm = max(math.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3), 1e-12)  # F.normalize's eps
    w, x, y, z = q0 / norm, q1 / norm, q2 / norm, q3 / norm
    r = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return r, (w, x, y, z), norm


@njit(cache=True, nogil=True)
def _to_camera(v, mx, my, mz):
    """The centre in camera space (the world-to-camera matrix ``v`` applied)."""
    return (
        v[0, 0] * mx + v[0, 1] * my + v[0, 2] * mz + v[0, 3],
        v[1, 0] * mx + v[1, 1] * my + v[1, 2] * mz + v[1, 3],
        v[2, 0] * mx + v[2, 1] * my + v[2, 2] * mz + v[2, 3],
    )


@njit(cache=True, nogil=True)
def _jacobian(x, y, z, fx, fy, cx, cy, width, height, near):
    """The projection's Jacobian at the centre clamped to the field of view plus 30%:
    ``(valid, zs, txc, tyc, x_free, y_free, j00, j02, j11, j12)``. ``zs`` is the depth used
    (1 behind the near plane), ``txc, tyc`` the clamped x/z and y/z, ``*_free`` whether they
    were inside the bounds, ``j..`` the non-zero entries of the two rows."""
    valid = z >= near
    zs = z if valid else 1.0
    lxp = (width - cx) / fx + CLIP_MARGIN * (0.5 * width / fx)
    lxn = cx / fx + CLIP_MARGIN * (0.5 * width / fx)
    lyp = (height - cy) / fy + CLIP_MARGIN * (0.5 * height / fy)
    lyn = cy / fy + CLIP_MARGIN * (0.5 * height / fy)
    rxz, ryz = x / zs, y / zs
    txc, tyc = min(max(rxz, -lxn), lxp), min(max(ryz, -lyn), lyp)
    inv = 1.0 / zs
    return (valid, zs, txc, tyc, -lxn < rxz < lxp, -lyn < ryz < lyp,
            fx * inv, -fx * txc * inv, fy * inv, -fy * tyc * inv)


@njit(cache=True, nogil=True)
def _column(v, p, col, j00, j02, j11, j12):
    """Column ``col`` of M = R_view P, and its images u = J_0 M, w = J_1 M."""
    m0 = v[0, 0] * p[col] + v[0, 1] * p[3 + col] + v[0, 2] * p[6 + col]
    m1 = v[1, 0] * p[col] + v[1, 1] * p[3 + col] + v[1, 2] * p[6 + col]
    m2 = v[2, 0] * p[col] + v[2, 1] * p[3 + col] + v[2, 2] * p[6 + col]
    return m0, m1, m2, j00 * m0 + j02 * m2, j11 * m1 + j12 * m2


@njit(cache=True, nogil=True)
def _covariance(v, p, j00, j02, j11, j12, eps2d):
    """The screen-space covariance (a, b, c) = J M M^T J^T + eps2d I."""
    cov_a, cov_b, cov_c = eps2d, 0.0, eps2d
    for col in range(3):
        _, _, _, u, w = _column(v, p, col, j00, j02, j11, j12)
        cov_a += u * u
        cov_b += u * w
        cov_c += w * w
    return cov_a, cov_b, cov_c


@njit(cache=True, nogil=True)
def _factor(quats, scales, b, i):
    """P = R_q S (row-major 9-tuple), the normalised quaternion and the norm, and the scales."""
    r, qn, norm = _rotation(quats[b, i, 0], quats[b, i, 1], quats[b, i, 2], quats[b, i, 3])
    s = (scales[b, i, 0], scales[b, i, 1], scales[b, i, 2])
    p = (r[0] * s[0], r[1] * s[1], r[2] * s[2], r[3] * s[0], r[4] * s[1], r[5] * s[2], r[6] * s[0], r[7] * s[1], r[8] * s[2])
    return p, r, qn, norm, s


@njit(parallel=True, cache=True, nogil=True)
def _forward(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near,
             out_means2d, out_conics, out_depths, out_radii):
    n_scene, n = means.shape[0], means.shape[1]
    n_cam = viewmats.shape[1]
    for row in prange(n_scene * n):
        b, i = row // n, row % n
        p, _, _, _, _ = _factor(quats, scales, b, i)  # the covariance factor in world space
        mx, my, mz = means[b, i, 0], means[b, i, 1], means[b, i, 2]
        op = opacities[b, i]
        extend = min(math.sqrt(2.0 * math.log(max(op, ALPHA_MIN) / ALPHA_MIN)), MAX_EXTEND)
        for c in range(n_cam):
            v = viewmats[b, c]
            x, y, z = _to_camera(v, mx, my, mz)
            fx, fy, cx, cy = Ks[b, c, 0, 0], Ks[b, c, 1, 1], Ks[b, c, 0, 2], Ks[b, c, 1, 2]
            valid, zs, _, _, _, _, j00, j02, j11, j12 = _jacobian(x, y, z, fx, fy, cx, cy, width, height, near)
            cov_a, cov_b, cov_c = _covariance(v, p, j00, j02, j11, j12, eps2d)
            det = max(cov_a * cov_c - cov_b * cov_b, DET_MIN)
            u2x, u2y = fx * x / zs + cx, fy * y / zs + cy
            out_means2d[b, c, i, 0] = u2x
            out_means2d[b, c, i, 1] = u2y
            out_conics[b, c, i, 0] = cov_c / det
            out_conics[b, c, i, 1] = -cov_b / det
            out_conics[b, c, i, 2] = cov_a / det
            out_depths[b, c, i] = z
            rx = math.ceil(extend * math.sqrt(cov_a))
            ry = math.ceil(extend * math.sqrt(cov_c))
            inside = u2x + rx > 0 and u2x - rx < width and u2y + ry > 0 and u2y - ry < height
            keep = valid and op >= ALPHA_MIN and inside and rx > 0 and ry > 0
            out_radii[b, c, i, 0] = int(rx) if keep else 0
            out_radii[b, c, i, 1] = int(ry) if keep else 0


@njit(parallel=True, cache=True, nogil=True)
def _backward(means, quats, scales, viewmats, Ks, width, height, eps2d, near,
              g_means2d, g_conics, g_depths, v_means, v_quats, v_scales, dp_rows):
    """``dp_rows [B*N, 9]`` (zeros): each Gaussian's dL/dP summed over the cameras (scratch
    given by the caller: an allocation per Gaussian would cost more than the arithmetic)."""
    n_scene, n = means.shape[0], means.shape[1]
    n_cam = viewmats.shape[1]
    for row in prange(n_scene * n):
        b, i = row // n, row % n
        p, r, qn, norm, s = _factor(quats, scales, b, i)
        mx, my, mz = means[b, i, 0], means[b, i, 1], means[b, i, 2]
        dmx = dmy = dmz = 0.0
        dp = dp_rows[row]
        for c in range(n_cam):
            v = viewmats[b, c]
            x, y, z = _to_camera(v, mx, my, mz)
            fx, fy, cx, cy = Ks[b, c, 0, 0], Ks[b, c, 1, 1], Ks[b, c, 0, 2], Ks[b, c, 1, 2]
            valid, zs, txc, tyc, x_free, y_free, j00, j02, j11, j12 = _jacobian(x, y, z, fx, fy, cx, cy, width, height, near)
            tx, ty = zs * txc, zs * tyc
            cov_a, cov_b, cov_c = _covariance(v, p, j00, j02, j11, j12, eps2d)
            det_raw = cov_a * cov_c - cov_b * cov_b
            det = max(det_raw, DET_MIN)
            # conic = (c, -b, a) / det.
            g0, g1, g2 = g_conics[b, c, i, 0], g_conics[b, c, i, 1], g_conics[b, c, i, 2]
            g_det = -(g0 * cov_c - g1 * cov_b + g2 * cov_a) / (det * det) if det_raw > DET_MIN else 0.0
            g_a = g2 / det + g_det * cov_c
            g_b = -g1 / det - 2.0 * cov_b * g_det
            g_c = g0 / det + g_det * cov_a
            dj00 = dj02 = dj11 = dj12 = 0.0
            for col in range(3):
                m0, m1, m2, u, w = _column(v, p, col, j00, j02, j11, j12)
                du = 2.0 * g_a * u + g_b * w
                dw = g_b * u + 2.0 * g_c * w
                dj00 += du * m0
                dj02 += du * m2
                dj11 += dw * m1
                dj12 += dw * m2
                # dL/dM's column, then dL/dP = R_view^T dL/dM.
                dm0, dm1, dm2 = j00 * du, j11 * dw, j02 * du + j12 * dw
                for k in range(3):
                    dp[3 * k + col] += v[0, k] * dm0 + v[1, k] * dm1 + v[2, k] * dm2
            # Through the Jacobian to the camera-space centre.
            inv_z2 = 1.0 / (zs * zs)
            dzs = -fx * inv_z2 * dj00 + 2.0 * fx * tx * inv_z2 / zs * dj02 - fy * inv_z2 * dj11 + 2.0 * fy * ty * inv_z2 / zs * dj12
            dtx, dty = -fx * inv_z2 * dj02, -fy * inv_z2 * dj12
            # tx = z clamp(x / z): x itself where unclamped, z times the bound where clamped.
            dx = dtx if x_free else 0.0
            dy = dty if y_free else 0.0
            if not x_free:
                dzs += txc * dtx
            if not y_free:
                dzs += tyc * dty
            gm0, gm1 = g_means2d[b, c, i, 0], g_means2d[b, c, i, 1]
            dx += gm0 * fx / zs
            dy += gm1 * fy / zs
            dzs += -(gm0 * fx * x + gm1 * fy * y) * inv_z2
            dz = g_depths[b, c, i] + (dzs if valid else 0.0)
            dmx += v[0, 0] * dx + v[1, 0] * dy + v[2, 0] * dz
            dmy += v[0, 1] * dx + v[1, 1] * dy + v[2, 1] * dz
            dmz += v[0, 2] * dx + v[1, 2] * dy + v[2, 2] * dz
        v_means[b, i, 0], v_means[b, i, 1], v_means[b, i, 2] = dmx, dmy, dmz
        # P = R_q S: to the scales and the rotation matrix G = dL/dR_q, then the quaternion.
        for col in range(3):
            v_scales[b, i, col] = dp[col] * r[col] + dp[3 + col] * r[3 + col] + dp[6 + col] * r[6 + col]
        G = (dp[0] * s[0], dp[1] * s[1], dp[2] * s[2], dp[3] * s[0], dp[4] * s[1], dp[5] * s[2], dp[6] * s[0], dp[7] * s[1], dp[8] * s[2])
        w, x, y, z = qn
        dw = 2.0 * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7])
        dx = 2.0 * (y * G[1] + z * G[2] + y * G[3] - 2.0 * x * G[4] - w * G[5] + z * G[6] + w * G[7] - 2.0 * x * G[8])
        dy = 2.0 * (-2.0 * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] + z * G[7] - 2.0 * y * G[8])
        dz = 2.0 * (-2.0 * z * G[0] - w * G[1] + x * G[2] + w * G[3] - 2.0 * z * G[4] + y * G[5] + x * G[6] + y * G[7])
        # Through the normalisation: (g - q (q . g)) / |q|.
        dot = w * dw + x * dx + y * dy + z * dz
        v_quats[b, i, 0] = (dw - w * dot) / norm
        v_quats[b, i, 1] = (dx - x * dot) / norm
        v_quats[b, i, 2] = (dy - y * dot) / norm
        v_quats[b, i, 3] = (dz - z * dot) / norm


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _ProjectNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near):
        inputs = [_np(t) for t in (means, quats, scales, viewmats, Ks)]
        n_scene, n = means.shape[:2]
        n_cam = viewmats.shape[1]
        dtype = means.dtype
        means2d = torch.empty(n_scene, n_cam, n, 2, dtype=dtype)
        conics = torch.empty(n_scene, n_cam, n, 3, dtype=dtype)
        depths = torch.empty(n_scene, n_cam, n, dtype=dtype)
        radii = torch.empty(n_scene, n_cam, n, 2, dtype=torch.int32)
        with numba_parallel():
            _forward(*inputs[:3], _np(opacities), *inputs[3:], width, height, eps2d, near,
                     means2d.numpy(), conics.numpy(), depths.numpy(), radii.numpy())
        ctx.state = (inputs, width, height, eps2d, near)
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    def backward(ctx, g_means2d, g_conics, g_depths, _g_radii):
        inputs, width, height, eps2d, near = ctx.state
        means, quats, scales, viewmats, Ks = inputs
        grads = [np.empty(a.shape, np.float64) for a in (means, quats, scales)]
        g = [t.to(torch.float64).contiguous().numpy() for t in (g_means2d, g_conics, g_depths)]
        dp_rows = np.zeros((means.shape[0] * means.shape[1], 9))
        with numba_parallel():
            _backward(means, quats, scales, viewmats, Ks, width, height, eps2d, near, *g, *grads, dp_rows)
        dtype = g_means2d.dtype
        v_means, v_quats, v_scales = (torch.from_numpy(a).to(dtype) for a in grads)
        return v_means, v_quats, v_scales, None, None, None, None, None, None, None


def project_gaussians_numba(
    means: Tensor,  # [B, N, 3]
    quats: Tensor,  # [B, N, 4]
    scales: Tensor,  # [B, N, 3]
    opacities: Tensor,  # [B, N]
    viewmats: Tensor,  # [B, C, 4, 4] OpenCV world-to-camera
    Ks: Tensor,  # [B, C, 3, 3]
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near: float = NEAR_PLANE,
) -> Projected:
    """:func:`project_gaussians` for CPU float tensors with one batch dimension, differentiable
    w.r.t. means, quats and scales (not the cameras)."""
    if viewmats.requires_grad or Ks.requires_grad:
        raise ValueError("the numba projection passes no gradient to cameras; use project_gaussians")
    if means.device.type != "cpu" or means.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the numba projection needs CPU float32/float64 tensors, got {means.dtype} on {means.device}")
    dtype = means.dtype
    means2d, conics, depths, radii = _ProjectNumba.apply(
        means, quats.to(dtype), scales.to(dtype), opacities.to(dtype), viewmats.to(dtype), Ks.to(dtype),
        int(width), int(height), float(eps2d), float(near),
    )
    return Projected(means2d, conics, depths, radii)
