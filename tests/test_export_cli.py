"""``dynapose4d export`` as a user runs it (real subprocesses): a job folder, a model.pt, a PLY
sequence and a static PLY to GLB in each form; messages for inputs it cannot use."""

import json

import numpy as np
import pytest
import torch

from tests.addon_fixtures import Glb, validate_gltf, validation_errors
from tests.splat_fixtures import tiny_result
from tests.test_cli import result_line, run

EXT = "KHR_gaussian_splatting"


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A finished job folder in the real layout (model.pt, sequence/ with its sidecar)."""
    from dynapose4d.pipeline import JobFolder
    from dynapose4d.pipeline.outputs import write_results

    root = tmp_path_factory.mktemp("job")
    model = tiny_result()
    write_results(JobFolder(root), model, previews=False)
    return root, model


def splat_nodes(glb):
    return [n for n in glb.json["nodes"] if "mesh" in n and EXT in glb.json["meshes"][n["mesh"]]["primitives"][0].get("extensions", {})]


def test_a_job_folder_exports_as_splats_mesh_and_points(job, tmp_path):
    root, model = job
    out = run("export", str(root), "-o", str(tmp_path / "splats.glb"), "--frames", "10")
    assert out.returncode == 0, out.stderr
    res = result_line(out.stdout)
    assert res["kind"] == "splats" and res["source"] == "model" and res["frames"] == 10 and res["motion"] == "parts"
    assert res["rigid_err_p99"] <= 0.05 and res["rigid_err_mean"] < res["rigid_err_max"] and "rigid parts within" in res["why"]
    glb = Glb(tmp_path / "splats.glb")
    assert len(splat_nodes(glb)) == res["parts"] and res["mb"] == pytest.approx((tmp_path / "splats.glb").stat().st_size / 1e6, abs=1e-3)
    total = sum(glb.accessor(glb.json["meshes"][n["mesh"]]["primitives"][0]["attributes"]["POSITION"]).shape[0] for n in splat_nodes(glb))
    assert total == model.static.num
    anim = glb.json["animations"][0]
    assert {c["target"]["path"] for c in anim["channels"]} == {"translation", "rotation"}
    assert {glb.json["nodes"][c["target"]["node"]]["name"] for c in anim["channels"]} >= {f"kp.{n}" for n in model.keypoints.names}
    assert {(m["code"]) for m in validation_errors(validate_gltf(tmp_path / "splats.glb"))} == {"MESH_PRIMITIVE_INVALID_ATTRIBUTE"}

    mesh = run("export", str(root), "-o", str(tmp_path / "mesh.glb"), "--as", "mesh", "--frames", "6", "--faces", "1500", "--bones", "8")
    assert mesh.returncode == 0, mesh.stderr
    res = result_line(mesh.stdout)
    assert res["kind"] == "mesh" and 1 <= res["bones"] <= 8 and res["faces"] <= 1600
    assert len(Glb(tmp_path / "mesh.glb").json["skins"][0]["joints"]) == res["bones"]
    assert validation_errors(validate_gltf(tmp_path / "mesh.glb")) == []

    points = run("export", str(root / "model.pt"), "-o", str(tmp_path / "points.glb"), "--as", "points", "--fps", "12")
    assert points.returncode == 0, points.stderr
    res = result_line(points.stdout)
    frames = int(np.floor(model.duration_s * 12 + 1e-6)) + 1  # the clip once at 12 fps
    assert res["frames"] == frames and res["source"] == "model"
    positions, times = Glb(tmp_path / "points.glb").morph_frames("points", 12.0)
    with torch.no_grad():
        g, _ = model.sample(model.times(frames, 12.0))
    np.testing.assert_allclose(positions, g.means.double().numpy(), atol=1e-5)


def test_a_flipbook_and_a_ply_sequence(job, tmp_path):
    root, model = job
    flip = run("export", str(root / "model.pt"), "-o", str(tmp_path / "flip.glb"), "--splat-motion", "flipbook", "--frames", "3")
    assert flip.returncode == 0, flip.stderr
    assert result_line(flip.stdout)["motion"] == "flipbook"
    glb = Glb(tmp_path / "flip.glb")
    assert [n["name"] for n in splat_nodes(glb)] == ["splat.frame0000", "splat.frame0001", "splat.frame0002"]
    assert {s["interpolation"] for s in glb.json["animations"][0]["samplers"]} >= {"STEP", "LINEAR"}

    # The PLY sequence the job wrote: its own frames and fps, parts from the frames alone.
    seq = json.loads((root / "sequence" / "sequence.json").read_text())
    out = run("export", str(root / "sequence"), "-o", str(tmp_path / "seq.glb"))
    assert out.returncode == 0, out.stderr
    res = result_line(out.stdout)
    assert res["source"] == "sequence" and res["frames"] == seq["frame_count"] and res["kind"] == "splats"
    glb = Glb(tmp_path / "seq.glb")
    times = glb.accessor(glb.json["animations"][0]["samplers"][0]["input"])[:, 0]
    np.testing.assert_allclose(times, np.arange(seq["frame_count"]) / seq["fps"], atol=1e-6)
    assert glb.json["nodes"][glb.node("DynaPose4D")]["extras"]["dynapose4d"]["fps"] == seq["fps"]

    refused = run("export", str(root / "sequence" / "sequence.json"), "-o", str(tmp_path / "m.glb"), "--as", "mesh")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "a PLY sequence has no deformation to skin a mesh with: export the job folder or its model.pt with --as mesh" in refused.stderr


def test_a_static_ply(tmp_path):
    from dynapose4d.evaluation.scenes import sphere_scene
    from dynapose4d.io import write_ply

    g = sphere_scene(400)
    write_ply(tmp_path / "model.ply", g)  # written with degree-3 SH, all zero above the scene's degree 0
    out = run("export", str(tmp_path / "model.ply"), "-o", str(tmp_path / "model.glb"))
    assert out.returncode == 0, out.stderr
    res = result_line(out.stdout)
    assert res == {**res, "kind": "splats", "motion": "static", "gaussians": 400, "sh_degree": 0, "source": "ply"}
    glb = Glb(tmp_path / "model.glb")
    prim = glb.json["meshes"][0]["primitives"][0]
    assert not any("SH_DEGREE_1" in k for k in prim["attributes"])
    np.testing.assert_allclose(glb.accessor(prim["attributes"]["POSITION"]), g.means.numpy(), atol=1e-7)
    turned = run("export", str(tmp_path / "model.ply"), "-o", str(tmp_path / "z.glb"), "--up-axis", "z")
    assert turned.returncode == 0, turned.stderr
    z = Glb(tmp_path / "z.glb")
    pos = z.accessor(z.json["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    np.testing.assert_allclose(pos, g.means.numpy() @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]).T, atol=1e-6)  # file +Z up -> glTF +Y up


def test_inputs_it_cannot_use_get_messages(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    cases = [
        ((str(tmp_path / "missing"), "-o", str(tmp_path / "a.glb")), "missing: no such file or folder"),
        ((str(tmp_path / "empty"), "-o", str(tmp_path / "a.glb")), "is a folder without model.pt, sequence/sequence.json or sequence.json"),
        ((str(tmp_path / "notes.txt"), "-o", str(tmp_path / "a.glb")), "not a result (expected a job folder, model.pt, sequence.json or a .ply)"),
        ((str(tmp_path / "broken.pt"), "-o", str(tmp_path / "a.glb")), "broken.pt: not a DynaPose4D model file"),
        ((str(tmp_path / "notes.txt"), "-o", str(tmp_path / "a.gltf")), "the output must be a .glb file"),
    ]
    for args, message in cases:
        out = run("export", *args)
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert message in out.stderr, (message, out.stderr)
