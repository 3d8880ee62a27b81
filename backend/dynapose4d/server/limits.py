"""Memory bounds of the result requests (frames, keypoints, mesh), checked before the work starts.

A request's memory is estimated from the model and the request's sampling alone, as a sum of
``count x bytes`` terms (frames x Gaussians, frames x handles, frames x mesh vertices,
frames x keypoints); the mesh is checked again with its real vertex count once its surface is
extracted, before any per-frame work. A request over the server's per-request limit
(``ServerConfig.work_memory_bytes``) is refused with 413 before it allocates anything, and the
message gives the estimate, the limit and what to ask for instead.

The figures are peak bytes measured on the CPU in float32 (issue 27), rounded up; the work runs
a few frames at a time (``Dynamic4D.handle_motion``, ``mesh.skin_surface``), so what remains
per frame is what every frame's result holds.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024

GAUSSIAN_FRAME_BYTES = 1024  # one Gaussian at one time: the deformation field's intermediates and the wire arrays
HANDLE_FRAME_BYTES = 512  # one handle at one time in the mesh: its motion and the skeleton fit (float64)
VERTEX_FRAME_BYTES = 64  # one mesh vertex at one time: its deformed position and the skinning check
KEYPOINT_FRAME_BYTES = 768  # one keypoint at one time in the JSON answer: 3 numbers as Python floats, validated and as text
FIELD_CHUNK_FRAMES = 64  # times the deformation field is evaluated at together (Dynamic4D.handle_motion)
FIELD_POINT_BYTES = 1024  # the field's intermediates per point and time
VOXEL_BYTES = 4  # the mesh's density grid, per voxel (marching cubes runs on it once)


class TooMuchWork(Exception):
    """A request whose estimated memory is above the server's limit (413); the message says how
    much, and what to ask for instead."""


@dataclass(frozen=True)
class Term:
    """``count`` things at ``each`` bytes, per frame when ``per_frame``."""

    name: str
    count: int
    each: int
    per_frame: bool = True


def estimate(frames: int, terms: list[Term]) -> int:
    """Bytes for ``frames`` frames."""
    return sum(t.count * t.each * (frames if t.per_frame else 1) for t in terms)


def frames_within(limit: int, terms: list[Term]) -> int:
    """The most frames that fit in ``limit`` bytes (0: not even one)."""
    fixed = estimate(0, terms)
    per_frame = estimate(1, terms) - fixed
    if fixed > limit:
        return 0
    return (limit - fixed) // per_frame if per_frame else 10**9


def check(what: str, frames: int, terms: list[Term], limit: int, advice: str) -> None:
    """Raise :class:`TooMuchWork` when ``frames`` frames of ``terms`` need more than ``limit`` bytes."""
    need = estimate(frames, terms)
    if need <= limit:
        return
    parts = " + ".join(f"{t.count:,} {t.name} x {t.each:,} B" for t in terms if t.per_frame and t.count)
    fit = frames_within(limit, terms)
    instead = f"ask for at most {fit:,} frames (frame_count, or a lower fps)" if fit else "it does not fit even at one frame"
    raise TooMuchWork(
        f"{what} would need about {need / MIB:,.0f} MiB ({frames:,} frames x ({parts})), more than this server's limit of "
        f"{limit / MIB:,.0f} MiB per request; {instead}{advice}"
    )


def field_chunk(handles: int) -> Term:
    """The deformation field evaluated at every handle for one chunk of times (any frame count)."""
    return Term("field points", handles * FIELD_CHUNK_FRAMES, FIELD_POINT_BYTES, per_frame=False)


def frame_terms(gaussians: int) -> list[Term]:
    return [Term("Gaussians", gaussians, GAUSSIAN_FRAME_BYTES)]


def frames_to_sample(gaussians: int, wanted: int, limit: int) -> int:
    """How many of ``wanted`` frames (the asked one and those sampled ahead) one frame request may
    sample together: at least one, or :class:`TooMuchWork` when even one is over ``limit``."""
    check("one frame of this snapshot", 1, frame_terms(gaussians), limit, "; the model has too many Gaussians for this server")
    return max(1, min(wanted, frames_within(limit, frame_terms(gaussians))))


def check_keypoints(frames: int, keypoints: int, handles: int, limit: int) -> None:
    terms = [Term("keypoints", keypoints, KEYPOINT_FRAME_BYTES), field_chunk(handles)]
    check("these keypoint tracks", frames, terms, limit, "")


def check_mesh(frames: int, handles: int, vertices: int, resolution: int, limit: int) -> None:
    """Before the surface is extracted ``vertices`` is 0 (the handles and the density grid may
    already be over); after, the surface's vertex count."""
    terms = [
        Term("handles", handles, HANDLE_FRAME_BYTES),
        Term("vertices", vertices, VERTEX_FRAME_BYTES),
        field_chunk(handles),
        Term("density voxels", resolution**3, VOXEL_BYTES, per_frame=False),
    ]
    check("this mesh", frames, terms, limit, ", fewer faces (target_faces) or a lower resolution" if vertices else "")
