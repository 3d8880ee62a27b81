"""Model downloads against a Hugging Face Hub on 127.0.0.1 (tests/fake_hub.py) serving tiny
random-weight models in the real layouts: the plan and the fetch (weights/download.py), and the
server's ``/v1/models`` routes that run them in child processes (weights/downloads.py), with a
gated repository, a dropped connection, a cancel and the token's path through it all."""

from __future__ import annotations

import time

import pytest
from dynapose4d.weights import DownloadRefused, check_model, get_spec, model_on_disk, plan_download
from dynapose4d.weights.download import fetch, free_space_problem, select_download_files

pytest.register_assert_rewrite("tests.fake_hub")  # its helpers assert; imported here before pytest_plugins loads it
from tests.fake_hub import OTHER_TOKEN, ROOT_CKPT, STABLE, SVD, TOKEN, ZERO123, post_json, wait_download  # noqa: E402

pytest_plugins = ["tests.conftest_models", "tests.server_fixtures", "tests.fake_hub"]


@pytest.fixture(autouse=True)
def _fresh_hf_home(hf_home):
    return hf_home


# -- the plan and the fetch, in this process ----------------------------------------------------------


def test_the_plan_lists_the_files_we_load_with_their_sizes(hub, tmp_path):
    cache = tmp_path / "cache"
    plan = plan_download("zero123-xl", cache_dir=cache, endpoint=hub.url)
    served = hub.repos[ZERO123].files
    assert [f.name for f in plan.files] == select_download_files(list(served), get_spec("zero123-xl"))
    assert ROOT_CKPT not in [f.name for f in plan.files]
    assert plan.total_bytes == sum(len(served[f.name]) for f in plan.files) and plan.cached_bytes == 0
    assert plan.commit == hub.repos[ZERO123].sha
    assert not hub.fetched(ZERO123)  # planning fetched nothing
    # Free space: measured for what is missing, with a message that says what to do.
    assert free_space_problem(plan) is None
    problem = free_space_problem(plan, free_bytes=1000)
    assert "not enough free disk space for Zero123-XL" in problem and "Model Cache" in problem


def test_a_gated_model_is_refused_before_anything_is_fetched(hub, tmp_path):
    with pytest.raises(DownloadRefused) as err:
        plan_download("svd", cache_dir=tmp_path, endpoint=hub.url)
    assert err.value.kind == "gated" and "no Hugging Face token was given" in str(err.value)
    assert "accept the licence" in str(err.value) and get_spec("svd").repo_id in str(err.value)
    with pytest.raises(DownloadRefused, match="has not accepted its licence yet") as err:
        plan_download("svd", cache_dir=tmp_path, token=OTHER_TOKEN, endpoint=hub.url)
    assert err.value.kind == "gated"
    assert not hub.fetched(SVD)
    plan = plan_download("svd", cache_dir=tmp_path, token=TOKEN, endpoint=hub.url)
    assert plan.total_bytes > 0


def test_fetch_reports_progress_and_the_model_then_resolves(hub, tmp_path):
    cache = tmp_path / "cache"
    assert model_on_disk("zero123-xl", cache_dir=cache, env={}).state == "missing"
    plan = plan_download("zero123-xl", cache_dir=cache, endpoint=hub.url)
    seen = []
    path = fetch(plan, cache_dir=cache, endpoint=hub.url, on_progress=seen.append, interval_s=0.01)
    assert seen and all(p.total == plan.total_bytes for p in seen)
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    status = check_model("zero123-xl", cache_dir=cache, env={})
    assert status.available and status.path == path  # found offline although the root checkpoint is not there
    disk = model_on_disk("zero123-xl", cache_dir=cache, env={})
    assert disk.state == "present" and disk.bytes >= plan.total_bytes
    assert not [r for r in hub.fetched(ZERO123) if r.path.endswith(ROOT_CKPT)]
    # A second plan finds everything cached.
    again = plan_download("zero123-xl", cache_dir=cache, endpoint=hub.url)
    assert again.cached_bytes == again.total_bytes


def test_a_dropped_connection_resumes_mid_file(hub, tmp_path):
    cache = tmp_path / "cache"
    name = "unet/diffusion_pytorch_model.safetensors"
    hub.drop_once(STABLE, name, 15 * 1024 * 1024)
    path = fetch(plan_download("stable-zero123", cache_dir=cache, endpoint=hub.url), cache_dir=cache, endpoint=hub.url)
    assert (path / name).read_bytes() == hub.repos[STABLE].files[name]
    ranges = [r.range for r in hub.fetched(STABLE) if r.path.endswith(name)]
    assert ranges[0] is None and len(ranges) == 2
    start = int(ranges[1].split("=")[1].split("-")[0])
    assert 10 * 1024 * 1024 <= start <= 15 * 1024 * 1024  # went on from what had arrived, not from 0


def test_the_download_process_checks_free_space_before_fetching(hub, tmp_path, capsys):
    import json

    from dynapose4d.weights import fetch as program

    code = program.run("zero123-xl", cache_dir=str(tmp_path / "cache"), endpoint=hub.url, free_bytes=1000)
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1 and [e["event"] for e in events] == ["checking", "plan", "error"]
    assert events[-1]["kind"] == "disk" and "not enough free disk space" in events[-1]["message"]
    assert not hub.fetched(ZERO123)  # refused before a single file
    assert program.run("zero123-xl", cache_dir=str(tmp_path / "cache"), endpoint=hub.url) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["total"] == events[1]["total"]


# -- the server's /v1/models ----------------------------------------------------------------------------


def test_the_models_list_says_state_licence_sizes_and_use(hub_server, hub):
    reply = hub_server.get("/v1/models")
    assert reply.status == 200
    body = reply.json()
    rows = {m["name"]: m for m in body["models"]}
    assert list(rows) == ["zero123-xl", "stable-zero123", "svd", "svd-xt", "poseanything"]
    z = rows["zero123-xl"]
    assert (z["state"], z["bytes_on_disk"], z["downloadable"]) == ("missing", 0, True)
    assert z["page_url"] == f"{hub.url}/{ZERO123}" and z["license"].startswith("MIT")
    assert z["download_bytes"] == get_spec("zero123-xl").approx_bytes and not z["download_bytes_exact"]
    assert rows["svd"]["gated"] and "Stability AI Community License" in rows["svd"]["license"]
    assert "Generate" in rows["svd"]["used_by"] and body["no_model_kinds"] == "Demo and Animate need no model"
    assert not rows["poseanything"]["downloadable"] and "convert" in rows["poseanything"]["how_to_get"]
    # The same access rules as the rest of the API.
    assert hub_server.get("/v1/models", auth=False).status == 401
    assert hub_server.get("/v1/models", headers={"Host": "evil.example:80"}).status == 403
    assert hub_server.get("/v1/models/nope").status == 404


def test_a_download_needs_the_licence_accepted_then_runs_on_the_server(hub_server, hub):
    refused = post_json(hub_server, "/v1/models/zero123-xl/download", {})
    assert refused.status == 422 and "accept the licence of Zero123-XL" in refused.detail and "MIT" in refused.detail
    assert post_json(hub_server, "/v1/models/zero123-xl/download", {"accept_license": True, "token": 5}).status == 400
    assert hub_server.post("/v1/models/zero123-xl/download/cancel").status == 409  # none runs
    started = post_json(hub_server, "/v1/models/zero123-xl/download", {"accept_license": True})
    assert started.status == 202 and started.json()["download"]["state"] in ("starting", "checking", "downloading", "done")
    entry = wait_download(hub_server, "zero123-xl")
    assert entry["download"]["state"] == "done", entry["download"]
    assert entry["state"] == "present" and entry["download_bytes_exact"]
    assert entry["download"]["done_bytes"] == entry["download"]["total_bytes"] == entry["download_bytes"]
    assert entry["bytes_on_disk"] >= entry["download_bytes"]
    assert post_json(hub_server, "/v1/models/poseanything/download", {"accept_license": True}).status == 409


def test_a_gated_download_takes_the_token_which_never_lands_on_disk(hub_server, hub, tmp_path, hf_home):
    post_json(hub_server, "/v1/models/svd/download", {"accept_license": True})
    failed = wait_download(hub_server, "svd")["download"]
    assert (failed["state"], failed["error_kind"]) == ("failed", "gated")
    assert "no Hugging Face token was given" in failed["error"] and "accept the licence" in failed["error"]
    post_json(hub_server, "/v1/models/svd/download", {"accept_license": True, "token": OTHER_TOKEN})
    assert "has not accepted" in wait_download(hub_server, "svd")["download"]["error"]
    post_json(hub_server, "/v1/models/svd/download", {"accept_license": True, "token": TOKEN})
    entry = wait_download(hub_server, "svd")
    assert entry["download"]["state"] == "done" and entry["state"] == "present"
    assert [r.token for r in hub.fetched(SVD)] and {r.token for r in hub.fetched(SVD)} == {TOKEN}
    # 1. Not in any answer.
    for path in ("/v1/models", "/v1/models/svd", "/v1/health", "/v1/jobs"):
        assert TOKEN not in hub_server.get(path).body.decode()
    hub_server.stop()
    # 2. Not in any file the server and its downloads wrote: jobs, address file, log, cache, HF_HOME.
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.parent.name == "blobs" for p in written) and hub_server.output in written
    assert [p for p in written if TOKEN.encode() in p.read_bytes()] == []


def test_a_cancelled_download_goes_on_from_its_complete_files(hub_server, hub, hf_home):
    name = "unet/diffusion_pytorch_model.safetensors"
    hub.slow(STABLE, name, 2 * 1024 * 1024)  # 24 MiB at 2 MiB/s: cancelled long before its end
    try:
        post_json(hub_server, "/v1/models/stable-zero123/download", {"accept_license": True})
        deadline = time.monotonic() + 60
        while not any(r.path.endswith(name) for r in hub.fetched(STABLE)):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)  # the small files finish meanwhile
        cancelled = hub_server.post("/v1/models/stable-zero123/download/cancel")
        assert cancelled.status == 200 and cancelled.json()["download"]["state"] == "cancelled"
        assert cancelled.json()["state"] == "partial"
        blobs = hf_home / "hub" / f"models--{STABLE.replace('/', '--')}" / "blobs"
        assert blobs.is_dir() and not list(blobs.glob("*.incomplete"))  # the cut-off file went with the process
    finally:
        hub.throttles.clear()
    post_json(hub_server, "/v1/models/stable-zero123/download", {"accept_license": True})
    entry = wait_download(hub_server, "stable-zero123")
    assert entry["download"]["state"] == "done" and entry["state"] == "present"
    assert entry["download"]["cached_bytes"] > 0  # the second download started from what the first left
    fetched = [r.path for r in hub.fetched(STABLE)]
    assert {p for p in fetched if fetched.count(p) > 1} == {f"/{STABLE}/resolve/{hub.repos[STABLE].sha}/{name}"}
