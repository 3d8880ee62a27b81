"""Images and support keypoints into PoseAnything's input, and its output back to frame pixels.

Two image recipes (``../shared/poseanything/README.md`` §4):

- ``"demo"``: exactly what the released demo feeds the network (and what the golden data checks):
  the ImageNet statistics applied in BGR order (so red and blue statistics are swapped), padding to
  a square with zeros *after* normalisation, then a bilinear resize to 256x256 without antialiasing.
- ``"train"``: the recipe the weights were trained with: correct RGB statistics and a black border
  (zero *before* normalisation); same pad/resize geometry.

Coordinates. Our pixel convention (DESIGN.md §4) puts pixel (i, j)'s centre at (j + 0.5, i + 0.5).
The original code works in OpenCV/mmpose pixels, whose integer coordinates are pixel centres (the
demo's support points are mouse clicks, the training labels are mmpose joint positions), so
``model pixel = ours - 0.5`` in the 256x256 input frame. The pad/resize itself is a pure scale in
the corner convention (align_corners=False maps image corners to corners).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

INPUT_SIZE = 256
HEATMAP_SIZE = 64
HEATMAP_SIGMA = 1.0
# Half a pixel: OpenCV/mmpose coordinates (integer = pixel centre) vs ours (integer = pixel corner).
MODEL_PIXEL_OFFSET = 0.5

_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
RECIPES = ("demo", "train")


@dataclass(frozen=True)
class Geometry:
    """How a ``height x width`` image was padded (to ``padded_h x padded_w``) and resized to 256."""

    height: int
    width: int
    pad_left: int
    pad_top: int
    padded_h: int
    padded_w: int

    @classmethod
    def of(cls, height: int, width: int) -> "Geometry":
        # The demo pads the shorter side by (long - short) // 2 on each end, unless the aspect
        # ratio rounds to 1.00 (then it only stretches); an odd difference stays one pixel off square.
        left = top = 0
        if round(height / width, 2) != 1:
            if height > width:
                left = (height - width) // 2
            else:
                top = (width - height) // 2
        return cls(height, width, left, top, height + 2 * top, width + 2 * left)

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Our pixels on the image -> our pixels on the 256x256 input."""
        xy = np.asarray(xy, np.float64)
        scale = np.array([INPUT_SIZE / self.padded_w, INPUT_SIZE / self.padded_h])
        return (xy + [self.pad_left, self.pad_top]) * scale

    def from_input(self, xy: np.ndarray) -> np.ndarray:
        """Our pixels on the 256x256 input -> our pixels on the image."""
        xy = np.asarray(xy, np.float64)
        scale = np.array([self.padded_w / INPUT_SIZE, self.padded_h / INPUT_SIZE])
        return xy * scale - [self.pad_left, self.pad_top]


def prepare_images(images, recipe: str = "demo", device=None) -> tuple[torch.Tensor, Geometry]:
    """``[T, 3, 256, 256]`` float32 network input from T RGB images of one size.

    ``images``: ``[T, H, W, 3]`` (or a sequence) float32 in [0, 1]; uint8 is divided by 255.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown preprocessing recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    arr = np.stack([np.asarray(im) for im in images]) if not isinstance(images, np.ndarray) else images
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be [T, H, W, 3] RGB; got shape {arr.shape}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(0, 3, 1, 2)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    geo = Geometry.of(arr.shape[1], arr.shape[2])
    mean, std = _IMAGENET_MEAN_RGB, _IMAGENET_STD_RGB
    if recipe == "demo":  # statistics applied to B, G, R: red and blue swapped in RGB terms
        mean, std = mean[::-1], std[::-1]
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    pad = (geo.pad_left, geo.pad_left, geo.pad_top, geo.pad_top)
    if recipe == "demo":
        x = F.pad((x - mean_t) / std_t, pad, value=0.0)
    else:
        x = (F.pad(x, pad, value=0.0) - mean_t) / std_t
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=False)
    return x.contiguous(), geo


def support_heatmaps(model_xy: np.ndarray, visible=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[K, 64, 64]`` heatmaps and ``[K]`` weights for keypoints in *model* pixels of the 256 input.

    The original target generator (sigma 1): the centre is rounded to a heatmap cell
    (``int(x / 4 + 0.5)``, truncating), an unnormalised 7x7 Gaussian is pasted and clipped at the
    border, and a keypoint whose window misses the map entirely gets weight 0.
    """
    model_xy = np.asarray(model_xy, np.float64).reshape(-1, 2)
    k = len(model_xy)
    weights = np.ones(k, np.float32) if visible is None else np.asarray(visible, np.float32).reshape(k)
    maps = np.zeros((k, HEATMAP_SIZE, HEATMAP_SIZE), np.float32)
    stride = INPUT_SIZE / HEATMAP_SIZE
    radius = int(3 * HEATMAP_SIGMA)
    size = 2 * radius + 1
    g = np.arange(size, dtype=np.float64)
    gauss = np.exp(-((g[None, :] - radius) ** 2 + (g[:, None] - radius) ** 2) / (2 * HEATMAP_SIGMA**2))
    for i, (x, y) in enumerate(model_xy):
        mu_x, mu_y = int(x / stride + 0.5), int(y / stride + 0.5)
        x0, y0, x1, y1 = mu_x - radius, mu_y - radius, mu_x + radius + 1, mu_y + radius + 1
        if x0 >= HEATMAP_SIZE or y0 >= HEATMAP_SIZE or x1 < 0 or y1 < 0:
            weights[i] = 0.0
            continue
        if weights[i] <= 0.5:
            continue
        gx0, gx1 = max(0, -x0), min(x1, HEATMAP_SIZE) - x0
        gy0, gy1 = max(0, -y0), min(y1, HEATMAP_SIZE) - y0
        maps[i, max(0, y0):min(y1, HEATMAP_SIZE), max(0, x0):min(x1, HEATMAP_SIZE)] = gauss[gy0:gy1, gx0:gx1]
    return torch.from_numpy(maps), torch.from_numpy(weights)


def support_input(image: np.ndarray, xy: np.ndarray, visible=None, recipe: str = "demo", device=None):
    """The support's network input: ``([1, 3, 256, 256] image, [K, 64, 64] heatmaps, [K] weights)``.

    ``xy``: ``[K, 2]`` our pixels on ``image``.
    """
    img, geo = prepare_images(np.asarray(image)[None], recipe, device)
    model_xy = geo.to_input(xy) - MODEL_PIXEL_OFFSET
    maps, weights = support_heatmaps(model_xy, visible)
    return img, maps.to(img.device), weights.to(img.device)


def output_to_pixels(points: torch.Tensor | np.ndarray, geo: Geometry) -> np.ndarray:
    """Network output (x, y) in [0, 1] -> ``float32`` our pixels on the original frame."""
    pts = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    return geo.from_input(pts * INPUT_SIZE + MODEL_PIXEL_OFFSET).astype(np.float32)


