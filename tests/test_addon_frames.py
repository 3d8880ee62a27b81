"""The add-on's side of video inputs and timing, without Blender: a folder of frames becomes a
zip the real server accepts (and extracts), the new settings reach the request, and the clip's
own length at the scene's fps is what "Length of the Video" imports."""

import zipfile

import pytest

from blender_addon.format.sequence import Sampling
from blender_addon.link.client import BackendClient
from blender_addon.link.follow import JobView
from blender_addon.link.jobs import JobOptions, JobRequestError, build_request, zip_frames
from tests.test_frame_inputs import write_frames

pytest_plugins = ["tests.server_fixtures"]


def test_a_frame_folder_is_zipped_in_natural_order_without_other_files(tmp_path):
    write_frames(tmp_path / "clip", count=11, size=32)
    (tmp_path / "clip" / "notes.txt").write_text("not a frame")
    (tmp_path / "clip" / "sub").mkdir()
    path = zip_frames(str(tmp_path / "clip"), str(tmp_path))
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [f"shot{i}.png" for i in range(11)]
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobRequestError, match="holds no frames"):
        zip_frames(str(tmp_path / "empty"), str(tmp_path))


def test_the_request_sends_a_folder_as_a_zip_with_its_fps_and_the_candidate_settings(tmp_path):
    write_frames(tmp_path / "clip", count=3, size=32)
    (tmp_path / "m.ply").write_bytes(b"ply")
    request = build_request(JobOptions(kind="animate", settings={"video_fps": 12.0}, ply_path=str(tmp_path / "m.ply"),
                                       video_path=str(tmp_path / "clip")), str(tmp_path / "tmp"))
    assert request.files["video"].endswith("clip.zip") and request.settings["video_fps"] == 12.0
    (tmp_path / "i.png").write_bytes(b"x")
    gen = build_request(JobOptions(kind="generate", settings={"video_candidates": 3, "choose_video": "ask"},
                                   image_path=str(tmp_path / "i.png")))
    assert gen.settings["video_candidates"] == 3 and gen.settings["choose_video"] == "ask" and "video_fps" not in gen.settings
    with pytest.raises(JobRequestError, match=r"Choose Video \(choose_video\) must be one of auto, ask; got 'later'"):
        build_request(JobOptions(kind="generate", settings={"choose_video": "later"}, image_path=str(tmp_path / "i.png")))


def test_the_server_takes_the_add_ons_zip(upload_server, tmp_path):
    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.io import write_ply

    write_frames(tmp_path / "clip", count=4, size=64)
    write_ply(tmp_path / "lamp.ply", make_articulated("lamp", 300).static)
    request = build_request(JobOptions(kind="animate", settings={"video_fps": 10.0}, ply_path=str(tmp_path / "lamp.ply"),
                                       video_path=str(tmp_path / "clip")), str(tmp_path / "tmp"))
    client = BackendClient(upload_server.url, upload_server.token)
    job = client.create_job(request.kind, request.settings, request.files)
    assert job["inputs"]["video"]["file"] == "video_frames" and job["settings"]["video_fps"] == 10.0
    assert len(list((upload_server.jobs_dir / job["id"] / "inputs" / "video_frames").iterdir())) == 4


def test_the_clip_length_at_the_scene_fps():
    s = Sampling(24.0, 48, mode="loop")
    clip = s.for_clip(0.5)
    assert (clip.fps, clip.frame_count, clip.mode) == (24.0, 13, "loop")  # 0, 1/24, ..., 12/24 s
    assert s.for_clip(13 / 7).frame_count == 45  # SVD's 14 frames at 7 fps: 1.857 s
    assert s.for_clip(0.0).frame_count == 2
    view = JobView()
    view.apply_event("snapshot", {"version": 3, "duration_s": 1.5})
    assert view.clip_duration_s == 1.5 and view.snapshot_version == 3
    view.apply_status({"state": "waiting", "snapshot": {"version": 4, "duration_s": 2.0}})
    assert view.clip_duration_s == 2.0 and view.final  # waiting: the worker has exited
