"""``dynapose4d batch`` (issue 19) without a server: manifests in JSON lines and CSV, bad lines
reported with their line numbers and skipped, jobs run here into the batch folder, a second run
that does nothing, and a failed job that does not stop the others and runs again next time. (On a
Ray-backed server: test_cluster.py.)"""

import json
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
