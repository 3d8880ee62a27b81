"""3DGS PLY files: the layout of the original 3DGS code, which other splat viewers read.

Vertex properties, in order: ``x y z nx ny nz f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2
rot_0..3``, all float32, binary little endian. ``f_rest`` is channel-major (all red
coefficients, then green, then blue), ``opacity`` is the logit, ``scale_*`` the log-scales and
``rot_*`` the quaternion wxyz. Files are written with all 45 ``f_rest`` properties of degree 3
(zeros above the scene's own degree) because the original 3DGS loader, and the many loaders
copied from it, accept no other count; higher coefficients of zero leave the colours unchanged.
Reading maps properties by name (any order, float or double,
either endianness, or ASCII) and ignores extra properties.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch

from ..gaussians import Z_UP_TO_Y_UP, Gaussians, GaussiansError, transform_gaussians

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_MAX_HEADER = 64 * 1024
UP_AXES = ("y", "z")


class PlyError(ValueError):
    """A file that is not a readable 3DGS PLY."""


def property_names(sh_rest_k: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * sh_rest_k)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


STANDARD_SH_DEGREE = 3  # what the original 3DGS loader expects: 3 * 15 f_rest properties


def write_ply(path: str | os.PathLike, gaussians: Gaussians, sh_degree: int | None = STANDARD_SH_DEGREE) -> Path:
    """Write one scene (no batch dims) to ``path`` in the standard 3DGS layout.

    ``sh_degree``: the SH degree of the file; coefficients the scene lacks are written as zeros
    (3, the default, is the layout every 3DGS loader reads). ``None`` writes the scene's own
    degree (a compact file that reads back exactly, e.g. a checkpoint)."""
    g = gaussians.detach().to("cpu", torch.float32).validate()
    if g.batch_shape:
        raise GaussiansError(f"write_ply writes one scene; got batch shape {tuple(g.batch_shape)}")
    n = g.num
    own = 0 if g.sh_rest is None else g.sh_rest.shape[-2]
    k = own if sh_degree is None else (sh_degree + 1) ** 2 - 1
    if k < own:
        raise GaussiansError(f"write_ply: the scene has SH degree {g.sh_degree}, more than the file's sh_degree={sh_degree}")
    columns = [g.means, torch.zeros(n, 3), g.sh_dc]
    if k:
        rest = torch.zeros(n, k, 3)
        if own:
            rest[:, :own] = g.sh_rest
        columns.append(rest.transpose(1, 2).reshape(n, 3 * k))  # channel-major
    columns += [g.opacity_logits, g.log_scales, g.quats]
    data = torch.cat(columns, 1).numpy().astype("<f4")
    names = property_names(k)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {name}" for name in names]
    header += ["end_header"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(np.ascontiguousarray(data).tobytes())
    os.replace(tmp, path)  # readers never see a half-written file
    return path


def read_ply(path: str | os.PathLike, up_axis: str = "y") -> Gaussians:
    """Read a 3DGS PLY. ``up_axis="z"`` converts a +Z-up file (Blender) to our +Y-up frame."""
    if up_axis not in UP_AXES:
        raise ValueError(f"up_axis must be one of {UP_AXES}, got {up_axis!r}")
    path = Path(path)
    if not path.is_file():
        raise PlyError(f"{path}: no such file")
    with open(path, "rb") as fh:
        header, data_start = _read_header(fh, path)
        fmt, elements = header
        vertex_index = next((i for i, (name, _, _) in enumerate(elements) if name == "vertex"), None)
        if vertex_index is None:
            raise PlyError(f"{path}: no 'vertex' element")
        skip = 0
        for name, count, props in elements[:vertex_index]:
            if any(p[0] == "list" for p in props):
                raise PlyError(f"{path}: element '{name}' before the vertices has list properties (unsupported)")
            skip += count * sum(np.dtype(p[1]).itemsize for p in props)
        _, n, props = elements[vertex_index]
        if any(p[0] == "list" for p in props):
            raise PlyError(f"{path}: vertex list properties are not supported")
        fh.seek(data_start)
        _check_counts(path, fmt, n, props, skip, os.fstat(fh.fileno()).st_size - data_start)
        table = _read_vertices(fh, path, fmt, n, props, skip)

    missing = [c for c in property_names(0) if c not in table and c not in ("nx", "ny", "nz")]
    if missing:
        raise PlyError(f"{path}: missing 3DGS propert{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)}")

    def cols(names):
        return torch.from_numpy(np.stack([table[c].astype(np.float32) for c in names], 1).reshape(n, len(names)))

    rest_names = sorted((c for c in table if re.fullmatch(r"f_rest_\d+", c)), key=lambda c: int(c[7:]))
    if len(rest_names) % 3:
        raise PlyError(f"{path}: {len(rest_names)} f_rest properties is not a multiple of 3")
    k = len(rest_names) // 3
    g = Gaussians(
        means=cols(["x", "y", "z"]),
        quats=cols([f"rot_{i}" for i in range(4)]),
        log_scales=cols([f"scale_{i}" for i in range(3)]),
        opacity_logits=cols(["opacity"]),
        sh_dc=cols([f"f_dc_{i}" for i in range(3)]),
        sh_rest=cols(rest_names).reshape(n, 3, k).transpose(1, 2).contiguous() if k else None,
    )
    try:
        g.validate()
    except GaussiansError as exc:
        raise PlyError(f"{path}: {exc}") from None
    if up_axis == "z":
        g = transform_gaussians(g, Z_UP_TO_Y_UP)
    return g


def _read_header(fh, path):
    magic = fh.readline(8)
    if magic.rstrip(b"\r\n") != b"ply":
        raise PlyError(f"{path}: not a PLY file (it does not start with 'ply')")
    fmt, elements = None, []
    while True:
        line = fh.readline(1024)
        if not line:
            raise PlyError(f"{path}: truncated PLY header (no 'end_header')")
        if fh.tell() > _MAX_HEADER:
            raise PlyError(f"{path}: PLY header longer than {_MAX_HEADER} bytes")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            if len(words) < 2 or words[1] not in ("binary_little_endian", "binary_big_endian", "ascii"):
                raise PlyError(f"{path}: unsupported PLY format {' '.join(words[1:])!r}")
            fmt = words[1]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit() or len(words[2]) > 18:
                raise PlyError(f"{path}: malformed element line {line.strip()!r}")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise PlyError(f"{path}: property before any element")
            if len(words) < 3:
                raise PlyError(f"{path}: malformed property line {line.strip()!r} (expected 'property <type> <name>')")
            if words[1] == "list":
                elements[-1][2].append(("list", None, words[-1]))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]], words[2]))
            else:
                raise PlyError(f"{path}: unsupported property line {line.strip()!r}")
        else:
            raise PlyError(f"{path}: unexpected header line {line.strip()!r}")
    if fmt is None:
        raise PlyError(f"{path}: PLY header has no format line")
    return (fmt, elements), fh.tell()


def _check_counts(path, fmt, n, props, skip, data_bytes):
    """Refuse a vertex count the file cannot hold before allocating anything for it."""
    if fmt == "ascii":
        need = 2 * n * len(props)  # at least one digit and one separator per value
        if need > data_bytes:
            raise PlyError(f"{path}: truncated ASCII PLY: {n} vertices need at least {need} bytes of data, found {data_bytes}")
        return
    need = n * sum(np.dtype(p[1]).itemsize for p in props)
    if skip + need > data_bytes:  # checked before reading: the count could be anything
        raise PlyError(f"{path}: truncated PLY: {n} vertices need {need} bytes of data, found {max(0, data_bytes - skip)}")


def _read_vertices(fh, path, fmt, n, props, skip):
    names = [p[0] for p in props]
    if fmt == "ascii":
        if skip:
            raise PlyError(f"{path}: ASCII PLY with elements before the vertices is not supported")
        try:
            rows = np.loadtxt(fh, max_rows=n, ndmin=2) if n else np.zeros((0, len(props)))
        except ValueError as exc:
            raise PlyError(f"{path}: ASCII PLY rows must be numbers: {str(exc).splitlines()[0]}") from None
        if rows.shape != (n, len(props)):
            raise PlyError(f"{path}: truncated ASCII PLY: expected {n} rows of {len(props)} values")
        return {name: rows[:, i] for i, name in enumerate(names)}
    endian = "<" if fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(name, endian + p[1]) for name, p in zip(names, props)])
    fh.seek(skip, os.SEEK_CUR)
    raw = fh.read(n * dtype.itemsize)
    if len(raw) < n * dtype.itemsize:
        raise PlyError(
            f"{path}: truncated PLY: {n} vertices need {n * dtype.itemsize} bytes of data, found {len(raw)}"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=n)
    return {name: arr[name] for name in names}
