"""Category-agnostic keypoints: a one-shot support (image + N keypoints) found in every video frame.

Public API (see each module for details and conventions):
- :mod:`.base`: ``SupportKeypoints``, ``Support``, ``TrackResult``, ``KeypointEstimator``, ``KeypointError``,
  ``parse_keypoints_json`` (the JSON schema is documented there).
- :mod:`.registry`: ``ESTIMATORS`` (name -> class), ``make_estimator(name, **config)``.
- :mod:`.tracker`: ``LKTracker`` (``tracker``, the weight-free default), ``StaticEstimator`` (``static``).
- :mod:`.poseanything`: our PyTorch PoseAnything (CAPE) network, its weights conversion and the
  ``poseanything`` estimator; :mod:`.hybrid`: ``cape+tracker`` (CAPE fused with the tracker).
- :mod:`.multiview`: keypoints in other views refine the depth of the lifted 3D anchors.
- :mod:`.anchor`: support keypoints re-anchored in a frame by a thin-plate spline (image
  registration itself is :mod:`dynapose4d.imaging.register`).
- :mod:`.support`: ``auto_support_keypoints``, ``minimum_spanning_tree``.
- :mod:`.evaluate`, :mod:`.synthetic`, :mod:`.draw`: measuring and looking at tracks.

Pixel coordinates follow DESIGN.md §4: continuous, origin at the top-left image corner, pixel
(row i, column j) centred at (j + 0.5, i + 0.5).
"""

from .base import KeypointError, KeypointEstimator, Support, SupportKeypoints, TrackResult, parse_keypoints_json
from .registry import DEFAULT_ESTIMATOR, ESTIMATORS, make_estimator
from .support import auto_support_keypoints, minimum_spanning_tree
from .tracker import LKTracker, StaticEstimator, TrackerConfig

__all__ = [
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "KeypointError",
    "KeypointEstimator",
    "LKTracker",
    "StaticEstimator",
    "Support",
    "SupportKeypoints",
    "TrackResult",
    "TrackerConfig",
    "auto_support_keypoints",
    "make_estimator",
    "minimum_spanning_tree",
    "parse_keypoints_json",
]
