"""Animated GLB scenes of a 4D result, written without Blender (numpy + json + struct only).

Three forms, one layout::

    DynaPose4D            root node: the user's frame (x_user = s R x + t, +Y up), so every
    |                     child holds backend coordinates and a viewer shows the user's place/size
    |-- splat.part00..    splats: one node per rigid part, TRS animation (LINEAR)      [parts]
    |-- splat.frame0000.. splats: one node per frame, scale 1 / 0 (STEP)              [flipbook]
    |-- points            one point mesh, one morph target per frame, STEP weights      [points]
    |-- bone_00..         the skeleton's joints (the skin of ``mesh``)                  [mesh]
    |-- kp.<name>         keypoint empties, translation animation (LINEAR)
    |-- kpbone.<a>.<b>    the keypoint skeleton: one joint per edge, at keypoint a with
    |                     its +Y towards b (Blender's bone axis), a skin of its own      [splats]
    `-- camera            the reference view
    mesh                  skinned meshes sit at the scene root (glTF ignores their node's
                          transform; their joints carry the user frame)

Frame i of the sampled clip plays at ``i / fps`` seconds. Keypoint names, skeleton edges, fps and
the export's report are in the root's ``extras.dynapose4d``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .glb import (
    ARRAY_BUFFER,
    ELEMENT_ARRAY_BUFFER,
    FLOAT,
    TRIANGLES,
    UNSIGNED_BYTE,
    UNSIGNED_INT,
    UNSIGNED_SHORT,
    GlbBuilder,
    add_camera_node,
    continuous_quats,
    matrix_to_quat_xyzw,
    srgb_to_linear,
)
from .gltf_splats import SplatAttributes, add_splat_mesh

FORMAT = "dynapose4d.gltf/1"
ROOT_NAME = "DynaPose4D"


@dataclass
class SceneInfo:
    """What every animated export carries besides its geometry.

    ``fps``; ``frame_count``; ``user_frame``: ``(rotation [3, 3], scale, translation [3])`` from
    the backend frame to the user's (+Y up), or None for the backend frame; ``camera``: the
    reference view in backend coordinates (``{"c2w", "fovy_deg", "width", "height"}``) or None;
    keypoint ``names``, ``valid [P]``, ``edges [E, 2]`` and ``positions [F, P, 3]`` (backend
    coordinates); ``report``: anything to keep in the file's extras."""

    fps: float
    frame_count: int
    user_frame: tuple | None = None
    camera: dict | None = None
    names: list[str] = field(default_factory=list)
    valid: np.ndarray | None = None
    edges: np.ndarray | None = None
    positions: np.ndarray | None = None
    report: dict = field(default_factory=dict)

    @property
    def times_s(self) -> np.ndarray:
        return np.arange(self.frame_count, dtype=np.float64) / self.fps


def _root(builder: GlbBuilder, info: SceneInfo, kind: str) -> int:
    extras = {"dynapose4d": {
        "format": FORMAT, "kind": kind, "fps": info.fps, "frame_count": info.frame_count,
        "keypoints": list(info.names), "edges": [] if info.edges is None else np.asarray(info.edges).astype(int).tolist(),
        "report": info.report,
    }}
    if info.user_frame is None:
        return builder.add_node(ROOT_NAME, extras=extras)
    rotation, scale, translation = info.user_frame
    return builder.add_node(ROOT_NAME, extras=extras, translation=np.asarray(translation, np.float64),
                            rotation=matrix_to_quat_xyzw(np.asarray(rotation, np.float64)), scale=np.full(3, float(scale)))


def _keypoints_and_camera(builder: GlbBuilder, root: int, info: SceneInfo, bones: bool = False) -> list:
    """The keypoint empties (and with ``bones`` the keypoint skeleton) and the camera under
    ``root``; returns their channels."""
    channels = _keypoint_bones(builder, root, info) if bones else []
    if info.positions is not None and len(info.names):
        valid = np.ones(len(info.names), bool) if info.valid is None else np.asarray(info.valid, bool)
        for p, name in enumerate(info.names):
            if not valid[p]:
                continue
            track = np.asarray(info.positions[:, p], np.float64)
            node = builder.add_node(f"kp.{name}", parent=root, translation=track[0], extras={"dynapose4d_name": name})
            channels.append((node, "translation", info.times_s, track, "LINEAR"))
    if info.camera is not None:
        add_camera_node(builder, info.camera, parent=root)
    return channels


def _keypoint_bones(builder: GlbBuilder, root: int, info: SceneInfo) -> list:
    """The keypoint skeleton as glTF joints with a skin (the add-on's armature: one bone per edge
    from keypoint a to b), so a viewer or Blender's importer gets bones, not only empties. A bone
    hangs under the bone that ends where it starts; its world transform at frame f is a rotation
    taking +Y to ``kp_b - kp_a`` (the smallest turn), placed at ``kp_a``."""
    if info.positions is None or info.edges is None or not len(info.edges):
        return []
    valid = np.ones(len(info.names), bool) if info.valid is None else np.asarray(info.valid, bool)
    edges = [(int(a), int(b)) for a, b in np.asarray(info.edges).reshape(-1, 2) if valid[a] and valid[b] and a != b]
    ordered, parents, ends = [], [], {}
    pending = list(edges)
    while pending:  # parents first: a bone whose head keypoint ends a placed bone goes under it
        ready = [e for e in pending if e[0] in ends or all(e[0] != b for _, b in pending)] or pending[:1]
        for a, b in ready:
            parents.append(ends.get(a, -1))
            ends.setdefault(b, len(ordered))
            ordered.append((a, b))
            pending.remove((a, b))
    if not ordered:
        return []
    positions = np.asarray(info.positions, np.float64)
    world = np.tile(np.eye(4), (positions.shape[0], len(ordered), 1, 1))
    for i, (a, b) in enumerate(ordered):
        world[:, i, :3, :3] = _turn_y_to(positions[:, b] - positions[:, a])
        world[:, i, :3, 3] = positions[:, a]
    names = [f"kpbone.{info.names[a]}.{info.names[b]}" for a, b in ordered]
    nodes, channels = _joints(builder, root, world, np.asarray(parents), names, info)
    builder.add_skin("keypoint_skeleton", nodes, np.linalg.inv(world[0]), skeleton=root)
    return channels


def _turn_y_to(directions: np.ndarray) -> np.ndarray:
    """Rotations ``[K, 3, 3]`` taking +Y to each direction ``[K, 3]`` by the smallest turn (a
    half turn about +X for -Y, the identity for a zero vector)."""
    d = directions / np.maximum(np.linalg.norm(directions, axis=-1, keepdims=True), 1e-12)
    y = np.array([0.0, 1.0, 0.0])
    axis = np.cross(y, d)
    c = d @ y
    k = np.zeros(d.shape[:-1] + (3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    k -= np.swapaxes(k, -1, -2)
    out = np.eye(3) + k + k @ k / np.maximum(1.0 + c, 1e-9)[..., None, None]
    out[c < -1 + 1e-9] = np.diag([1.0, -1.0, -1.0])
    return out


def _joints(builder: GlbBuilder, root: int, world: np.ndarray, parents: np.ndarray, names: list[str], info: SceneInfo):
    """Joint nodes (parents first) from their world transforms ``[F, B, 4, 4]`` below ``root``:
    local TRS from each parent, LINEAR animation when there is more than one frame."""
    frames, count = world.shape[:2]
    local = world.copy()
    for b in range(count):
        if parents[b] >= 0:
            local[:, b] = np.linalg.inv(world[:, parents[b]]) @ world[:, b]
    local_q = continuous_quats(matrix_to_quat_xyzw(local[..., :3, :3]))
    local_t = local[..., :3, 3]
    nodes, channels = [], []
    for b in range(count):
        parent = root if parents[b] < 0 else nodes[parents[b]]
        nodes.append(builder.add_node(names[b], parent=parent, translation=local_t[0, b], rotation=local_q[0, b]))
        if frames > 1:
            channels.append((nodes[b], "translation", info.times_s, local_t[:, b], "LINEAR"))
            channels.append((nodes[b], "rotation", info.times_s, local_q[:, b], "LINEAR"))
    return nodes, channels


def _finish(builder: GlbBuilder, channels: list, path) -> Path:
    if channels:
        builder.add_animation("DynaPose4D", channels)
    return builder.write(path)


# -- splats ---------------------------------------------------------------------------------------

def write_splat_parts(path: str | os.PathLike, rest: SplatAttributes, label: np.ndarray, pivots: np.ndarray,
                      rotations: np.ndarray, translations: np.ndarray, info: SceneInfo) -> Path:
    """Rigid parts: ``rest`` the Gaussians in their rest pose (backend coordinates), ``label [N]``
    each one's part, ``pivots [P, 3]`` the parts' node origins, ``rotations [F, P, 3, 3]`` and
    ``translations [F, P, 3]`` the parts' world motion (rest x -> ``R x + t``)."""
    builder = GlbBuilder()
    root = _root(builder, info, "splat-parts")
    channels = []
    node_t = np.einsum("fpij,pj->fpi", rotations, pivots) + translations  # the pivot's path
    node_q = continuous_quats(matrix_to_quat_xyzw(rotations))  # [F, P, 4]
    for p in range(len(pivots)):
        members = np.flatnonzero(label == p)
        if len(members) == 0:
            continue
        mesh = add_splat_mesh(builder, rest.select(members).translated(pivots[p]), f"splat.part{p:02d}")
        node = builder.add_node(f"splat.part{p:02d}", parent=root, mesh=mesh, translation=node_t[0, p], rotation=node_q[0, p])
        if info.frame_count > 1:
            channels.append((node, "translation", info.times_s, node_t[:, p], "LINEAR"))
            channels.append((node, "rotation", info.times_s, node_q[:, p], "LINEAR"))
    channels += _keypoints_and_camera(builder, root, info, bones=True)
    return _finish(builder, channels, path)


def write_splat_flipbook(path: str | os.PathLike, frames: list[SplatAttributes], info: SceneInfo) -> Path:
    """One splat primitive per frame (backend coordinates), shown in turn: the node of frame i
    has scale 1 from ``i / fps`` until the next frame and 0 otherwise (STEP keys)."""
    builder = GlbBuilder()
    root = _root(builder, info, "splat-flipbook")
    channels = []
    count = len(frames)
    for i, splats in enumerate(frames):
        mesh = add_splat_mesh(builder, splats, f"splat.frame{i:04d}")
        node = builder.add_node(f"splat.frame{i:04d}", parent=root, mesh=mesh, scale=np.full(3, 1.0 if i == 0 else 0.0))
        if count > 1:
            shown = (np.arange(count) == i).astype(np.float64)
            channels.append((node, "scale", info.times_s, np.repeat(shown[:, None], 3, 1), "STEP"))
    channels += _keypoints_and_camera(builder, root, info, bones=True)
    return _finish(builder, channels, path)


# -- points and the skinned mesh -------------------------------------------------------------------

def write_morph_points(path: str | os.PathLike, positions: np.ndarray, colors: np.ndarray, info: SceneInfo) -> Path:
    """Points ``positions [F, N, 3]`` (backend coordinates) with sRGB ``colors [N, 3]``: one
    POINTS mesh, frame 0 as its base, one morph target per frame (the offset from frame 0) and
    one-hot STEP weights, the form Blender's exporter gives the add-on's point cloud."""
    positions = np.asarray(positions, np.float32)
    frames = positions.shape[0]
    builder = GlbBuilder()
    root = _root(builder, info, "points")
    rgba = np.concatenate([srgb_to_linear(colors), np.ones((len(colors), 1))], 1)
    primitive = {"attributes": {"POSITION": builder.add_accessor(positions[0], minmax=True, target=ARRAY_BUFFER),
                                "COLOR_0": builder.add_accessor(np.round(rgba * 255), UNSIGNED_BYTE, normalized=True, target=ARRAY_BUFFER)},
                 "mode": 0}
    channels = []
    if frames > 1:
        primitive["targets"] = [{"POSITION": builder.add_accessor(positions[f] - positions[0], minmax=True, target=ARRAY_BUFFER)} for f in range(frames)]
    mesh = builder.add_mesh("points", [primitive])
    if frames > 1:
        builder.json["meshes"][mesh]["weights"] = [1.0] + [0.0] * (frames - 1)
        builder.json["meshes"][mesh]["extras"] = {"targetNames": [f"frame_{f:04d}" for f in range(frames)]}
    node = builder.add_node("points", parent=root, mesh=mesh)
    if frames > 1:
        channels.append((node, "weights", info.times_s, np.eye(frames).reshape(-1, 1), "STEP"))
    channels += _keypoints_and_camera(builder, root, info)
    return _finish(builder, channels, path)


def write_skinned_mesh(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray,
                       joints: np.ndarray, weights: np.ndarray, heads: np.ndarray, parents: np.ndarray,
                       rotations: np.ndarray, translations: np.ndarray, bone_names: list[str], info: SceneInfo) -> Path:
    """A skinned mesh (``mesh.skinned.SkinnedMesh``'s arrays, backend coordinates): ``vertices [V, 3]``,
    ``faces [Fc, 3]`` (counter-clockwise from outside), sRGB ``colors [V, 3]``, ``joints``/``weights
    [V, 4]``; bones with rest ``heads [B, 3]``, ``parents [B]`` (parents first) and world motion
    ``rotations [F, B, 3, 3]``, ``translations [F, B, 3]`` (rest x -> ``R x + t``).

    A joint's world transform at frame f (below the root) is ``W_b = [R_b | t_b] @ T(head_b)``;
    its inverse bind matrix is ``T(-head_b)``, so joint matrix @ vertex = ``root @ (R_b v + t_b)``."""
    builder = GlbBuilder()
    root = _root(builder, info, "skinned-mesh")
    frames, bones = rotations.shape[:2]
    world = np.zeros((frames, bones, 4, 4))
    world[..., :3, :3] = rotations
    world[..., :3, 3] = np.einsum("fbij,bj->fbi", rotations, heads) + translations
    world[..., 3, 3] = 1.0
    nodes, channels = _joints(builder, root, world, parents, bone_names, info)
    inverse_bind = np.tile(np.eye(4), (bones, 1, 1))
    inverse_bind[:, :3, 3] = -np.asarray(heads, np.float64)
    skin = builder.add_skin("skeleton", nodes, inverse_bind, skeleton=root)
    joint_type = UNSIGNED_BYTE if bones <= 256 else UNSIGNED_SHORT
    w = np.asarray(weights, np.float64)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-12)
    primitive = {"attributes": {
        "POSITION": builder.add_accessor(vertices, minmax=True, target=ARRAY_BUFFER),
        "COLOR_0": builder.add_accessor(np.concatenate([srgb_to_linear(colors), np.ones((len(colors), 1))], 1), FLOAT, target=ARRAY_BUFFER),
        "JOINTS_0": builder.add_accessor(np.where(w > 0, joints, 0), joint_type, target=ARRAY_BUFFER),
        "WEIGHTS_0": builder.add_accessor(w, FLOAT, target=ARRAY_BUFFER),
    }, "indices": builder.add_accessor(np.asarray(faces).reshape(-1), UNSIGNED_INT, target=ELEMENT_ARRAY_BUFFER), "mode": TRIANGLES}
    mesh = builder.add_mesh("mesh", [primitive])
    builder.add_node("mesh", mesh=mesh, skin=skin)
    channels += _keypoints_and_camera(builder, root, info)
    return _finish(builder, channels, path)
