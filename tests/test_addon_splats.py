"""The add-on's splat arrays without Blender: each attribute layout other tools leave on an object
reads back as the same Gaussians, the world transform moves covariances and view-dependent colour
exactly, and its 3DGS PLY is the backend's layout (read by the backend's reader, and the reverse).

numpy only, except the cross-checks against the backend's PLY reader and writer (marked)."""

import numpy as np
import pytest

from blender_addon.format import sh
from blender_addon.format.splats import (
    SH_C0,
    NotASplat,
    Splats,
    from_attributes,
    layout_of,
    matrix_to_quat,
    quat_to_matrix,
    read_ply,
    to_world,
    write_ply,
)


def random_splats(n=64, rest=15, seed=0) -> Splats:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    return Splats(positions=rng.normal(size=(n, 3)), rotations=q / np.linalg.norm(q, axis=1, keepdims=True),
                  scales=np.exp(rng.normal(-3, 0.5, size=(n, 3))), opacities=rng.uniform(0.05, 0.95, n),
                  sh_dc=rng.normal(size=(n, 3)), sh_rest=rng.normal(0, 0.2, size=(n, rest, 3)) if rest else None)


def covariances(s: Splats) -> np.ndarray:
    m = quat_to_matrix(s.rotations.astype(np.float64)) * s.scales.astype(np.float64)[:, None, :]
    return m @ m.transpose(0, 2, 1)


def colours(s: Splats, directions: np.ndarray) -> np.ndarray:
    """View-dependent colour (before the +0.5 and the clamp) of every splat at each direction: [D, N, 3]."""
    basis = sh.basis(directions, sh.degree_of(s.sh_rest.shape[1]))
    return SH_C0 * s.sh_dc[None] + np.einsum("dk,nkc->dnc", basis, s.sh_rest)


def rotation(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def matrix(linear, translation=(0.3, -1.2, 2.0)):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = linear, translation
    return m


# -- layouts ------------------------------------------------------------------------------------------

def layouts_of(s: Splats) -> dict:
    """The attributes each tool would store for ``s``."""
    logit = np.log(s.opacities / (1 - s.opacities))
    rest_cm = s.sh_rest.transpose(0, 2, 1).reshape(s.count, -1)  # channel-major f_rest
    ply = {f"f_dc_{i}": s.sh_dc[:, i] for i in range(3)} | {f"f_rest_{i}": rest_cm[:, i] for i in range(rest_cm.shape[1])}
    ply |= {"opacity": logit} | {f"scale_{i}": np.log(s.scales[:, i]) for i in range(3)} | {f"rot_{i}": s.rotations[:, i] for i in range(4)}
    reshot = {"sh0": s.sh_dc, "log_opacity": logit, "opacity": s.opacities, "logscale": np.log(s.scales), "scale": s.scales,
              "quatxyz": s.rotations[:, :3], "quatw": s.rotations[:, 3], "rot_euler": np.zeros((s.count, 3))}
    reshot |= {f"sh{k + 1}": s.sh_rest[:, k] for k in range(s.sh_rest.shape[1])}
    native = {"position": s.positions, "scale": s.scales, "rotation": s.rotations,
              "radiance:base": np.column_stack([s.sh_dc, s.opacities])} | {f"radiance:sh_{k}": s.sh_rest[:, k] for k in range(s.sh_rest.shape[1])}
    return {"3dgs-ply": ply, "reshot": reshot, "blender-splat": native}


@pytest.mark.parametrize("layout", ["3dgs-ply", "reshot", "blender-splat"])
def test_every_layout_reads_back_as_the_same_gaussians(layout):
    s = random_splats()
    attributes = layouts_of(s)[layout]
    assert layout_of(attributes) == layout
    found, back = from_attributes(s.positions, attributes)
    assert found == layout
    for name in ("positions", "rotations", "scales", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_allclose(getattr(back, name), getattr(s, name), atol=1e-5, err_msg=name)


def test_a_dynapose4d_import_reads_back_its_colours_opacities_scales_and_rotations():
    s = random_splats(rest=0)
    s.sh_dc = (np.random.default_rng(1).uniform(0.05, 0.95, (s.count, 3)) - 0.5) / SH_C0  # colours inside [0, 1]
    srgb = 0.5 + SH_C0 * s.sh_dc
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    attrs = {"color": np.column_stack([linear, s.opacities]), "opacity": s.opacities, "scale": s.scales, "rotation": s.rotations}
    layout, back = from_attributes(s.positions, attrs)
    assert layout == "dynapose4d" and back.sh_rest is None
    np.testing.assert_allclose(back.sh_dc, s.sh_dc, atol=1e-4)
    np.testing.assert_allclose(back.scales, s.scales, rtol=1e-6)


def test_an_object_without_splat_attributes_is_refused_with_what_is_expected():
    with pytest.raises(NotASplat, match="Gaussian-splat point cloud.*KIRI 3DGS Render.*ReshotAI"):
        from_attributes(np.zeros((3, 3)), {"UVMap": np.zeros((3, 2)), "opacity": np.zeros(3)})
    attrs = layouts_of(random_splats(8))["3dgs-ply"]
    attrs["rot_2"] = attrs["rot_2"][:5]
    with pytest.raises(NotASplat, match="'rot_2' has 5 values for 8 points"):
        from_attributes(np.zeros((8, 3)), attrs)


# -- world space --------------------------------------------------------------------------------------

@pytest.mark.parametrize("linear", [
    2.5 * rotation([1, 2, 3], 0.7),  # turn + uniform scale: the quaternion path
    rotation([0, 0, 1], -1.1) @ np.diag([1.0, 3.0, 0.5]),  # non-uniform: the covariance path
    np.diag([-1.0, 1.0, 1.0]) @ rotation([1, 0, 0], 0.4),  # a mirror
    np.array([[1.0, 0.4, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 1.5]]),  # a shear
], ids=["rotate-scale", "non-uniform", "mirror", "shear"])
def test_world_space_moves_each_covariance_exactly(linear):
    s = random_splats()
    m = matrix(linear)
    w = to_world(s, m)
    np.testing.assert_allclose(w.positions, s.positions @ linear.T + m[:3, 3], atol=1e-5)
    np.testing.assert_allclose(covariances(w), linear @ covariances(s) @ linear.T, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(w.rotations, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(w.opacities, s.opacities)


def test_world_space_turns_the_view_dependent_colour_with_the_object():
    s = random_splats(rest=15)
    turn = rotation([0.3, -1, 0.5], 2.1)
    w = to_world(s, matrix(2.0 * turn))
    dirs = np.random.default_rng(3).normal(size=(10, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    # Seen along turn @ d, the turned splat shows what the original showed along d.
    np.testing.assert_allclose(colours(w, dirs @ turn.T), colours(s, dirs), atol=1e-5)
    # Degree 1 only: the same holds (and the identity leaves the coefficients alone).
    np.testing.assert_allclose(sh.rotate(s.sh_rest[:, :3], np.eye(3)), s.sh_rest[:, :3], atol=1e-9)


def test_quaternions_and_matrices_round_trip():
    q = random_splats(200).rotations.astype(np.float64)
    back = matrix_to_quat(quat_to_matrix(q))
    np.testing.assert_allclose(np.abs(np.sum(back * q, axis=1)), 1.0, atol=1e-9)  # q and -q are one rotation


def test_a_flat_transform_is_refused():
    with pytest.raises(NotASplat, match="flat"):
        to_world(random_splats(4), matrix(np.diag([1.0, 0.0, 1.0])))


# -- the PLY -----------------------------------------------------------------------------------------

def test_our_ply_reads_back_and_refuses_what_is_not_a_3dgs_ply(tmp_path):
    s = random_splats(rest=8)
    back = read_ply(write_ply(tmp_path / "s.ply", s))
    for name in ("positions", "rotations", "scales", "opacities", "sh_dc"):
        np.testing.assert_allclose(getattr(back, name), getattr(s, name), rtol=1e-5, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(back.sh_rest[:, :8], s.sh_rest, atol=1e-6)
    assert back.sh_rest.shape == (s.count, 15, 3) and not back.sh_rest[:, 8:].any()  # the file is degree 3
    (tmp_path / "mesh.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                                        b"property float z\nend_header\n0 0 0\n")
    with pytest.raises(NotASplat, match="not a 3DGS PLY"):
        read_ply(tmp_path / "mesh.ply")
    data = (tmp_path / "s.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) - 100])
    with pytest.raises(NotASplat, match="truncated PLY"):
        read_ply(tmp_path / "cut.ply")


def test_the_backend_reads_our_ply_and_we_read_the_backends(tmp_path):
    pytest.importorskip("torch")
    from dynapose4d.io.ply import read_ply as backend_read
    from dynapose4d.io.ply import write_ply as backend_write

    s = random_splats(rest=15)
    g = backend_read(write_ply(tmp_path / "ours.ply", s))
    np.testing.assert_allclose(g.means.numpy(), s.positions, atol=1e-6)
    np.testing.assert_allclose(g.scales.numpy(), s.scales, rtol=1e-5)
    np.testing.assert_allclose(g.opacities.numpy().ravel(), s.opacities, atol=1e-5)
    np.testing.assert_allclose(g.sh_rest.numpy(), s.sh_rest, atol=1e-6)
    np.testing.assert_allclose(g.rotations.numpy(), s.rotations, atol=1e-6)
    backend_write(tmp_path / "theirs.ply", g)
    back = read_ply(tmp_path / "theirs.ply")
    np.testing.assert_allclose(back.positions, s.positions, atol=1e-6)
    np.testing.assert_allclose(back.sh_rest, s.sh_rest, atol=1e-6)


@pytest.mark.parametrize("form", ["shuffled-doubles-big-endian", "ascii"])
def test_any_property_order_type_and_format_reads_the_same(tmp_path, form):
    """Other tools write the properties in their own order, some as doubles, some in ASCII."""
    s = random_splats(20, rest=3)
    cols = layouts_of(s)["3dgs-ply"]  # degree 1: 9 f_rest
    cols |= {"x": s.positions[:, 0], "y": s.positions[:, 1], "z": s.positions[:, 2], "red": np.zeros(20)}
    names = sorted(cols, reverse=True)  # f_rest_8 before f_rest_0, x after y: not the standard order
    header = ["ply", "format ascii 1.0" if form == "ascii" else "format binary_big_endian 1.0", "element vertex 20"]
    header += [f"property {'uchar' if n == 'red' else 'double'} {n}" for n in names] + ["end_header", ""]
    if form == "ascii":
        body = "\n".join(" ".join(f"{float(cols[n][i]):.9g}" for n in names) for i in range(20)).encode() + b"\n"
    else:
        table = np.zeros(20, dtype=[(n, ">u1" if n == "red" else ">f8") for n in names])
        for n in names:
            table[n] = cols[n]
        body = table.tobytes()
    (tmp_path / "other.ply").write_bytes("\n".join(header).encode("ascii") + body)
    back = read_ply(tmp_path / "other.ply")
    for name in ("positions", "rotations", "scales", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_allclose(getattr(back, name), getattr(s, name), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("up", ["+y", "+z"])
def test_a_folders_view_dependent_colour_comes_back_plus_y_up(tmp_path, up):
    """A result folder written +Z up holds Blender-frame splats, SH included; the folder import
    turns them back +Y up (the wire's frame), so the colour seen along each direction survives."""
    import json

    from blender_addon.format.coords import BACKEND_TO_BLENDER
    from blender_addon.format.result_folder import FORMAT, read_result

    backend = random_splats(n=32, rest=15)
    turn = np.eye(4)
    turn[:3, :3] = BACKEND_TO_BLENDER if up == "+z" else np.eye(3)
    write_ply(tmp_path / "frame_0000.ply", to_world(backend, turn))
    (tmp_path / "sequence.json").write_text(json.dumps({"format": FORMAT, "fps": 24, "up": up, "frames": ["frame_0000.ply"]}))
    sequence = read_result(tmp_path).sequence
    np.testing.assert_allclose(sequence.positions[0], backend.positions, atol=1e-5)
    np.testing.assert_allclose(sequence.sh_rest, backend.sh_rest, atol=1e-4)
    assert sequence.sh_degree == 3
