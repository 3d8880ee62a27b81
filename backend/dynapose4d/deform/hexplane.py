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
