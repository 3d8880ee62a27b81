"""Deformation models (phi(S, t)), the HexPlane field, and keypoint anchors."""

from .anchors import Anchors, lift_keypoints, make_anchors
from .hexplane import HexPlane, HexPlaneConfig
from .deformations import (
    Binding,
    ControlDeformation,
    DeformConfig,
    Deformation,
    Deformed,
    PerGaussianDeformation,
    farthest_point_sample,
    make_deformation,
)

__all__ = [
    "Anchors",
    "Binding",
    "ControlDeformation",
    "DeformConfig",
    "Deformation",
    "Deformed",
    "HexPlane",
    "HexPlaneConfig",
    "PerGaussianDeformation",
    "farthest_point_sample",
    "lift_keypoints",
    "make_anchors",
    "make_deformation",
]
