"""Mesh export: a one-topology surface of the canonical Gaussians, skinned to bones made from the
deformation's control points (what animators and game engines take)."""

from .skeleton import Skeleton, SkeletonConfig, build_skeleton
from .skinned import SkinnedMesh, build_skinned_mesh, skin_surface
from .surface import MeshError, SurfaceConfig, SurfaceMesh, extract_surface

__all__ = [
    "MeshError",
    "Skeleton",
    "SkeletonConfig",
    "SkinnedMesh",
    "SurfaceConfig",
    "SurfaceMesh",
    "build_skeleton",
    "build_skinned_mesh",
    "extract_surface",
    "skin_surface",
]
