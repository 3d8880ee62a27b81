"""The add-on's download path, as the preferences drive it: the operators, the runtime's model
watch and the real server (``dynapose4d serve`` in a subprocess) downloading from the Hugging Face
Hub on 127.0.0.1 (tests/fake_hub.py). The token typed into Blender reaches the hub and lands in
no file: not the server's, not the saved .blend, not the saved preferences."""

import os
import time
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import preferences, runtime  # noqa: E402
from blender_addon.link.launcher import BackendSettings  # noqa: E402

pytest.register_assert_rewrite("tests.fake_hub")
from tests.addon_fixtures import drawn, registered  # noqa: E402,F401
from tests.fake_hub import STABLE, SVD, TOKEN  # noqa: E402

pytest_plugins = ["tests.conftest_models", "tests.server_fixtures", "tests.fake_hub"]



@pytest.fixture
def connected(hub_server, monkeypatch):
    """The add-on pointed at the test server (as the Remote preferences would)."""
    settings = BackendSettings(mode="REMOTE", url=hub_server.url, token=hub_server.token)
    monkeypatch.setattr(preferences, "backend_settings", lambda prefs: settings)
    runtime.reset()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield hub_server
    runtime.reset()
    bpy.context.window_manager.dynapose4d_hf_token = ""


PREFS = dict(backend_mode="REMOTE", estimator="tracker", device="auto", keypoint_weights="", torch_build="AUTO",
             poseanything_file="")


def drive(until, timeout: float = 120.0) -> list:
    """What the watch timer does, until ``until()``; the reports."""
    reports, deadline = [], time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, (reports, runtime.STATE.models.snapshot())
        reports += runtime.STATE.tick(bpy.context)
        time.sleep(0.05)
    return reports + runtime.STATE.tick(bpy.context)


def row(name):
    return runtime.STATE.models.snapshot().row(name)


def test_a_gated_model_downloads_from_the_preferences_and_the_token_stays_off_disk(connected, hub, tmp_path):
    bpy.ops.dynapose4d.refresh_models()
    drive(lambda: row("svd") is not None)
    assert row("svd").state == "missing" and row("svd").gated and "about 4.5 GB" in row("svd").status_text()
    # 1. The licence must be accepted (the dialog's checkbox).
    with pytest.raises(RuntimeError, match="Tick 'I have read and accept the licence'"):
        bpy.ops.dynapose4d.download_model(name="svd")
    # 2. Without a token the gated model fails, saying why and what to do.
    bpy.ops.dynapose4d.download_model(name="svd", accept=True)
    reports = drive(lambda: not runtime.STATE.models.busy and row("svd").failure)
    assert any(level == "ERROR" and "no Hugging Face token was given" in text for level, text in reports)
    # 3. With the session's token it downloads, and the list says so.
    bpy.context.window_manager.dynapose4d_hf_token = TOKEN
    bpy.ops.dynapose4d.download_model(name="svd", accept=True)
    reports = drive(lambda: not runtime.STATE.models.busy and row("svd").state == "present")
    assert ("INFO", "Stable Video Diffusion img2vid (14 frames) downloaded") in reports
    assert {r.token for r in hub.fetched(SVD, "HEAD")} == {None, TOKEN}  # refused without it, then with it
    assert {r.token for r in hub.fetched(SVD)} == {TOKEN}  # every file fetched with it
    assert row("svd").status_text().startswith("present · ")
    # 4. Nothing on disk holds the token: the server's files, the .blend, the saved preferences.
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "scene.blend"))
    bpy.ops.wm.save_userpref()
    connected.stop()
    folders = [tmp_path, Path(os.environ["BLENDER_USER_RESOURCES"]), Path(runtime.STATE.temp.name)]
    written = [p for folder in folders for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    assert tmp_path / "scene.blend" in written and any(p.name == "userpref.blend" for p in written)
    assert [p for p in written if TOKEN.encode() in p.read_bytes()] == []


def test_progress_shows_in_the_preferences_and_cancel_stops_it(connected, hub):
    hub.slow(STABLE, "unet/diffusion_pytorch_model.safetensors", 1024 * 1024)
    bpy.ops.dynapose4d.refresh_models()
    drive(lambda: row("stable-zero123") is not None)
    bpy.ops.dynapose4d.download_model(name="stable-zero123", accept=True)
    drive(lambda: row("stable-zero123").progress() is not None and row("stable-zero123").progress()[0] > 0.05)
    fraction, text = row("stable-zero123").progress()
    assert " of " in text and " MB" in text and "left" in text
    log = drawn(preferences.DynaPose4DPreferences, bl_rna=preferences.DynaPose4DPreferences.bl_rna, **PREFS)
    assert ("progress", (), {"factor": fraction, "type": "BAR", "text": text}) in log
    assert ("operator", "dynapose4d.cancel_download") in log and ("operator", "dynapose4d.download_model") in log
    bpy.ops.dynapose4d.cancel_download(name="stable-zero123")
    drive(lambda: not runtime.STATE.models.busy and not row("stable-zero123").downloading)
    assert row("stable-zero123").download["state"] == "cancelled" and row("stable-zero123").state == "partial"
    assert row("stable-zero123").status_text().startswith("partial · ")
