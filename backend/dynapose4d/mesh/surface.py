"""One surface mesh of fixed topology from the canonical (t = 0) Gaussians.

1. A density field on a regular grid: each opaque Gaussian adds ``opacity * exp(-d^T S^-1 d / 2)``
   (its own covariance, widened by ``smoothing`` voxels so a sparse cloud still closes).
2. Enclosed empty space is filled: the cavities of the region above ``fill_level`` of the peak
   (a lower level than the surface's, so a shell whose density dips between splats still
   encloses its inside; ``scipy.ndimage.binary_fill_holes``) become solid. An object whose
   splats form a shell then gives one outer surface, not an inner one too.
3. Marching cubes (scikit-image) at ``level`` times the median density at the splats' centres
   (a fraction of that peak: the surface sits at the same place in the shell's profile, whatever
   the overlap of the splats); the grid is padded so the surface closes.
4. Cleanup: connected components smaller than ``min_component`` of the largest are dropped
   (floaters: stray splats away from the object).
5. Taubin smoothing (``smooth_iterations`` rounds of a shrink step and an inflate step on the
   uniform Laplacian: it removes the bumps sparse splats leave without shrinking the object),
   then decimation to ``target_faces`` (fast-simplification, quadric error).
6. Vertex colours: opacity- and distance-weighted mean of the nearest Gaussians' colours.

Everything is in backend world units (+Y up). Shapes: ``vertices [V, 3]``, ``faces [Fc, 3]``
(int32, counter-clockwise seen from outside), ``colors [V, 3]`` (sRGB in [0, 1], like the
Gaussians' colours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..gaussians import Gaussians, quat_to_rotmat


class MeshError(ValueError):
    """A scene from which no surface can be built; the message says why and what to change."""


@dataclass(frozen=True)
class SurfaceConfig:
    resolution: int = 128  # voxels along the longest side of the object's box
    level: float = 0.3  # iso-value, as a fraction of the median density at the splats' centres
    min_opacity: float = 0.05  # fainter Gaussians do not shape the surface
    smoothing: float = 0.5  # voxels of Gaussian blur added to every splat
    fill_level: float = 0.1  # fraction of the peak that encloses the inside (step 2)
    max_radius_voxels: int = 4  # each splat is evaluated within this many voxels of its centre
    min_component: float = 0.05  # keep components with at least this fraction of the largest's faces
    smooth_iterations: int = 10  # Taubin rounds (0: none)
    target_faces: int = 20_000  # after decimation (0: no decimation)
    color_neighbours: int = 8

    def __post_init__(self):
        if not 8 <= self.resolution <= 512:
            raise ValueError(f"resolution must be within 8..512, got {self.resolution}")
        if not self.level > 0:
            raise ValueError(f"level must be > 0, got {self.level}")
        if self.target_faces < 0:
            raise ValueError(f"target_faces must be >= 0, got {self.target_faces}")


@dataclass
class SurfaceMesh:
    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [Fc, 3] int32
    colors: np.ndarray  # [V, 3] float32, sRGB
    info: dict

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


def density_grid(static: Gaussians, config: SurfaceConfig = SurfaceConfig()) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The density ``[X, Y, Z]`` on a grid, its origin (the centre of voxel 0, 0, 0), the voxel
    size, and the median density at the opaque splats' centres."""
    g = static.detach().to("cpu", torch.float32)
    keep = g.opacities > config.min_opacity
    if int(keep.sum()) == 0:
        raise MeshError(f"no Gaussian is more opaque than min_opacity={config.min_opacity}: nothing to mesh")
    means, scales, opac = g.means[keep], g.scales[keep], g.opacities[keep]
    R = quat_to_rotmat(g.rotations[keep])  # [N, 3, 3]
    # 1. The box: robust to a few far floaters (they would waste the resolution).
    lo = torch.quantile(means, 0.001, dim=0) if len(means) > 1000 else means.min(0).values
    hi = torch.quantile(means, 0.999, dim=0) if len(means) > 1000 else means.max(0).values
    extent = float((hi - lo).max().clamp_min(1e-3))
    voxel = extent / config.resolution
    pad = config.max_radius_voxels + 2
    origin = lo - pad * voxel
    dims = torch.ceil((hi - lo) / voxel).long() + 2 * pad + 1
    # 2. Each splat on the voxels around its centre: covariance R S^2 R^T + (smoothing voxel)^2 I.
    blur = (config.smoothing * voxel) ** 2
    cov = R @ torch.diag_embed(scales**2) @ R.transpose(1, 2) + blur * torch.eye(3)
    precision = torch.linalg.inv(cov)
    radius = int(min(config.max_radius_voxels, max(1, math.ceil(3.0 * float(torch.quantile(scales.max(1).values, 0.95)) / voxel + config.smoothing))))
    r = torch.arange(-radius, radius + 1)
    offsets = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)  # [W, 3]
    grid = torch.zeros(int(dims.prod()), dtype=torch.float32)
    strides = torch.tensor([int(dims[1] * dims[2]), int(dims[2]), 1])
    chunk = max(1, 2_000_000 // len(offsets))
    for i in range(0, len(means), chunk):
        m, p, o = means[i : i + chunk], precision[i : i + chunk], opac[i : i + chunk]
        cell = torch.round((m - origin) / voxel).long()  # [n, 3]
        idx = cell[:, None, :] + offsets[None]  # [n, W, 3]
        d = origin + idx.to(torch.float32) * voxel - m[:, None, :]
        q = torch.einsum("nwi,nij,nwj->nw", d, p, d)
        val = o[:, None] * torch.exp(-0.5 * q)
        inside = ((idx >= 0) & (idx < dims)).all(-1) & (q < 9.0 * 3)
        grid.index_add_(0, (idx[inside] * strides).sum(-1), val[inside])
    grid = grid.reshape(*dims.tolist())
    cells = torch.round((means - origin) / voxel).long()
    cells = cells[((cells >= 0) & (cells < dims)).all(-1)]  # far floaters lie outside the box
    peak = float(grid[cells[:, 0], cells[:, 1], cells[:, 2]].median())
    return grid.numpy(), origin.numpy().astype(np.float64), voxel, peak


def extract_surface(static: Gaussians, config: SurfaceConfig = SurfaceConfig()) -> SurfaceMesh:
    """The canonical surface of ``static`` (steps in the module docstring)."""
    import fast_simplification
    from scipy import ndimage
    from skimage import measure

    density, origin, voxel, peak = density_grid(static, config)
    level = config.level * peak
    # 2. Fill enclosed space: the object is solid, the surface is its outside.
    solid = density >= level
    if not solid.any() or not level > 0:
        raise MeshError(f"the density never reaches level={config.level} of its peak {peak:.3g}: lower the level or raise smoothing")
    low = density >= config.fill_level * peak
    inside = ndimage.binary_fill_holes(low) & ~low
    # Grow the cavity out to the shell through the faint layer on its inner side (at most a
    # splat's reach), or that layer would make a second, inner surface.
    inside = ndimage.binary_dilation(inside, iterations=config.max_radius_voxels + 1, mask=~solid)
    density = np.where(inside, 2.0 * level, density)
    # 3. Marching cubes. Our density is higher inside; scikit-image's "ascent" then winds the
    # faces counter-clockwise seen from outside (glTF's front faces), checked by a test.
    verts, faces, _, _ = measure.marching_cubes(density, level=level, spacing=(voxel,) * 3, gradient_direction="ascent")
    verts = verts + origin
    raw_faces = len(faces)
    # 4. Components.
    verts, faces = _keep_large_components(verts, faces, config.min_component)
    # 5. Smoothing, then decimation.
    verts = taubin_smooth(verts, faces, config.smooth_iterations)
    if config.target_faces and len(faces) > config.target_faces:
        reduction = 1.0 - config.target_faces / len(faces)
        verts, faces = fast_simplification.simplify(verts.astype(np.float32), faces.astype(np.int32), target_reduction=reduction)
    verts = np.ascontiguousarray(verts, dtype=np.float32)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    colors = vertex_colors(static, verts, config)
    info = {"voxel": voxel, "level": level, "grid": list(density.shape), "raw_faces": int(raw_faces), "faces": int(len(faces)), "vertices": int(len(verts))}
    return SurfaceMesh(verts, faces, colors, info)


def taubin_smooth(verts: np.ndarray, faces: np.ndarray, iterations: int, lam: float = 0.5, mu: float = -0.53) -> np.ndarray:
    """Taubin's lambda|mu smoothing with the uniform Laplacian (each vertex towards the mean of
    its neighbours by ``lam``, then away by ``mu``): a low-pass filter that keeps the volume."""
    if iterations <= 0 or len(faces) == 0:
        return verts
    from scipy.sparse import coo_matrix, diags

    n = len(verts)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    adj = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # shared edges were summed
    mean = diags(1.0 / np.maximum(np.asarray(adj.sum(1)).ravel(), 1.0)) @ adj
    v = verts.astype(np.float64)
    for _ in range(iterations):
        v = v + lam * (mean @ v - v)
        v = v + mu * (mean @ v - v)
    return v


def _keep_large_components(verts: np.ndarray, faces: np.ndarray, min_fraction: float):
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(verts)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    count, label = connected_components(graph, directed=False)
    face_label = label[faces[:, 0]]
    sizes = np.bincount(face_label, minlength=count)
    keep_label = sizes >= min_fraction * sizes.max()
    kept = faces[keep_label[face_label]]
    used = np.unique(kept)
    remap = np.full(n, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return verts[used], remap[kept]


def vertex_colors(static: Gaussians, vertices: np.ndarray, config: SurfaceConfig = SurfaceConfig()) -> np.ndarray:
    """``[V, 3]`` sRGB colours: the nearest opaque Gaussians' colours, weighted by opacity and by
    a Gaussian of the distance (scale: the distance to the nearest one)."""
    from scipy.spatial import cKDTree

    g = static.detach().to("cpu", torch.float32)
    keep = (g.opacities > config.min_opacity).numpy()
    means = g.means.numpy()[keep]
    rgb = g.rgb.clamp(0.0, 1.0).numpy()[keep]
    opac = g.opacities.numpy()[keep]
    k = min(config.color_neighbours, len(means))
    dist, idx = cKDTree(means).query(vertices, k=k)
    dist, idx = dist.reshape(len(vertices), k), idx.reshape(len(vertices), k)
    sigma = np.maximum(dist[:, :1], 1e-6) * 2.0
    w = opac[idx] * np.exp(-0.5 * (dist / sigma) ** 2)
    w /= w.sum(1, keepdims=True)
    return np.einsum("vk,vkc->vc", w, rgb[idx]).astype(np.float32)
