"""HexPlane: a 4D feature field over (x, y, z, t) from six 2D feature planes.

The planes are (xy, xz, yz, xt, yt, zt); a point's feature is the element-wise product of its
bilinear samples from the six planes (K-planes / 4D-GS style), concatenated over resolutions.
Time planes start at 1 so that at initialisation the field is purely spatial and a zero-initialised
head gives the identity deformation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_PAIRS = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (x,y) (x,z) (y,z) (x,t) (y,t) (z,t)


@dataclass
class HexPlaneConfig:
    channels: int = 32
    spatial_res: tuple[int, ...] = (32, 64)  # one set of six planes per resolution
    time_res: int = 16
    bound: float = 1.0  # spatial coordinates are mapped from [-bound, bound] to the grid


class HexPlane(nn.Module):
    def __init__(self, config: HexPlaneConfig = HexPlaneConfig()):
        super().__init__()
        self.config = config
        self.grids = nn.ParameterList()
        for res in config.spatial_res:
            for a, b in _PAIRS:
                ra = res if a < 3 else config.time_res
                rb = res if b < 3 else config.time_res
                if b == 3:  # time plane: start at 1 (multiplicative identity)
                    grid = torch.ones(1, config.channels, rb, ra)
                else:
                    grid = torch.empty(1, config.channels, rb, ra).uniform_(0.1, 0.5)
                self.grids.append(nn.Parameter(grid))

    @property
    def out_dim(self) -> int:
        return self.config.channels * len(self.config.spatial_res)

    def forward(self, xyz: Tensor, t: Tensor) -> Tensor:
        """Features ``[..., C * n_res]`` at points ``xyz [..., 3]`` and normalised times ``t [...]`` in [0, 1]."""
        shape = xyz.shape[:-1]
        coords = torch.cat([xyz / self.config.bound, (t * 2.0 - 1.0)[..., None]], -1).reshape(1, -1, 1, 4)
        coords = coords.clamp(-1.0, 1.0)
        feats = []
        for r in range(len(self.config.spatial_res)):
            f = None
            for p, (a, b) in enumerate(_PAIRS):
                grid = self.grids[r * 6 + p]
                # grid_sample's (x, y) index (width, height) = (coordinate a, coordinate b).
                sample = F.grid_sample(grid, coords[..., [a, b]], mode="bilinear", padding_mode="border", align_corners=True)
                sample = sample[0, :, :, 0].T  # [P, C]
                f = sample if f is None else f * sample
            feats.append(f)
        return torch.cat(feats, -1).reshape(shape + (-1,))

    def forward_grid(self, xyz: Tensor, t: Tensor) -> Tensor:
        """Features ``[F, M, C * n_res]`` at every point ``xyz [M, 3]`` at every time ``t [F]``.

        Same values as ``forward`` on the expanded grid, but the three spatial planes are sampled
        once per point rather than once per (point, time). When the points need no gradient, a
        time plane's samples at all (point, time) pairs are two matrix products with the
        interpolation weights (points along its space axis, times along its time axis): the
        same bilinear values as ``grid_sample``, without sampling F x M scattered points (on 2
        CPU cores the whole field at 512 points and 33 times, forward and backward, takes 20 ms
        instead of 47).
        """
        m, f = xyz.shape[0], t.shape[0]
        space = (xyz / self.config.bound).clamp(-1.0, 1.0)
        time = (t * 2.0 - 1.0).clamp(-1.0, 1.0)
        separable = not xyz.requires_grad and not t.requires_grad
        if separable:
            time_weights = _linear_weights(time, self.config.time_res)  # [F, T]
        else:
            grid = torch.cat([space.unsqueeze(0).expand(f, m, 3), time[:, None, None].expand(f, m, 1)], -1)
        feats = []
        for r, res in enumerate(self.config.spatial_res):
            spatial, temporal = None, None
            space_weights = [_linear_weights(space[:, axis], res) for axis in range(3)] if separable else None  # [M, R]
            for p, (a, b) in enumerate(_PAIRS):
                plane = self.grids[r * 6 + p]
                if b < 3:
                    coords = space[:, [a, b]].reshape(1, m, 1, 2)
                    sample = F.grid_sample(plane, coords, mode="bilinear", padding_mode="border", align_corners=True)[0, :, :, 0].T
                    spatial = sample if spatial is None else spatial * sample  # [M, C]
                    continue
                if separable:  # plane [1, C, T, R]: rows are times, columns positions along axis a
                    c, rows, cols = plane.shape[1:]
                    at_times = (time_weights @ plane[0].transpose(0, 1).reshape(rows, c * cols)).reshape(f, c, cols)
                    sample = space_weights[a] @ at_times.transpose(1, 2)  # [F, M, C]
                else:
                    coords = grid[..., [a, b]].reshape(1, f * m, 1, 2)
                    sample = F.grid_sample(plane, coords, mode="bilinear", padding_mode="border", align_corners=True)[0, :, :, 0].T
                    sample = sample.reshape(f, m, -1)
                temporal = sample if temporal is None else temporal * sample  # [F, M, C]
            feats.append(spatial[None] * temporal)
        return torch.cat(feats, -1)

    def tv_loss(self) -> Tensor:
        """Total variation of the spatial planes and smoothness (2nd difference) of time planes."""
        total = 0.0
        for r in range(len(self.config.spatial_res)):
            for p, (a, b) in enumerate(_PAIRS):
                g = self.grids[r * 6 + p]
                if b == 3:
                    total = total + ((g[:, :, 2:] - 2 * g[:, :, 1:-1] + g[:, :, :-2]) ** 2).mean()
                else:
                    total = total + ((g[..., 1:, :] - g[..., :-1, :]) ** 2).mean() + ((g[..., 1:] - g[..., :-1]) ** 2).mean()
        return total


def _linear_weights(coords: Tensor, size: int) -> Tensor:
    """Linear interpolation weights ``[P, size]`` of coordinates ``[P]`` in [-1, 1] over ``size``
    samples spanning it (``grid_sample``'s ``align_corners=True``): two non-zeros per row."""
    pos = (coords.detach() + 1.0) * 0.5 * (size - 1)
    lower = pos.floor().clamp(0, max(size - 2, 0))
    frac = (pos - lower).clamp(0.0, 1.0) if size > 1 else torch.zeros_like(pos)
    weights = torch.zeros(coords.shape[0], size, dtype=coords.dtype, device=coords.device)
    index = lower.long()[:, None]
    weights.scatter_(1, index, (1.0 - frac)[:, None])
    if size > 1:
        weights.scatter_add_(1, index + 1, frac[:, None])
    return weights
