"""Deformation models (phi(S, t)), the HexPlane field, and keypoint anchors."""

from .anchors import Anchors, lift_keypoints, make_anchors
from .deformations import (
    Binding,
    ControlDeformation,
    Deformation,
    DeformConfig,
    Deformed,
    PerGaussianDeformation,
    farthest_point_sample,
    make_deformation,
)
from .hexplane import HexPlane, HexPlaneConfig

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
