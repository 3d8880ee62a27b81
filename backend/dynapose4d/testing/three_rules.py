"""three.js 0.187's splat rasterisation rules, emulated densely on the CPU (tests and benchmarks).

Our renderer follows gsplat (DESIGN.md §4); three.js's ``GaussianSplat`` differs in three ways
that change pictures (read in ``examples/jsm/objects/GaussianSplat.js``):

1. the kernel is cut at a Mahalanobis distance of 2 (a quad of +-2 standard deviations, pixels
   with r^2 > 4 discarded), where gsplat keeps every pixel with alpha >= 1/255 (up to ~3.3 sigma)
   and the extension's text says 3 sigma;
2. opacity is scaled by ``sqrt(det(cov2d) / det(cov2d + 0.3 I))``, the anti-aliasing
   compensation of Mip-Splatting (gsplat's "antialiased" mode), so small splats fade;
3. colours and opacities are stored as bytes, no 0.999 cap or 1/255 threshold; each
   ``GaussianSplat`` object is sorted on its own (back to front, 4096 depth bins) and the objects
   against each other by their bounding spheres' centres (three.js's transparent-object order).

:func:`render_three_rules` applies these rules to our projection, so a browser picture can be
checked against what three.js should draw from the file (the file's conventions), separately from
how far three.js's rules are from ours.
"""

from __future__ import annotations

import numpy as np
import torch

from ..render.projection import EPS2D, project_gaussians

CUTOFF_SIGMA = 2.0  # 0.5 * r^2 at r = 2 standard deviations
BIN_COUNT = 4096  # depth bins of three.js's counting sort
NEAR = 0.01


def draw_order(means: np.ndarray, scales: np.ndarray, depth: np.ndarray, camera, groups: np.ndarray | None,
               origins: np.ndarray | None = None) -> np.ndarray:
    """Indices front to back as three.js draws them back to front: objects by the depth of their
    origin (``origins [P, 3]``, world: a GaussianSplat's render geometry is a quad about its own
    origin, whose bounding sphere three.js sorts by), within one by 4096 depth bins over the
    splats' bounding sphere, ties in index order (a stable counting sort); Gaussians nearer than
    the near plane dropped."""
    groups = np.zeros(len(means), np.int64) if groups is None else np.asarray(groups)
    view = camera.viewmats.double().numpy()
    obj_key = np.zeros(len(means))
    bins = np.zeros(len(means), np.int64)
    for gid in np.unique(groups):
        members = np.flatnonzero(groups == gid)
        lo, hi = means[members].min(0), means[members].max(0)
        centre = 0.5 * (lo + hi)
        radius = float((np.linalg.norm(means[members] - centre, axis=1) + 2.0 * scales[members].max(1)).max())
        centre_depth = float((view[:3, :3] @ centre + view[:3, 3])[2])
        near = max(NEAR, centre_depth - radius)
        far = max(near + 1e-4, centre_depth + radius)
        origin = centre if origins is None else np.asarray(origins[gid], np.float64)
        obj_key[members] = float((view[:3, :3] @ origin + view[:3, 3])[2])
        depth_bin = np.clip(np.floor((depth[members] - near) * (BIN_COUNT - 1) / max(far - near, 1e-4)), 0, BIN_COUNT - 1)
        bins[members] = depth_bin.astype(np.int64)
    index = np.arange(len(means))
    order = np.lexsort((-index, bins, obj_key))  # front to back: near objects, near bins, later index first
    return order[depth[order] > NEAR]


@torch.no_grad()
def render_three_rules(means, rotations_wxyz, scales, opacities, colors, camera, background: float = 1.0,
                       groups: np.ndarray | None = None, origins: np.ndarray | None = None, rows: int = 8) -> np.ndarray:
    """An image ``[H, W, 3]`` of Gaussians (``means [N, 3]`` world, unit quaternions wxyz, linear
    ``scales [N, 3]``, ``opacities [N]``, display colours ``[N, 3]``) from one ``camera``
    (:class:`~dynapose4d.cameras.Cameras`) drawn by three.js 0.187's rules; ``groups [N]`` the
    GaussianSplat object of each Gaussian (sorted as whole objects, by ``origins [P, 3]``, each
    object's origin in the world), or None for one object."""
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    means, quats, scales, op, col = t(means), t(rotations_wxyz), t(scales), t(opacities), t(colors)
    width, height = camera.width, camera.height
    p = project_gaussians(means, quats, scales, op, camera.viewmats[None].double(), camera.Ks[None].double(), width, height)
    m2, con, depth = p.means2d[0], p.conics[0], p.depths[0]
    a, b, c = con[:, 0], con[:, 1], con[:, 2]
    inv_det = a * c - b * b
    ca, cb, cc = c / inv_det, -b / inv_det, a / inv_det  # the dilated 2D covariance
    base = (ca - EPS2D) * (cc - EPS2D) - cb * cb
    alpha0 = torch.round(op.clamp(0, 1) * 255) / 255 * torch.sqrt((base / (ca * cc - cb * cb)).clamp_min(0))
    col = torch.round(col.clamp(0, 1) * 255) / 255
    order = torch.from_numpy(draw_order(means.numpy(), scales.numpy(), depth.numpy(), camera, groups, origins))
    m2, con, alpha0, col, reach = m2[order], con[order], alpha0[order], col[order], 2.0 * torch.sqrt(cc[order])
    out = np.empty((height, width, 3))
    for r0 in range(0, height, rows):
        r1 = min(height, r0 + rows)
        band = ((m2[:, 1] + reach) >= r0) & ((m2[:, 1] - reach) <= r1)  # the kernel's rows reach this band
        bm, bc, ba, bcol = m2[band], con[band], alpha0[band], col[band]
        if not len(bm):
            out[r0:r1] = background
            continue
        ys, xs = torch.meshgrid(torch.arange(r0, r1, dtype=torch.float64) + 0.5, torch.arange(width, dtype=torch.float64) + 0.5, indexing="ij")
        d = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)[:, None, :] - bm[None]
        sigma = 0.5 * (bc[:, 0] * d[..., 0] ** 2 + bc[:, 2] * d[..., 1] ** 2) + bc[:, 1] * d[..., 0] * d[..., 1]
        alpha = torch.where((sigma >= 0) & (sigma <= CUTOFF_SIGMA), ba * torch.exp(-sigma), torch.zeros_like(sigma))
        after = torch.cumprod(1.0 - alpha, 1)
        before = torch.cat([torch.ones_like(after[:, :1]), after[:, :-1]], 1)
        rgb = (alpha * before) @ bcol + after[:, -1:] * background
        out[r0:r1] = rgb.reshape(r1 - r0, width, 3).numpy()
    return np.clip(out, 0.0, 1.0)
