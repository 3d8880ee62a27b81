"""Our own PyTorch PoseAnything (category-agnostic pose estimation) that loads the released checkpoint."""

from .model import DEMO_B, PoseAnything, PoseAnythingConfig

__all__ = ["DEMO_B", "PoseAnything", "PoseAnythingConfig"]
