"""Tile rasteriser for the CPU, compiled with numba: the fast CPU path behind ``render()``.

Same contract and rules as :func:`dynapose4d.render.pairs.rasterize` (DESIGN.md §4), organised
the way gsplat's CUDA kernels are:

1. Binning (per image). Visible Gaussians (both radii > 0) are taken in depth order (a stable
   sort, so equal depths keep index order) and appended to the list of every 16x16 tile their
   box touches. The box is the pixels whose centres lie in ``[m - r, m + r]``, the region the
   projection's opacity-aware radius guarantees to enclose every ``alpha >= 1/255`` pixel; its
   tiles are a subset of gsplat's ``floor((m - r)/16) .. ceil((m + r)/16)`` that holds the same
   pixels. Appending in depth order leaves each tile's list sorted, so no per-tile sort is needed.
2. Forward (parallel over tiles). Each tile walks its list front to back; each Gaussian touches
   only the pixels of its box inside the tile. A pixel skips a Gaussian when ``sigma < 0`` or
   ``alpha < 1/255`` and stops before the one that would take its transmittance ``T (1 - alpha)``
   to 1e-4 or below. Kept per pixel: the final ``T`` and the number of list entries up to the last
   contributor.
3. Backward (parallel over tiles). Each tile walks its list back to front from the last
   contributor, rebuilding ``T`` before each Gaussian as ``T_after / (1 - alpha)`` and carrying the
   suffix sum of what lies behind (gsplat's backward). Alpha is recomputed by the same helper as
   in the forward, so both passes make the same skip decisions. Gradients go into one row per
   list entry, then a per-image reduction sums them by Gaussian: no races, and the result does
   not depend on the number of threads or the schedule.

All arithmetic is float64 (the kernels specialise on the input dtype for loads and stores):
float32 inputs get float64 transmittance and sums, like the PyTorch path's float64 log-sum.
A clamped alpha (``opacity exp(-sigma) > 0.999``) passes no gradient to opacity or sigma, as
``torch.clamp_max`` and gsplat do.

The kernels are cached on disk (``cache=True``): the first call on a machine compiles them
for the dtype at hand (10-17 s per dtype on a 2-core machine), later processes load them in
about a second.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from .numba_threads import numba_parallel
from .pairs import DEFAULT_MAX_PAIRS, RenderBudgetError
from .projection import ALPHA_MAX, ALPHA_MIN, TRANSMITTANCE_MIN

__all__ = ["rasterize_numba", "TILE"]

TILE = 16
# Tiles handed to a thread at a time: tiles differ widely in cost (the object sits in the middle
# of the frame), so a small dynamic chunk balances the two cores better than a static split.
TILES_PER_CHUNK = 4
# feats columns: mean x, mean y, conic a, b, c, opacity, red, green, blue, depth.
NUM_FEATS = 10



@njit(cache=True, nogil=True)
def _sigma(dx, dy, a, b, c):
    """Mahalanobis half-distance of a pixel offset; operand order as in pairs._sigma_alpha."""
    return 0.5 * (a * (dx * dx) + c * (dy * dy)) + b * (dy * dx)


@njit(cache=True, nogil=True)
def _alpha(sigma, opacity):
    """(exp(-sigma), unclamped opacity exp(-sigma), clamped alpha): the single place alpha is
    computed, so the forward and backward passes agree bit for bit on which pairs are skipped."""
    ex = math.exp(-sigma)
    raw = opacity * ex
    return ex, raw, min(ALPHA_MAX, raw)


@njit(cache=True, nogil=True)
def _sigma_cut(opacity):
    """Below ``alpha >= 1/255`` iff ``sigma > log(255 opacity)``. Used only as a pre-filter with a
    margin, so the exact test (on the exp) still decides every borderline pair."""
    return math.log(opacity / ALPHA_MIN) + 1e-6


@njit(parallel=True, cache=True, nogil=True)
def _bin_count(feats, radii, order, n_visible, width, height, tiles_x, boxes, tile_count, candidates):
    """Step 1a. Pixel boxes ``boxes [I*N, 4]`` = (x0, x1, y0, y1), half-open and clamped to the
    image; entries per tile ``tile_count [I*T]``; box areas per image ``candidates [I]`` (an upper
    bound on the Gaussian-pixel pairs, for the budget check)."""
    n_img, n = feats.shape[0], feats.shape[1]
    n_tiles = tile_count.shape[0] // max(n_img, 1)
    for img in prange(n_img):
        total = 0
        for k in range(n_visible[img]):
            g = order[img, k]
            mx, my = feats[img, g, 0], feats[img, g, 1]
            rx, ry = float(radii[img, g, 0]), float(radii[img, g, 1])
            # Pixel j has its centre at j + 0.5: the box [m - r, m + r] covers j in [x0, x1).
            x0 = min(max(math.ceil(mx - rx - 0.5), 0), width)
            x1 = min(max(math.floor(mx + rx - 0.5) + 1, 0), width)
            y0 = min(max(math.ceil(my - ry - 0.5), 0), height)
            y1 = min(max(math.floor(my + ry - 0.5) + 1, 0), height)
            row = img * n + g
            boxes[row, 0], boxes[row, 1], boxes[row, 2], boxes[row, 3] = x0, x1, y0, y1
            if x1 <= x0 or y1 <= y0:
                continue
            total += (x1 - x0) * (y1 - y0)
            for ty in range(y0 // TILE, (y1 - 1) // TILE + 1):
                for tx in range(x0 // TILE, (x1 - 1) // TILE + 1):
                    tile_count[img * n_tiles + ty * tiles_x + tx] += 1
        candidates[img] = total


@njit(parallel=True, cache=True, nogil=True)
def _bin_fill(order, n_visible, boxes, tiles_x, tile_start, tile_gauss):
    """Step 1b. ``tile_gauss [E]``: per tile (image-major), flat Gaussian ids ``img * N + g`` front
    to back; tile ``t`` owns ``tile_gauss[tile_start[t]:tile_start[t + 1]]``."""
    n_img, n = order.shape[0], order.shape[1]
    n_tiles = (tile_start.shape[0] - 1) // max(n_img, 1)
    for img in prange(n_img):
        cursor = tile_start[img * n_tiles : (img + 1) * n_tiles].copy()
        for k in range(n_visible[img]):
            row = img * n + order[img, k]
            x0, x1, y0, y1 = boxes[row, 0], boxes[row, 1], boxes[row, 2], boxes[row, 3]
            if x1 <= x0 or y1 <= y0:
                continue
            for ty in range(y0 // TILE, (y1 - 1) // TILE + 1):
                for tx in range(x0 // TILE, (x1 - 1) // TILE + 1):
                    t = ty * tiles_x + tx
                    tile_gauss[cursor[t]] = row
                    cursor[t] += 1


@njit(parallel=True, cache=True, nogil=True)
def _forward(feats, boxes, tile_start, tile_gauss, width, height, tiles_x, out, t_final, n_contrib):
    """Step 2. Writes ``out [I, H, W, 5]`` (premultiplied rgb, alpha, depth_acc), the final
    transmittance ``t_final [I, H, W]`` and ``n_contrib [I, H, W]``, the number of entries of the
    pixel's tile list up to and including its last contributor."""
    n = feats.shape[1]
    n_tiles = tiles_x * ((height + TILE - 1) // TILE)
    for tile in prange(tile_start.shape[0] - 1):
        img, t = tile // n_tiles, tile % n_tiles
        tx0, ty0 = (t % tiles_x) * TILE, (t // tiles_x) * TILE
        tx1, ty1 = min(tx0 + TILE, width), min(ty0 + TILE, height)
        trans = np.ones(TILE * TILE)
        acc = np.zeros((TILE * TILE, 5))
        last = np.zeros(TILE * TILE, np.int32)
        done = np.zeros(TILE * TILE, np.bool_)
        remaining = (tx1 - tx0) * (ty1 - ty0)
        start = tile_start[tile]
        for e in range(start, tile_start[tile + 1]):
            if remaining == 0:  # every pixel of the tile has stopped
                break
            row = tile_gauss[e]
            g = row - img * n
            mx, my = feats[img, g, 0], feats[img, g, 1]
            ca, cb, cc, opacity = feats[img, g, 2], feats[img, g, 3], feats[img, g, 4], feats[img, g, 5]
            red, green, blue, z = feats[img, g, 6], feats[img, g, 7], feats[img, g, 8], feats[img, g, 9]
            cut = _sigma_cut(opacity)
            for y in range(max(boxes[row, 2], ty0), min(boxes[row, 3], ty1)):
                dy = (y + 0.5) - my
                for x in range(max(boxes[row, 0], tx0), min(boxes[row, 1], tx1)):
                    p = (y - ty0) * TILE + (x - tx0)
                    if done[p]:
                        continue
                    dx = (x + 0.5) - mx
                    sigma = _sigma(dx, dy, ca, cb, cc)
                    if sigma < 0.0 or sigma > cut:
                        continue
                    _, _, alpha = _alpha(sigma, opacity)
                    if alpha < ALPHA_MIN:
                        continue
                    t_next = trans[p] * (1.0 - alpha)
                    if t_next <= TRANSMITTANCE_MIN:
                        done[p] = True
                        remaining -= 1
                        continue
                    w = alpha * trans[p]
                    acc[p, 0] += w * red
                    acc[p, 1] += w * green
                    acc[p, 2] += w * blue
                    acc[p, 3] += w
                    acc[p, 4] += w * z
                    trans[p] = t_next
                    last[p] = e - start + 1
        for y in range(ty0, ty1):
            for x in range(tx0, tx1):
                p = (y - ty0) * TILE + (x - tx0)
                for ch in range(5):
                    out[img, y, x, ch] = acc[p, ch]
                t_final[img, y, x] = trans[p]
                n_contrib[img, y, x] = last[p]


@njit(parallel=True, cache=True, nogil=True)
def _backward(feats, boxes, tile_start, tile_gauss, width, height, tiles_x, t_final, n_contrib, grad_out, grad_entries):
    """Step 3. ``grad_out [I, H, W, 5]`` is dL/d``out``; writes dL/d``feats`` of each list entry
    into ``grad_entries [E, 10]`` (zero-initialised).

    Per pixel, with v_k = color_k . dL/drgb + dL/dalpha + depth_k dL/ddepth and w_k = alpha_k T_k:
    dL/dalpha_k = T_k v_k - (sum over j behind k of w_j v_j) / (1 - alpha_k).
    """
    n = feats.shape[1]
    n_tiles = tiles_x * ((height + TILE - 1) // TILE)
    for tile in prange(tile_start.shape[0] - 1):
        img, t = tile // n_tiles, tile % n_tiles
        tx0, ty0 = (t % tiles_x) * TILE, (t // tiles_x) * TILE
        tx1, ty1 = min(tx0 + TILE, width), min(ty0 + TILE, height)
        trans = np.ones(TILE * TILE)
        behind = np.zeros(TILE * TILE)  # sum of w_j v_j over the contributors already visited
        last = np.zeros(TILE * TILE, np.int32)
        grad = np.zeros((TILE * TILE, 5))
        k_max = 0
        for y in range(ty0, ty1):
            for x in range(tx0, tx1):
                p = (y - ty0) * TILE + (x - tx0)
                trans[p] = t_final[img, y, x]
                last[p] = n_contrib[img, y, x]
                k_max = max(k_max, last[p])
                for ch in range(5):
                    grad[p, ch] = grad_out[img, y, x, ch]
        start = tile_start[tile]
        for k in range(k_max - 1, -1, -1):
            e = start + k
            row = tile_gauss[e]
            g = row - img * n
            mx, my = feats[img, g, 0], feats[img, g, 1]
            ca, cb, cc, opacity = feats[img, g, 2], feats[img, g, 3], feats[img, g, 4], feats[img, g, 5]
            red, green, blue, z = feats[img, g, 6], feats[img, g, 7], feats[img, g, 8], feats[img, g, 9]
            cut = _sigma_cut(opacity)
            g_mx = g_my = g_a = g_b = g_c = g_op = g_r = g_g = g_bl = g_z = 0.0
            for y in range(max(boxes[row, 2], ty0), min(boxes[row, 3], ty1)):
                dy = (y + 0.5) - my
                for x in range(max(boxes[row, 0], tx0), min(boxes[row, 1], tx1)):
                    p = (y - ty0) * TILE + (x - tx0)
                    if k >= last[p]:  # behind this pixel's stop
                        continue
                    dx = (x + 0.5) - mx
                    sigma = _sigma(dx, dy, ca, cb, cc)
                    if sigma < 0.0 or sigma > cut:
                        continue
                    ex, raw, alpha = _alpha(sigma, opacity)
                    if alpha < ALPHA_MIN:
                        continue
                    one_minus = 1.0 - alpha
                    t_before = trans[p] / one_minus
                    trans[p] = t_before
                    w = alpha * t_before
                    v = red * grad[p, 0] + green * grad[p, 1] + blue * grad[p, 2] + grad[p, 3] + z * grad[p, 4]
                    d_alpha = t_before * v - behind[p] / one_minus
                    behind[p] += w * v
                    g_r += w * grad[p, 0]
                    g_g += w * grad[p, 1]
                    g_bl += w * grad[p, 2]
                    g_z += w * grad[p, 4]
                    if raw <= ALPHA_MAX:  # a clamped alpha is flat in opacity and sigma
                        g_op += d_alpha * ex
                        d_sigma = -d_alpha * alpha
                        # sigma depends on the mean through dx = px - mx, dy = py - my.
                        g_mx -= d_sigma * (ca * dx + cb * dy)
                        g_my -= d_sigma * (cc * dy + cb * dx)
                        g_a += d_sigma * 0.5 * (dx * dx)
                        g_b += d_sigma * (dx * dy)
                        g_c += d_sigma * 0.5 * (dy * dy)
            grad_entries[e, 0] = g_mx
            grad_entries[e, 1] = g_my
            grad_entries[e, 2] = g_a
            grad_entries[e, 3] = g_b
            grad_entries[e, 4] = g_c
            grad_entries[e, 5] = g_op
            grad_entries[e, 6] = g_r
            grad_entries[e, 7] = g_g
            grad_entries[e, 8] = g_bl
            grad_entries[e, 9] = g_z


@njit(parallel=True, cache=True, nogil=True)
def _reduce(tile_start, tile_gauss, grad_entries, n_img, grad_feats):
    """Step 3b. Sum the list entries' gradients by Gaussian: ``grad_feats [I*N, 10]``. Images own
    disjoint Gaussian rows, so they reduce in parallel; within an image the order is fixed."""
    n_tiles = (tile_start.shape[0] - 1) // max(n_img, 1)
    for img in prange(n_img):
        for e in range(tile_start[img * n_tiles], tile_start[(img + 1) * n_tiles]):
            row = tile_gauss[e]
            for ch in range(NUM_FEATS):
                grad_feats[row, ch] += grad_entries[e, ch]


class _Tiles:
    """The binning of one call, kept for the backward pass."""

    def __init__(self, feats: np.ndarray, radii: Tensor, depths: Tensor, width: int, height: int, max_pairs: int):
        n_img, n = feats.shape[:2]
        self.tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
        visible = (radii > 0).all(-1)
        # Stable: equal depths keep index order, as in the PyTorch path and gsplat's radix sort.
        key = torch.where(visible, depths, torch.full_like(depths, math.inf))
        order = torch.argsort(key, dim=1, stable=True).numpy()
        n_visible = visible.sum(1).numpy()
        radii_np = radii.to(torch.int32).contiguous().numpy()
        self.boxes = np.zeros((n_img * n, 4), np.int64)
        tile_count = np.zeros(n_img * self.tiles_x * tiles_y, np.int64)
        candidates = np.zeros(n_img, np.int64)
        _bin_count(feats, radii_np, order, n_visible, width, height, self.tiles_x, self.boxes, tile_count, candidates)
        if candidates.sum() > max_pairs:
            raise RenderBudgetError(
                f"the scene needs more than {max_pairs:,} Gaussian-pixel pairs ({int(n_visible.sum()):,} visible "
                "Gaussians); a Gaussian is probably very large on screen (camera inside the scene, "
                "or degenerate scales)"
            )
        self.tile_start = np.zeros(len(tile_count) + 1, np.int64)
        np.cumsum(tile_count, out=self.tile_start[1:])
        self.tile_gauss = np.empty(self.tile_start[-1], np.int64)
        _bin_fill(order, n_visible, self.boxes, self.tiles_x, self.tile_start, self.tile_gauss)


class _RasterizeNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: Tensor, radii: Tensor, width: int, height: int, max_pairs: int) -> Tensor:
        f = feats.detach().contiguous().numpy()
        n_img = f.shape[0]
        out = np.empty((n_img, height, width, 5), f.dtype)
        t_final = np.empty((n_img, height, width))
        n_contrib = np.empty((n_img, height, width), np.int32)
        with numba_parallel(TILES_PER_CHUNK):
            tiles = _Tiles(f, radii, feats[..., 9].detach(), width, height, max_pairs)
            _forward(
                f, tiles.boxes, tiles.tile_start, tiles.tile_gauss, width, height, tiles.tiles_x,
                out, t_final, n_contrib,
            )
        ctx.state = (f, tiles, t_final, n_contrib, width, height)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        f, tiles, t_final, n_contrib, width, height = ctx.state
        g = grad_out.to(torch.float64).contiguous().numpy()
        grad_entries = np.zeros((len(tiles.tile_gauss), NUM_FEATS))
        grad_feats = np.zeros((f.shape[0] * f.shape[1], NUM_FEATS))
        with numba_parallel(TILES_PER_CHUNK):
            _backward(
                f, tiles.boxes, tiles.tile_start, tiles.tile_gauss, width, height, tiles.tiles_x,
                t_final, n_contrib, g, grad_entries,
            )
            _reduce(tiles.tile_start, tiles.tile_gauss, grad_entries, f.shape[0], grad_feats)
        grad = torch.from_numpy(grad_feats).reshape(f.shape).to(grad_out.dtype)
        return grad, None, None, None, None


def rasterize_numba(
    means2d: Tensor,  # [I, N, 2]
    conics: Tensor,  # [I, N, 3]
    opacities: Tensor,  # [I, N]
    colors: Tensor,  # [I, N, 3]
    depths: Tensor,  # [I, N]
    radii: Tensor,  # [I, N, 2] int, 0 = culled
    width: int,
    height: int,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> tuple[Tensor, Tensor, Tensor]:
    """Front-to-back alpha compositing of screen-space Gaussians on CPU tensors (float32 or
    float64), differentiable w.r.t. means2d, conics, opacities, colors and depths.

    Returns ``rgb [I, H, W, 3]`` (premultiplied, no background), ``alpha [I, H, W]`` and the
    alpha-weighted z-depth ``depth_acc [I, H, W]``, like :func:`dynapose4d.render.pairs.rasterize`.
    Raises :class:`RenderBudgetError` when the Gaussians' pixel boxes hold more than
    ``max_pairs`` Gaussian-pixel pairs in all (a bound on the work, not on memory: the kernel's
    memory grows with Gaussian-tile pairs only).
    """
    if means2d.device.type != "cpu":
        raise ValueError(f"the numba rasteriser needs CPU tensors, got {means2d.device}; use the 'torch' backend")
    if means2d.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the numba rasteriser needs float32 or float64 tensors, got {means2d.dtype}")
    feats = torch.cat([means2d, conics, opacities[..., None], colors, depths[..., None]], -1)
    out = _RasterizeNumba.apply(feats, radii, width, height, max_pairs)
    return out[..., :3], out[..., 3], out[..., 4]
