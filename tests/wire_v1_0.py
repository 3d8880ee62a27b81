"""Frozen copies of the frame wire format's revision 1.0 (before ``sh_rest``): the encoder of the
servers and the decoder of the add-ons released with it (the same bytes and checks, written
compactly), frozen so that the tests can play an older server against this add-on and an older add-on against this server. Do not
update them with the format."""

from __future__ import annotations

import json
import struct

import numpy as np

MAGIC = b"DP4F"
FIELDS_1_0 = (("positions", "count", (3,)), ("rotations", "count", (4,)), ("scales", "count", (3,)),
              ("opacities", "count", ()), ("colors", "count", (3,)), ("keypoints", "keypoint_count", (3,)))


def encode_frame_1_0(arrays: dict, dtype: str = "float32", meta: dict | None = None) -> bytes:
    wire = {"float32": "<f4", "float16": "<f2"}[dtype]
    n = int(np.asarray(arrays["positions"]).shape[0])
    counts = {"count": n, "keypoint_count": int(np.asarray(arrays["keypoints"]).shape[0])}
    fields, parts, offset = [], [], 0
    for name, count_key, tail in FIELDS_1_0:
        shape, field_dtype = (counts[count_key], *tail), "<f4" if name == "keypoints" else wire
        nbytes = int(np.prod(shape)) * np.dtype(field_dtype).itemsize
        fields.append({"name": name, "dtype": field_dtype, "shape": list(shape), "offset": offset, "nbytes": nbytes})
        parts.append(np.asarray(arrays[name]).astype(field_dtype).tobytes() + b"\0" * ((-nbytes) % 8))
        offset += nbytes + (-nbytes) % 8
    header = {"format": "dynapose4d.frame", "format_version": 1, **counts, "dtype": dtype, "fields": fields,
              "payload_bytes": offset, **(meta or {})}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-(8 + len(text))) % 8)
    return MAGIC + struct.pack("<I", len(text)) + text + b"".join(parts)


def decode_frame_1_0(data: bytes) -> dict:
    """The 1.0 add-on's reading: the six fields by name, as float32; anything else is ignored."""
    if data[:4] != MAGIC:
        raise ValueError("not a DynaPose4D frame")
    (length,) = struct.unpack("<I", data[4:8])
    header = json.loads(data[8 : 8 + length])
    if header.get("format") != "dynapose4d.frame" or header.get("format_version") not in (1,):
        raise ValueError(f"frame format version {header.get('format_version')!r} is not supported")
    payload = memoryview(data)[8 + length :]
    by_name = {f["name"]: f for f in header["fields"]}
    out = {}
    for name, count_key, tail in FIELDS_1_0:
        spec = by_name[name]
        shape = (header[count_key], *tail)
        if list(shape) != spec["shape"] or spec["nbytes"] != int(np.prod(shape)) * np.dtype(spec["dtype"]).itemsize:
            raise ValueError(f"field {name!r} does not match the counts")
        arr = np.frombuffer(payload, spec["dtype"], count=int(np.prod(shape)), offset=spec["offset"])
        out[name] = arr.reshape(shape).astype(np.float32)
    return out
