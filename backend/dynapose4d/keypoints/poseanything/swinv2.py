"""SwinV2 backbone as PoseAnything configures it (fixed 256x256 input, no padding anywhere).

Written from the description in ``../shared/poseanything/README.md`` §5; the module and parameter
names reproduce the released checkpoint's state_dict layout (``backbone.*``), buffers included,
so ``load_state_dict(strict=True)`` works on a converted checkpoint.

Facts that matter for parity (each moves keypoints far beyond float32 noise when wrong):
- residual post-norm blocks: ``x + LN(attn(x))``, ``x + LN(mlp(x))``;
- cosine attention with a per-head learned scale clamped at ln(100);
- a continuous position bias from a 2->512->heads MLP over log-spaced offsets, whose divisor is the
  *actual* window minus one (the checkpoint has no pretrained window sizes);
- a stage whose resolution is not larger than the window uses the whole map as one window and
  never shifts (stage 2 at 16x16, stage 3 shrinks its window to 8).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Above this the learned logit scale is clamped (SwinV2's max temperature 1/0.01).
_MAX_LOGIT_SCALE = math.log(1.0 / 0.01)
# The position-bias table is stretched to [-8, 8] before the log-spacing.
_TABLE_STRETCH = 8.0
# The shifted-window mask value: effectively -inf after softmax.
_MASK_VALUE = -100.0


def _relative_coords_table(window: int) -> torch.Tensor:
    """``[1, 2w-1, 2w-1, 2]`` log-spaced (dh, dw) offsets, normalised by ``window - 1``."""
    r = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1)[None]  # (dh, dw)
    table = table / max(window - 1, 1) * _TABLE_STRETCH
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(_TABLE_STRETCH)


def _relative_position_index(window: int) -> torch.Tensor:
    """``[w*w, w*w]`` int64 index of each token pair's offset into the flattened table."""
    ii, jj = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([ii.flatten(), jj.flatten()])  # [2, w*w], row-major tokens
    rel = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def _shift_mask(resolution: int, window: int, shift: int) -> torch.Tensor:
    """``[nW, w*w, w*w]`` additive mask keeping attention inside each region of a shifted grid."""
    region = torch.zeros(resolution, resolution)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in cuts:
        for cols in cuts:
            region[rows, cols] = label
            label += 1
    windows = _partition(region[None, :, :, None], window).flatten(1)  # [nW, w*w]
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, torch.tensor(_MASK_VALUE), torch.tensor(0.0))


def _partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B*nW, w, w, C]``, windows row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def _merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_partition`."""
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.window, self.heads = window, heads
        # Registration order fixes the state_dict order: own parameters, own buffers, children.
        self.logit_scale = nn.Parameter(torch.log(10.0 * torch.ones(heads, 1, 1)))
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("relative_coords_table", _relative_coords_table(window))
        self.register_buffer("relative_position_index", _relative_position_index(window))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, heads, bias=False))
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> torch.Tensor:
        """``[heads, w*w, w*w]`` bias in (0, 16)."""
        n = self.window * self.window
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.heads)
        bias = table[self.relative_position_index.view(-1)].view(n, n, self.heads).permute(2, 0, 1)
        return 16.0 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        # Keys carry no bias: the qkv bias is [q_bias, 0, v_bias].
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).view(bw, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        logits = logits * torch.clamp(self.logit_scale, max=_MAX_LOGIT_SCALE).exp()
        logits = logits + self.position_bias()[None]
        if mask is not None:
            nw = mask.shape[0]
            logits = logits.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]
            logits = logits.view(bw, self.heads, n, n)
        out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float = 4.0):
        super().__init__()
        if resolution <= window:  # one window covers the map: no shift
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        # A persistent buffer in the checkpoint for shifted blocks; absent (None) otherwise.
        self.register_buffer("attn_mask", _shift_mask(resolution, window, shift) if shift else None)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r, w, s = self.resolution, self.window, self.shift
        y = x.view(b, r, r, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = self.attn(_partition(y, w).view(-1, w * w, c), self.attn_mask)
        y = _merge(y.view(-1, w, w, c), w, r, r)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.norm1(y.reshape(b, n, c))
        return x + self.norm2(self.mlp(x))


class PatchMerging(nn.Module):
    def __init__(self, resolution: int, dim: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, self.resolution, self.resolution, c)
        # Sub-grid order (row, column): (0,0), (1,0), (0,1), (1,1).
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.norm(self.reduction(x.view(b, -1, 4 * c)))


class Stage(nn.Module):
    def __init__(self, dim: int, resolution: int, depth: int, heads: int, window: int, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2) for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinV2(nn.Module):
    """``[B, 3, 256, 256]`` -> ``[B, 8C, 16, 16]`` (stage-3 tokens upsampled x2, bilinear)."""

    def __init__(self, embed_dim: int = 96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size: int = 16,
                 img_size: int = 256, num_classes: int = 1000, patch_size: int = 4):
        super().__init__()
        self.img_size = img_size
        self.patch_embed = PatchEmbed(embed_dim, patch_size)
        res = img_size // patch_size
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            last = i == len(depths) - 1
            self.layers.append(Stage(embed_dim * 2**i, res >> i, depth, heads, window_size, downsample=not last))
        self.out_dim = embed_dim * 2 ** (len(depths) - 1)
        self.out_res = res >> (len(depths) - 1)
        self.norm = nn.LayerNorm(self.out_dim)
        # The unused ImageNet classifier: kept only because the checkpoint holds it.
        self.head = nn.Linear(self.out_dim, num_classes)

    def forward(self, x: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"the backbone takes {self.img_size}x{self.img_size} images; got {tuple(x.shape[-2:])}")
        x = self.patch_embed(x)
        stages = []
        if trace is not None:
            trace["patch_embed"] = x
        for layer in self.layers:
            x = layer(x)
            stages.append(x)
        x = self.norm(x)
        if trace is not None:
            trace["layers"], trace["norm"] = stages, x
        b = x.shape[0]
        x = x.view(b, self.out_res, self.out_res, -1).permute(0, 3, 1, 2)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
