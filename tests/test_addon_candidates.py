"""The add-on's driving-video candidate picker in real bpy against a real backend on 127.0.0.1:
a generate job with Choose Video = Let Me Pick waits; the panel shows its candidates' preview
strips as Blender image previews; choosing one through the operator sends the pick, follows the
job and imports its result. (Tiny random-weight models: the pictures are noise, the plumbing is real.)"""

import time

import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import candidates, preferences, runtime, ui  # noqa: E402
from blender_addon.link.client import BackendClient  # noqa: E402
from blender_addon.link.follow import JobView  # noqa: E402
from blender_addon.link.launcher import BackendSettings  # noqa: E402
from tests.addon_fixtures import fresh_blender, registered  # noqa: E402,F401
from tests.server_fixtures import start_server  # noqa: E402
from tests.test_addon_operators import PanelStub  # noqa: E402

pytest_plugins = ["tests.conftest_models"]
pytestmark = pytest.mark.usefixtures("fresh_blender")


@pytest.fixture(scope="module")
def waiting_job(tmp_path_factory, tiny_zero123, tiny_svd):
    """A real server with a generate job that made its candidates and waits for a pick."""
    from dynapose4d.evaluation.articulated import make_articulated
    from tests.test_image_to_4d import TINY, lamp_png

    tmp = tmp_path_factory.mktemp("candidates-server")
    server = start_server(tmp)
    lamp_png(tmp / "lamp.png", make_articulated("lamp", 1500))
    settings = dict(TINY, zero123=str(tiny_zero123["zero123-xl"]), svd=str(tiny_svd), video_candidates=2, choose_video="ask")
    reply = server.create_job("generate", settings, {"image": ("lamp.png", (tmp / "lamp.png").read_bytes())})
    assert reply.status == 201, reply.body
    job = server.wait_state(reply.json()["id"], "waiting", "done", "failed", timeout=300)
    assert job["state"] == "waiting", job["error"]
    yield server, job["id"]
    server.stop()



@pytest.fixture(autouse=True)
def fresh_runtime():
    runtime.reset()
    yield runtime.STATE
    runtime.reset()


def test_the_shelf_loads_previews_and_the_panel_offers_the_pick(waiting_job, tmp_path):
    server, job_id = waiting_job
    client = BackendClient(server.url, server.token)
    shelf = candidates.refresh(client, job_id, str(tmp_path))
    assert shelf.waiting and shelf.chosen is None and [c.index for c in shelf.items] == [0, 1]
    item = shelf.items[1]
    assert f"score {item.score['total']:.2f}" in item.label() and item.motion_bucket != shelf.items[0].motion_bucket
    # Blender decoded the strip (3 frames of TINY side by side); icon ids stay 0 in background mode.
    preview = shelf._previews[f"{job_id}:1"]
    width, height = preview.image_size
    assert height > 0 and width / height == pytest.approx(3.0, rel=0.05)
    assert item.icon_id == preview.icon_id
    with open(item.preview_path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    # The panel: a waiting generate job shows the candidates with a Use button and their previews.
    s = bpy.context.scene.dynapose4d
    s.kind = "generate"
    runtime.STATE.view = JobView(id=job_id, state="waiting")
    runtime.STATE.candidates = shelf
    stub = PanelStub()
    ui.DYNAPOSE4D_PT_main.draw(stub, bpy.context)
    assert ("operator", "dynapose4d.choose_candidate") in stub.log
    item.icon_id = item.icon_id or 4242  # what a UI session has: the preview drawn large
    stub = PanelStub()
    ui.DYNAPOSE4D_PT_main.draw(stub, bpy.context)
    assert any(e[0] == "template_icon" and e[2].get("icon_value") == item.icon_id for e in stub.log)
    # Without a shelf yet, the waiting job offers to show the candidates.
    runtime.STATE.candidates = None
    stub = PanelStub()
    ui.DYNAPOSE4D_PT_main.draw(stub, bpy.context)
    assert ("operator", "dynapose4d.show_candidates") in stub.log
    runtime.STATE.candidates = shelf
    shelf.release()
    assert shelf._previews is None and item.icon_id == 0


def test_show_and_choose_operators_pick_the_video_and_import_the_result(waiting_job, monkeypatch):
    server, job_id = waiting_job
    remote = BackendSettings(mode="REMOTE", url=server.url, token=server.token)
    monkeypatch.setattr(preferences, "backend_settings", lambda prefs: remote)
    s = bpy.context.scene.dynapose4d
    s.kind, s.job_id, s.duration = "generate", job_id, 0.5
    with pytest.raises(RuntimeError, match="Show the job's candidates first"):
        bpy.ops.dynapose4d.choose_candidate(index=0)
    assert bpy.ops.dynapose4d.show_candidates() == {"FINISHED"}
    state = runtime.STATE
    assert state.candidates is not None and tuple(state.candidates._previews[f"{job_id}:0"].image_size) != (0, 0)
    assert bpy.ops.dynapose4d.choose_candidate(index=1) == {"FINISHED"}
    assert state.candidates.chosen == 1 and state.candidates.items[1].chosen and not state.candidates.items[0].chosen
    assert server.status(job_id)["state"] in ("queued", "running", "done")
    deadline = time.monotonic() + 300
    reports = []
    while state.busy():  # what the watch timer does (the bpy module has no event loop)
        assert time.monotonic() < deadline, f"timed out; reports: {reports}; view: {state.view}"
        reports += state.tick(bpy.context)
        time.sleep(0.05)
    reports += state.tick(bpy.context)
    assert state.view.state == "done", (reports, state.view)
    assert state.imported_version is not None and bpy.data.collections, reports
    listed = BackendClient(server.url, server.token).candidates(job_id)
    assert listed["chosen"] == 1 and listed["chosen_by"] == "user"
