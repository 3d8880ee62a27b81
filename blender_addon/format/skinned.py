"""The skinned mesh of a snapshot (``GET /v1/jobs/{id}/mesh``) as plain arrays, before any bpy.

The server sends the backend's ``SkinnedMesh`` as an ``.npz`` (no pickles; ``meta`` is UTF-8
JSON). Backend coordinates (+Y up) until the scene side converts them. Shapes: ``vertices
[V, 3]``, ``faces [Fc, 3]``, ``colors [V, 3]`` (sRGB), ``joints``/``weights [V, 4]``; bones:
``heads [B, 3]``, ``parents [B]`` (-1: root; parents first), ``motion [F, B, 4, 4]`` (bone b at
frame f maps rest points x to ``motion[f, b] @ x``); ``deformed [F, V, 3]`` (the backend's full
deformation of the vertices, the reference the bones approximate).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

FORMAT = "dynapose4d.skinned/1"


class SkinnedError(ValueError):
    pass


@dataclass
class Skinned:
    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    joints: np.ndarray
    weights: np.ndarray
    heads: np.ndarray
    parents: np.ndarray
    motion: np.ndarray
    deformed: np.ndarray
    names: list[str]
    fps: float
    report: dict = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return int(self.motion.shape[0])

    @property
    def num_bones(self) -> int:
        return int(self.heads.shape[0])

    def skinned(self) -> np.ndarray:
        """``[F, V, 3]`` vertex positions by linear blend skinning (what an engine computes)."""
        v = np.concatenate([self.vertices, np.ones((len(self.vertices), 1))], 1).astype(np.float64)
        out = np.zeros((self.frame_count, len(v), 3))
        for k in range(self.joints.shape[1]):
            m = self.motion[:, self.joints[:, k]]  # [F, V, 4, 4]
            out += self.weights[None, :, k, None] * np.einsum("fvij,vj->fvi", m, v)[..., :3]
        return out


def decode_skinned(data: bytes) -> Skinned:
    try:
        z = np.load(io.BytesIO(data), allow_pickle=False)
        meta = json.loads(bytes(z["meta"]).decode())
    except Exception as exc:  # noqa: BLE001 - any unreadable body is the same fault
        raise SkinnedError(f"not a skinned-mesh file ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != FORMAT:
        raise SkinnedError(f"not a DynaPose4D skinned mesh (format {meta.get('format')!r}, expected {FORMAT})")
    rot, trans = z["rotations"], z["translations"]
    motion = np.zeros(rot.shape[:2] + (4, 4))
    motion[..., :3, :3], motion[..., :3, 3], motion[..., 3, 3] = rot, trans, 1.0
    joints, weights = z["joints"].astype(np.int64), z["weights"].astype(np.float32)
    if joints.max(initial=0) >= len(z["heads"]):
        raise SkinnedError(f"skin joints refer to bone {joints.max()} of {len(z['heads'])}")
    return Skinned(
        vertices=z["vertices"].astype(np.float32), faces=z["faces"].astype(np.int32), colors=z["colors"].astype(np.float32),
        joints=joints, weights=weights, heads=z["heads"].astype(np.float64), parents=z["parents"].astype(np.int64),
        motion=motion, deformed=z["deformed"].astype(np.float32), names=[str(n) for n in meta["bone_names"]],
        fps=float(meta["fps"]), report=dict(meta.get("report") or {}),
    )


def bone_tails(heads: np.ndarray, parents: np.ndarray, min_length: float = 0.02) -> np.ndarray:
    """A tail per bone (Blender bones need a length and a direction): towards the mean of its
    children's heads, else on along the line from its parent, else up (+Z, Blender frame)."""
    tails = np.empty_like(heads)
    for b in range(len(heads)):
        children = np.flatnonzero(parents == b)
        if len(children):
            d = heads[children].mean(0) - heads[b]
        elif parents[b] >= 0:
            d = heads[b] - heads[parents[b]]
            d = d / max(np.linalg.norm(d), 1e-9) * max(0.5 * np.linalg.norm(d), min_length)
        else:
            d = np.array([0.0, 0.0, 0.1])
        n = np.linalg.norm(d)
        if n < min_length:
            d = np.array([0.0, 0.0, min_length]) if n < 1e-9 else d / n * min_length
        tails[b] = heads[b] + d
    return tails


def pose_basis(motion: np.ndarray, parents: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Each pose bone's local transform ``[F, B, 4, 4]`` (Blender's ``matrix_basis``) that puts
    bone b where ``motion [F, B, 4, 4]`` (world-space, the armature at the origin) carries it.

    Blender poses a bone at ``P_b = P_parent A_parent^-1 A_b basis_b`` with ``A`` the rest
    matrices ``rest [B, 4, 4]`` (``Bone.matrix_local``). The wanted pose is ``P_b = M_b A_b``,
    so ``basis_b = A_b^-1 M_parent^-1 M_b A_b`` (``M_parent`` = identity for a root)."""
    inv_rest = np.linalg.inv(rest)
    parent_motion = np.where((parents >= 0)[None, :, None, None], motion[:, np.maximum(parents, 0)], np.eye(4))
    return inv_rest[None] @ np.linalg.inv(parent_motion) @ motion @ rest[None]
