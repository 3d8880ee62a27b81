"""Export Splats (KHR_gaussian_splatting) from the add-on: a server job's through the server's
export route, a result folder's through the backend's export command; both files are GLBs with the
extension, sampled as the scene imported them, that the Khronos validator accepts (but for its
reports of the extension's attribute names, which it does not know yet)."""

import sys

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
pytest.importorskip("torch")
pytest.register_assert_rewrite("tests.server_fixtures")

import blender_addon  # noqa: E402
from blender_addon import preferences  # noqa: E402
from blender_addon.format.sequence import Sampling  # noqa: E402
from blender_addon.link.client import BackendClient, BackendError  # noqa: E402
from blender_addon.link.launcher import BackendSettings  # noqa: E402
from blender_addon.scene import importer  # noqa: E402
from blender_addon.scene.result_import import import_result_folder  # noqa: E402
from tests.addon_fixtures import Glb, fresh_blender, registered, validate_gltf, validation_errors  # noqa: E402,F401
from tests.server_fixtures import finished_demo  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]
pytestmark = pytest.mark.usefixtures("fresh_blender")
EXT = "KHR_gaussian_splatting"



@pytest.fixture(scope="module")
def done_job(job_server):
    return finished_demo(job_server, gaussians=1500)


def backend(monkeypatch, **settings):
    """The add-on's preferences say: this server, or this Python for the backend's commands."""
    monkeypatch.setattr(preferences, "backend_settings", lambda prefs: BackendSettings(**settings))


def splat_file(path, gaussians: int, frames: int, fps: float) -> Glb:
    """A GLB whose splat primitives hold every Gaussian (once as rigid parts, once a frame as a
    flipbook), animated over ``frames`` frames at ``fps``, valid but for the extension's attribute names."""
    glb = Glb(path)
    assert EXT in glb.json["extensionsUsed"]
    prims = [p for m in glb.json["meshes"] for p in m["primitives"] if EXT in p.get("extensions", {})]
    motion = glb.json["nodes"][glb.node("DynaPose4D")]["extras"]["dynapose4d"]["report"]["motion"]
    copies = frames if motion == "flipbook" else 1
    assert prims and sum(glb.accessor(p["attributes"]["POSITION"]).shape[0] for p in prims) == gaussians * copies
    times = np.unique(np.concatenate([glb.accessor(s["input"])[:, 0] for s in glb.json["animations"][0]["samplers"]]))
    np.testing.assert_allclose(times.max(), (frames - 1) / fps, atol=1e-5)
    assert {m["code"] for m in validation_errors(validate_gltf(path))} == {"MESH_PRIMITIVE_INVALID_ATTRIBUTE"}
    return glb


def test_a_server_jobs_splats_come_from_the_server_sampled_as_imported(job_server, done_job, monkeypatch, tmp_path):
    client = BackendClient(job_server.url, job_server.token)
    sampling = Sampling(12.0, 5)
    importer.import_sequence(bpy.context, client.sequence(done_job, sampling), done_job, importer.ImportOptions())
    backend(monkeypatch, mode="REMOTE", url=job_server.url, token=job_server.token)
    assert bpy.ops.dynapose4d.export_gltf(filepath=str(tmp_path / "out.glb"), job_id=done_job, form="SPLATS") == {"FINISHED"}
    glb = splat_file(tmp_path / "out.glb", 1500, 5, 12.0)
    assert glb.json["nodes"][glb.node("DynaPose4D")]["extras"]["dynapose4d"]["fps"] == 12.0
    # Today's export is still there beside it: the scene's points as morph targets.
    assert bpy.ops.dynapose4d.export_gltf(filepath=str(tmp_path / "scene.glb"), job_id=done_job, form="SCENE") == {"FINISHED"}
    assert EXT not in Glb(tmp_path / "scene.glb").json.get("extensionsUsed", [])


def test_the_export_route_checks_its_request_before_the_work(job_server, done_job):
    client = BackendClient(job_server.url, job_server.token)
    with pytest.raises(BackendError) as info:  # 10,000 frames x 1,500 Gaussians: over the 1 GiB a request may use
        client.request("GET", f"/jobs/{done_job}/export", query={"fps": "24", "frame_count": 10_000})
    assert info.value.status == 413 and "this splats export would need about" in str(info.value)
    with pytest.raises(BackendError) as info:
        client.request("GET", "/jobs/no-such-job/export")
    assert info.value.status == 404
    with pytest.raises(BackendError) as info:
        client.request("GET", f"/jobs/{done_job}/export", query={"as": "mesh"})
    assert info.value.status == 422
    # Without a token: refused, like every route.
    with pytest.raises(BackendError) as info:
        BackendClient(job_server.url, "wrong").request("GET", f"/jobs/{done_job}/export")
    assert info.value.status == 401
    _, headers, data = client.request("GET", f"/jobs/{done_job}/export", query={"as": "points", "fps": "10", "frame_count": 3})
    assert data[:4] == b"glTF" and headers["content-type"] == "model/gltf-binary"


@pytest.fixture(scope="module")
def result_folder(tmp_path_factory):
    """A finished job folder in the real layout (model.pt, sequence/ with its sidecar)."""
    from dynapose4d.pipeline import JobFolder
    from dynapose4d.pipeline.outputs import write_results

    from tests.splat_fixtures import tiny_result

    root = tmp_path_factory.mktemp("result")
    write_results(JobFolder(root), tiny_result(), previews=False)
    return root


def test_a_folders_splats_come_from_the_backends_command(result_folder, monkeypatch, tmp_path):
    coll = import_result_folder(bpy.context, str(result_folder))
    backend(monkeypatch, python=sys.executable)
    job_id = coll[importer.JOB]
    assert bpy.ops.dynapose4d.export_gltf(filepath=str(tmp_path / "folder.glb"), job_id=job_id, form="SPLATS") == {"FINISHED"}
    splat_file(tmp_path / "folder.glb", coll["dynapose4d_gaussians"], coll["dynapose4d_frame_count"], coll["dynapose4d_fps"])
    # Without the backend's environment: a message that says what to do.
    backend(monkeypatch, python=str(tmp_path / "missing" / "python"))
    from blender_addon.link.exports import ExportFailed, splats_with_cli

    with pytest.raises(ExportFailed, match="create the backend environment"):
        splats_with_cli(str(tmp_path / "missing" / "python"), result_folder, tmp_path / "x.glb", fps=24.0, frames=3)
