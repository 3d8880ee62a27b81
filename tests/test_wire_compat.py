"""Wire format 1.1 (``sh_rest``) against 1.0: an older add-on reads a newer server's frames, and
this add-on reads an older server's, through frozen copies of the 1.0 code (tests/wire_v1_0.py)."""

import json
import struct

import numpy as np
import pytest

from blender_addon.format.sequence import Sampling, assemble
from blender_addon.format.wire import WireFormatError, decode_frame
from dynapose4d.server.wire import encode_frame
from tests.test_server_wire import _arrays as frame_arrays
from tests.wire_v1_0 import decode_frame_1_0, encode_frame_1_0

GAUSSIAN_FIELDS = ("positions", "rotations", "scales", "opacities", "colors", "keypoints")


def _arrays(n=129, p=4, k=15, seed=0):
    """The wire's arrays (as tests/test_server_wire.py makes them) plus ``k`` SH rest coefficients."""
    arrays = frame_arrays(n=n, p=p, seed=seed)
    arrays["sh_rest"] = np.random.default_rng(seed + 1).normal(scale=0.2, size=(n, k, 3)).astype(np.float32)
    return arrays


def _header(data: bytes) -> dict:
    (length,) = struct.unpack("<I", data[4:8])
    return json.loads(data[8 : 8 + length])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_an_older_addon_reads_a_newer_servers_frame_with_sh(dtype):
    arrays = _arrays()
    data = encode_frame(arrays, dtype, {"frame": {"index": 0}})
    header = _header(data)
    assert header["format_version"] == 1 and header["format_minor"] == 1
    assert [f["name"] for f in header["fields"]][-1] == "sh_rest"
    old = decode_frame_1_0(data)
    tol = 0 if dtype == "float32" else 2e-3
    for name in GAUSSIAN_FIELDS:
        np.testing.assert_allclose(old[name], arrays[name], atol=tol, rtol=tol)


def test_this_addon_reads_an_older_servers_frames_without_sh():
    arrays = _arrays()
    frames = []
    for index in range(3):
        meta = {"frame": {"index": index, "time": index / 2}, "snapshot": {"version": 4}}
        frames.append(decode_frame(encode_frame_1_0(arrays, "float32", meta)))
    assert frames[0].sh_rest is None
    for name in GAUSSIAN_FIELDS:
        np.testing.assert_array_equal(getattr(frames[0], name), arrays[name])
    tracks = {"frame_count": 3, "fps": 24.0, "names": [f"k{i}" for i in range(4)], "snapshot": {"version": 4},
              "positions": np.zeros((3, 4, 3)).tolist()}
    seq = assemble(frames, tracks, Sampling(24.0, 3))
    assert seq.sh_rest is None and seq.sh_degree == 0
    assert seq.rotations_of().shape == (3, 129, 4)


def test_sh_rest_round_trips_and_reaches_the_sequence():
    arrays = _arrays(k=8)
    frame = decode_frame(encode_frame(arrays, "float32"))
    np.testing.assert_array_equal(frame.sh_rest, arrays["sh_rest"])
    half = decode_frame(encode_frame(arrays, "float16"))
    np.testing.assert_allclose(half.sh_rest, arrays["sh_rest"], atol=2e-3)
    # frames after the first carry no SH (it does not move); the sequence takes frame 0's
    rest = {k: v for k, v in arrays.items() if k != "sh_rest"}
    frames = [decode_frame(encode_frame(arrays if i == 0 else rest, "float32", {"frame": {"index": i}})) for i in range(2)]
    tracks = {"frame_count": 2, "fps": 24.0, "names": [], "positions": []}
    seq = assemble(frames, tracks, Sampling(24.0, 2))
    assert seq.sh_degree == 2
    np.testing.assert_array_equal(seq.sh_rest, arrays["sh_rest"])
    # no SH: no field (a 1.0 payload with a 1.1 header)
    plain = encode_frame({**rest, "sh_rest": None})
    assert "sh_rest" not in [f["name"] for f in _header(plain)["fields"]]


def test_bad_sh_rest_is_refused_with_its_shape():
    arrays = _arrays(k=5 + 2)  # 7 is no SH degree
    with pytest.raises(ValueError, match=r"K in \(3, 8, 15\)"):
        encode_frame(arrays)
    data = encode_frame(_arrays(k=3))
    tampered = data.replace(b'"shape":[129,3,3]', b'"shape":[129,4,3]')  # same length: the layout holds
    assert tampered != data
    with pytest.raises(WireFormatError, match=r"'sh_rest': shape \[129, 4, 3\]"):
        decode_frame(tampered)


def test_the_addons_sh_basis_is_the_backends():
    """The add-on turns SH into Blender's frame with its own numpy basis: it must be the backend's
    (order and signs of f_rest), or the turned colours are wrong."""
    import torch

    from blender_addon.format.sh import basis as sh_basis
    from dynapose4d import sh

    dirs = np.random.default_rng(3).normal(size=(40, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    ours = sh_basis(dirs, 3)
    theirs = sh.sh_basis(torch.as_tensor(dirs), 3).numpy()
    np.testing.assert_allclose(ours, theirs[..., 1:] if theirs.shape[-1] == 16 else theirs, atol=1e-6)
