"""Where a new result goes in a scene that already has things in it, and how far a view stands back
to frame it. Boxes are axis-aligned, ``(lo [3], hi [3])`` in Blender's world (metres, +Z up). No bpy.

A new user's first result lands at the origin, inside Blender's default 2 m Cube, and is invisible:
:func:`place_beside` moves it along +X (to the right in the front view) until it is clear of every
box, and :func:`framing` gives the view's centre and distance that show it whole.
"""

from __future__ import annotations

import math

import numpy as np

GAP = 0.25  # metres between the result and what it was moved away from
VIEW_FOV_DEG = 39.6  # the 3D view's default 50 mm lens on a 36 mm sensor


def bounds(points: np.ndarray, keep: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """The box of ``points`` [N, 3] without its outliers: the ``1 - keep`` most distant points
    (stray Gaussians) do not count. An empty set is a point at the origin."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) == 0:
        return np.zeros(3), np.zeros(3)
    cut = (1.0 - keep) / 2.0 * 100.0
    return np.percentile(points, cut, axis=0), np.percentile(points, 100.0 - cut, axis=0)


def overlaps(a, b, margin: float = 0.0) -> bool:
    """Do boxes ``a`` and ``b`` overlap (closer than ``margin`` counts)?"""
    return bool(np.all(np.asarray(a[0]) - margin < np.asarray(b[1])) and np.all(np.asarray(b[0]) - margin < np.asarray(a[1])))


def place_beside(box, others: list, gap: float = GAP) -> np.ndarray:
    """The offset [3] (along +X) that moves ``box`` clear of every box in ``others`` by ``gap``;
    zero when it is clear already."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in box)
    offset = 0.0
    for _ in range(len(others) + 1):  # each step passes at least one box, so this ends
        shift = np.array([offset, 0.0, 0.0])
        hits = [o for o in others if overlaps((lo + shift, hi + shift), o, gap)]
        if not hits:
            break
        offset = max(float(np.asarray(o[1])[0]) for o in hits) + gap - float(lo[0])
    return np.array([offset, 0.0, 0.0])


def framing(box, fov_deg: float = VIEW_FOV_DEG, fill: float = 0.8) -> tuple[np.ndarray, float]:
    """The view's centre and distance that show ``box`` whole, its bounding sphere filling
    ``fill`` of the view."""
    lo, hi = (np.asarray(v, dtype=np.float64) for v in box)
    radius = max(float(np.linalg.norm(hi - lo)) / 2.0, 0.05)
    return (lo + hi) / 2.0, radius / math.sin(math.radians(fov_deg) / 2.0) / fill
