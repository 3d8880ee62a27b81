"""The frame wire format (encoder): one frame of Gaussians + keypoints as compact binary.

The layout is specified in ``docs/wire-format.md``; the add-on's numpy-only decoder is
``blender_addon/format/wire.py``, and the tests round-trip the two. In short::

    bytes 0..3    b"DP4F"
    bytes 4..7    uint32 little-endian: H, the header length in bytes
    bytes 8..8+H  UTF-8 JSON header, padded with spaces so that 8 + H is a multiple of 8
    then          the payload: little-endian C-order arrays at the header's offsets (relative
                  to the payload start, each a multiple of 8), zero bytes between them

Header: ``{"format": "dynapose4d.frame", "format_version": 1, "count": N, "keypoint_count": P,
"dtype": "float32"|"float16", "fields": [{"name", "dtype", "shape", "offset", "nbytes"}, ...],
...metadata}``. Fields, in this order: ``positions [N, 3]``, ``rotations [N, 4]`` (unit
quaternions, w x y z), ``scales [N, 3]`` (standard deviations in world units, activated),
``opacities [N]`` (in [0, 1]), ``colors [N, 3]`` (degree-0 colour as RGB in [0, 1]),
``keypoints [P, 3]`` (always float32), then, from revision 1.1 and only where given,
``sh_rest [N, K, 3]`` (the view-dependent SH coefficients, K = 3, 8 or 15). Backend
coordinates: right-handed, +Y up.

Revision 1.1 (header ``format_minor``: 1) only adds optional fields: a 1.0 reader skips the
fields it does not know, and a 1.1 reader of a 1.0 frame finds none of them.
"""

from __future__ import annotations

import json
import struct

import numpy as np

MAGIC = b"DP4F"
FORMAT = "dynapose4d.frame"
FORMAT_VERSION = 1
FORMAT_MINOR = 1  # 1.1: the optional sh_rest field
DTYPES = {"float32": "<f4", "float16": "<f2"}
# name -> trailing shape (after N); keypoints are listed separately (count P, float32).
GAUSSIAN_FIELDS = (("positions", (3,)), ("rotations", (4,)), ("scales", (3,)), ("opacities", ()), ("colors", (3,)))
SH_REST_KS = (3, 8, 15)  # degrees 1, 2, 3
ALIGN = 8


def _pad(n: int) -> int:
    return (-n) % ALIGN


def encode_frame(arrays: dict[str, np.ndarray], dtype: str = "float32", meta: dict | None = None) -> bytes:
    """``arrays``: the five Gaussian fields (``[N, ...]``), ``keypoints [P, 3]`` and optionally
    ``sh_rest [N, K, 3]`` (left out when None or K = 0); ``meta`` is copied into the header
    (frame index, time, snapshot version, ...)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    n = int(np.asarray(arrays["positions"]).shape[0])
    fields, parts, offset = [], [], 0
    specs = [(name, (n, *tail), DTYPES[dtype]) for name, tail in GAUSSIAN_FIELDS]
    keypoints = np.asarray(arrays.get("keypoints", np.zeros((0, 3))))
    specs.append(("keypoints", (int(keypoints.shape[0]), 3), "<f4"))
    sh_rest = arrays.get("sh_rest")
    if sh_rest is not None and np.asarray(sh_rest).size:
        k = int(np.asarray(sh_rest).shape[1]) if np.ndim(sh_rest) == 3 else -1
        if k not in SH_REST_KS:
            raise ValueError(f"sh_rest must have shape [N, K, 3] with K in {SH_REST_KS}, got {list(np.shape(sh_rest))}")
        specs.append(("sh_rest", (n, k, 3), DTYPES[dtype]))
    for name, shape, wire_dtype in specs:
        arr = keypoints if name == "keypoints" else np.asarray(arrays[name])
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(arr.shape)}")
        nbytes = int(np.prod(shape)) * np.dtype(wire_dtype).itemsize
        fields.append({"name": name, "dtype": wire_dtype, "shape": list(shape), "offset": offset, "nbytes": nbytes})
        parts.append((arr, offset, wire_dtype))
        offset += nbytes + _pad(nbytes)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "format_minor": FORMAT_MINOR,
        "count": n,
        "keypoint_count": int(keypoints.shape[0]),
        "dtype": dtype,
        "fields": fields,
        "payload_bytes": offset,
        **(meta or {}),
    }
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")  # standard JSON only
    text += b" " * _pad(8 + len(text))
    # One buffer, each field converted straight into its place: a frame of 100k Gaussians is
    # 5.6 MB, and copying it twice (tobytes, then a join) was a fifth of serving it.
    start = len(MAGIC) + 4 + len(text)
    out = bytearray(start + offset)
    out[:start] = MAGIC + struct.pack("<I", len(text)) + text
    for arr, at, wire_dtype in parts:
        np.frombuffer(out, dtype=wire_dtype, count=arr.size, offset=start + at).reshape(arr.shape)[...] = arr
    return bytes(out)
