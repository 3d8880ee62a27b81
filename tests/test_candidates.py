"""Driving-video candidates of ``generate`` on tiny random-weight models: K SVD videos kept with
their scores and previews, the best chosen, a job that waits for a choice, and a later choice
that re-runs the dynamic stage from the chosen video (CLI included).

The scorer is passed in (a plain motion measure), so these tests pin the plumbing, not the
scorer's numbers (tests/test_videoscore.py does those)."""

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass

import numpy as np
import pytest
from PIL import Image

from dynapose4d.dynamic4d import Dynamic4D
from dynapose4d.events import StageEvent
from dynapose4d.pipeline import JobFolder, run_job, write_job
from dynapose4d.pipeline import candidates as cand
from dynapose4d.guidance.svd import SVDConfig
from dynapose4d.video.clip import DrivingVideo
from tests.test_image_to_4d import TINY, lamp, lamp_png  # noqa: F401 (fixture)

pytest_plugins = ["tests.conftest_models"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@dataclass(frozen=True)
class FakeScore:
    total: float
    object_motion: float

    def to_dict(self):
        return asdict(self)


SCORED = []


def motion_scorer(video, reference_rgb, reference_mask=None):
    """Mean absolute frame-to-frame change: more change scores higher."""
    SCORED.append(video.num_frames)
    f = video.frames.numpy()
    motion = float(np.abs(np.diff(f, axis=0)).mean())
    return FakeScore(total=motion, object_motion=motion)


@pytest.fixture
def fake_scorer(monkeypatch):
    SCORED.clear()
    monkeypatch.setattr(cand, "_default_scorer", lambda: motion_scorer)
    return motion_scorer


def test_candidate_specs_vary_seed_and_motion_bucket():
    specs = cand.candidate_specs(SVDConfig(seed=5, motion_bucket_id=127), 3)
    assert [(s.index, s.seed, s.motion_bucket) for s in specs] == [(0, 5, 127), (1, 6, 76), (2, 7, 178)]
    assert cand.candidate_specs(SVDConfig(seed=2**31 - 1, motion_bucket_id=250), 3)[2] == cand.CandidateSpec(2, 1, 255)
    with pytest.raises(cand.CandidateError, match="video_candidates must be 1..8"):
        cand.candidate_specs(SVDConfig(), 9)


def _job(tmp_path, lamp, tiny_zero123, tiny_svd, **settings):
    (tmp_path / "inputs").mkdir()
    lamp_png(tmp_path / "inputs" / "lamp.png", lamp)
    settings = dict(TINY, zero123=str(tiny_zero123["zero123-xl"]), svd=str(tiny_svd), **settings)
    write_job(tmp_path, "generate", settings, {"image": "lamp.png"})
    return JobFolder(tmp_path)


def test_generate_keeps_scored_candidates_and_drives_with_the_best(tmp_path, lamp, tiny_zero123, tiny_svd, fake_scorer):
    folder = _job(tmp_path, lamp, tiny_zero123, tiny_svd, video_candidates=3)
    events = []
    summary = run_job(tmp_path, events.append)
    assert summary["status"] == "finished"
    listed = cand.list_candidates(folder)
    assert [c["index"] for c in listed] == [0, 1, 2] and len(SCORED) == 3
    assert len({(c["seed"], c["motion_bucket"]) for c in listed}) == 3
    totals = [c["score"]["total"] for c in listed]
    best = int(np.argmax(totals))
    assert [c["chosen"] for c in listed] == [k == best for k in range(3)]
    choice = cand.read_choice(folder)
    assert choice["by"] == "auto" and choice["totals"] == {str(k): totals[k] for k in range(3)}
    for k in range(3):
        strip = Image.open(folder.candidate_preview(k))
        assert strip.size == (cand.PREVIEW_SIZE * 3, cand.PREVIEW_SIZE)  # 3 frames (TINY), one tile each
        assert DrivingVideo.load(folder.candidate(k)).num_frames == 3
    # The job's video is the chosen candidate, pixel for pixel, and says so.
    video, chosen = DrivingVideo.load(folder.video), DrivingVideo.load(folder.candidate(best))
    assert np.array_equal(video.frames.numpy(), chosen.frames.numpy()) and video.meta["candidate"] == best
    finished = [e for e in events if isinstance(e, StageEvent) and e.stage == "candidates" and e.status == "finished"]
    assert finished and f"candidate {best} of 3" in finished[0].message
    # Run again: nothing is generated or scored twice.
    assert run_job(tmp_path)["status"] == "finished" and len(SCORED) == 3


def test_ask_waits_then_a_choice_reruns_the_dynamic_stage_from_that_video(tmp_path, lamp, tiny_zero123, tiny_svd, fake_scorer):
    folder = _job(tmp_path, lamp, tiny_zero123, tiny_svd, video_candidates=2, choose_video="ask")
    assert run_job(tmp_path) == {"status": "waiting", "stage": "candidates"}
    assert len(cand.list_candidates(folder)) == 2 and cand.read_choice(folder) is None
    assert not folder.video_file.exists() and not folder.model.exists()
    assert run_job(tmp_path)["status"] == "waiting" and len(SCORED) == 2  # still waiting, nothing redone
    with pytest.raises(cand.CandidateError, match="there is no candidate 5; this job has candidates 0..1"):
        cand.choose(folder, 5)
    cand.choose(folder, 1)
    assert run_job(tmp_path)["status"] == "finished"
    assert DrivingVideo.load(folder.video).meta["candidate"] == 1
    first_model = Dynamic4D.load(folder.model)
    # Choosing the other one clears what came from the video (not the static model) and re-runs.
    static_mtime = folder.static.stat().st_mtime_ns
    cand.choose(folder, 0)
    assert not folder.model.exists() and not folder.track.exists() and not folder.video_file.exists()
    assert folder.candidate_score(1).exists() and folder.static.exists()
    assert run_job(tmp_path)["status"] == "finished"
    assert DrivingVideo.load(folder.video).meta["candidate"] == 0 and folder.static.stat().st_mtime_ns == static_mtime
    assert Dynamic4D.load(folder.model).num_frames == first_model.num_frames


def test_one_candidate_is_the_plain_pipeline_and_is_not_scored(tmp_path, lamp, tiny_zero123, tiny_svd, fake_scorer):
    folder = _job(tmp_path, lamp, tiny_zero123, tiny_svd, video_candidates=1, seed=3, motion_bucket=90)
    assert run_job(tmp_path)["status"] == "finished"
    (only,) = cand.list_candidates(folder)
    assert only["score"] is None and only["chosen"] and (only["seed"], only["motion_bucket"]) == (3, 90) and SCORED == []


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "dynapose4d", *args], capture_output=True, text=True, timeout=600, env=env)


def test_cli_lists_candidates_and_continues_from_a_chosen_one(tmp_path, lamp, tiny_zero123, tiny_svd):
    folder = _job(tmp_path, lamp, tiny_zero123, tiny_svd, video_candidates=1, choose_video="ask")
    assert run_job(tmp_path)["status"] == "waiting"
    listing = _cli("candidates", str(tmp_path))
    assert listing.returncode == 0, listing.stderr
    assert "candidate 0" in listing.stdout and "waiting for a choice" in listing.stdout
    bad = _cli("candidates", str(tmp_path), "--choose", "3")
    assert bad.returncode == 1 and "there is no candidate 3" in bad.stderr and "Traceback" not in bad.stderr
    chosen = _cli("candidates", str(tmp_path), "--choose", "0")
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout.splitlines()[-1][7:])["status"] == "finished"
    assert cand.read_choice(folder)["by"] == "user" and folder.sequence_file.exists()
    none = _cli("candidates", str(tmp_path / "inputs"))
    assert none.returncode == 1 and "is not a job folder" in none.stderr  # issue 27: it said "has no video candidates"
