"""View-dependent colour: the real spherical-harmonics basis above degree 0, in the order and signs
of the 3DGS PLY's ``f_rest`` (and of the backend's ``sh.py``), and SH coefficients turned with the
object they colour. No bpy."""

from __future__ import annotations

import math

import numpy as np

K_OF_DEGREE = {1: 3, 2: 8, 3: 15}


def degree_of(k: int) -> int:
    """The SH degree of ``k`` rest coefficients per channel (3, 8, 15 -> 1, 2, 3)."""
    return int(round(math.sqrt(k + 1))) - 1


def basis(directions: np.ndarray, degree: int) -> np.ndarray:
    """The basis ``[..., (degree+1)^2 - 1]`` at unit ``directions [..., 3]``."""
    x, y, z = np.moveaxis(np.asarray(directions, np.float64), -1, 0)
    out = [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z, 0.31539156525252005 * (2 * zz - xx - yy),
                -1.0925484305920792 * x * z, 0.5462742152960396 * (xx - yy)]
    if degree >= 3:
        out += [-0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * x * y * z,
                -0.4570457994644658 * y * (4 * zz - xx - yy), 0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
                -0.4570457994644658 * x * (4 * zz - xx - yy), 1.445305721320277 * z * (xx - yy),
                -0.5900435899266435 * x * (xx - 3 * yy)]
    return np.stack(out[: (degree + 1) ** 2 - 1], axis=-1)


def rotate(rest: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """SH coefficients ``[N, K, 3]`` of colours seen from direction d, for the object turned by the
    orthogonal 3x3 ``rotation``: the new colour at d is the old one at rotation^T d. Each degree's
    span is closed under rotation, so the least-squares fit on enough directions is exact."""
    rest = np.asarray(rest, dtype=np.float64)
    degree = degree_of(rest.shape[1])
    index = np.arange(64) + 0.5  # a Fibonacci sphere: well spread, no two alike
    z = 1 - 2 * index / 64
    phi = np.pi * (1 + 5**0.5) * index
    dirs = np.column_stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z])
    new_basis, old_basis = basis(dirs, degree), basis(dirs @ np.asarray(rotation, dtype=np.float64), degree)
    mix = np.linalg.lstsq(new_basis, old_basis, rcond=None)[0]  # new coefficients = mix^T-combination of old
    return np.einsum("jk,nkc->njc", mix, rest)
