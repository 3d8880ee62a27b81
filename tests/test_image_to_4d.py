"""Image-to-4D on tiny random-weight models: generate and animate end to end, resume, the static
stage, PLY registration, and the errors a user sees."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.evaluation.articulated import make_articulated
from dynapose4d.cameras import Cameras
from dynapose4d.events import SnapshotEvent, StageEvent
from dynapose4d.gaussians import Z_UP_TO_Y_UP, Gaussians, transform_gaussians
from dynapose4d.imaging.images import ImageLoadError, ReferenceImage
from dynapose4d.io import read_ply, write_ply
from dynapose4d.io.sequence import read_sequence
from dynapose4d.evaluation.metrics import psnr
from dynapose4d.dynamic4d import Dynamic4D
from dynapose4d.weights import ModelNotFoundError
from dynapose4d.pipeline import JobError, run_job, write_job
from dynapose4d.render import render
from dynapose4d.pipeline.static_sources import PlyRegistration, register_gaussians
from dynapose4d.stages.static import StaticConfig, StaticStage

pytest_plugins = ["tests.conftest_models"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture(scope="module")
def lamp():
    return make_articulated("lamp", 1500)


def lamp_png(path: Path, lamp, size=160):
    with torch.no_grad():
        out = render(lamp.static, Cameras.orbit(0.0, 0.0, 2.0, width=size), 1.0)
    rgba = np.concatenate([out.rgb.numpy(), out.alpha.numpy()[..., None]], -1)
    Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").save(path)


def lamp_mp4(path: Path, lamp, frames=8, size=128):
    with torch.no_grad():
        rgb = render(lamp.gaussians_at(torch.linspace(0, 1, frames)), Cameras.orbit(0.0, 0.0, 2.0, width=size), 1.0).rgb.numpy()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 8, (size, size))
    for f in rgb:
        writer.write(cv2.cvtColor((f * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()


TINY = {"static_iterations": 3, "iterations": 2, "frames": 3, "previews": False, "svd_steps": 2, "svd_size": 64}


def test_generate_end_to_end_on_tiny_models(tmp_path, lamp, tiny_zero123, tiny_svd):
    (tmp_path / "inputs").mkdir()
    lamp_png(tmp_path / "inputs" / "lamp.png", lamp)
    settings = dict(TINY, zero123=str(tiny_zero123["zero123-xl"]), svd=str(tiny_svd))
    write_job(tmp_path, "generate", settings, {"image": "lamp.png"})
    events = []
    summary = run_job(tmp_path, events.append)
    assert summary["status"] == "finished" and summary["frames"] == 3
    stages = [(e.stage, e.status) for e in events if isinstance(e, StageEvent)]
    for stage in ("static", "video", "keypoints", "dynamic"):
        assert (stage, "started") in stages and (stage, "finished") in stages, stage
    assert any(isinstance(e, SnapshotEvent) and e.stage == "static" for e in events)
    model = Dynamic4D.load(tmp_path / "model.pt")
    assert model.num_frames == 3 and model.static.num == read_ply(tmp_path / "static.ply").num
    seq = read_sequence(tmp_path / "sequence" / "sequence.json")
    assert seq["frame_count"] == 3 and all(p.exists() for p in seq["paths"])
    reference = ReferenceImage.load(tmp_path / "reference")
    assert reference.image.shape == (256, 256, 3)
    # The default keypoint tracker is no CAPE estimator: no multi-view keypoints, no refinement.
    assert ("multiview_keypoints", "started") not in stages
    assert not (tmp_path / "keypoints" / "views.npz").exists() and "multiview_keypoints" not in model.info


def test_generate_stops_and_resumes(tmp_path, lamp, tiny_zero123, tiny_svd):
    (tmp_path / "inputs").mkdir()
    lamp_png(tmp_path / "inputs" / "lamp.png", lamp)
    settings = dict(TINY, static_iterations=4, zero123=str(tiny_zero123["zero123-xl"]), svd=str(tiny_svd))
    write_job(tmp_path, "generate", settings, {"image": "lamp.png"})
    calls = {"n": 0}

    def stop_soon():
        calls["n"] += 1
        return calls["n"] > 4  # during the static stage

    assert run_job(tmp_path, should_stop=stop_soon) == {"status": "stopped", "stage": "static"}
    assert (tmp_path / "checkpoints" / "static.pt").exists() and not (tmp_path / "static.ply").exists()
    events = []
    assert run_job(tmp_path, events.append)["status"] == "finished"
    started = next(e for e in events if isinstance(e, StageEvent) and e.stage == "static")
    assert started.message == "from iteration 2"  # it picked up where it stopped


def test_missing_model_is_an_actionable_error(tmp_path, lamp, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("DYNAPOSE4D_ZERO123", raising=False)
    (tmp_path / "inputs").mkdir()
    lamp_png(tmp_path / "inputs" / "lamp.png", lamp)
    write_job(tmp_path, "generate", TINY, {"image": "lamp.png"})
    with pytest.raises(ModelNotFoundError) as err:
        run_job(tmp_path)
    message = str(err.value)
    assert "zero123-xl" in message and "dynapose4d models download" in message and "DYNAPOSE4D_ZERO123" in message


def test_animate_end_to_end_from_a_z_up_ply_and_a_video(tmp_path, lamp):
    (tmp_path / "inputs").mkdir()
    write_ply(tmp_path / "inputs" / "lamp.ply", transform_gaussians(lamp.static, Z_UP_TO_Y_UP.T))  # as Blender writes it
    lamp_mp4(tmp_path / "inputs" / "clip.mp4", lamp)
    write_job(tmp_path, "animate", {"up_axis": "z", "iterations": 3, "frames": 4, "previews": False}, {"ply": "lamp.ply", "video": "clip.mp4"})
    summary = run_job(tmp_path)
    assert summary["status"] == "finished" and summary["frames"] == 4
    model = Dynamic4D.load(tmp_path / "model.pt")
    # Registered back to +Y up: the lamp's head (highest part) is up again.
    assert model.static.means[:, 1].max() > 0.3 and model.static.means[:, 2].abs().max() < 0.3
    registration = json.loads((tmp_path / "registration.json").read_text())
    assert registration["scale"] == pytest.approx(1.0, abs=0.05)


def test_registration_turns_the_chosen_view_to_the_front():
    marker = torch.tensor([[0.4, 0.0, 0.0], [-0.4, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.05]])
    g = Gaussians.from_points(marker + torch.tensor([1.0, 2.0, 3.0]), torch.ones(4, 3), 0.01, 0.9)  # off-centre
    moved, info = register_gaussians(g, PlyRegistration(azimuth=90.0, radius=0.5))
    # The camera at azimuth 90 (on +X) becomes the input view on +Z: the +X marker faces it.
    assert moved.means[0, 2] > 0.45 and moved.means[1, 2] < -0.45
    across = moved.means[0] - moved.means[1]  # from the -X marker to the +X one: now along +Z
    assert across[2] > 0.9 and across[:2].abs().max() < 1e-5
    assert info["scale"] == pytest.approx(0.5 / 0.4, rel=0.05)
    up, _ = register_gaussians(g, PlyRegistration(elevation=30.0, radius=0.5))
    # The view from 30 degrees above becomes the front view: the object's top tilts towards it.
    v = up.means[2] - 0.5 * (up.means[0] + up.means[1])  # the (0, 0.1, 0) marker's offset
    assert v[2] > 0 and float(v[1] / v[2]) == pytest.approx(1 / math.tan(math.radians(30.0)), rel=1e-4)


def test_static_stage_fits_the_reference_view_and_resumes_exactly(tmp_path, lamp):
    with torch.no_grad():
        out = render(lamp.static, Cameras.orbit(0.0, 0.0, 2.0, width=64), 1.0)
    ref = ReferenceImage(out.rgb, out.alpha)
    cfg = StaticConfig(iterations=40, resolution=64, num_points=800, densify_from=10, densify_until=30, densify_every=10, grad_threshold=0.002)
    cam = Cameras.orbit(0.0, 0.0, 2.0)
    stage = StaticStage(cfg, ref, cam)
    before = psnr(render(stage.gaussians.detach(), stage.camera, 1.0).rgb, out.rgb)
    sizes = []
    stage.run(lambda e: sizes.append(e.losses["gaussians"]) if hasattr(e, "losses") else None)
    after = psnr(render(stage.result(), stage.camera, 1.0).rgb, out.rgb)
    assert after > before + 8, (before, after)
    assert len(set(sizes)) > 1  # densification changed the model

    ckpt = tmp_path / "static.pt"
    first = StaticStage(cfg, ref, cam)
    assert first.run(should_stop=lambda: first.step >= 25, checkpoint_path=ckpt) == "stopped"
    resumed = StaticStage(cfg, ref, cam)
    resumed.load_checkpoint(ckpt)
    resumed.run()
    for name, t in stage.result().tensors().items():
        assert torch.equal(t, resumed.result().tensors()[name]), name


def test_bad_job_inputs_are_named(tmp_path, lamp):
    (tmp_path / "inputs").mkdir()
    with pytest.raises(JobError, match="needs an 'image' input"):
        write_job(tmp_path, "generate", {}, {})
    (tmp_path / "inputs" / "notes.txt").write_text("hello")
    with pytest.raises(JobError, match="should be one of .png"):
        write_job(tmp_path, "generate", {}, {"image": "notes.txt"})
    with pytest.raises(JobError, match="is not a file in the job's inputs"):
        write_job(tmp_path, "generate", {}, {"image": "../secret.png"})
    with pytest.raises(JobError, match="takes no 'audio' input"):
        write_job(tmp_path, "generate", {}, {"image": "x.png", "audio": "a.wav"})
    with pytest.raises(JobError, match="'preset' must be one of"):
        write_job(tmp_path, "generate", {"preset": "ultra"}, {})
    (tmp_path / "inputs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    write_job(tmp_path, "generate", TINY, {"image": "broken.png"})
    with pytest.raises(ImageLoadError):
        run_job(tmp_path)


def test_presets_are_the_documented_ones():
    from dynapose4d.pipeline import PRESETS

    assert PRESETS["standard"].static_iterations == 500 and PRESETS["standard"].dynamic_iterations == 500  # the paper
    assert PRESETS["high"].svd == "svd-xt"
    assert PRESETS["low-vram"].low_vram and PRESETS["low-vram"].frames_per_step > 0
    assert math.isfinite(PRESETS["fast"].static_iterations)
