"""Backend (+Y up) <-> Blender (+Z up) coordinates: the one place the add-on converts them.

Backend (x, y, z) -> Blender (x, -z, y). The backend's input-view camera (on +Z, looking down
-Z) becomes Blender's front view (camera on -Y looking +Y). Blender's glTF exporter applies the
inverse when it writes +Y-up glTF, so exported positions equal backend positions.
"""

from __future__ import annotations

import numpy as np

# Rows map backend (x, y, z) to Blender (x, y, z).
BACKEND_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _basis(points: np.ndarray) -> np.ndarray:
    # The entries are 0 and +-1, exact in float32: keep float32 arrays float32 (5x faster on
    # the 100k x 25-frame arrays of an import, and what Blender's foreach_set wants).
    return BACKEND_TO_BLENDER.astype(np.float32) if points.dtype == np.float32 else BACKEND_TO_BLENDER


def backend_to_blender(points: np.ndarray) -> np.ndarray:
    """Points or directions ``[..., 3]`` from the backend frame to Blender's."""
    points = np.asarray(points)
    return points @ _basis(points).T


def blender_to_backend(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points)
    return points @ _basis(points)


def backend_to_blender_matrix(matrix: np.ndarray) -> np.ndarray:
    """A backend 4x4 object-to-world transform as a Blender object's ``matrix_world``.

    Only the world side changes: an OpenGL camera frame (looks down local -Z, +Y up) is also
    Blender's camera convention.
    """
    basis = np.eye(4)
    basis[:3, :3] = BACKEND_TO_BLENDER
    return basis @ np.asarray(matrix)


def backend_to_blender_motion(matrices: np.ndarray) -> np.ndarray:
    """World-to-world maps ``[..., 4, 4]`` (a bone's motion) from the backend frame to Blender's:
    ``B M B^T``, since both the points it takes and those it gives change frame."""
    basis = np.eye(4)
    basis[:3, :3] = BACKEND_TO_BLENDER
    return basis @ np.asarray(matrices) @ basis.T
