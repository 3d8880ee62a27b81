"""End to end, as a user runs it: the built extension installed into Blender starts the real
backend (127.0.0.1, a subprocess), runs a tiny demo job, imports it live into the scene
through the add-on's own client and threads, exports a GLB that the Khronos validator accepts
and that holds the backend's frames; then the extension unregisters cleanly.

The bpy module has no event loop, so the test calls the watch timer's work (``tick``) itself.
"""

import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
import addon_utils  # noqa: E402

from tests.addon_fixtures import Glb, validate_gltf, validation_errors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "bl_ext.user_default.dynapose4d"
TINY = {"gaussians": 600, "frames": 5, "iterations": 3}


@pytest.fixture(scope="module")
def addon(tmp_path_factory):
    """The extension, built by build.py and installed with Blender's own operator."""
    sys.path.insert(0, str(ROOT))
    import build

    path = build.build(tmp_path_factory.mktemp("dist"))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.extensions.package_install_files(filepath=str(path), repo="user_default", enable_on_install=True)
    assert result == {"FINISHED"}
    with pytest.MonkeyPatch.context() as mp:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            mp.setenv(name, "1")  # the backend inherits Blender's environment
        yield sys.modules[PACKAGE]
        if addon_utils.check(PACKAGE)[1]:
            addon_utils.disable(PACKAGE)


def drive(state, until, timeout=180.0):
    """Do what the watch timer does every 0.2 s, until ``until()``; returns the reports."""
    reports = []
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; reports so far: {reports}; view: {state.view}"
        reports += state.tick(bpy.context)
        time.sleep(0.05)
    reports += state.tick(bpy.context)
    return reports


def test_the_extension_registers_its_operators_panels_and_settings(addon):
    assert addon_utils.check(PACKAGE)[1]
    for name in ("generate", "cancel", "connect", "stop_backend", "import_job", "export_gltf", "install_backend", "watch"):
        getattr(bpy.ops.dynapose4d, name).get_rna_type()  # KeyError for an operator that is not registered
    assert hasattr(bpy.types, "DYNAPOSE4D_PT_main") and bpy.types.DYNAPOSE4D_PT_main.bl_category == "DynaPose4D"
    assert bpy.context.scene.dynapose4d.kind == "generate"
    prefs = bpy.context.preferences.addons[PACKAGE].preferences  # bl_idname is __package__
    assert prefs.backend_mode == "LOCAL" and prefs.device == "auto"
    assert addon.link.launcher.bundled_backend_source() == Path(addon.__file__).parent / "backend_src"


@pytest.fixture(scope="module")
def demo_job(addon, tmp_path_factory):
    """Generate (kind demo) pressed in a scene at 24 fps, 0.5 s long: 12 frames."""
    tmp = tmp_path_factory.mktemp("e2e")
    prefs = bpy.context.preferences.addons[PACKAGE].preferences
    prefs.python_path = sys.executable  # the development environment has the backend
    prefs.jobs_dir = str(tmp / "jobs")
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    s = scene.dynapose4d
    s.kind, s.duration = "demo", 0.5
    s.gaussians, s.frames, s.iterations = TINY["gaussians"], TINY["frames"], TINY["iterations"]
    s.override_frames = s.override_iterations = True  # else Auto: the backend's defaults
    assert bpy.ops.dynapose4d.generate() == {"FINISHED"}
    state = addon.runtime.STATE
    t0 = time.monotonic()
    reports = drive(state, lambda: not state.busy())
    return state, reports, time.monotonic() - t0


def test_generate_runs_the_job_and_imports_it_live(demo_job):
    state, reports, seconds = demo_job
    assert state.view.state == "done", (reports, state.error)
    assert not [r for r in reports if r[0] == "ERROR"], reports
    job_id = state.session.job_id
    title = state.view.title  # the input's name (the demo has none: its kind) and the date, not the 32-hex id
    assert title.startswith("demo 20") and ("INFO", f"DynaPose4D job {title} is done") in reports
    scene = bpy.context.scene
    assert scene.dynapose4d.job_id == job_id
    coll = bpy.data.collections[f"DynaPose4D {title}"]
    roles = sorted(o.get("dynapose4d_role") for o in coll.objects)
    assert roles.count("gaussians") == 1 and roles.count("armature") == 1 and roles.count("camera") == 1
    assert roles.count("keypoint") >= 2
    points = next(o for o in coll.objects if o.get("dynapose4d_role") == "gaussians")
    assert len(points.data.vertices) == TINY["gaussians"] and len(points.data.shape_keys.key_blocks) == 12 + 1
    assert (scene.frame_start, scene.frame_end) == (1, 12) and coll["dynapose4d_fps"] == 24.0
    assert state.imported_version == 1 and state.last_update_s < 5.0


def test_the_exported_glb_is_valid_and_holds_the_backend_frames(addon, demo_job, tmp_path):
    state = demo_job[0]
    path = tmp_path / "demo.glb"
    assert bpy.ops.dynapose4d.export_gltf(filepath=str(path)) == {"FINISHED"}
    report = validate_gltf(path)
    assert report["issues"]["numErrors"] == 0, validation_errors(report)
    glb = Glb(path)
    positions, times = glb.morph_frames("gaussians", 24.0)
    np.testing.assert_allclose(times, np.arange(12) / 24.0, atol=1e-6)  # 12 frames span 0 .. 11/24 s
    # The same frames, fetched again by the add-on's client straight from the backend.
    client = addon.runtime.STATE.backends.client(addon.preferences.backend_settings(addon.preferences.get()))
    sampling = addon.format.sequence.Sampling(24.0, 12)
    job_id = state.session.job_id
    for index in (0, 5, 11):
        frame = addon.format.wire.decode_frame(client.frame(job_id, index, sampling))
        np.testing.assert_allclose(positions[index], frame.positions, atol=1e-6)  # glTF +Y up = backend
    tracks = client.keypoints(job_id, sampling)
    channels = glb.channels()
    for p, name in enumerate(tracks["names"]):
        if tracks["valid"][p]:
            values = channels[(glb.node(f"kp.{name}"), "translation")][1]
            np.testing.assert_allclose(values, np.asarray(tracks["positions"])[:, p], atol=1e-5)


def test_reimport_at_another_frame_rate_and_duration_updates_in_place(addon, demo_job):
    state = demo_job[0]
    scene = bpy.context.scene
    objects = sorted(o.name for o in bpy.data.objects)
    scene.render.fps = 30
    scene.dynapose4d.duration = 0.3
    assert bpy.ops.dynapose4d.import_job() == {"FINISHED"}
    drive(state, lambda: not state.busy(), timeout=60)
    coll = bpy.data.collections[f"DynaPose4D {state.view.title}"]
    assert sorted(o.name for o in bpy.data.objects) == objects
    assert coll["dynapose4d_fps"] == 30.0 and coll["dynapose4d_frame_count"] == 9 and scene.frame_end == 9


def test_connect_shows_device_and_models(addon, demo_job):
    state = demo_job[0]
    assert bpy.ops.dynapose4d.connect() == {"FINISHED"}
    drive(state, lambda: not state.health.checking, timeout=90)
    assert state.health.info is not None, state.health.error
    assert state.health.info["device"] in ("cpu", "cuda")
    assert "connected" in state.health.summary() and {name for name, _ in state.health.models()} >= {"svd"}


def test_stop_backend_and_unregister_cleanly(addon, demo_job):
    state = demo_job[0]
    local = state.backends.local
    assert local is not None and local.running
    address_file = Path(local.config.address_file)
    assert bpy.ops.dynapose4d.stop_backend() == {"FINISHED"}
    assert not local.running and not address_file.exists()
    addon_utils.disable(PACKAGE)
    assert not addon_utils.check(PACKAGE)[1]
    assert not [name for name in dir(bpy.types) if name.startswith("DYNAPOSE4D")]
    assert not hasattr(bpy.types.Scene, "dynapose4d")
    with pytest.raises(KeyError):
        bpy.ops.dynapose4d.generate.get_rna_type()
    # and it comes back
    addon_utils.enable(PACKAGE)
    assert addon_utils.check(PACKAGE)[1] and hasattr(bpy.types, "DYNAPOSE4D_PT_main")
