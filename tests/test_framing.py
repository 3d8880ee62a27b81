"""One framing for the model and the driving video, and results back in the user's frame.

The job-level tests run ``animate``/``generate`` through ``run_job`` on files and check the
products with the old interfaces only (register_gaussians, the renderer, the saved PNGs and
PLYs), so they say the same thing about any version of the pipeline.
"""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.evaluation.articulated import make_articulated
from dynapose4d.cameras import Cameras, orbit_c2w
from dynapose4d.events import LogEvent, StageEvent
from dynapose4d.gaussians import Z_UP_TO_Y_UP, Gaussians, transform_gaussians
from dynapose4d.io import read_ply, write_ply
from dynapose4d.io.sequence import read_sequence
from dynapose4d.dynamic4d import Dynamic4D
from dynapose4d.pipeline import run_job, write_job
from dynapose4d.render import render
from dynapose4d.video.clip import VideoSource
from dynapose4d.pipeline.static_sources import PlyRegistration, reference_camera, register_gaussians

from tests.test_image_to_4d import lamp, lamp_png  # noqa: E402,F401 (lamp is a fixture)

pytest_plugins = ["tests.conftest_models"]

USER_SCALE = 1.7  # the PLY's units per backend unit: its extent is far from the registered 0.5
USER_OFFSET = torch.tensor([0.8, -0.3, 1.2])  # off-centre (in the +Y-up version of the file)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def iou(a, b):
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    return float((a & b).sum() / (a | b).sum())


def user_ply(path: Path, lamp) -> Gaussians:
    """The lamp as a Blender user's file: scaled, off-centre, +Z up. Returns it +Y up."""
    g = transform_gaussians(lamp.static, torch.eye(3), USER_OFFSET, USER_SCALE)
    write_ply(path, transform_gaussians(g, Z_UP_TO_Y_UP.T))
    return g


def camera_on(g_yup: Gaussians, elevation, azimuth, distance, size, look_offset=(0.0, 0.0, 0.0)) -> Cameras:
    """An orbit camera around the file's object (its box centre, as the registration takes it),
    ``distance`` away, looking at the centre plus ``look_offset`` (an off-centre frame)."""
    core = g_yup.means[g_yup.opacities > 0.2]
    centre = 0.5 * (core.amin(0) + core.amax(0))
    c2w = orbit_c2w(elevation, azimuth, distance)
    c2w[:3, 3] += centre + torch.tensor(look_offset)
    return Cameras(c2w, torch.tensor(math.radians(49.1)), size, size)


def write_mp4(path: Path, frames: np.ndarray, fps: float = 8.0) -> None:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()


def support_render(ply: Path, up_axis="z", elevation=0.0, azimuth=0.0):
    reg = PlyRegistration(up_axis=up_axis, elevation=elevation, azimuth=azimuth)
    moved, _ = register_gaussians(read_ply(ply, up_axis=up_axis), reg)
    with torch.no_grad():
        return render(moved, reference_camera(256), 1.0)


def mask_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), np.float32) / 255


# -------------------------------------------------------------------------------------------------
# item 1 / 6: the support render and frame 0 of a user's video agree


def test_support_render_and_frame0_of_a_cropped_user_video_agree(tmp_path, lamp):
    (tmp_path / "inputs").mkdir()
    g = user_ply(tmp_path / "inputs" / "scene.ply", lamp)
    # The user's video: the same object from the same view, but framed their way: closer (the
    # object fills more of the frame) and off centre.
    cam = camera_on(g, 0.0, 0.0, 1.55 * USER_SCALE, 224, look_offset=(0.12, -0.1, 0.0))
    with torch.no_grad():
        moving = lamp.gaussians_at(torch.linspace(0, 1, 4))
        moving = transform_gaussians(moving, torch.eye(3), USER_OFFSET, USER_SCALE)
        rgb = render(moving, cam, 1.0).rgb.numpy()
    write_mp4(tmp_path / "inputs" / "clip.mp4", rgb)
    write_job(tmp_path, "animate", {"up_axis": "z", "iterations": 1, "frames": 4, "previews": False},
              {"ply": "scene.ply", "video": "clip.mp4"})
    assert run_job(tmp_path)["status"] == "finished"
    support = support_render(tmp_path / "inputs" / "scene.ply").alpha.numpy()
    frame0 = mask_png(tmp_path / "video" / "mask_0000.png")
    assert iou(support, frame0) > 0.9


def test_align_video_undoes_a_known_shift_and_zoom():
    from dynapose4d.video.clip import align_video
    from dynapose4d.video.clip import DrivingVideo

    lamp = make_articulated("lamp", 1500)
    with torch.no_grad():
        ref = render(lamp.static, reference_camera(256), 1.0)
    image, mask = ref.rgb.clamp(0, 1), ref.alpha
    zoom, shift = 0.7, (18.0, -11.0)
    frames, masks = shifted_zoomed(image.numpy(), mask.numpy(), zoom, shift, frames=3)
    video, framing = align_video(DrivingVideo(torch.from_numpy(frames), torch.from_numpy(masks), 7.0), image, mask)
    assert framing.scale == pytest.approx(1 / zoom, rel=0.03)
    assert framing.iou > 0.9 and framing.offset_px < 1.5
    assert iou(video.masks[0].numpy(), mask.numpy()) > 0.9


def shifted_zoomed(image: np.ndarray, mask: np.ndarray, zoom: float, shift, frames: int):
    """The reference zoomed by ``zoom`` about the centre and moved by ``shift`` pixels, as a clip."""
    s = image.shape[0]
    c = s / 2
    m = np.array([[zoom, 0, c - zoom * c + shift[0]], [0, zoom, c - zoom * c + shift[1]]], np.float32)
    m_cv = m.copy()
    m_cv[:, 2] += m[:, :2] @ np.array([0.5, 0.5], np.float32) - 0.5
    img = cv2.warpAffine(image.astype(np.float32), m_cv, (s, s), borderValue=(1.0, 1.0, 1.0))
    msk = cv2.warpAffine(mask.astype(np.float32), m_cv, (s, s), borderValue=0.0)
    return np.repeat(img[None], frames, 0), np.repeat(msk[None], frames, 0)


# -------------------------------------------------------------------------------------------------
# item 2: generate: the reference layout, the static render and the driving video agree


class ShiftedZoomedSVD(VideoSource):
    """A stand-in for SVDSource: the input image, zoomed out and moved (as SVD may regenerate it)."""

    zoom, shift = 0.75, (14.0, -9.0)

    def __init__(self, config, device=None):
        self.config = config

    def generate(self, image, mask=None):
        from dynapose4d.video.clip import DrivingVideo

        img = image.numpy() if isinstance(image, torch.Tensor) else image
        msk = mask.numpy() if isinstance(mask, torch.Tensor) else mask
        img = img * msk[..., None] + (1 - msk[..., None])
        frames, masks = shifted_zoomed(img, msk, self.zoom, self.shift, frames=3)
        return DrivingVideo(torch.from_numpy(frames), torch.from_numpy(masks), 7.0, "stand-in", {"generator": "stand-in"})


TINY = {"static_iterations": 3, "iterations": 2, "frames": 3, "previews": False, "svd_steps": 2, "svd_size": 64}


@pytest.mark.parametrize("source", ["svd", "user-video"])
def test_generate_frames_the_driving_video_like_the_reference(tmp_path, lamp, tiny_zero123, tiny_svd, monkeypatch, source):
    import dynapose4d.guidance.svd

    (tmp_path / "inputs").mkdir()
    lamp_png(tmp_path / "inputs" / "lamp.png", lamp)
    inputs = {"image": "lamp.png"}
    if source == "svd":
        monkeypatch.setattr(dynapose4d.guidance.svd, "SVDSource", ShiftedZoomedSVD)
    else:  # a user video of the same object, framed differently and off centre in a wider frame
        with torch.no_grad():
            rgb = render(lamp.static, Cameras.orbit(0.0, 0.0, 1.8, width=224), 1.0).rgb.numpy()
        canvas = np.ones((3, 224, 300, 3), np.float32)
        canvas[:, :, 60:284] = rgb[None]
        write_mp4(tmp_path / "inputs" / "clip.mp4", canvas)
        inputs["video"] = "clip.mp4"
    settings = dict(TINY, zero123=str(tiny_zero123["zero123-xl"]), svd=str(tiny_svd))
    write_job(tmp_path, "generate", settings, inputs)
    summary = run_job(tmp_path)
    assert summary["status"] == "finished"
    reference = np.asarray(Image.open(tmp_path / "reference" / "reference.png"), np.float32)[..., 3] / 255
    assert iou(reference, mask_png(tmp_path / "video" / "mask_0000.png")) > 0.9
    framing = json.loads((tmp_path / "framing.json").read_text())
    if source == "svd":
        assert framing["scale"] == pytest.approx(1 / ShiftedZoomedSVD.zoom, rel=0.03)
    assert "static_render" in framing and 0.0 <= framing["static_render"]["iou"] <= 1.0


# -------------------------------------------------------------------------------------------------
# item 3 / 6: results in the user's frame


@pytest.mark.parametrize("elevation, azimuth", [(0.0, 0.0), (15.0, 30.0)])
def test_frame0_of_the_result_is_the_input_ply_for_a_still_video(tmp_path, lamp, elevation, azimuth):
    (tmp_path / "inputs").mkdir()
    g = user_ply(tmp_path / "inputs" / "scene.ply", lamp)
    cam = camera_on(g, elevation, azimuth, 2.3 * USER_SCALE, 160, look_offset=(0.1, 0.15, 0.0))
    with torch.no_grad():
        still = render(g, cam, 1.0).rgb.numpy()
    write_mp4(tmp_path / "inputs" / "still.mp4", np.repeat(still[None], 4, 0))
    iterations = 3
    settings = {"up_axis": "z", "reference_elevation": elevation, "reference_azimuth": azimuth,
                "iterations": iterations, "frames": 4, "previews": False}
    write_job(tmp_path, "animate", settings, {"ply": "scene.ply", "video": "still.mp4"})
    assert run_job(tmp_path)["status"] == "finished"
    raw_in = read_ply(tmp_path / "inputs" / "scene.ply")  # the file's own coordinates (+Z up)
    seq = read_sequence(tmp_path / "sequence" / "sequence.json")
    assert seq["up"] == "+z" and seq["coordinates"] == "input-ply"
    out0 = read_ply(seq["paths"][0])  # as written, no conversion
    # The static Gaussians train too (lr 1.6e-4 per step on the means, in backend units).
    drift = 3 * iterations * 1.6e-4 * USER_SCALE / 0.5 * 2
    assert (out0.means - raw_in.means).abs().max() < max(drift, 0.01 * USER_SCALE)
    assert (out0.log_scales - raw_in.log_scales).abs().max() < 0.05
    dots = (out0.quats * raw_in.quats).sum(-1).abs()
    assert dots.min() > 0.99
    # Keypoints are in the same frame: on the object.
    kp = torch.tensor(seq["keypoints"]["positions"][0])
    if len(kp):
        nearest = torch.cdist(kp, raw_in.means).min(1).values
        assert nearest.max() < 0.1 * USER_SCALE
    # What the server serves the add-on, converted as the add-on converts it to Blender
    # coordinates, lands on the input splat (a +Z-up file's coordinates are Blender's).
    from blender_addon.format.coords import backend_to_blender
    from blender_addon.format.wire import decode_frame
    from dynapose4d.server.frames import SnapshotFrames
    from dynapose4d.pipeline import JobFolder

    snapshot = JobFolder(tmp_path).snapshot
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    snapshot.write_bytes((tmp_path / "model.pt").read_bytes())
    served = SnapshotFrames()
    data, _ = served.frame("job", tmp_path, 0, fps=8.0, frame_count=4)
    in_blender = backend_to_blender(decode_frame(data).positions)
    assert np.abs(in_blender - raw_in.means.numpy()).max() < max(drift, 0.01 * USER_SCALE)
    tracks = served.keypoints("job", tmp_path, fps=8.0, frame_count=4)
    if len(kp):
        np.testing.assert_allclose(backend_to_blender(np.asarray(tracks["positions"][0])), kp.numpy(), atol=1e-4)


def test_inverse_registration_round_trips_a_z_up_off_centre_ply_with_a_turned_view(lamp):
    from dynapose4d.userframe import UserFrame

    g = transform_gaussians(lamp.static, torch.eye(3), USER_OFFSET, USER_SCALE)
    g = Gaussians(**{**g.tensors(), "sh_rest": torch.randn(g.num, 3, 3) * 0.1})  # degree 1: rotates too
    file_g = transform_gaussians(g, Z_UP_TO_Y_UP.T)  # what a +Z-up file holds
    reg = PlyRegistration(up_axis="z", elevation=20.0, azimuth=-35.0)
    moved, transform = register_gaussians(transform_gaussians(file_g, Z_UP_TO_Y_UP), reg)
    frame = UserFrame.from_dict(json.loads(json.dumps(UserFrame.from_registration(transform, "z").to_dict())))
    back = frame.gaussians(moved, up="file")
    torch.testing.assert_close(back.means, file_g.means, atol=1e-4, rtol=0)
    torch.testing.assert_close(back.log_scales, file_g.log_scales, atol=1e-5, rtol=0)
    assert (back.quats * file_g.quats).sum(-1).abs().min() > 1 - 1e-5
    torch.testing.assert_close(back.sh_rest, file_g.sh_rest, atol=1e-4, rtol=0)
    # +Y-up variant (what the add-on receives) = the file read with up_axis="z".
    torch.testing.assert_close(frame.gaussians(moved, up="y").means, g.means, atol=1e-4, rtol=0)
    torch.testing.assert_close(frame.points(moved.means[:5], up="file"), file_g.means[:5], atol=1e-4, rtol=0)
    # ... which the add-on's one conversion turns into the Blender file's own coordinates.
    from blender_addon.format.coords import backend_to_blender

    np.testing.assert_allclose(backend_to_blender(frame.points(moved.means, up="y").numpy()), file_g.means.numpy(), atol=1e-4)
    # The reference camera taken to the user's frame sees the same picture.
    cam = reference_camera(64)
    user_cam = Cameras(frame.c2w(cam.c2w, up="y"), cam.fovy, 64, 64)
    with torch.no_grad():
        a = render(moved, cam, 1.0).rgb
        b = render(frame.gaussians(moved, up="y"), user_cam, 1.0).rgb
    assert (a - b).abs().max() < 1e-3
    # And it is the camera at (elevation, azimuth) in the file's +Y-up frame.
    direction = user_cam.c2w[:3, 3] - g.means[g.opacities > 0.2].amin(0) * 0.5 - g.means[g.opacities > 0.2].amax(0) * 0.5
    e, a_ = math.radians(20.0), math.radians(-35.0)
    expected = torch.tensor([math.cos(e) * math.sin(a_), math.sin(e), math.cos(e) * math.cos(a_)])
    torch.testing.assert_close(direction / direction.norm(), expected, atol=1e-4, rtol=0)


# -------------------------------------------------------------------------------------------------
# item 4: guard rails


def test_a_mismatched_first_frame_warns_with_the_numbers(tmp_path, lamp):
    (tmp_path / "inputs").mkdir()
    g = user_ply(tmp_path / "inputs" / "scene.ply", lamp)
    # The video shows the object from the side (azimuth 90), not the reference view.
    cam = camera_on(g, 0.0, 90.0, 2.3 * USER_SCALE, 160)
    with torch.no_grad():
        rgb = render(g, cam, 1.0).rgb.numpy()
    write_mp4(tmp_path / "inputs" / "side.mp4", np.repeat(rgb[None], 3, 0))
    write_job(tmp_path, "animate", {"up_axis": "z", "iterations": 1, "frames": 3, "previews": False},
              {"ply": "scene.ply", "video": "side.mp4"})
    events = []
    summary = run_job(tmp_path, events.append)
    warnings = [e.message for e in events if isinstance(e, LogEvent) and e.level == "warning" and "IoU" in e.message]
    assert warnings and "offset" in warnings[0]
    assert summary["warnings"] and "IoU" in summary["warnings"][0]
    framing = json.loads((tmp_path / "framing.json").read_text())
    assert framing["iou"] < 0.8
    # The dynamic stage reports the scale of the mean motion per frame when it finishes.
    done = [e for e in events if isinstance(e, StageEvent) and e.stage == "dynamic" and e.status == "finished"]
    assert "scale of the mean motion per frame" in done[0].message
    assert len(Dynamic4D.load(tmp_path / "model.pt").info["motion_scale"]) == 3


def test_the_dynamic_stage_reports_a_global_swelling():
    from dynapose4d.pipeline.demo import DemoConfig, make_demo_inputs
    from dynapose4d.stages.dynamic import DynamicStage

    cfg = DemoConfig(frames=4, gaussians=400)
    inputs = make_demo_inputs(cfg)
    stage = DynamicStage(cfg.dynamic, inputs.object.static, inputs.video, inputs.support.keypoints, inputs.track, inputs.camera)
    assert stage.motion_scale() == pytest.approx([1.0] * 4, abs=1e-4)  # zero-initialised heads: no motion

    class Swelling:  # a deformation that grows the object by 50% over the clip
        def __call__(self, static, times):
            class D:
                def gaussians(self, s):
                    f = (1 + 0.5 * times)[:, None, None]
                    return Gaussians(**{**s.tensors(), "means": s.means[None] * f, "quats": s.quats.expand(len(times), -1, -1),
                                        "log_scales": s.log_scales.expand(len(times), -1, -1),
                                        "opacity_logits": s.opacity_logits.expand(len(times), -1, -1),
                                        "sh_dc": s.sh_dc.expand(len(times), -1, -1)})

            return D()

    stage.deformation = Swelling()
    scales = stage.motion_scale()
    assert scales[0] == pytest.approx(1.0, abs=1e-4) and scales[-1] == pytest.approx(1.5, rel=1e-3)


def test_an_animated_result_lands_on_its_input_splat_in_blender(tmp_path, lamp):
    """The path an animator takes: a +Z-up, off-centre Blender splat animated by a still video,
    its frames served as the add-on fetches them, imported by the add-on into real bpy. Frame 0
    of the point cloud lies on the input splat in Blender's own coordinates."""
    bpy = pytest.importorskip("bpy")
    from blender_addon.format.sequence import Sampling, assemble
    from blender_addon.format.wire import decode_frame
    from blender_addon.scene import importer
    from blender_addon.scene.attributes import vertex_positions
    from blender_addon.scene.display import MODIFIER
    from blender_addon.scene.rig import ROLE
    from dynapose4d.pipeline import JobFolder
    from dynapose4d.server.frames import SnapshotFrames

    (tmp_path / "inputs").mkdir()
    g = user_ply(tmp_path / "inputs" / "scene.ply", lamp)
    cam = camera_on(g, 0.0, 0.0, 2.3 * USER_SCALE, 160, look_offset=(0.1, 0.15, 0.0))
    with torch.no_grad():
        still = render(g, cam, 1.0).rgb.numpy()
    write_mp4(tmp_path / "inputs" / "still.mp4", np.repeat(still[None], 4, 0))
    write_job(tmp_path, "animate", {"up_axis": "z", "iterations": 2, "frames": 4, "previews": False},
              {"ply": "scene.ply", "video": "still.mp4"})
    assert run_job(tmp_path)["status"] == "finished"
    folder = JobFolder(tmp_path)
    folder.snapshot.parent.mkdir(parents=True, exist_ok=True)
    folder.snapshot.write_bytes(folder.model.read_bytes())  # what the worker publishes

    sampling = Sampling(fps=8.0, frame_count=4)
    served = SnapshotFrames()
    frames = [decode_frame(served.frame("job", tmp_path, i, fps=8.0, frame_count=4)[0]) for i in range(4)]
    sequence = assemble(frames, served.keypoints("job", tmp_path, fps=8.0, frame_count=4), sampling)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    coll = importer.import_sequence(bpy.context, sequence, "job", importer.ImportOptions(frame_start=1))
    points = next(o for o in coll.objects if o.get(ROLE) == "gaussians")
    bpy.context.scene.frame_set(1)
    points.modifiers[MODIFIER].show_viewport = False  # the splat display is drawing, not data
    ev = points.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = ev.to_mesh()
    try:
        local = vertex_positions(mesh)
    finally:
        ev.to_mesh_clear()
    world = np.asarray(points.matrix_world)
    in_blender = local @ world[:3, :3].T + world[:3, 3]
    splat = read_ply(tmp_path / "inputs" / "scene.ply").means.numpy()  # a +Z-up file: Blender's coordinates
    assert len(in_blender) == len(splat)
    # Frame 0 is pinned to the static model, so it is the splat up to the static stage's drift.
    assert np.abs(in_blender - splat).max() < 0.01 * USER_SCALE
    extent = splat.max(0) - splat.min(0)
    assert np.allclose(in_blender.max(0) - in_blender.min(0), extent, rtol=0.01)  # same size, not the registered 0.5
