"""3DGS PLY: exact round trips, the layout other viewers expect, up-axis conversion, bad files."""

import math
import struct

import numpy as np
import pytest
import torch

from dynapose4d.gaussians import Z_UP_TO_Y_UP, Gaussians, transform_gaussians
from dynapose4d.io import PlyError, read_ply, write_ply
from dynapose4d.io.ply import property_names


def scene(n=50, k=0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    return Gaussians(r(n, 3), r(n, 4), r(n, 3) - 3, r(n, 1), r(n, 3), r(n, k, 3) if k else None)


@pytest.mark.parametrize("k", [0, 3, 15])
def test_round_trip_is_exact(tmp_path, k):
    g = scene(k=k)
    back = read_ply(write_ply(tmp_path / "a.ply", g, sh_degree=None))
    for name, t in g.tensors().items():
        assert torch.equal(getattr(back, name), t), name
    assert back.sh_degree == {0: 0, 3: 1, 15: 3}[k]


@pytest.mark.parametrize("k", [0, 3, 15])
def test_default_files_have_all_45_f_rest_of_the_3dgs_loader(tmp_path, k):
    # The original 3DGS loader asserts exactly 3 * ((3 + 1)^2 - 1) = 45 f_rest properties.
    g = scene(n=4, k=k)
    path = write_ply(tmp_path / "a.ply", g)
    header = path.read_bytes().split(b"end_header\n")[0].decode().splitlines()
    rest = [line.split()[2] for line in header if line.startswith("property float f_rest_")]
    assert rest == [f"f_rest_{i}" for i in range(45)]
    back = read_ply(path)
    assert back.sh_degree == 3
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh_dc"):
        assert torch.equal(getattr(back, name), getattr(g, name)), name
    if k:
        assert torch.equal(back.sh_rest[:, :k], g.sh_rest)
    assert not back.sh_rest[:, k:].any()  # the padding is zeros: the colours are unchanged


def test_a_scene_above_the_files_degree_is_refused(tmp_path):
    from dynapose4d.gaussians import GaussiansError

    with pytest.raises(GaussiansError, match="SH degree 3"):
        write_ply(tmp_path / "a.ply", scene(k=15), sh_degree=1)


def test_layout_is_the_standard_3dgs_one(tmp_path):
    g = scene(n=2, k=3)
    path = write_ply(tmp_path / "a.ply", g, sh_degree=1)
    raw = path.read_bytes()
    header, body = raw.split(b"end_header\n")
    lines = header.decode().splitlines()
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 2"]
    names = [line.split()[2] for line in lines[3:]]
    assert names == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [
        f"f_rest_{i}" for i in range(9)
    ] + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(line.split()[1] == "float" for line in lines[3:])
    assert len(body) == 2 * len(names) * 4
    row = struct.unpack("<" + "f" * len(names), body[: len(names) * 4])
    assert row[0] == pytest.approx(g.means[0, 0].item())
    assert row[3:6] == (0.0, 0.0, 0.0)
    # f_rest is channel-major: f_rest_0..2 are the red coefficients of bands 1..3.
    assert row[9:12] == pytest.approx(g.sh_rest[0, :, 0].tolist())
    assert row[18] == pytest.approx(g.opacity_logits[0, 0].item())
    assert row[-4:] == pytest.approx(g.quats[0].tolist())


def write_custom(path, names, rows, fmt="binary_little_endian", types=None, extra_header=""):
    types = types or ["float"] * len(names)
    header = f"ply\nformat {fmt} 1.0\n{extra_header}element vertex {len(rows)}\n"
    header += "".join(f"property {t} {n}\n" for t, n in zip(types, names)) + "end_header\n"
    np_types = {"float": "f4", "double": "f8", "uchar": "u1"}
    if fmt == "ascii":
        body = "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in rows).encode()
    else:
        e = "<" if fmt == "binary_little_endian" else ">"
        dt = np.dtype([(n, e + np_types[t]) for n, t in zip(names, types)])
        body = np.array([tuple(r) for r in rows], dtype=dt).tobytes()
    path.write_bytes(header.encode() + body)
    return path


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_reads_other_orders_types_and_encodings(tmp_path, fmt):
    names = property_names(0)[::-1] + ["red"]  # reversed order, an extra property
    types = ["double"] * (len(names) - 1) + ["uchar"]
    rows = [[float(i + j) / 7 for j in range(len(names) - 1)] + [200] for i in range(3)]
    g = read_ply(write_custom(tmp_path / "b.ply", names, rows, fmt, types, "comment made elsewhere\n"))
    col = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    torch.testing.assert_close(g.means[:, 1], torch.tensor(col["y"], dtype=torch.float32))
    torch.testing.assert_close(g.quats[:, 3], torch.tensor(col["rot_3"], dtype=torch.float32))


def test_up_axis_conversion(tmp_path):
    g = scene(k=3)
    path = write_ply(tmp_path / "z.ply", g, sh_degree=None)
    converted = read_ply(path, up_axis="z")
    # Blender +Z up -> backend +Y up: (x, y, z) -> (x, z, -y).
    torch.testing.assert_close(converted.means, torch.stack([g.means[:, 0], g.means[:, 2], -g.means[:, 1]], -1))
    expected = transform_gaussians(g, Z_UP_TO_Y_UP)
    torch.testing.assert_close(converted.quats, expected.quats)
    torch.testing.assert_close(converted.sh_rest, expected.sh_rest)
    # A +Z-up Gaussian stretched along Blender's Z is stretched along our Y.
    tall = Gaussians.from_points(torch.zeros(1, 3), torch.ones(1, 3))
    tall.log_scales = torch.tensor([[math.log(0.01), math.log(0.01), math.log(0.5)]])
    tall = read_ply(write_ply(tmp_path / "t.ply", tall), up_axis="z")
    from dynapose4d.gaussians import quat_to_rotmat

    R = quat_to_rotmat(tall.quats[0])
    cov = R @ torch.diag(tall.scales[0] ** 2) @ R.T
    assert cov[1, 1] == pytest.approx(0.25, rel=1e-5) and cov[2, 2] == pytest.approx(1e-4, rel=1e-3)
    with pytest.raises(ValueError, match="up_axis"):
        read_ply(path, up_axis="x")


def test_bad_files_give_clear_errors(tmp_path):
    good = write_ply(tmp_path / "good.ply", scene(n=20), sh_degree=None).read_bytes()
    cases = {
        "missing.ply": (None, "no such file"),
        "text.ply": (b"hello world\n", "not a PLY file"),
        "empty.ply": (b"", "not a PLY file"),
        "noend.ply": (good[:200], "truncated PLY header"),
        "short.ply": (good[:-10], r"truncated PLY: 20 vertices need 1360 bytes of data, found 1350"),
        "fmt.ply": (good.replace(b"binary_little_endian", b"binary_middle_endian"), "unsupported PLY format"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(PlyError, match=message):
            read_ply(path)
    no_opacity = write_custom(tmp_path / "m.ply", ["x", "y", "z"], [[0, 0, 0]])
    with pytest.raises(PlyError, match="missing 3DGS properties f_dc_0, f_dc_1, f_dc_2, opacity, scale_0, scale_1, scale_2, rot_0, rot_1, rot_2, rot_3"):
        read_ply(no_opacity)
    nan = scene(n=5)
    nan.means[2, 1] = float("nan")
    path = tmp_path / "nan.ply"
    path.write_bytes(good[: good.index(b"end_header\n") + 11].replace(b"vertex 20", b"vertex 5"))
    body = torch.cat([nan.means, torch.zeros(5, 3), nan.sh_dc, nan.opacity_logits, nan.log_scales, nan.quats], 1)
    path.write_bytes(path.read_bytes() + body.numpy().astype("<f4").tobytes())
    with pytest.raises(PlyError, match="means has non-finite values"):
        read_ply(path)


def test_empty_scene_round_trip(tmp_path):
    g = scene(n=0)
    back = read_ply(write_ply(tmp_path / "e.ply", g))
    assert back.num == 0
