"""The frame wire format: the server's encoder and the add-on's numpy-only decoder agree."""

import json
import struct

import numpy as np
import pytest

from blender_addon.format.wire import WireFormatError, decode_frame, decode_header
from dynapose4d.server.wire import encode_frame


def _arrays(n=257, p=5, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    return {
        "positions": rng.normal(size=(n, 3)).astype(np.float32),
        "rotations": (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32),
        "scales": rng.uniform(0.001, 0.05, size=(n, 3)).astype(np.float32),
        "opacities": rng.uniform(0, 1, size=n).astype(np.float32),
        "colors": rng.uniform(0, 1, size=(n, 3)).astype(np.float32),
        "keypoints": rng.normal(size=(p, 3)).astype(np.float32),
    }


def test_round_trip_float32_is_exact():
    arrays = _arrays()
    meta = {"frame": {"index": 3, "frame_count": 10}, "snapshot": {"version": 7}}
    frame = decode_frame(encode_frame(arrays, "float32", meta))
    for name, value in arrays.items():
        got = getattr(frame, name)
        assert got.dtype == np.float32 and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
    assert frame.count == 257 and frame.index == 3 and frame.snapshot_version == 7


def test_round_trip_float16_halves_the_size_and_keeps_keypoints_exact():
    arrays = _arrays()
    full, half = encode_frame(arrays, "float32"), encode_frame(arrays, "float16")
    assert len(half) < 0.6 * len(full)
    frame = decode_frame(half)
    for name in ("positions", "rotations", "scales", "opacities", "colors"):
        np.testing.assert_allclose(getattr(frame, name), arrays[name], rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(frame.keypoints, arrays["keypoints"])  # keypoints stay float32
    raw = decode_frame(half, float32=False)
    assert raw.positions.dtype == np.dtype("<f2") and not raw.positions.flags.writeable


def test_layout_matches_the_documented_spec():
    """Parse the bytes by hand, following docs/wire-format.md, without either library."""
    arrays = _arrays(n=3, p=2)
    data = encode_frame(arrays, "float32", {"frame": {"index": 0}})
    assert data[:4] == b"DP4F"
    (length,) = struct.unpack("<I", data[4:8])
    assert (8 + length) % 8 == 0
    header = json.loads(data[8 : 8 + length])
    assert header["format"] == "dynapose4d.frame" and header["format_version"] == 1
    assert [f["name"] for f in header["fields"]] == ["positions", "rotations", "scales", "opacities", "colors", "keypoints"]
    payload = data[8 + length :]
    assert len(payload) == header["payload_bytes"]
    for spec in header["fields"]:
        assert spec["offset"] % 8 == 0
        arr = np.frombuffer(payload[spec["offset"] : spec["offset"] + spec["nbytes"]], dtype=spec["dtype"]).reshape(spec["shape"])
        np.testing.assert_array_equal(arr, arrays[spec["name"]])
    # positions [3, 3] float32 are the first 36 bytes of the payload, little-endian.
    assert struct.unpack("<3f", payload[:12]) == tuple(float(v) for v in arrays["positions"][0])


def test_empty_frames_and_no_keypoints():
    arrays = {k: v[:0] for k, v in _arrays().items()}
    frame = decode_frame(encode_frame(arrays, "float16"))
    assert frame.count == 0 and frame.keypoints.shape == (0, 3)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: b"NOPE" + d[4:], "not a DynaPose4D frame"),
        (lambda d: d[:6], "not a DynaPose4D frame"),
        (lambda d: d[:4] + struct.pack("<I", 10**9) + d[8:], "does not fit"),
        (lambda d: d[:-20], "truncated"),
        (lambda d: d.replace(b'"format_version":1', b'"format_version":9'), "not supported"),
        (lambda d: d.replace(b'"<f4"', b'"<f8"', 1), "dtype"),
        (lambda d: d.replace(b'"count":4', b'"count":5'), "shape"),
    ],
)
def test_decoder_refuses_bad_data_with_a_clear_message(corrupt, message):
    data = encode_frame(_arrays(n=4, p=2), "float32")
    with pytest.raises(WireFormatError, match=message):
        decode_frame(corrupt(data))


def test_encoder_checks_shapes():
    arrays = _arrays(n=4)
    arrays["rotations"] = arrays["rotations"][:, :3]
    with pytest.raises(ValueError, match="rotations"):
        encode_frame(arrays)
    with pytest.raises(ValueError, match="dtype"):
        encode_frame(_arrays(), "float64")


def test_header_is_readable_alone():
    header, start = decode_header(encode_frame(_arrays(n=2), "float16", {"snapshot": {"version": 2}}))
    assert header["dtype"] == "float16" and header["snapshot"]["version"] == 2 and start % 8 == 0
