"""``cape+tracker``: per-frame CAPE detections fused with the tracker's temporal continuity.

A learned per-frame detector (PoseAnything) and the weight-free tracker fail differently: CAPE
has no memory, so it jitters by a fraction of its 16-pixel feature cell and sometimes jumps to a
look-alike part, but it never drifts and recovers at once; the tracker is smooth and precise
frame to frame, but a failed forward-backward check leaves it guessing. Per keypoint, a
one-dimensional Kalman filter (per axis, shared variance) does both:

- prediction: the fused position of the previous frame moved by the tracker's own frame-to-frame
  motion, with a small process variance while the tracker's checks pass, so the tracker smooths
  CAPE's jitter and CAPE slowly removes the tracker's drift;
- where the tracker's check fails, the prediction is the tracker's fallback with a large variance,
  so the CAPE detection re-anchors the point (and the tracker's later motion continues from there);
- the detection's variance grows as its similarity-map confidence falls, and a detection far from
  a tracker that passed its checks (in units of their combined standard deviation) is
  down-weighted by a Cauchy weight: an outlier between the two moves the point little and lowers
  its confidence.

Thresholds are pixels at a 256-pixel frame, scaled with the frame size as in the tracker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .base import KeypointEstimator, Support, TrackResult, as_frames
from .evaluate import CONFIDENT
from .tracker import LKTracker


@dataclass
class FusionConfig:
    """Settings of the fusion (pixels at 256 px).

    The defaults were chosen with ``scripts/bench_cape.py``'s simulated detector (4 px jitter,
    10 % outliers; no real weights here): they keep the tracker's sub-pixel accuracy where its
    checks pass and cut its error where it fails. Re-tune with the real weights.

    Attributes:
        detector_sigma_px: a fully confident detection's standard deviation.
        min_detector_confidence: detections below this are ignored.
        tracker_step_sigma_px: process noise per frame while the tracker's checks pass.
        tracker_fail_sigma_px: standard deviation of the tracker's fallback where its check failed.
        outlier_scale: Cauchy scale of the detection-prediction distance, in combined deviations.
    """

    detector_sigma_px: float = 6.0
    min_detector_confidence: float = 0.05
    tracker_step_sigma_px: float = 0.25
    tracker_fail_sigma_px: float = 10.0
    outlier_scale: float = 3.0


def fuse(track: TrackResult, detections: TrackResult, scale: float = 1.0, config: FusionConfig | None = None):
    """Fused ``(xy [T, N, 2], confidence [T, N], visible [T, N], info)`` of a track and per-frame detections."""
    cfg = config or FusionConfig()
    t_xy, d_xy = track.xy.astype(np.float64), detections.xy.astype(np.float64)
    n_frames, n = t_xy.shape[:2]
    tracker_ok = (track.confidence >= CONFIDENT) & track.visible
    d_conf = np.where(detections.visible, detections.confidence, 0.0)
    has_det = d_conf >= cfg.min_detector_confidence
    det_var = (cfg.detector_sigma_px * scale) ** 2 / np.maximum(d_conf, cfg.min_detector_confidence)
    step_var = (cfg.tracker_step_sigma_px * scale) ** 2
    fail_var = (cfg.tracker_fail_sigma_px * scale) ** 2
    xy = np.zeros_like(t_xy)
    conf = np.zeros((n_frames, n), np.float64)
    var = np.zeros(n)
    reanchored = outliers = 0
    for t in range(n_frames):
        if t == 0:
            pred, pred_var = t_xy[0].copy(), np.where(tracker_ok[0], step_var, fail_var)
        else:
            moved = xy[t - 1] + (t_xy[t] - t_xy[t - 1])
            pred = np.where(tracker_ok[t][:, None], moved, t_xy[t])
            pred_var = np.where(tracker_ok[t], var + step_var, fail_var)
        r = np.linalg.norm(d_xy[t] - pred, axis=1)
        m = r / np.sqrt(pred_var + det_var[t])
        # Outliers are judged against a tracker that passed its checks; a failed one has no say.
        weight = np.where(tracker_ok[t], 1.0 / (1.0 + (m / cfg.outlier_scale) ** 2), 1.0)
        weight = np.where(has_det[t], weight, 0.0)
        gain = np.where(has_det[t], pred_var / (pred_var + det_var[t] / np.maximum(weight, 1e-12)), 0.0)
        xy[t] = pred + gain[:, None] * (d_xy[t] - pred)
        var = (1.0 - gain) * pred_var
        agreement = np.where(has_det[t], np.exp(-((m / cfg.outlier_scale) ** 2)), 0.5)
        evidence = np.maximum(np.where(tracker_ok[t], track.confidence[t], 0.0), d_conf[t] * has_det[t])
        conf[t] = evidence * (0.5 + 0.5 * agreement)
        reanchored += int((~tracker_ok[t] & has_det[t] & (gain > 0.5)).sum())
        outliers += int((has_det[t] & (weight < 0.5)).sum())
    visible = track.visible | (~tracker_ok & has_det & (d_conf >= CONFIDENT))
    info = {"reanchored": reanchored, "outliers": outliers, "fusion": asdict(cfg)}
    return xy.astype(np.float32), np.clip(conf, 0, 1).astype(np.float32), visible, info


class CapeTrackerEstimator(KeypointEstimator):
    """CAPE + tracker (see the module docstring). Registry name: ``cape+tracker``.

    Args:
        weights, device, batch_size, recipe: the ``poseanything`` detector's settings.
        detector: another per-frame estimator to use instead of PoseAnything (benchmarks use
            stand-ins, since random CAPE weights say nothing about accuracy).
        tracker: the tracker (default ``LKTracker()``).
        fusion: :class:`FusionConfig`.
    """

    name = "cape+tracker"
    needs_weights = True

    def __init__(self, weights=None, device="auto", batch_size: int = 8, recipe: str = "train",
                 detector: KeypointEstimator | None = None, tracker: KeypointEstimator | None = None,
                 fusion: FusionConfig | None = None):
        if detector is None:
            from .poseanything.estimator import PoseAnythingEstimator

            detector = PoseAnythingEstimator(weights, device, batch_size, recipe)
        self.detector, self.tracker = detector, tracker or LKTracker()
        self.fusion = fusion or FusionConfig()

    def estimate(self, support: Support, frames, masks=None) -> TrackResult:
        frames, masks = as_frames(frames, masks)
        # The detector first: a missing-weights error comes before minutes of tracking.
        detections = self.detector.estimate(support, frames, masks)
        track = self.tracker.estimate(support, frames, masks)
        scale = max(frames[0].shape[:2]) / 256.0
        xy, conf, visible, info = fuse(track, detections, scale, self.fusion)
        visible &= support.keypoints.visible[None]
        info = {**info, "tracker": track.info, "detector": {"name": detections.estimator, **detections.info}}
        kp = support.keypoints
        return TrackResult(xy, conf, visible, kp.names, kp.edges, self.name, info)
