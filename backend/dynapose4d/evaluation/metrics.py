"""Image and motion metrics (PSNR, SSIM, masked PSNR, 3D keypoint error, jitter)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """PSNR in dB of images in [0, 1] ``[..., H, W, 3]``; with ``mask [..., H, W]`` only inside it."""
    sq = (pred.float() - target.float()) ** 2
    if mask is not None:
        m = mask.float()[..., None].expand_as(sq)
        if m.sum() == 0:
            return float("nan")
        mse = (sq * m).sum() / m.sum()
    else:
        mse = sq.mean()
    return float(10 * torch.log10(1.0 / mse.clamp_min(1e-12)))


def _gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: Tensor, target: Tensor) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) of
    images ``[..., H, W, 3]`` in [0, 1], computed per channel on the valid region.

    The (co)variances are E[x^2] - E[x]^2 in float32; computed on raw values their cancellation
    (~1e-7) is not small against c2 = 9e-4 on flat regions such as a white background, so each
    image channel is first shifted by its mean (the identities hold for any shift)."""
    x = pred.float().reshape((-1,) + pred.shape[-3:]).permute(0, 3, 1, 2)
    y = target.float().reshape((-1,) + target.shape[-3:]).permute(0, 3, 1, 2)
    c = x.shape[1]
    w = _gaussian_window().to(x)[None, None].expand(c, 1, 11, 11)

    def blur(img):
        return F.conv2d(img, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    x0, y0 = x.mean((2, 3), keepdim=True), y.mean((2, 3), keepdim=True)
    xc, yc = x - x0, y - y0
    dx, dy = mu_x - x0, mu_y - y0
    sxx = blur(xc * xc) - dx**2
    syy = blur(yc * yc) - dy**2
    sxy = blur(xc * yc) - dx * dy
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def moving_region(frames: Tensor, threshold: float = 0.05, dilate: int = 2) -> Tensor:
    """Mask ``[H, W]`` of pixels that change over a sequence ``[T, H, W, 3]`` (vs frame 0).

    White backgrounds inflate whole-frame PSNR; this is where motion is judged.
    """
    diff = (frames - frames[:1]).abs().amax(-1).amax(0)
    m = (diff > threshold).float()[None, None]
    if dilate:
        m = F.max_pool2d(m, 2 * dilate + 1, stride=1, padding=dilate)
    return m[0, 0] > 0


def keypoint_error(pred: Tensor, target: Tensor, c2w: Tensor) -> dict[str, float]:
    """Mean 3D keypoint error ``[T, P, 3]`` vs ``[T, P, 3]``, split in the reference camera frame
    into the image-plane part (camera x, y) and the depth part (camera z)."""
    d = (pred - target) @ c2w[:3, :3].to(pred)  # world offset -> camera axes
    return {
        "kp_err": float(d.norm(dim=-1).mean()),
        "kp_err_plane": float(d[..., :2].norm(dim=-1).mean()),
        "kp_err_depth": float(d[..., 2].abs().mean()),
    }


def jitter(trajectories: Tensor) -> float:
    """Mean norm of the second difference of trajectories ``[T, P, 3]`` (0 for uniform motion)."""
    if trajectories.shape[0] < 3:
        return 0.0
    acc = trajectories[2:] - 2 * trajectories[1:-1] + trajectories[:-2]
    return float(acc.norm(dim=-1).mean())

