"""The keypoint rig's math, in numpy: which bones a skeleton makes and their baked keyframes.

Each skeleton edge (i, j) becomes one bone, head on keypoint i and tail on keypoint j at
frame 0 (the rest pose). In Blender each bone is unparented and follows the keypoint empties
through two constraints: Copy Location (head on empty i) and Damped Track (Y axis towards
empty j). Damped Track turns the bone by the shortest arc, which this module reproduces, so
the keyframes baked here give the same pose as the constraints (a bpy test checks that) and
the animation exports to glTF without evaluating constraints. The baked Y scale also stretches
each bone to the current distance between its keypoints; the constraints keep that scale.

All positions here are in Blender's frame (convert with ``format.coords`` first).
"""

from __future__ import annotations

import numpy as np

MIN_BONE_LENGTH = 1e-4


def skeleton_bones(edges, valid, rest_positions: np.ndarray) -> list[tuple[int, int]]:
    """The edges that make bones: both keypoints valid, distinct and apart at the rest pose.

    ``rest_positions [P, 3]``; returns ``[(i, j), ...]`` in the order of ``edges``."""
    rest_positions = np.asarray(rest_positions, dtype=np.float64)
    out, seen = [], set()
    for i, j in edges:
        i, j = int(i), int(j)
        if i == j or (i, j) in seen or not (valid[i] and valid[j]):
            continue
        if np.linalg.norm(rest_positions[j] - rest_positions[i]) < MIN_BONE_LENGTH:
            continue
        seen.add((i, j))
        out.append((i, j))
    return out


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The shortest-arc rotation matrices ``[..., 3, 3]`` taking unit vectors ``a`` to ``b``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    v = np.cross(a, b)
    c = np.sum(a * b, axis=-1)
    k = np.zeros(v.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2] = -v[..., 2], v[..., 1]
    k[..., 1, 0], k[..., 1, 2] = v[..., 2], -v[..., 0]
    k[..., 2, 0], k[..., 2, 1] = -v[..., 1], v[..., 0]
    eye = np.broadcast_to(np.eye(3), k.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = eye + k + (k @ k) / (1.0 + c)[..., None, None]
    # Opposite vectors: half a turn about any axis perpendicular to a.
    opposite = c < -1.0 + 1e-9
    if np.any(opposite):
        ao = a[opposite] if a.shape == b.shape else np.broadcast_to(a, b.shape)[opposite]
        axis = np.cross(ao, np.array([1.0, 0.0, 0.0]))
        small = np.linalg.norm(axis, axis=-1) < 1e-6
        axis[small] = np.cross(ao[small], np.array([0.0, 0.0, 1.0]))
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        r[opposite] = 2.0 * axis[..., :, None] * axis[..., None, :] - np.eye(3)
    return r


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` to unit quaternions ``[..., 4]`` (w x y z, w >= 0)."""
    m = np.asarray(m, dtype=np.float64)
    shape = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    q = np.empty((m.shape[0], 4))
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cases = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1).argmax(axis=1)
    for case in range(4):
        sel = cases == case
        if not np.any(sel):
            continue
        s = m[sel]
        if case == 0:
            t = np.sqrt(1.0 + tr[sel]) * 2
            q[sel] = np.stack([0.25 * t, (s[:, 2, 1] - s[:, 1, 2]) / t, (s[:, 0, 2] - s[:, 2, 0]) / t, (s[:, 1, 0] - s[:, 0, 1]) / t], 1)
        elif case == 1:
            t = np.sqrt(1.0 + s[:, 0, 0] - s[:, 1, 1] - s[:, 2, 2]) * 2
            q[sel] = np.stack([(s[:, 2, 1] - s[:, 1, 2]) / t, 0.25 * t, (s[:, 0, 1] + s[:, 1, 0]) / t, (s[:, 0, 2] + s[:, 2, 0]) / t], 1)
        elif case == 2:
            t = np.sqrt(1.0 + s[:, 1, 1] - s[:, 0, 0] - s[:, 2, 2]) * 2
            q[sel] = np.stack([(s[:, 0, 2] - s[:, 2, 0]) / t, (s[:, 0, 1] + s[:, 1, 0]) / t, 0.25 * t, (s[:, 1, 2] + s[:, 2, 1]) / t], 1)
        else:
            t = np.sqrt(1.0 + s[:, 2, 2] - s[:, 0, 0] - s[:, 1, 1]) * 2
            q[sel] = np.stack([(s[:, 1, 0] - s[:, 0, 1]) / t, (s[:, 0, 2] + s[:, 2, 0]) / t, (s[:, 1, 2] + s[:, 2, 1]) / t, 0.25 * t], 1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1.0
    return q.reshape(shape + (4,))


def bake_bones(
    positions: np.ndarray, bones: list[tuple[int, int]], rest_matrices: np.ndarray, rest_lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keyframe values of each bone's local transform (Blender's ``matrix_basis``) per frame.

    Args:
        positions: ``[F, P, 3]`` keypoint positions, armature space (the armature object sits
            at the world origin unrotated, so that is Blender world space).
        bones: ``[(i, j), ...]`` B bones, from keypoint i to keypoint j.
        rest_matrices: ``[B, 4, 4]`` each bone's rest matrix in armature space
            (``Bone.matrix_local``: head position and the bone's axes, Y along the bone).
        rest_lengths: ``[B]`` rest lengths (``Bone.length``).

    Returns:
        ``location [F, B, 3]``, ``rotation [F, B, 4]`` (w x y z, sign-continuous over frames),
        ``scale [F, B, 3]`` (1, stretch, 1).

    With head p, direction d (unit) and length L at a frame, the pose is
    ``T(p) R_arc(y0 -> d) R0 S(1, L / L0, 1)``; the basis is ``matrix_local^-1`` times that.
    """
    positions = np.asarray(positions, dtype=np.float64)
    rest = np.asarray(rest_matrices, dtype=np.float64)
    if not bones:
        f = positions.shape[0]
        return np.zeros((f, 0, 3)), np.zeros((f, 0, 4)), np.zeros((f, 0, 3))
    head_idx = np.array([i for i, _ in bones])
    tail_idx = np.array([j for _, j in bones])
    r0 = rest[:, :3, :3]  # [B, 3, 3], columns: bone x, y, z axes
    h0 = rest[:, :3, 3]  # [B, 3]
    y0 = r0[:, :, 1] / np.linalg.norm(r0[:, :, 1], axis=-1, keepdims=True)
    heads = positions[:, head_idx]  # [F, B, 3]
    vec = positions[:, tail_idx] - heads
    length = np.linalg.norm(vec, axis=-1)  # [F, B]
    direction = vec / np.maximum(length, 1e-12)[..., None]
    arc = rotation_between(np.broadcast_to(y0, direction.shape), direction)  # [F, B, 3, 3]
    r0t = np.swapaxes(r0, -1, -2)
    location = np.einsum("bij,fbj->fbi", r0t, heads - h0)
    rotation = matrix_to_quaternion(r0t @ arc @ r0)
    # Sign continuity, so that linear interpolation between keys takes the short way.
    for f in range(1, rotation.shape[0]):
        flip = np.sum(rotation[f] * rotation[f - 1], axis=-1) < 0
        rotation[f, flip] *= -1.0
    scale = np.ones(location.shape)
    scale[..., 1] = length / np.asarray(rest_lengths, dtype=np.float64)
    return location, rotation, scale
