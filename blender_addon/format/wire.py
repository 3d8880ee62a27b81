"""Decode the backend's frame wire format with numpy only (no bpy, no torch).

The format is specified in ``docs/wire-format.md`` (the backend's encoder is
``dynapose4d.server.wire``)::

    bytes 0..3    b"DP4F"
    bytes 4..7    uint32 little-endian: H, the header length in bytes
    bytes 8..8+H  UTF-8 JSON header (space-padded so that 8 + H is a multiple of 8)
    then          the payload: little-endian C-order arrays at the header's offsets

Fields: ``positions [N, 3]``, ``rotations [N, 4]`` (w x y z, unit), ``scales [N, 3]``
(activated standard deviations, world units), ``opacities [N]`` in [0, 1], ``colors [N, 3]``
RGB in [0, 1], ``keypoints [P, 3]``; revision 1.1 adds the optional ``sh_rest [N, K, 3]``
(view-dependent SH coefficients, K = 3, 8 or 15; the server sends them with frame 0 only).
All in backend coordinates (+Y up): convert with ``format.coords.backend_to_blender`` before
building Blender data. Fields this decoder does not know are skipped (a newer minor revision).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"DP4F"
FORMAT = "dynapose4d.frame"
SUPPORTED_VERSIONS = (1,)
ALLOWED_DTYPES = ("<f4", "<f2")
MAX_HEADER_BYTES = 1 << 20
# name -> trailing shape; the leading dimension is N ("count") or P ("keypoint_count").
FIELD_SHAPES = {
    "positions": ("count", (3,)),
    "rotations": ("count", (4,)),
    "scales": ("count", (3,)),
    "opacities": ("count", ()),
    "colors": ("count", (3,)),
    "keypoints": ("keypoint_count", (3,)),
}
SH_REST_KS = (3, 8, 15)  # degrees 1, 2, 3


class WireFormatError(ValueError):
    """Bytes that are not a valid frame; the message says what is wrong."""


@dataclass
class Frame:
    positions: np.ndarray  # [N, 3]
    rotations: np.ndarray  # [N, 4] w x y z
    scales: np.ndarray  # [N, 3]
    opacities: np.ndarray  # [N]
    colors: np.ndarray  # [N, 3]
    keypoints: np.ndarray  # [P, 3]
    header: dict = field(default_factory=dict)
    sh_rest: np.ndarray | None = None  # [N, K, 3] (wire 1.1, frame 0), None where not sent

    @property
    def count(self) -> int:
        return int(self.positions.shape[0])

    @property
    def index(self) -> int | None:
        return self.header.get("frame", {}).get("index")

    @property
    def snapshot_version(self) -> int | None:
        return self.header.get("snapshot", {}).get("version")


def decode_header(data: bytes | bytearray | memoryview) -> tuple[dict, int]:
    """The JSON header and the payload's start offset."""
    view = memoryview(data)
    if len(view) < 8 or bytes(view[:4]) != MAGIC:
        raise WireFormatError("not a DynaPose4D frame (the first 4 bytes are not b'DP4F')")
    (length,) = struct.unpack("<I", view[4:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(view):
        raise WireFormatError(f"frame header length {length} does not fit the {len(view)} bytes received")
    try:
        header = json.loads(bytes(view[8 : 8 + length]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireFormatError(f"frame header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WireFormatError("frame header does not name the dynapose4d.frame format")
    if header.get("format_version") not in SUPPORTED_VERSIONS:
        raise WireFormatError(
            f"frame format version {header.get('format_version')!r} is not supported by this add-on "
            f"(it reads {SUPPORTED_VERSIONS}); update the add-on"
        )
    return header, 8 + length


def decode_frame(data: bytes | bytearray | memoryview, *, float32: bool = True) -> Frame:
    """Decode one frame. With ``float32`` (default) every array is a float32 copy, ready for
    Blender's ``foreach_set``; otherwise arrays are read-only views in the wire dtype."""
    header, start = decode_header(data)
    payload = memoryview(data)[start:]
    counts = {key: header.get(key) for key in ("count", "keypoint_count")}
    for key, value in counts.items():
        if not isinstance(value, int) or value < 0:
            raise WireFormatError(f"frame header: {key} must be a non-negative integer, got {value!r}")
    by_name = {f.get("name"): f for f in header.get("fields", []) if isinstance(f, dict)}
    arrays = {}
    for name, (count_key, tail) in FIELD_SHAPES.items():
        spec = by_name.get(name)
        if spec is None:
            raise WireFormatError(f"frame has no {name!r} field")
        arrays[name] = _field(payload, spec, (counts[count_key], *tail), float32)
    sh_spec = by_name.get("sh_rest")
    if sh_spec is not None:
        k = (sh_spec.get("shape") or [None, None])[1:2]
        if k[0] not in SH_REST_KS:
            raise WireFormatError(f"field 'sh_rest': shape {sh_spec.get('shape')} is not [N, K, 3] with K in {SH_REST_KS}")
        arrays["sh_rest"] = _field(payload, sh_spec, (counts["count"], k[0], 3), float32)
    return Frame(header=header, **arrays)


def _field(payload: memoryview, spec: dict, shape: tuple, float32: bool) -> np.ndarray:
    """The array a header field describes, checked against the ``shape`` the counts give."""
    name, dtype = spec.get("name"), spec.get("dtype")
    if dtype not in ALLOWED_DTYPES:
        raise WireFormatError(f"field {name!r}: dtype {dtype!r} is not one of {ALLOWED_DTYPES}")
    if list(shape) != spec.get("shape"):
        raise WireFormatError(f"field {name!r}: shape {spec.get('shape')} does not match the counts {list(shape)}")
    offset, nbytes = spec.get("offset"), spec.get("nbytes")
    expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if not isinstance(offset, int) or offset < 0 or nbytes != expected:
        raise WireFormatError(f"field {name!r}: offset {offset!r} / size {nbytes!r} are invalid (expected {expected} bytes)")
    if offset + nbytes > len(payload):
        raise WireFormatError(f"field {name!r} runs past the end of the data (truncated frame?)")
    arr = np.frombuffer(payload, dtype=dtype, count=expected // np.dtype(dtype).itemsize, offset=offset).reshape(shape)
    return arr.astype(np.float32) if float32 else arr
