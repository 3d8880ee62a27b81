"""``dynapose4d batch`` (issue 19) without a server: manifests in JSON lines and CSV, bad lines
reported with their line numbers and skipped, jobs run here into the batch folder, a second run
that does nothing, and a failed job that does not stop the others and runs again next time. (On a
Ray-backed server: test_cluster.py.)"""

import json
import os
import subprocess
import sys

import pytest

from dynapose4d.cli.batch import BatchState, read_manifest, run_batch
from tests.server_fixtures import ROOT, TINY


@pytest.fixture
def inputs(tmp_path):
    art = tmp_path / "art"
    art.mkdir()
    (art / "lamp.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # checked for existence and suffix only
    (art / "notes.txt").write_text("not an image")
    return art


def test_json_lines_manifest_with_bad_lines(tmp_path, inputs):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("\n".join([
        "# a comment, then a blank line",
        "",
        json.dumps({"name": "a", "kind": "generate", "inputs": {"image": "art/lamp.png"}, "settings": {"preset": "fast"}}),
        json.dumps({"kind": "demo", "settings": {"iterations": 3}}),
        json.dumps({"kind": "paint"}),
        "{not json",
        json.dumps({"name": "b", "kind": "generate", "inputs": {"image": "art/missing.png"}}),
        json.dumps({"name": "c", "kind": "generate", "inputs": {"image": "art/notes.txt"}}),
        json.dumps({"name": "d", "kind": "generate"}),
        json.dumps({"name": "a", "kind": "demo"}),
        json.dumps({"name": "e", "kind": "demo", "settings": {"iterations": 0}}),
        json.dumps({"name": "f", "kind": "demo", "inputs": {"image": "art/lamp.png"}}),
        json.dumps({"name": "g", "kind": "demo", "priority": 1}),
        json.dumps({"name": "../up", "kind": "demo"}),
    ]) + "\n")
    jobs, bad = read_manifest(manifest)
    assert [(j.line, j.name, j.kind) for j in jobs] == [(3, "a", "generate"), (4, jobs[1].name, "demo")]
    assert jobs[0].inputs == {"image": (inputs / "lamp.png").resolve()} and jobs[0].settings == {"preset": "fast"}
    assert jobs[1].name.startswith("demo-")
    errors = {b.line: b.error for b in bad}
    assert sorted(errors) == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert "unknown job kind 'paint'" in errors[5]
    assert "not a JSON object" in errors[6]
    assert "missing.png is not a file" in errors[7]
    assert "notes.txt should be one of" in errors[8]
    assert "needs an 'image' input" in errors[9]
    assert "already used on line 3" in errors[10]
    assert "iterations" in errors[11]
    assert "takes no 'image' input" in errors[12]
    assert "unknown field(s) priority" in errors[13]
    assert "cannot be a folder name" in errors[14]
    # A derived name depends on what the job is, so the same line gets the same name again.
    assert read_manifest(manifest)[0][1].name == jobs[1].name


def test_csv_manifest(tmp_path, inputs):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        "name,kind,image,settings\n"
        'lamp,generate,art/lamp.png,"{""preset"": ""fast""}"\n'
        "quick,demo,,\n"
        "broken,demo,,{oops\n"
        "short,demo\n"
    )
    jobs, bad = read_manifest(manifest)
    assert [(j.line, j.name) for j in jobs] == [(2, "lamp"), (3, "quick")]
    assert jobs[0].settings == {"preset": "fast"} and jobs[1].inputs == {}
    assert [(b.line, b.error.split(":")[0]) for b in bad] == [(4, "the settings column is not JSON"), (5, "2 fields where the header has 4")]
    (tmp_path / "x.yaml").write_text("")
    with pytest.raises(ValueError, match="JSON lines .* or CSV"):
        read_manifest(tmp_path / "x.yaml")


def test_a_batch_run_here_then_again(tmp_path, capsys):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"name": "lamp", "kind": "demo", "settings": TINY}),
        json.dumps({"name": "bad", "kind": "demo", "settings": dict(TINY, frames=1)}),
        json.dumps({"name": "swing", "kind": "demo", "settings": dict(TINY, motion="swing")}),
    ]) + "\n")
    out = tmp_path / "batch"
    summary = run_batch(manifest, out)
    assert summary["counts"] == {"done": 2, "failed": 0, "active": 0, "skipped": 0, "bad_lines": 1}
    assert summary["bad_lines"][0]["line"] == 2 and "frames" in summary["bad_lines"][0]["error"]
    for job in summary["jobs"]:
        assert job["status"] == "done" and job["seconds"] > 0 and job["folder"] == str(out / job["name"])
        assert (out / job["name"] / "sequence" / "sequence.json").exists()
    text = capsys.readouterr().err
    assert "line 2" in text and "lamp (line 1): done" in text and "swing" in text
    mtimes = {n: (out / n / "model.pt").stat().st_mtime_ns for n in ("lamp", "swing")}
    # Again: nothing runs (the models are untouched), both are reported as done earlier.
    again = run_batch(manifest, out)
    assert again["counts"]["skipped"] == 2 and again["counts"]["done"] == 2
    assert {n: (out / n / "model.pt").stat().st_mtime_ns for n in ("lamp", "swing")} == mtimes
    assert "earlier run" in capsys.readouterr().out


def test_a_failed_job_does_not_stop_the_batch_and_is_retried_next_time(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"name": "first", "kind": "demo", "settings": TINY}) + "\n"
                        + json.dumps({"name": "second", "kind": "demo", "settings": dict(TINY, seed=3)}) + "\n")
    out = tmp_path / "batch"
    # The first job's folder holds a job.json that its run refuses (as if edited by hand).
    (out / "first").mkdir(parents=True)
    (out / "first" / "job.json").write_text(json.dumps({"kind": "demo", "settings": {"iterations": -1}, "inputs": {}}))
    summary = run_batch(manifest, out)
    jobs = {j["name"]: j for j in summary["jobs"]}
    assert jobs["first"]["status"] == "failed" and "'iterations' must be >= 1" in jobs["first"]["error"]
    assert jobs["second"]["status"] == "done"
    assert BatchState(out).jobs["first"]["status"] == "failed"
    # Fixed, the next run resumes the failed job only.
    (out / "first" / "job.json").unlink()
    again = run_batch(manifest, out)
    assert [(j["name"], j["status"], j["skipped"]) for j in again["jobs"]] == [("first", "done", False), ("second", "done", True)]


def test_the_command_line(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"kind": "demo", "settings": {"iterationz": 3}}) + "\n")
    done = subprocess.run([sys.executable, "-m", "dynapose4d", "batch", str(manifest), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "line 1" in done.stderr and "iterationz" in done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["counts"]["bad_lines"] == 1


# -- hostile manifests and state files (issue 27, findings 4, 5 and 9) --------------------------


def _in_time(seconds: float, fn, *args):
    """``fn(*args)`` in a thread that must finish within ``seconds`` (a hang fails the test
    instead of blocking the suite); returns its result or raises its exception."""
    import threading

    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} did not finish within {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_bad_line_is_reported_by_number_and_the_others_still_run(tmp_path):
    """Before: {"kind": ["demo"]} raised TypeError and a line nested 100,000 deep a
    RecursionError, so no line ran; a name of 1,000,000 characters took minutes."""
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"name": "good1", "kind": "demo"}),
        json.dumps({"kind": ["demo"]}),
        '{"name": "deep", "settings": ' + "[" * 100_000 + "]" * 100_000 + "}",
        json.dumps({"name": "n" * 1_000_000, "kind": "demo"}),
        json.dumps({"name": "n" * 100_000, "kind": "demo"})[:60_000],
        json.dumps({"name": "x", "kind": "generate", "inputs": {"image": {"path": "a.png"}}}),
        json.dumps({"name": "bell\a", "kind": "demo"}),
        json.dumps({"name": "[bold]markup[/bold]", "kind": "demo", "priority": "[red]x"}),
        json.dumps({"name": "good2", "kind": "demo"}),
    ]) + "\n")
    jobs, bad = _in_time(10, read_manifest, manifest)
    assert [j.name for j in jobs] == ["good1", "good2"]
    errors = {b.line: b.error for b in bad}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8]
    assert "unknown job kind ['demo']" in errors[2]
    assert "longer than 64 KiB" in errors[3] and "longer than 64 KiB" in errors[4]  # the server's field limit
    assert "has 100,000 characters" in errors[5] or "not a JSON object" in errors[5]
    assert "must be a file path" in errors[6] and "cannot be a folder name" in errors[7]
    assert all(len(e) <= 500 for e in errors.values())
    nested = tmp_path / "nested.jsonl"
    nested.write_text('{"name": "deep", "settings": ' + "[" * 5_000 + "]" * 5_000 + "}\n" + json.dumps({"kind": "demo"}) + "\n")
    jobs, bad = _in_time(10, read_manifest, nested)
    assert len(jobs) == 1 and "levels deep" in bad[0].error  # the server's JSON depth limit
    long_name = tmp_path / "long.jsonl"
    long_name.write_text(json.dumps({"name": "n" * 10_000, "kind": "demo"}) + "\n")
    assert "has 10,000 characters; at most 128" in _in_time(10, read_manifest, long_name)[1][0].error


def test_a_csv_field_over_the_csv_limit_is_one_bad_line(tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("name,kind,settings\n" + "a,demo,\n" + "b,demo," + "x" * 140_000 + "\n" + '"c,demo\n' + "d,demo,\n")
    jobs, bad = _in_time(10, read_manifest, manifest)  # was _csv.Error: field larger than field limit (131072)
    assert [j.name for j in jobs] == ["a", "d"] and [b.line for b in bad] == [3, 4]
    assert "longer than 64 KiB" in bad[0].error


def test_a_manifest_must_be_a_regular_file_of_bounded_size(tmp_path):
    """A link to /dev/zero read 3.1 GB in 2 s; a FIFO blocked for ever."""
    (tmp_path / "zero.jsonl").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="not a regular file"):
        _in_time(5, read_manifest, tmp_path / "zero.jsonl")
    os.mkfifo(tmp_path / "fifo.jsonl")
    with pytest.raises(ValueError, match="not a regular file"):
        _in_time(5, read_manifest, tmp_path / "fifo.jsonl")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match="not a regular file|cannot read"):
        _in_time(5, read_manifest, tmp_path / "dir.csv")
    with open(tmp_path / "huge.jsonl", "wb") as fh:
        fh.truncate(17 * 2**20)  # sparse
    with pytest.raises(ValueError, match="larger than 16 MiB"):
        _in_time(5, read_manifest, tmp_path / "huge.jsonl")


def test_a_link_to_a_file_outside_the_manifests_folder_is_refused(tmp_path):
    """x.png -> /etc/shadow passed the .png check and was uploaded as "shadow"."""
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    folder = tmp_path / "batch"
    (folder / "art").mkdir(parents=True)
    (folder / "art" / "lamp.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / "x.png").symlink_to(secret)
    (folder / "inside.png").symlink_to(folder / "art" / "lamp.png")  # a link that stays inside is fine
    (folder / "renamed.png").symlink_to(folder / "art")  # a folder is not a file
    manifest = folder / "jobs.jsonl"
    manifest.write_text("\n".join(json.dumps({"name": n, "kind": "generate", "inputs": {"image": f}})
                                  for n, f in [("a", "x.png"), ("b", "inside.png"), ("c", "renamed.png")]) + "\n")
    jobs, bad = read_manifest(manifest)
    assert [j.name for j in jobs] == ["b"] and jobs[0].inputs["image"] == (folder / "art" / "lamp.png").resolve()
    assert "x.png is a link to a file outside the manifest's folder" in bad[0].error and "secret" not in bad[0].error
    assert "is not a file" in bad[1].error


@pytest.mark.parametrize("content", ["[]", "{\"jobs\": []}", "not json", "{\"jobs\": {\"a\": {\"server_job\": \"../../x\", \"status\": [1]}}}"])
def test_a_bad_state_file_is_reported_and_set_aside(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch-state.json").write_text(content)
    state = BatchState(out)  # was AttributeError for "[]"
    if content.startswith('{"jobs": {'):  # a readable state: its bad fields are dropped, not trusted
        assert state.warning is None and state.jobs == {"a": {}}
        return
    assert state.jobs == {} and "is not a batch state" in state.warning
    aside = list(out.glob("batch-state.json.bad-*"))
    assert len(aside) == 1 and aside[0].read_text() == content and not (out / "batch-state.json").exists()


def test_the_command_line_with_hostile_lines_and_state(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"kind": ["demo"]}) + "\n" + json.dumps({"name": "n" * 100_000, "kind": "demo"}) + "\n"
                        + json.dumps({"name": "[red]x[/red]", "kind": "dem[o"}) + "\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "batch-state.json").write_text("[]")
    done = subprocess.run([sys.executable, "-m", "dynapose4d", "batch", str(manifest), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "COLUMNS": "400"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "line 1" in done.stderr and "line 2" in done.stderr and "line 3" in done.stderr and "set aside" in done.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["counts"]["bad_lines"] == 3
