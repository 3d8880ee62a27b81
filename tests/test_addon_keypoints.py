"""The add-on's keypoint-estimator choice: what a job request sends (no bpy needed)."""

import pytest

from blender_addon.link import job_settings
from blender_addon.link.jobs import JobOptions, JobRequestError, build_request


def test_estimator_choices_are_the_backends():
    from dynapose4d import pipeline

    for kind in ("generate", "animate"):
        declared = {s.name: s for s in pipeline.SETTINGS[kind]}
        assert set(declared["estimator"].choices) == set(job_settings.choices("estimator"))
        assert job_settings.row("estimator").default == declared["estimator"].default
        assert job_settings.row("keypoint_weights").default == declared["keypoint_weights"].default


def test_request_carries_the_estimator_and_its_weights(tmp_path):
    ply, video = tmp_path / "a.ply", tmp_path / "v.mp4"
    ply.write_bytes(b"x")
    video.write_bytes(b"x")
    options = JobOptions(kind="animate", settings={"estimator": "cape+tracker", "keypoint_weights": "/models/poseanything"},
                         ply_path=str(ply), video_path=str(video))
    request = build_request(options)
    assert request.settings["estimator"] == "cape+tracker"
    assert request.settings["keypoint_weights"] == "/models/poseanything"
    options.settings["keypoint_weights"] = ""
    assert "keypoint_weights" not in build_request(options).settings  # the backend's default location
    options.settings["estimator"] = "posenet"
    with pytest.raises(JobRequestError, match=r"Keypoints \(estimator\) must be one of tracker, .*; got 'posenet'"):
        build_request(options)
    # The backend validates the same request.
    from dynapose4d.pipeline import validate_settings

    options.settings["estimator"] = "poseanything"
    assert validate_settings("animate", build_request(options).settings)["estimator"] == "poseanything"
