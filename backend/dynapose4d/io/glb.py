"""A small GLB (binary glTF 2.0) writer: one buffer, accessors from numpy arrays, nodes, meshes,
animations. numpy + json + struct only (no torch, no bpy), so the Blender add-on can call it.

Conventions (glTF 2.0): +Y up, metres-free units here; column vectors; quaternions xyzw;
animation times in seconds; every buffer view starts on a 4-byte boundary (the spec's alignment
rule for all component types we write); POSITION accessors and animation inputs carry min/max
(the spec requires both).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT, BYTE, SHORT = 5126, 5121, 5123, 5125, 5120, 5122
COMPONENT = {FLOAT: np.float32, UNSIGNED_BYTE: np.uint8, UNSIGNED_SHORT: np.uint16, UNSIGNED_INT: np.uint32, BYTE: np.int8, SHORT: np.int16}
TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
POINTS, TRIANGLES = 0, 4

_JSON, _BIN = 0x4E4F534A, 0x004E4942


class GlbBuilder:
    """Collects the glTF JSON and one binary buffer; :meth:`to_bytes` makes the GLB.

    Every ``add_*`` returns the index of what it added, for references between objects."""

    def __init__(self, generator: str = "DynaPose4D"):
        self.json: dict = {"asset": {"version": "2.0", "generator": generator}, "scenes": [{"nodes": []}], "scene": 0}
        self._bin = bytearray()

    # -- data ---------------------------------------------------------------------------------
    def _list(self, key: str) -> list:
        return self.json.setdefault(key, [])

    def add_view(self, data: bytes, target: int | None = None) -> int:
        pad = (-len(self._bin)) % 4
        self._bin += b"\0" * pad
        view = {"buffer": 0, "byteOffset": len(self._bin), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self._bin += data
        views = self._list("bufferViews")
        views.append(view)
        return len(views) - 1

    def add_accessor(self, array: np.ndarray, component: int = FLOAT, *, normalized: bool = False, target: int | None = None,
                     minmax: bool = False, kind: str | None = None) -> int:
        """``array [count, width]`` (or ``[count]``) stored as ``component``; ``kind`` overrides the
        type (``"MAT4"`` for ``[count, 16]``, column-major as glTF wants)."""
        a = np.asarray(array)
        if a.ndim == 1:
            a = a[:, None]
        a = np.ascontiguousarray(a.astype(COMPONENT[component], copy=False))
        count, width = a.shape
        acc = {"bufferView": self.add_view(a.tobytes(), target), "componentType": component, "count": int(count),
               "type": kind or TYPES[width]}
        if normalized:
            acc["normalized"] = True
        if minmax and count:
            acc["min"] = [_plain(v, component) for v in a.min(0)]
            acc["max"] = [_plain(v, component) for v in a.max(0)]
        accessors = self._list("accessors")
        accessors.append(acc)
        return len(accessors) - 1

    # -- the scene ----------------------------------------------------------------------------
    def add_node(self, name: str, *, parent: int | None = None, **fields) -> int:
        """A node (``mesh``, ``camera``, ``translation``, ``rotation`` xyzw, ``scale``, ``matrix``,
        ``extras`` ...) under ``parent``, or a root of the scene."""
        nodes = self._list("nodes")
        node = {"name": name}
        for key, value in fields.items():
            if value is not None:
                node[key] = _jsonable(value)
        nodes.append(node)
        index = len(nodes) - 1
        if parent is None:
            self.json["scenes"][0]["nodes"].append(index)
        else:
            nodes[parent].setdefault("children", []).append(index)
        return index

    def add_mesh(self, name: str, primitives: list[dict]) -> int:
        meshes = self._list("meshes")
        meshes.append({"name": name, "primitives": primitives})
        return len(meshes) - 1

    def add_camera(self, name: str, yfov: float, aspect: float, znear: float = 0.01, zfar: float = 100.0) -> int:
        cameras = self._list("cameras")
        cameras.append({"name": name, "type": "perspective",
                        "perspective": {"yfov": float(yfov), "aspectRatio": float(aspect), "znear": float(znear), "zfar": float(zfar)}})
        return len(cameras) - 1

    def add_skin(self, name: str, joints: list[int], inverse_bind: np.ndarray, skeleton: int | None = None) -> int:
        """``inverse_bind [J, 4, 4]`` (row-major numpy matrices; stored column-major)."""
        ibm = np.asarray(inverse_bind, np.float64).transpose(0, 2, 1).reshape(len(joints), 16)
        skin = {"name": name, "joints": [int(j) for j in joints], "inverseBindMatrices": self.add_accessor(ibm, kind="MAT4")}
        if skeleton is not None:
            skin["skeleton"] = int(skeleton)
        skins = self._list("skins")
        skins.append(skin)
        return len(skins) - 1

    def add_animation(self, name: str, channels: list[tuple[int, str, np.ndarray, np.ndarray, str]]) -> int:
        """One animation of ``(node, path, times [K], values [K, w], interpolation)`` channels;
        channels with the same times share one input accessor."""
        inputs: dict[bytes, int] = {}
        samplers, chans = [], []
        for node, path, times, values, interpolation in channels:
            times = _float32_at_or_before(times)
            key = times.tobytes()
            if key not in inputs:
                inputs[key] = self.add_accessor(times, minmax=True)
            samplers.append({"input": inputs[key], "output": self.add_accessor(np.asarray(values, np.float32)), "interpolation": interpolation})
            chans.append({"sampler": len(samplers) - 1, "target": {"node": int(node), "path": path}})
        animations = self._list("animations")
        animations.append({"name": name, "samplers": samplers, "channels": chans})
        return len(animations) - 1

    def use_extension(self, name: str, required: bool = False) -> None:
        used = self._list("extensionsUsed")
        if name not in used:
            used.append(name)
        if required and name not in self._list("extensionsRequired"):
            self.json["extensionsRequired"].append(name)

    # -- the file -----------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        doc = dict(self.json)
        if self._bin:
            doc["buffers"] = [{"byteLength": len(self._bin)}]
        text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        text += b" " * ((-len(text)) % 4)
        binary = bytes(self._bin) + b"\0" * ((-len(self._bin)) % 4)
        chunks = struct.pack("<II", len(text), _JSON) + text
        if binary:
            chunks += struct.pack("<II", len(binary), _BIN) + binary
        return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks

    def write(self, path: str | os.PathLike) -> Path:
        """Write atomically (a reader never sees half a file); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        os.replace(tmp, path)
        return path


def matrix_to_quat_xyzw(R: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[..., 4]`` (x, y, z, w; w >= 0) of rotation matrices ``[..., 3, 3]``."""
    R = np.asarray(R, np.float64)
    shape = R.shape[:-2]
    R = R.reshape(-1, 3, 3)
    q = np.empty((len(R), 4))
    trace = np.trace(R, axis1=1, axis2=2)
    diag = np.diagonal(R, axis1=1, axis2=2)
    # Shepperd's method: solve from the largest of |w|, |x|, |y|, |z| (case 3 is w), for stability.
    case = np.where(trace > diag.max(1), 3, diag.argmax(1))
    for c in range(4):
        m = case == c
        r = R[m]
        out = np.empty((len(r), 4))
        if c == 3:
            s = np.sqrt(1.0 + trace[m]) * 2.0  # 4 |w|
            out[:, 0] = (r[:, 2, 1] - r[:, 1, 2]) / s
            out[:, 1] = (r[:, 0, 2] - r[:, 2, 0]) / s
            out[:, 2] = (r[:, 1, 0] - r[:, 0, 1]) / s
            out[:, 3] = s / 4.0
        else:
            i, j, k = c, (c + 1) % 3, (c + 2) % 3
            s = np.sqrt(np.maximum(1.0 + r[:, i, i] - r[:, j, j] - r[:, k, k], 1e-300)) * 2.0  # 4 |q_i|
            out[:, i] = s / 4.0
            out[:, j] = (r[:, j, i] + r[:, i, j]) / s
            out[:, k] = (r[:, k, i] + r[:, i, k]) / s
            out[:, 3] = (r[:, k, j] - r[:, j, k]) / s
        q[m] = out
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[:, 3:] < 0, -q, q)
    return q.reshape(shape + (4,))


def add_camera_node(builder: GlbBuilder, camera: dict, parent: int | None = None, name: str = "camera") -> int:
    """The reference view as a perspective camera node. ``camera``: ``{"c2w": 4x4 camera-to-world
    (OpenGL: x right, y up, looking down -Z, which is glTF's camera convention), "fovy_deg",
    "width", "height"}`` (sequence.json's form)."""
    c2w = np.asarray(camera["c2w"], np.float64).reshape(4, 4)
    index = builder.add_camera(name, np.radians(float(camera["fovy_deg"])), float(camera["width"]) / float(camera["height"]))
    return builder.add_node(name, parent=parent, camera=index, translation=c2w[:3, 3], rotation=matrix_to_quat_xyzw(c2w[:3, :3]))


def continuous_quats(q: np.ndarray) -> np.ndarray:
    """Quaternions ``[K, ..., 4]`` along a track with each sign chosen next to the previous key,
    so LINEAR (slerp) interpolation between keys takes the short way."""
    q = np.array(q, np.float64)
    for k in range(1, len(q)):
        flip = (q[k] * q[k - 1]).sum(-1, keepdims=True) < 0
        q[k] = np.where(flip, -q[k], q[k])
    return q


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function inverted (glTF's COLOR_0 is linear)."""
    c = np.clip(np.asarray(c, np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _float32_at_or_before(times) -> np.ndarray:
    """Key times as float32 no later than the exact times: a player asked for frame i at exactly
    ``i / fps`` (a double) must find key i at or before it, or a STEP key shows the frame before."""
    exact = np.asarray(times, np.float64)
    t = exact.astype(np.float32)
    return np.where(t.astype(np.float64) > exact, np.nextafter(t, np.float32(-np.inf)), t).astype(np.float32)


def _plain(v, component: int):
    return float(v) if component == FLOAT else int(v)


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return [float(v) for v in value.reshape(-1)]
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (float, np.floating, int, np.integer)):
        return [float(v) if isinstance(v, (float, np.floating)) else int(v) for v in value]
    return value
