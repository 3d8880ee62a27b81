"""Operators, the panel and the watch timer's work, on real bpy without a backend: the add-on
package registered directly. (The installed extension and a real backend: test_addon_e2e.py.)"""

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import blender_addon  # noqa: E402
from blender_addon import preferences, properties, runtime, ui  # noqa: E402
from blender_addon.format.sequence import Sampling  # noqa: E402
from blender_addon.link import job_settings  # noqa: E402
from blender_addon.link.follow import FetchProgress, Finished, JobSession, JobView, Problem, SequenceReady, Status  # noqa: E402
from blender_addon.scene import export, importer  # noqa: E402
from tests.addon_fixtures import Glb, Recorder, fresh_blender, make_sequence  # noqa: E402,F401

pytestmark = pytest.mark.usefixtures("fresh_blender")


@pytest.fixture(scope="module", autouse=True)
def registered():
    blender_addon.register()
    yield
    blender_addon.unregister()
    assert not [name for name in dir(bpy.types) if name.startswith("DYNAPOSE4D")]
    assert not hasattr(bpy.types.Scene, "dynapose4d")


@pytest.fixture(autouse=True)
def fresh_runtime():
    runtime.reset()
    yield runtime.STATE
    runtime.reset()


def test_generate_refuses_a_job_without_its_input():
    s = bpy.context.scene.dynapose4d
    s.kind = "generate"
    with pytest.raises(RuntimeError, match="needs an image file"):  # bpy.ops raises what the operator reports
        bpy.ops.dynapose4d.generate()
    assert runtime.STATE.session is None
    s.kind, s.animate_input = "animate", "SELECTED"  # nothing selected: the button says what to select
    with pytest.raises(RuntimeError, match=r"Select a splat object \(or choose a PLY file\)"):
        bpy.ops.dynapose4d.generate()
    s.animate_input = "FILE"
    with pytest.raises(RuntimeError, match="needs a ply file"):
        bpy.ops.dynapose4d.generate()


def test_an_image_data_block_becomes_a_file_the_backend_can_read(tmp_path):
    image = bpy.data.images.new("painted cat", 16, 8)
    image.pixels.foreach_set(np.tile([1.0, 0.5, 0.0, 1.0], 16 * 8).astype(np.float32))
    path = properties.image_file(image, str(tmp_path))
    from PIL import Image

    with Image.open(path) as img:
        assert img.size == (16, 8)
        assert img.convert("RGB").getpixel((0, 0))[0] == 255
    assert len(bpy.data.images) == 1  # the temporary copy is gone


def test_every_job_setting_is_a_property_with_the_table_s_label_default_and_range():
    """The property group and the preferences are made from the table (test_addon_job_settings.py
    pins the table to the backend's SETTINGS)."""
    s = bpy.context.scene.dynapose4d
    for setting in job_settings.JOB_SETTINGS:
        if setting.place == job_settings.NOWHERE:
            continue
        rna = (preferences.DynaPose4DPreferences if setting.place == job_settings.PREFERENCES else type(s)).bl_rna
        prop = rna.properties[setting.name]
        assert prop.name == setting.label and prop.description == setting.tooltip, setting.name
        if setting.choices:
            assert [item.identifier for item in prop.enum_items] == [c[0] for c in setting.choices]
        if setting.type in (int, float):
            assert (prop.hard_min, prop.hard_max) == pytest.approx((setting.minimum, setting.maximum)), setting.name
        if setting.place != job_settings.PREFERENCES:
            assert getattr(s, setting.name) == pytest.approx(setting.default), setting.name
        if setting.overridable:
            assert getattr(s, job_settings.override_name(setting.name)) is False, setting.name


def test_no_setting_is_animatable():
    """A keyed job setting means nothing to the backend, and each animatable one draws a keyframe dot."""
    for rna in (properties.DynaPose4DSettings.bl_rna, properties.DynaPose4DRetargetPair.bl_rna,
                preferences.DynaPose4DPreferences.bl_rna):
        animatable = [p.identifier for p in rna.properties if p.identifier != "rna_type" and p.is_animatable
                      and p.type not in ("POINTER", "COLLECTION")]
        assert not animatable, (rna.identifier, animatable)


def test_a_fresh_panel_requests_the_table_s_defaults(tmp_path):
    from blender_addon.link.jobs import build_request

    s = bpy.context.scene.dynapose4d
    s.kind = "demo"
    request = build_request(properties.job_options(bpy.context, None, str(tmp_path)))
    expected = {r.name: r.default for r in job_settings.rows("demo") if not r.auto}
    assert request.settings == expected and "iterations" not in request.settings  # Auto: the backend's default


def test_operator_settings_copy_the_panel():
    s = bpy.context.scene.dynapose4d
    s.kind, s.gaussians, s.frames, s.iterations, s.seed, s.duration = "demo", 600, 5, 3, 7, 0.5
    bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 30, 1.001
    options = properties.job_options(bpy.context, None, "/tmp")
    assert options.kind == "demo" and options.settings["gaussians"] == 600 and options.settings["seed"] == 7
    assert options.settings["frames"] is job_settings.AUTO and options.settings["iterations"] is job_settings.AUTO
    s.override_frames = s.override_iterations = True
    options = properties.job_options(bpy.context, None, "/tmp")
    assert (options.settings["frames"], options.settings["iterations"]) == (5, 3)
    sampling = properties.sampling(bpy.context)
    assert sampling.fps == pytest.approx(30 / 1.001) and sampling.frame_count == 15


def queued_session(messages, job_id="job-q"):
    """A session whose threads already ran: its queue holds what they reported."""
    session = JobSession(lambda: None, Sampling(24.0, 6), job_id=job_id)
    for message in messages:
        session.queue.put(message)
    return session


def test_tick_applies_the_newest_snapshot_and_reports_the_end():
    state = runtime.STATE
    state.session = queued_session([
        Status(JobView(id="job-q", state="running", stage="dynamic", iteration=1, total=3)),
        SequenceReady(make_sequence(version=1)),
        FetchProgress(2, 3, 6),
        SequenceReady(make_sequence(version=2, seed=4)),
        Status(JobView(id="job-q", state="running", stage="dynamic", iteration=3, total=3)),
        Finished(JobView(id="job-q", state="done", snapshot_version=2)),
    ])
    state.import_options = importer.ImportOptions(frame_start=1)
    reports = state.tick(bpy.context)
    assert ("INFO", "DynaPose4D job job-q is done") in reports
    coll = importer.job_collection(bpy.context.scene, "job-q", create=False)
    assert coll is not None and coll["dynapose4d_snapshot"] == 2  # only the newest was built
    assert state.imported_version == 2 and state.view.state == "done" and state.fetch is None
    assert bpy.context.scene.dynapose4d.job_id == "job-q"
    assert not state.busy()


def test_tick_shows_failures():
    state = runtime.STATE
    state.session = queued_session([Problem("cannot reach the DynaPose4D backend at http://127.0.0.1:1"),
                                    Finished(JobView(state="connecting", error="x"))])
    reports = state.tick(bpy.context)
    assert reports[0][0] == "ERROR" and "cannot reach" in state.error
    state.session = queued_session([Finished(JobView(id="job-f", state="failed", error="CUDA out of memory"))])
    reports = state.tick(bpy.context)
    assert ("ERROR", "DynaPose4D job job-f failed: CUDA out of memory") in reports


def test_export_operator_and_function_write_the_same_file(tmp_path):
    seq = make_sequence()
    coll = importer.import_sequence(bpy.context, seq, "job-e")
    bpy.context.scene.dynapose4d.job_id = "job-e"
    assert bpy.ops.dynapose4d.export_gltf(filepath=str(tmp_path / "op.glb")) == {"FINISHED"}
    export.export_gltf(bpy.context, coll, str(tmp_path / "fn.glb"))
    by_op, by_fn = Glb(tmp_path / "op.glb"), Glb(tmp_path / "fn.glb")
    assert [n.get("name") for n in by_op.json["nodes"]] == [n.get("name") for n in by_fn.json["nodes"]]
    channels_op, channels_fn = by_op.channels(), by_fn.channels()  # the exporter orders channels freely
    assert channels_op.keys() == channels_fn.keys()
    for key, (times, values, interpolation) in channels_op.items():
        np.testing.assert_array_equal(times, channels_fn[key][0])
        np.testing.assert_array_equal(values, channels_fn[key][1])
    np.testing.assert_array_equal(by_op.morph_frames("gaussians", 24.0)[0], by_fn.morph_frames("gaussians", 24.0)[0])
    np.testing.assert_allclose(by_op.morph_frames("gaussians", 24.0)[0], seq.positions, atol=1e-6)


def test_export_and_import_operators_need_a_job(tmp_path):
    with pytest.raises(RuntimeError, match="Nothing to export"):
        bpy.ops.dynapose4d.export_gltf(filepath=str(tmp_path / "x.glb"))
    with pytest.raises(RuntimeError, match="No job id"):
        bpy.ops.dynapose4d.import_job()


def test_install_operator_respects_online_access():
    assert not bpy.app.online_access  # the bpy module runs offline
    with pytest.raises(RuntimeError, match="Online access is off"):
        bpy.ops.dynapose4d.install_backend()
    assert runtime.STATE.builder is None


def test_cancel_and_generate_polls_follow_the_job_state():
    assert not bpy.ops.dynapose4d.cancel.poll()
    state = runtime.STATE
    state.session = queued_session([])
    state.session._threads = [_Alive()]
    state.view = JobView(id="job-r", state="running")
    assert bpy.ops.dynapose4d.cancel.poll() and not bpy.ops.dynapose4d.generate.poll()
    state.session._threads = []


class _Alive:
    def is_alive(self):
        return True


def test_preferences_fall_back_to_defaults_when_not_enabled():
    settings = preferences.backend_settings(preferences.get(bpy.context))
    assert settings.mode == "LOCAL" and settings.address_file.endswith("server.json")
    assert "backend-env" in settings.python


# -- the panel, drawn into a recorder (the bpy module never draws panels) -----------------------------


class PanelStub:
    def __init__(self):
        self.log = []
        self.layout = Recorder(self.log)


@pytest.mark.parametrize("kind", ["generate", "demo", "animate"])
def test_panels_draw_every_kind_and_state(kind):
    bpy.context.scene.dynapose4d.kind = kind
    state = runtime.STATE
    for setup in (lambda: None, lambda: setattr(state, "view", JobView(state="running", stage="dynamic", iteration=2, total=4, progress=0.5)),
                  lambda: setattr(state, "error", "line one\nline two"),
                  lambda: setattr(state.health, "info", {"version": "0.1.0", "device": "cuda", "gpu": {"name": "H100", "memory_total_mb": 81920},
                                                         "models": [{"name": "svd", "available": False}]})):
        setup()
        for panel in ui.CLASSES:
            stub = PanelStub()
            panel.draw(stub, bpy.context)
            assert stub.log
    stub = PanelStub()
    ui.DYNAPOSE4D_PT_main.draw(stub, bpy.context)
    assert ("operator", "dynapose4d.generate") in stub.log and ("operator", "dynapose4d.cancel") in stub.log
    assert any(entry[0] == "progress" for entry in stub.log)


def drawn_props(kind: str, video_path: str = "", animate_input: str = "SELECTED") -> list[str]:
    s = bpy.context.scene.dynapose4d
    s.kind, s.video_path, s.animate_input = kind, video_path, animate_input
    log = []
    for panel in ui.CLASSES:
        stub = PanelStub()
        panel.draw(stub, bpy.context)
        log += stub.log
    return log


def test_every_scene_job_setting_is_drawn_for_its_kinds():
    for setting in job_settings.rows(places=properties.SCENE_PLACES):
        for kind in setting.kinds:
            drawn = [e[1] for e in drawn_props(kind) + drawn_props(kind, "/clip.mp4") + drawn_props(kind, animate_input="FILE")
                     if e[0] == "prop"]
            assert setting.name in drawn or job_settings.override_name(setting.name) in drawn, (kind, setting.name)


def test_animate_shows_the_selected_splat_or_the_ply_file_with_its_up_axis():
    log = drawn_props("animate")
    labels = [e[2]["text"] for e in log if e[0] == "label" and e[2].get("text")]
    assert ("prop", "animate_input") in log and ("prop", "ply_path") not in log and ("prop", "up_axis") not in log
    assert any(text.startswith("Select a splat object") for text in labels), labels
    file_log = drawn_props("animate", animate_input="FILE")
    assert ("prop", "ply_path") in file_log and ("prop", "up_axis") in file_log
    assert ("operator", "dynapose4d.import_result") in log


def test_settings_the_preset_decides_read_auto_until_overridden():
    s = bpy.context.scene.dynapose4d
    log = drawn_props("generate")
    assert ("label", (), {"text": "Auto (from preset)"}) in log
    assert ("prop", "override_iterations") in log and ("prop", "iterations") not in log
    s.override_iterations = True
    assert ("prop", "iterations") in drawn_props("generate")
    assert ("label", (), {"text": "Auto (default)"}) in drawn_props("demo")  # no presets: the backend's default
    # The video's settings follow the video: its frame rate with one, the candidates without.
    assert ("prop", "override_video_candidates") in log and ("prop", "override_video_fps") not in log
    with_video = drawn_props("generate", "/clip.mp4")
    assert ("prop", "override_video_fps") in with_video and ("prop", "override_video_candidates") not in with_video


def test_a_new_table_row_reaches_the_property_group_the_panel_and_the_request(monkeypatch, tmp_path):
    """One row in link/job_settings.py is all a new backend setting costs."""
    import importlib

    from blender_addon.link.jobs import build_request

    new = job_settings.JobSetting("tile_size", "Tile Size", ("demo",), 16, "Side of a render tile", 1, 64,
                                  place=job_settings.ADVANCED)
    new_auto = job_settings.JobSetting("warmup", "Warm-up", ("demo",), 10, "Steps before the keypoints count", 0, 500,
                                       auto=job_settings.PRESET, place=job_settings.SETTINGS)
    blender_addon.unregister()
    monkeypatch.setattr(job_settings, "JOB_SETTINGS", job_settings.JOB_SETTINGS + (new, new_auto))
    try:
        importlib.reload(properties)
        blender_addon.register()
        drawn = drawn_props("demo")
        assert ("prop", "tile_size") in drawn and ("prop", "override_warmup") in drawn
        settings = build_request(properties.job_options(bpy.context, None, str(tmp_path))).settings
        assert settings["tile_size"] == 16 and "warmup" not in settings
        s = bpy.context.scene.dynapose4d
        s.tile_size, s.override_warmup, s.warmup = 32, True, 20
        settings = build_request(properties.job_options(bpy.context, None, str(tmp_path))).settings
        assert (settings["tile_size"], settings["warmup"]) == (32, 20)
    finally:
        blender_addon.unregister()
        monkeypatch.undo()
        importlib.reload(properties)
        blender_addon.register()
    assert not hasattr(bpy.context.scene.dynapose4d, "tile_size")


def test_preferences_draw():
    from blender_addon.preferences import DynaPose4DPreferences

    class Prefs(PanelStub):
        pass

    for mode, estimator in (("LOCAL", "tracker"), ("REMOTE", "cape+tracker")):
        stub = Prefs()
        stub.__dict__.update(backend_mode=mode, estimator=estimator, device="auto", keypoint_weights="", torch_build="AUTO",
                             poseanything_file="", bl_rna=DynaPose4DPreferences.bl_rna)
        DynaPose4DPreferences.draw(stub, bpy.context)
        names = [e[1] for e in stub.log if e[0] == "prop"]
        assert ("url" in names) == (mode == "REMOTE") and ("python_path" in names) == (mode == "LOCAL")
        assert "estimator" in names and ("keypoint_weights" in names) == (estimator != "tracker")


def test_preferences_choose_the_keypoint_estimator_and_its_weights():
    from types import SimpleNamespace

    prefs = SimpleNamespace(device="cpu", estimator="poseanything", keypoint_weights="//pa", backend_mode="REMOTE")
    options = properties.job_options(bpy.context, prefs, "/tmp")
    assert (options.settings["estimator"], options.settings["keypoint_weights"]) == ("poseanything", "//pa")  # the backend's path
    prefs.backend_mode = "LOCAL"
    assert properties.job_options(bpy.context, prefs, "/tmp").settings["keypoint_weights"] == bpy.path.abspath("//pa")
    assert properties.job_options(bpy.context, None, "/tmp").settings["estimator"] == "tracker"
