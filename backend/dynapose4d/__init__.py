"""DynaPose4D backend: one image to 4D Gaussians with pose-aligned motion."""

__version__ = "0.1.0"
