"""The skinned-mesh export: surface from Gaussians, bones from control-point motion, skin weights, reports."""

import math

import numpy as np
import pytest
import torch

from dynapose4d.evaluation.articulated import make_articulated
from dynapose4d.gaussians import Gaussians, rgb_to_sh_dc
from dynapose4d.mesh import MeshError, SkeletonConfig, SkinnedMesh, SurfaceConfig, build_skeleton, build_skinned_mesh, extract_surface
from dynapose4d.mesh.skeleton import fit_rigid
from dynapose4d.evaluation.scenes import sphere_scene


def shell(n=20000, radius=0.4, seed=0, centre=(0.1, -0.05, 0.0)):
    """Flat opaque splats on a sphere: red where x > centre x, blue elsewhere."""
    gen = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    means = torch.tensor(centre) + radius * d
    rgb = torch.where(d[:, :1] > 0, torch.tensor([[0.9, 0.1, 0.1]]), torch.tensor([[0.1, 0.1, 0.9]]))
    spacing = math.sqrt(4 * math.pi * radius**2 / n)
    return Gaussians(means, torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 3), math.log(1.2 * spacing)),
                     torch.full((n, 1), 3.0), rgb_to_sh_dc(rgb))


def signed_volume(v, f):
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def test_the_surface_of_a_shell_is_one_closed_outward_sphere_with_its_colours():
    g = shell()
    floater = Gaussians(torch.full((20, 3), 0.9) + 0.01 * torch.randn(20, 3), torch.tensor([[1.0, 0, 0, 0]]).repeat(20, 1),
                        torch.full((20, 3), math.log(0.01)), torch.full((20, 1), 3.0), torch.zeros(20, 3))
    mesh = extract_surface(Gaussians.cat([g, floater]), SurfaceConfig(resolution=64, target_faces=4000))
    v, f = mesh.vertices.astype(np.float64), mesh.faces
    assert 3000 <= mesh.num_faces <= 4000 and f.dtype == np.int32 and f.max() < len(v)
    r = np.linalg.norm(v - [0.1, -0.05, 0.0], axis=1)
    assert abs(np.median(r) - 0.4) < 0.025 and r.min() > 0.37 and r.max() < 0.45  # no floater, no inner surface
    # Closed and wound outward: the signed volume is the ball's (not negative, not doubled).
    assert signed_volume(v, f) == pytest.approx(4 / 3 * math.pi * np.median(r) ** 3, rel=0.08)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert (uses % 2 == 0).all() and (uses == 2).mean() > 0.99  # no boundary edge: no holes (decimation may pinch a few)
    red = v[:, 0] > 0.1 + 0.1
    blue = v[:, 0] < 0.1 - 0.1
    assert (mesh.colors[red, 0] > 0.7).all() and (mesh.colors[blue, 2] > 0.7).all()


def test_nothing_opaque_is_a_clear_error():
    g = sphere_scene(200)
    g.opacity_logits = torch.full_like(g.opacity_logits, -10.0)
    with pytest.raises(MeshError, match="min_opacity"):
        extract_surface(g)


def articulated_handles(frames=7, seed=0):
    obj = make_articulated("lamp", 1500, seed=seed)
    idx = torch.randperm(1500, generator=torch.Generator().manual_seed(seed))[:150]
    rest = obj.static.means[idx]
    part = obj.part_of[idx]
    t = torch.linspace(0, 1, frames)
    R, s = obj.part_transforms(t)
    return rest.numpy(), R[:, part].numpy(), obj.move_points(rest, part, t).numpy(), part.numpy()


def test_bones_from_rigid_parts_recover_the_parts_and_their_motion():
    rest, rot, pos, part = articulated_handles()
    sk = build_skeleton(rest, rot, pos, SkeletonConfig(max_bones=4))
    assert sk.num_bones == 4
    # Each bone is one part (handles of a part share its bone).
    for b in range(4):
        assert len(set(part[sk.handle_bone == b])) == 1
    np.testing.assert_allclose(sk.transform(rest, sk.handle_bone), pos, atol=1e-5)
    # The root is the part that moves least (the base turns about its own axis), parents first.
    assert sk.parents[0] == -1 and (sk.parents[1:] < np.arange(1, 4)).all() and (sk.parents[1:] >= 0).all()
    assert set(part[sk.handle_bone == 0]) == {0}
    # The spanning tree follows the chain base - lower - upper - head.
    bone_part = [int(part[sk.handle_bone == b][0]) for b in range(4)]
    chain = {(bone_part[sk.parents[b]], bone_part[b]) for b in range(1, 4)}
    assert chain == {(0, 1), (1, 2), (2, 3)}


def test_fewer_bones_than_parts_and_the_bone_cap():
    rest, rot, pos, _ = articulated_handles()
    assert build_skeleton(rest, rot, pos, SkeletonConfig(max_bones=2)).num_bones <= 2
    with pytest.raises(ValueError, match="max_bones"):
        SkeletonConfig(max_bones=0)


def test_fit_rigid_is_exact_for_a_rigid_motion():
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(30, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    moved = (pts @ q.T + [0.3, -0.2, 0.5])[None]
    R, t = fit_rigid(pts, moved, np.ones((1, 30)))
    np.testing.assert_allclose(R[0, 0], q, atol=1e-10)
    np.testing.assert_allclose(t[0, 0], [0.3, -0.2, 0.5], atol=1e-10)


@pytest.fixture(scope="module")
def skinned():
    from dynapose4d.testing.moving import articulated_model

    model, obj = articulated_model(controls=96, frames=6, steps=150)
    times = model.times(6, 5.0)
    return model, build_skinned_mesh(model, times, 5.0, SurfaceConfig(resolution=56, target_faces=2500), SkeletonConfig(max_bones=6))


def test_skinned_mesh_weights_bones_and_reports(skinned):
    model, sm = skinned
    assert sm.joints.shape == sm.weights.shape == (len(sm.vertices), 4)
    np.testing.assert_allclose(sm.weights.sum(1), 1.0, atol=1e-6)
    assert (sm.weights >= 0).all() and sm.joints.max() < sm.skeleton.num_bones <= 6
    assert sm.deformed.shape == (6, len(sm.vertices), 3)
    np.testing.assert_allclose(sm.deformed[0], sm.vertices, atol=1e-5)  # frame 0 is the canonical pose
    motion = np.linalg.norm(sm.deformed - sm.vertices[None], axis=-1).max()
    assert motion > 0.05  # it really moves
    skin = np.linalg.norm(sm.skinned() - sm.deformed, axis=-1)
    r = sm.report
    np.testing.assert_allclose(r["skin_err_mean"], skin.mean(1), atol=1e-6)
    # The bones keep the motion. The worst vertex's error over the largest motion varies with
    # float32 training noise: 0.05-0.11 over seeds 0-4 (any change in the arithmetic of the
    # fitted model's field moves it), so the bound leaves that room.
    assert max(r["skin_err_max"]) < 0.12 * motion
    assert len(r["surface_err_mean"]) == 6 and max(r["surface_err_mean"]) < 0.03
    assert r["bones"] == sm.skeleton.num_bones and r["faces"] == len(sm.faces)


def test_skinned_mesh_file_round_trip(skinned, tmp_path):
    _, sm = skinned
    back = SkinnedMesh.load(sm.save(tmp_path / "skinned.npz"))
    for name in ("vertices", "faces", "colors", "joints", "weights", "deformed", "times"):
        np.testing.assert_array_equal(getattr(back, name), getattr(sm, name).astype(getattr(back, name).dtype), err_msg=name)
    np.testing.assert_allclose(back.skeleton.rotations, sm.skeleton.rotations)
    assert back.skeleton.names == sm.skeleton.names and back.report == sm.report and back.fps == 5.0
    with pytest.raises(ValueError, match="not a DynaPose4D skinned mesh"):
        import io
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(b'{"format": "other"}', np.uint8))
        SkinnedMesh.from_bytes(buf.getvalue())


def test_a_still_model_gets_one_bone_that_never_moves():
    from dynapose4d.cameras import Cameras
    from dynapose4d.dynamic4d import Dynamic4D

    model = Dynamic4D.still(shell(3000), Cameras.orbit(0.0, 0.0, 2.0, width=64))
    sm = build_skinned_mesh(model, model.times(3, 10.0), 10.0, SurfaceConfig(resolution=40, target_faces=1000))
    assert sm.skeleton.num_bones == 1 and (sm.joints == 0).all()
    np.testing.assert_allclose(sm.skinned(), sm.deformed, atol=1e-6)


def test_taubin_smoothing_removes_bumps_and_keeps_the_size():
    from dynapose4d.mesh.surface import taubin_smooth

    mesh = extract_surface(shell(), SurfaceConfig(resolution=64, target_faces=0, smooth_iterations=0))
    v, f = mesh.vertices.astype(np.float64), mesh.faces
    rng = np.random.default_rng(0)
    bumpy = v + rng.normal(0, 0.004, v.shape)
    smooth = taubin_smooth(bumpy, f, 10)
    r = lambda x: np.linalg.norm(x - [0.1, -0.05, 0.0], axis=1)  # noqa: E731
    added = r(bumpy).std() - r(v).std()
    assert r(smooth).std() - r(v).std() < 0.3 * added  # most of the noise is gone
    assert abs(signed_volume(smooth, f) / signed_volume(v, f) - 1) < 0.02  # no shrinking
