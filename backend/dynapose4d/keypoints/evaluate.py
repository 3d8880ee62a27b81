"""Sequences with ground-truth keypoints, and the accuracy of an estimator on them.

Errors are Euclidean distances in pixels over frames 1..T-1 (frame 0 is where the support is
registered; KML supervises frames 1..T-1 too). Besides accuracy, the numbers say how well the
confidence flags the bad points, which is what lets KML down-weight them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..imaging.images import load_on_white
from .base import KeypointError, Support, SupportKeypoints, TrackResult


@dataclass
class LabelledSequence:
    """A sequence with ground truth.

    Attributes:
        name: e.g. ``affine-25`` or ``crane``.
        support: the support image with its keypoints (and mask).
        frames: ``float32 [T, H, W, 3]`` RGB in [0, 1].
        masks: ``bool [T, H, W]`` foreground, or None.
        xy: ``float32 [T, N, 2]`` true keypoint positions (pixels, our convention).
        visible: ``bool [T, N]`` true visibility, or None where it is unknown.
    """

    name: str
    support: Support
    frames: np.ndarray
    masks: np.ndarray | None
    xy: np.ndarray
    visible: np.ndarray | None


def load_dev_scene(scene_dir: str | Path) -> LabelledSequence:
    """A benchmark-dev scene (``../shared/benchmark-dev/<scene>``) as a labelled sequence.

    Frames are ``input/NNNN.png`` composited on white, masks their alpha; the support is frame 0
    with ``keypoints2d_input.json[0]``, the truth the whole ``T x 14 x 2`` list. The file has no
    visibility (its points are projections that later frames may hide), so ``visible`` is None.
    """
    scene_dir = Path(scene_dir)
    paths = sorted((scene_dir / "input").glob("*.png"))
    kp_path = scene_dir / "keypoints2d_input.json"
    if not paths or not kp_path.is_file():
        raise KeypointError(f"{scene_dir} is not a benchmark-dev scene (needs input/*.png and keypoints2d_input.json)")
    images = [load_on_white(p) for p in paths]
    frames = np.stack([im for im, _ in images])
    masks = np.stack([m for _, m in images]) if all(m is not None for _, m in images) else None
    xy = np.asarray(json.loads(kp_path.read_text()), np.float32)
    if xy.shape[0] != len(frames) or xy.ndim != 3 or xy.shape[2] != 2:
        raise KeypointError(f"{kp_path} holds shape {xy.shape}; expected [{len(frames)}, N, 2]")
    support = Support(frames[0], SupportKeypoints(xy[0]), None if masks is None else masks[0])
    return LabelledSequence(scene_dir.name, support, frames, masks, xy, None)

CONFIDENT = 0.5  # confidence at or above this counts as "trusted"
BAD_PX = 5.0  # an error above this is a bad point that confidence should flag


def keypoint_errors(result: TrackResult, xy: np.ndarray) -> np.ndarray:
    """``[T, N]`` pixel distances between ``result.xy`` and ground truth ``xy [T, N, 2]``."""
    xy = np.asarray(xy, np.float64)
    if xy.shape != result.xy.shape:
        raise ValueError(f"ground truth has shape {xy.shape} but the result {result.xy.shape}")
    return np.linalg.norm(result.xy.astype(np.float64) - xy, axis=-1)


@dataclass
class Outcome:
    """Per-point outcome over frames 1..T-1, flattened so several sequences can be pooled.

    Attributes:
        error: ``[M]`` pixel errors.
        flagged: ``[M]`` bool: confidence < 0.5 or marked invisible by the estimator.
        visible: ``[M]`` bool ground-truth visibility (all True where unknown).
    """

    error: np.ndarray
    flagged: np.ndarray
    visible: np.ndarray

    @classmethod
    def of(cls, result: TrackResult, xy: np.ndarray, visible: np.ndarray | None = None) -> "Outcome":
        err = keypoint_errors(result, xy)[1:]
        flagged = (result.confidence[1:] < CONFIDENT) | ~result.visible[1:]
        vis = np.ones_like(err, bool) if visible is None else np.asarray(visible, bool)[1:]
        return cls(err.ravel(), flagged.ravel(), vis.ravel())

    @classmethod
    def pool(cls, outcomes: list["Outcome"]) -> "Outcome":
        return cls(*(np.concatenate([getattr(o, k) for o in outcomes]) for k in ("error", "flagged", "visible")))

    def summary(self) -> dict:
        """Numbers over the ground-truth-visible points.

        Keys: ``median_err_px``, ``p90_err_px``, ``within_3px`` (fraction), ``n`` (points
        counted), ``trusted`` (fraction with confidence >= 0.5 and marked visible),
        ``median_err_trusted_px`` / ``median_err_flagged_px`` (median error of trusted / flagged
        points), ``bad_flagged`` (fraction of errors > 5 px that were flagged) and
        ``hidden_flagged`` (fraction of hidden points flagged). nan where a set is empty.
        """
        e, f = self.error[self.visible], self.flagged[self.visible]
        nan = float("nan")
        hidden = ~self.visible
        return {
            "median_err_px": float(np.median(e)) if e.size else nan,
            "p90_err_px": float(np.percentile(e, 90)) if e.size else nan,
            "within_3px": float((e <= 3.0).mean()) if e.size else nan,
            "n": int(e.size),
            "trusted": float((~f).mean()) if e.size else nan,
            "median_err_trusted_px": float(np.median(e[~f])) if (~f).any() else nan,
            "median_err_flagged_px": float(np.median(e[f])) if f.any() else nan,
            "bad_flagged": float(f[e > BAD_PX].mean()) if (e > BAD_PX).any() else nan,
            "hidden_flagged": float(self.flagged[hidden].mean()) if hidden.any() else nan,
        }


def accuracy(result: TrackResult, xy: np.ndarray, visible: np.ndarray | None = None) -> dict:
    """:meth:`Outcome.summary` of one result against truth ``xy [T, N, 2]`` (and ``visible [T, N]``)."""
    return Outcome.of(result, xy, visible).summary()
