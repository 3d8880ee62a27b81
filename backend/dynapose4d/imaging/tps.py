"""Thin-plate splines in the image plane: the one smooth non-rigid 2D warp of the keypoint code.

The tracker warps support keypoints through SIFT matches with it, and the synthetic sequences
deform their objects with it, so both sides of the accuracy benchmark share one definition.

A spline maps ``src [K, 2]`` onto ``dst [K, 2]`` (pixels, any convention as long as both sides
use the same one): ``f(x) = a0 + A x + sum_k w_k U(|x - src_k|)`` with ``U(r) = r^2 log r^2``.
With ``regularization > 0`` it smooths instead of interpolating: the bending weights solve
``(U + lambda I) w = ...`` on coordinates normalised by the control points' spread, so lambda
is scale-free. Fewer than three control points (or collinear ones) fall back to the best
similarity transform, which is all they determine.
"""

from __future__ import annotations

import numpy as np


def _kernel(r2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2, written on squared distances; U(0) = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = r2 * np.log(r2)
    return np.where(r2 > 0, out, 0.0)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) ``[2, 3]`` mapping src to dst.

    ``src, dst: [K, 2]`` with K >= 1; one point gives a translation.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    if len(src) < 2 or (s**2).sum() < 1e-12:
        return np.array([[1.0, 0.0, md[0] - ms[0]], [0.0, 1.0, md[1] - ms[1]]])
    # Complex-number form: d = z s with z = a + ib minimises sum |d - z s|^2.
    sc, dc = s[:, 0] + 1j * s[:, 1], d[:, 0] + 1j * d[:, 1]
    z = (np.conj(sc) * dc).sum() / (np.abs(sc) ** 2).sum()
    rot = np.array([[z.real, -z.imag], [z.imag, z.real]])
    return np.concatenate([rot, (md - rot @ ms)[:, None]], 1)


class ThinPlateSpline:
    """A 2D thin-plate spline from ``src [K, 2]`` to ``dst [K, 2]``; call it on ``[M, 2]`` points."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, regularization: float = 0.0):
        src = np.asarray(src, np.float64).reshape(-1, 2)
        dst = np.asarray(dst, np.float64).reshape(-1, 2)
        if len(src) != len(dst) or len(src) == 0:
            raise ValueError(f"ThinPlateSpline needs matching, non-empty point sets; got {len(src)} and {len(dst)}")
        self.src, self.dst = src, dst
        # Normalise so the kernel and lambda do not depend on the image size.
        self._centre = src.mean(0)
        spread = np.sqrt(((src - self._centre) ** 2).sum(1).mean())
        self._scale = spread if spread > 1e-9 else 1.0
        self._similarity = None
        s = (src - self._centre) / self._scale
        centred = s - s.mean(0)
        # A rank-deficient affine part (K < 3 or collinear points) cannot carry a spline.
        if len(src) < 3 or np.linalg.svd(centred, compute_uv=False)[-1] < 1e-6 * np.sqrt(len(src)):
            self._similarity = fit_similarity(src, dst)
            return
        k = len(s)
        kern = _kernel(((s[:, None] - s[None]) ** 2).sum(-1)) + regularization * np.eye(k)
        p = np.concatenate([np.ones((k, 1)), s], 1)
        system = np.zeros((k + 3, k + 3))
        system[:k, :k], system[:k, k:], system[k:, :k] = kern, p, p.T
        rhs = np.zeros((k + 3, 2))
        rhs[:k] = dst
        try:
            inverse = np.linalg.inv(system)
        except np.linalg.LinAlgError:  # duplicate control points without regularisation
            inverse = np.linalg.pinv(system)
        sol = inverse @ rhs
        self._s, self._w, self._a = s, sol[:k], sol[k:]
        self._inverse_diag = np.diag(inverse)[:k]

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float64)
        shape = xy.shape
        xy = xy.reshape(-1, 2)
        if self._similarity is not None:
            out = xy @ self._similarity[:, :2].T + self._similarity[:, 2]
            return out.reshape(shape)
        q = (xy - self._centre) / self._scale
        out = self._a[0] + q @ self._a[1:] + _kernel(((q[:, None] - self._s[None]) ** 2).sum(-1)) @ self._w
        return out.reshape(shape)

    def leave_one_out_residuals(self) -> np.ndarray:
        """``[K, 2]``: each control point's dst minus what the spline fitted without it predicts.

        Closed form (Rippa 1999): residual_i = w_i / (S^-1)_ii for the spline's linear system S,
        so an outlier among the matches stands out even when the spline interpolates it. For the
        similarity fallback (too few or collinear points) these are the plain fit residuals.
        """
        if self._similarity is not None:
            return self.dst - self(self.src)
        return self._w / self._inverse_diag[:, None]

    def jacobian(self, xy: np.ndarray, eps: float = 0.5) -> np.ndarray:
        """Central-difference Jacobians ``[M, 2, 2]`` (d out / d in) at ``xy [M, 2]``."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        cols = []
        for axis in range(2):
            step = np.zeros(2)
            step[axis] = eps
            cols.append((self(xy + step) - self(xy - step)) / (2 * eps))
        return np.stack(cols, -1)
