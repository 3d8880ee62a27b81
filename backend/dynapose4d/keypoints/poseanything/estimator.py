"""``poseanything``: our PoseAnything network behind the :class:`KeypointEstimator` interface.

One-shot category-agnostic pose estimation, frame by frame: the support image and keypoints
become K support tokens once, then every frame (in batches) is searched for them. Each frame is
independent (no temporal model: see ``cape+tracker`` for that).

- Skeleton: the support's edges, else the minimum spanning tree of the support keypoints (the
  automatic keypoints' skeleton), as the graph decoder needs one.
- Confidence: the share of the similarity map's softmax (over the 16x16 feature cells) that lies
  within one cell (16 px of the 256 input) of the predicted point: a sharp, single peak at the
  answer gives ~1, a spread or multi-modal map gives little.
- Visibility: False for invisible support points (they are masked out of the network) and for
  predictions that fall in the padding outside the frame, or off a given foreground mask.
"""

from __future__ import annotations

import numpy as np
import torch

from ..base import KeypointEstimator, Support, TrackResult, as_frames
from ..support import minimum_spanning_tree
from .preprocess import INPUT_SIZE, RECIPES, output_to_pixels, prepare_images, support_input

# Half-width (in feature cells) of the neighbourhood whose similarity mass is the confidence.
_CONFIDENCE_CELLS = 1.5


def similarity_confidence(similarity: torch.Tensor, points: torch.Tensor, cells: float = _CONFIDENCE_CELLS) -> torch.Tensor:
    """``[B, K]`` softmax mass of ``similarity [B, K, h, w]`` (raw logits) within ``cells`` of ``points [B, K, 2]``."""
    b, k, h, w = similarity.shape
    prob = similarity.flatten(2).float().softmax(-1).view(b, k, h, w)
    cx = (torch.arange(w, device=similarity.device) + 0.5) / w
    cy = (torch.arange(h, device=similarity.device) + 0.5) / h
    near_x = (cx[None, None, :] - points[..., :1].float()).abs() <= cells / w  # [B, K, w]
    near_y = (cy[None, None, :] - points[..., 1:].float()).abs() <= cells / h  # [B, K, h]
    near = near_y[..., :, None] & near_x[..., None, :]
    return (prob * near).sum((-1, -2)).clamp(0, 1)


def _device(name) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class PoseAnythingEstimator(KeypointEstimator):
    """PoseAnything (CAPE) per frame. Registry name: ``poseanything``.

    Args:
        weights: the converted folder (``dynapose4d models convert-poseanything``); None/"" =
            ``$DYNAPOSE4D_POSEANYTHING`` or the user cache.
        device: ``auto``, ``cpu``, ``cuda`` (or a torch device string).
        batch_size: frames per forward pass.
        recipe: image preprocessing, ``train`` (what the weights were trained on) or ``demo``
            (the released demo's exact input, with its swapped red/blue statistics).
        model: an already built :class:`PoseAnything` (tests, benchmarks); then ``weights`` is unused.
    """

    name = "poseanything"
    needs_weights = True

    def __init__(self, weights=None, device="auto", batch_size: int = 8, recipe: str = "train", model=None):
        if recipe not in RECIPES:
            raise ValueError(f"unknown preprocessing recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.weights, self.device, self.batch_size, self.recipe = weights, _device(device), batch_size, recipe
        self._model = model

    @property
    def model(self):
        if self._model is None:
            from .weights import load_model

            self._model = load_model(self.weights, self.device)
        return self._model.to(self.device).eval()

    def estimate(self, support: Support, frames, masks=None) -> TrackResult:
        frames, masks = as_frames(frames, masks)
        kp = support.keypoints
        edges = kp.edges if len(kp.edges) else minimum_spanning_tree(kp.xy, support.mask)
        model = self.model
        dtype = next(model.parameters()).dtype
        img_s, maps, weight = support_input(support.image, kp.xy, kp.visible, self.recipe, self.device)
        valid = weight > 0
        skeleton = [tuple(map(int, e)) for e in edges]
        xy, conf = [], []
        with torch.inference_mode():
            tokens = model.support_tokens(img_s[None].to(dtype), maps[None, None].to(dtype), valid[None])
            for start in range(0, len(frames), self.batch_size):
                batch = np.stack(frames[start:start + self.batch_size])
                x, geo = prepare_images(batch, self.recipe, self.device)
                n = len(batch)
                out = model.predict(model.backbone(x.to(dtype)), tokens.expand(n, -1, -1),
                                    valid[None].expand(n, -1), [skeleton] * n)
                points = out["output"][-1]
                xy.append(output_to_pixels(points, geo))
                conf.append(similarity_confidence(out["similarity_map"], points).cpu().numpy())
        xy, conf = np.concatenate(xy), np.concatenate(conf).astype(np.float32)
        h, w = frames[0].shape[:2]
        inside = (xy[..., 0] >= 0) & (xy[..., 0] <= w) & (xy[..., 1] >= 0) & (xy[..., 1] <= h)
        visible = inside & valid.cpu().numpy()[None]
        for t, m in enumerate(masks):
            if m is not None:
                c = np.clip(xy[t, :, 0].astype(int), 0, w - 1)
                r = np.clip(xy[t, :, 1].astype(int), 0, h - 1)
                visible[t] &= m[r, c]
        conf = np.where(valid.cpu().numpy()[None], conf, 0.0).astype(np.float32)
        info = {"recipe": self.recipe, "input_size": INPUT_SIZE, "skeleton": "support" if len(kp.edges) else "mst",
                "device": str(self.device)}
        return TrackResult(xy, conf, visible, kp.names, kp.edges, self.name, info)
