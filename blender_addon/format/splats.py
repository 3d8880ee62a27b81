"""3D Gaussian splats as plain arrays: read from the attributes other tools leave on Blender
objects, moved into world space, and written as (or read from) a standard 3DGS PLY. No bpy.

:class:`Splats` holds activated values: ``positions [N, 3]``, ``rotations [N, 4]`` (w x y z,
unit), ``scales [N, 3]`` (standard deviations, linear), ``opacities [N]`` in (0, 1), ``sh_dc [N, 3]``
(the raw degree-0 SH coefficients: colour = 0.5 + SH_C0 * dc) and ``sh_rest [N, K, 3]`` (K = 3, 8
or 15 higher coefficients, or None).

The attribute layouts a selected object may carry (:func:`from_attributes`):

- ``blender-splat``: Blender 5.3's Gaussian-splat point cloud (or a mesh whose points the "Set
  Point Cloud Type" node turns into splats): ``scale`` (linear), ``rotation`` (quaternion w x y
  z), ``radiance:base`` (SH DC and sigmoid opacity), optional ``radiance:sh_k`` (k = 0..14).
- ``3dgs-ply``: Blender's PLY importer on a 3DGS file, which KIRI Engine's 3DGS Render add-on
  uses too: one float per PLY property, ``f_dc_0..2``, ``f_rest_*`` (channel-major),
  ``opacity`` (logit), ``scale_0..2`` (log), ``rot_0..3`` (w x y z).
- ``reshot``: the ReshotAI Gaussian-splatting add-on: ``sh0`` (DC), ``sh1..sh15`` (one RGB
  vector per coefficient), ``log_opacity`` (logit; its ``opacity`` is the sigmoid), ``logscale``
  (log; ``scale`` is linear), and the PLY's ``rot_0..2`` stored as ``quatxyz`` with ``rot_3`` as
  ``quatw`` (the names say x y z w, the values are the PLY's w x y, then z).
- ``dynapose4d``: a result imported by this add-on (``scene.points``): ``color`` (linear RGB +
  opacity), ``opacity``, ``scale`` (linear), ``rotation`` (quaternion w x y z).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from . import sh

SH_C0 = 0.28209479177387814
FILE_REST = 15  # the original 3DGS loader (and those copied from it) reads degree 3 only: 45 f_rest
LAYOUTS = ("blender-splat", "3dgs-ply", "reshot", "dynapose4d")
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
_MAX_HEADER = 64 * 1024


class NotASplat(ValueError):
    """Data that are not 3D Gaussian splats; the message says what is missing."""


@dataclass
class Splats:
    positions: np.ndarray
    rotations: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.positions)
        shapes = {"positions": (n, 3), "rotations": (n, 4), "scales": (n, 3), "opacities": (n,), "sh_dc": (n, 3)}
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name), dtype=np.float32)
            if value.shape != shape:
                raise NotASplat(f"{name} must have shape {list(shape)}, got {list(value.shape)}")
            setattr(self, name, value)
        if self.sh_rest is not None:
            self.sh_rest = np.asarray(self.sh_rest, dtype=np.float32)
            if self.sh_rest.ndim != 3 or self.sh_rest.shape[0] != n or self.sh_rest.shape[2] != 3 or self.sh_rest.shape[1] not in (3, 8, 15):
                raise NotASplat(f"sh_rest must have shape [N, 3|8|15, 3], got {list(self.sh_rest.shape)}")
        norms = np.linalg.norm(self.rotations, axis=1, keepdims=True)
        self.rotations = np.where(norms > 1e-12, self.rotations / np.maximum(norms, 1e-12), [1.0, 0.0, 0.0, 0.0]).astype(np.float32)

    @property
    def count(self) -> int:
        return len(self.positions)

    @property
    def colors(self) -> np.ndarray:
        """sRGB in [0, 1] of degree 0 (what the backend's wire sends)."""
        return np.clip(0.5 + SH_C0 * self.sh_dc, 0.0, 1.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return np.log(p / (1.0 - p))


# -- the layouts of Blender objects -------------------------------------------------------------------

def layout_of(names) -> str | None:
    """Which layout the attribute ``names`` are (None: none of them)."""
    names = set(names)
    if {"scale", "rotation", "radiance:base"} <= names:
        return "blender-splat"
    if {"f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"} <= names:
        return "3dgs-ply"
    if {"sh0", "quatxyz", "quatw"} <= names and names & {"log_opacity", "opacity"} and names & {"logscale", "scale"}:
        return "reshot"
    if {"color", "opacity", "scale", "rotation"} <= names:
        return "dynapose4d"
    return None


def needed_attributes(layout: str, names) -> list[str]:
    """The attributes :func:`from_attributes` reads for ``layout`` among ``names`` (the object's)."""
    names = set(names)
    if layout == "blender-splat":
        return ["scale", "rotation", "radiance:base"] + [f"radiance:sh_{k}" for k in range(FILE_REST) if f"radiance:sh_{k}" in names]
    if layout == "3dgs-ply":
        return [n for n in names if re.fullmatch(r"(f_dc_\d|f_rest_\d+|opacity|scale_\d|rot_\d)", n)]
    if layout == "reshot":
        return [n for n in names if re.fullmatch(r"(sh\d+|log_opacity|opacity|logscale|scale|quatxyz|quatw)", n)]
    return ["color", "opacity", "scale", "rotation"]


MISSING_HINT = ("a Blender 5.3 Gaussian-splat point cloud, a 3DGS PLY imported by Blender or KIRI 3DGS Render (f_dc_*, "
                "scale_*, rot_*, opacity), one from the ReshotAI add-on (sh0, quatxyz, logscale) or a DynaPose4D import")


def from_attributes(positions: np.ndarray, attributes: Mapping[str, np.ndarray]) -> tuple[str, Splats]:
    """The layout and the splats of an object's points: ``positions [N, 3]`` and its point
    attributes by name (each ``[N]`` or ``[N, width]``). Raises :class:`NotASplat`."""
    layout = layout_of(attributes)
    if layout is None:
        raise NotASplat(f"its attributes are not those of 3D Gaussian splats: expected {MISSING_HINT}")
    a = {k: np.asarray(attributes[k]) for k in needed_attributes(layout, attributes)}  # only what is read: a PLY has 62 columns
    n = len(positions)
    for name in a:
        if len(a[name]) != n:
            raise NotASplat(f"attribute {name!r} has {len(a[name])} values for {n} points")
    if layout == "blender-splat":
        base = a["radiance:base"]
        rest = [a[f"radiance:sh_{k}"] for k in range(FILE_REST) if f"radiance:sh_{k}" in a]
        splats = Splats(positions, a["rotation"], a["scale"], base[:, 3], base[:, :3], _rest(rest))
    elif layout == "3dgs-ply":
        rest_names = sorted((k for k in a if re.fullmatch(r"f_rest_\d+", k)), key=lambda k: int(k[7:]))
        rest = None
        if len(rest_names) in (9, 24, 45):  # channel-major: all red, then green, then blue
            rest = np.stack([a[k] for k in rest_names], 1).reshape(n, 3, -1).transpose(0, 2, 1)
        splats = Splats(positions, _columns(a, "rot_", 4), np.exp(_columns(a, "scale_", 3)), sigmoid(a["opacity"]),
                        _columns(a, "f_dc_", 3), rest)
    elif layout == "reshot":
        quat = np.column_stack([a["quatxyz"], a["quatw"]])  # the PLY's rot_0..3: w x y z
        opacity = sigmoid(a["log_opacity"]) if "log_opacity" in a else a["opacity"]
        scales = np.exp(a["logscale"]) if "logscale" in a else a["scale"]
        rest = [a[f"sh{k}"] for k in range(1, FILE_REST + 1) if f"sh{k}" in a]
        splats = Splats(positions, quat, scales, opacity, a["sh0"], _rest(rest))
    else:
        color = a["color"]
        srgb = _linear_to_srgb(color[:, :3])
        splats = Splats(positions, a["rotation"], a["scale"], a["opacity"], (srgb - 0.5) / SH_C0)
    return layout, splats


def _columns(a: dict, prefix: str, count: int) -> np.ndarray:
    return np.column_stack([a[f"{prefix}{i}"] for i in range(count)])


def _rest(coefficients: list) -> np.ndarray | None:
    """``[N, K, 3]`` from K per-coefficient RGB arrays, cut to a whole degree (3, 8 or 15)."""
    k = max((d for d in (3, 8, 15) if d <= len(coefficients)), default=0)
    return np.stack(coefficients[:k], 1) if k else None


def _linear_to_srgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.clip(rgb, 0.0, 1.0)
    return np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * rgb ** (1 / 2.4) - 0.055)


# -- into world space ---------------------------------------------------------------------------------

def to_world(splats: Splats, matrix: np.ndarray) -> Splats:
    """``splats`` moved by an object's 4x4 ``matrix_world``: positions, rotations, scales and the
    view-dependent colour. A rotation with uniform scale turns and scales each Gaussian; any
    other linear part (non-uniform scale, shear, mirror) transforms its covariance exactly."""
    m = np.asarray(matrix, dtype=np.float64)
    a, t = m[:3, :3], m[:3, 3]
    positions = splats.positions.astype(np.float64) @ a.T + t
    u, sigma, vt = np.linalg.svd(a)
    if sigma[-1] <= 1e-12 * max(sigma[0], 1e-30):
        raise NotASplat("the object's transform is flat (a zero scale): its Gaussians have no volume in world space")
    orthogonal = u @ vt  # the polar decomposition's rotation (or mirror)
    uniform = np.allclose(sigma, sigma.mean(), rtol=1e-5) and np.linalg.det(a) > 0
    if uniform:
        rotations = quat_multiply(matrix_to_quat(orthogonal)[None], splats.rotations.astype(np.float64))
        scales = splats.scales.astype(np.float64) * sigma.mean()
    else:
        rotations, scales = _transformed_covariances(splats, a)
    rest = None if splats.sh_rest is None else sh.rotate(splats.sh_rest, orthogonal)
    return Splats(positions, rotations, scales, splats.opacities, splats.sh_dc, rest)


def _transformed_covariances(splats: Splats, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = quat_to_matrix(splats.rotations.astype(np.float64))
    m = a @ r * splats.scales.astype(np.float64)[:, None, :]  # A R S: covariance = M M^T
    values, vectors = np.linalg.eigh(m @ m.transpose(0, 2, 1))
    vectors[np.linalg.det(vectors) < 0, :, 2] *= -1.0  # a proper rotation
    return matrix_to_quat(vectors), np.sqrt(np.maximum(values, 0.0))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``[..., 4]`` (w x y z) as rotation matrices ``[..., 3, 3]``."""
    w, x, y, z = np.moveaxis(np.asarray(q, dtype=np.float64), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_quat(r: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` as unit quaternions ``[..., 4]`` (w x y z, w >= 0)."""
    r = np.asarray(r, dtype=np.float64)
    # Each of the four candidates is accurate where its component is largest (Shepperd's method).
    trace = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    candidates = np.stack([
        np.stack([1 + trace, r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], -1),
        np.stack([r[..., 2, 1] - r[..., 1, 2], 1 + 2 * r[..., 0, 0] - trace, r[..., 0, 1] + r[..., 1, 0], r[..., 0, 2] + r[..., 2, 0]], -1),
        np.stack([r[..., 0, 2] - r[..., 2, 0], r[..., 0, 1] + r[..., 1, 0], 1 + 2 * r[..., 1, 1] - trace, r[..., 1, 2] + r[..., 2, 1]], -1),
        np.stack([r[..., 1, 0] - r[..., 0, 1], r[..., 0, 2] + r[..., 2, 0], r[..., 1, 2] + r[..., 2, 1], 1 + 2 * r[..., 2, 2] - trace], -1),
    ], -2)
    best = np.argmax(np.stack([trace, r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]], -1), axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products ``a * b`` of quaternions ``[..., 4]`` (w x y z): b's rotation, then a's."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


# -- the standard 3DGS PLY ----------------------------------------------------------------------------

def ply_property_names() -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(3 * FILE_REST)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def write_ply(path: str | os.PathLike, splats: Splats) -> Path:
    """``splats`` as a binary 3DGS PLY with all 45 ``f_rest`` (zeros above the splats' degree), the
    layout every 3DGS loader reads."""
    n = splats.count
    rest = np.zeros((n, FILE_REST, 3), np.float32)
    if splats.sh_rest is not None:
        rest[:, : splats.sh_rest.shape[1]] = splats.sh_rest
    columns = [splats.positions, np.zeros((n, 3)), splats.sh_dc, rest.transpose(0, 2, 1).reshape(n, -1),
               logit(splats.opacities)[:, None], np.log(np.maximum(splats.scales, 1e-30)), splats.rotations]
    data = np.concatenate([np.asarray(c, dtype=np.float64).reshape(n, -1) for c in columns], 1).astype("<f4")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in ply_property_names()] + ["end_header"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(np.ascontiguousarray(data).tobytes())
    return path


def read_ply(path: str | os.PathLike) -> Splats:
    """A 3DGS PLY (binary either endianness, or ASCII; properties by name, extra ones ignored)."""
    path = Path(path)
    if not path.is_file():
        raise NotASplat(f"{path}: no such file")
    with open(path, "rb") as fh:
        fmt, elements = _ply_header(fh, path)
        start, size = fh.tell(), os.fstat(fh.fileno()).st_size
        table, block = _ply_vertices(fh, path, fmt, elements, size - start)
    n = len(table["x"]) if "x" in table else 0
    layout = layout_of(table)
    if layout != "3dgs-ply" or not {"x", "y", "z"} <= set(table):
        raise NotASplat(f"{path}: not a 3DGS PLY (it needs x y z f_dc_0..2 opacity scale_0..2 rot_0..3)")
    rest = _rest_block(block, [name for name, _ in elements[0][2]])
    if rest is not None:  # one slice of the file's rows, not 45 gathered columns (most of a frame's reading time)
        table = {k: v for k, v in table.items() if not k.startswith("f_rest_")}
    splats = from_attributes(np.column_stack([table["x"], table["y"], table["z"]]).reshape(n, 3), table)[1]
    if rest is not None:
        splats = Splats(splats.positions, splats.rotations, splats.scales, splats.opacities, splats.sh_dc, rest)
    return splats


def _rest_block(block: np.ndarray | None, order: list[str]) -> np.ndarray | None:
    """``f_rest`` as ``[N, K, 3]`` from one slice of the rows when the file keeps them together and
    in order in a one-type ``block [N, properties]`` (the standard layout); None otherwise."""
    rest = [name for name in order if name.startswith("f_rest_")]
    if block is None or len(rest) not in (9, 24, 45) or rest != [f"f_rest_{i}" for i in range(len(rest))]:
        return None
    start = order.index(rest[0])
    if order[start:start + len(rest)] != rest:
        return None
    return block[:, start:start + len(rest)].reshape(len(block), 3, -1).transpose(0, 2, 1)


def _ply_header(fh, path):
    if fh.readline(8).rstrip(b"\r\n") != b"ply":
        raise NotASplat(f"{path}: not a PLY file")
    fmt, elements = None, []
    while True:
        line = fh.readline(1024)
        if not line or fh.tell() > _MAX_HEADER:
            raise NotASplat(f"{path}: no end of the PLY header")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format" and len(words) >= 2 and words[1] in ("binary_little_endian", "binary_big_endian", "ascii"):
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit() and len(words[2]) <= 12:
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements and len(words) == 3 and words[1] in _PLY_TYPES:
            elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
        else:
            raise NotASplat(f"{path}: unsupported PLY header line {line.strip()!r}")
    if fmt is None:
        raise NotASplat(f"{path}: the PLY header has no format line")
    return fmt, elements


def _ply_vertices(fh, path, fmt, elements, data_bytes) -> tuple[dict, np.ndarray | None]:
    """The vertex columns by name, and the whole ``[N, properties]`` block when every property has one type."""
    if not elements or elements[0][0] != "vertex":
        raise NotASplat(f"{path}: the PLY's first element is not 'vertex'")
    _, n, props = elements[0]
    if fmt == "ascii":
        rows = np.loadtxt(fh, max_rows=n, ndmin=2) if n else np.zeros((0, len(props)))
        if rows.shape != (n, len(props)):
            raise NotASplat(f"{path}: truncated ASCII PLY ({n} rows of {len(props)} values expected)")
        return {name: rows[:, i] for i, (name, _) in enumerate(props)}, rows
    endian = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(name, endian + kind) for name, kind in props])
    if n * dtype.itemsize > data_bytes:  # checked before reading: the count could be anything
        raise NotASplat(f"{path}: truncated PLY: {n} vertices need {n * dtype.itemsize} bytes, the file has {data_bytes}")
    data = fh.read(n * dtype.itemsize)
    if len({kind for _, kind in props}) == 1:  # one type (the usual float32): a 2D array, columns as views
        table = np.frombuffer(data, dtype=endian + props[0][1], count=n * len(props)).reshape(n, len(props))
        return {name: table[:, i] for i, (name, _) in enumerate(props)}, table
    arr = np.frombuffer(data, dtype=dtype, count=n)
    return {name: arr[name] for name, _ in props}, None
