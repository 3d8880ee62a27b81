"""The dynamic stage: deformation, losses, anchors, the loop's events, checkpoints and resume."""

import json
import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from dynapose4d.evaluation.articulated import make_articulated
from dynapose4d.cameras import Cameras
from dynapose4d.deform import Binding, DeformConfig, HexPlaneConfig, lift_keypoints, make_deformation
from dynapose4d.deform.deformations import Deformed, farthest_point_sample, move_bound_points
from dynapose4d.pipeline.demo import DemoConfig, make_demo_inputs
from dynapose4d.events import ProgressEvent, SnapshotEvent, StageEvent
from dynapose4d.gaussians import Gaussians
from dynapose4d.io import read_ply
from dynapose4d.io.sequence import read_sequence, write_sequence
from dynapose4d.losses import (
    as_rigid_as_possible_loss,
    keypoint_match_loss,
    spatio_temporal_consistency_loss,
)
from dynapose4d.dynamic4d import Dynamic4D
from dynapose4d.stages import DynamicConfig, DynamicStage


@pytest.fixture(autouse=True)
def one_thread():
    # Two torch threads on two shared cores run slower than one here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_config(mode="control", **kw):
    deform = DeformConfig(mode=mode, num_controls=64, hexplane=HexPlaneConfig(spatial_res=(8,), time_res=5, channels=8), hidden=16)
    defaults = dict(iterations=6, frames_per_step=2, resolution=40, snapshot_every=2, checkpoint_every=3, deform=deform)
    defaults.update(kw)
    return DynamicConfig(**defaults)


@pytest.fixture(scope="module")
def demo_inputs():
    torch.set_num_threads(1)
    return make_demo_inputs(DemoConfig(gaussians=600, frames=5, video_size=64, keypoints=6))


def make_stage(inputs, **kw):
    return DynamicStage(small_config(**kw), inputs.object.static, inputs.video, inputs.support.keypoints, inputs.track, inputs.camera)


# -- deformation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["control", "per_gaussian"])
def test_deformation_starts_at_the_static_pose(demo_inputs, mode):
    static = demo_inputs.object.static
    model = make_deformation(static, small_config(mode).deform)
    d = model(static, torch.tensor([0.0, 0.4, 1.0]))
    torch.testing.assert_close(d.means, static.means.expand(3, -1, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(d.log_scales, static.log_scales.expand(3, -1, -1), atol=1e-6, rtol=0)
    q = torch.nn.functional.normalize(d.quats, dim=-1)
    q0 = torch.nn.functional.normalize(static.quats, dim=-1).expand_as(q)
    assert torch.minimum((q - q0).abs().amax(), (q + q0).abs().amax()) < 1e-6


@pytest.mark.parametrize("mode", ["control", "per_gaussian"])
def test_deformation_is_pinned_to_identity_at_t0_even_after_training(demo_inputs, mode):
    static = demo_inputs.object.static
    model = make_deformation(static, small_config(mode).deform)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    d = model(static, torch.tensor([0.0, 0.7]))
    torch.testing.assert_close(d.means[0], static.means, atol=1e-5, rtol=0)
    assert (d.means[1] - static.means).abs().max() > 1e-3  # and it does move later


def test_blended_skinning_equals_blending_the_moved_points(demo_inputs):
    """The control model blends the K affine maps before applying them; that must equal linear
    blend skinning written out point by point."""
    static = demo_inputs.object.static.to(dtype=torch.float64)
    model = make_deformation(static, small_config().deform).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    t = torch.tensor([0.3, 0.9], dtype=torch.float64)
    d = model(static, t)
    w = torch.softmax(model.skin_logits, -1)
    c = model.controls[model.knn]  # [N, K, 3]
    moved = (d.handle_rot[:, model.knn] @ (static.means[:, None] - c)[None, ..., None])[..., 0] + c + d.handle_shift[:, model.knn]
    torch.testing.assert_close(d.means, (w[None, ..., None] * moved).sum(2))


def test_control_points_are_spread_and_prefer_opaque_gaussians():
    pts = torch.tensor([[0.0, 0, 0], [0.01, 0, 0], [1.0, 0, 0], [0.0, 1.0, 0], [0.5, 0.5, 0]])
    idx = farthest_point_sample(pts, 3, torch.tensor([0.1, 1.0, 1.0, 1.0, 1.0]))
    assert idx[0] in (1, 2, 3, 4) and 0 not in idx.tolist()
    assert len(set(idx.tolist())) == 3


def test_gradients_reach_every_parameter(demo_inputs):
    stage = make_stage(demo_inputs, train_static=True, frames_per_step=0)
    stage.train_step()  # the zero-initialised heads first need one step to pass gradients on
    stage.train_step()
    named = dict(stage.deformation.named_parameters())
    named.update({f"static.{k}": v for k, v in stage.static_params.items()})
    for name, p in named.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert torch.isfinite(p.grad).all(), name


# -- losses on hand-made cases -------------------------------------------------------------------


def test_kml_values():
    target = torch.zeros(2, 3, 2)
    pred = target.clone()
    pred[0, 0] = torch.tensor([3.0, 4.0])  # 5 px off in a 100 x 50 image: (0.03, 0.08)
    conf = torch.ones(2, 3)
    expected_frame0 = (0.03**2 + 0.08**2) / 3
    loss = keypoint_match_loss(pred, target, conf, (100, 50))
    assert loss.item() == pytest.approx(expected_frame0 / 2)
    conf[0, 0] = 0.0  # an untrusted keypoint does not count
    assert keypoint_match_loss(pred, target, conf, (100, 50)).item() == 0.0
    pred[0, 0] = float("inf")  # a keypoint with no weight cannot poison the loss
    assert keypoint_match_loss(pred, target, conf, (100, 50)).item() == 0.0
    pred[0, 0] = torch.tensor([3.0, 4.0])
    conf = torch.tensor([[0.5, 1.0, 1.0], [1.0, 1.0, 1.0]])
    assert keypoint_match_loss(pred, target, conf, (100, 50)).item() == pytest.approx(0.5 * (0.03**2 + 0.08**2) / 2.5 / 2)


def test_robust_kml_matches_squared_for_small_errors_and_bounds_outliers():
    target = torch.zeros(1, 2, 2)
    small = torch.tensor([[[0.1, 0.0], [0.0, 0.0]]])  # 0.001 of a 100 px image
    conf = torch.ones(1, 2)
    plain = keypoint_match_loss(small, target, conf, (100, 100))
    robust = keypoint_match_loss(small, target, conf, (100, 100), robust_scale=0.02)
    assert robust.item() == pytest.approx(plain.item(), rel=1e-2)
    far = torch.tensor([[[60.0, 0.0], [0.0, 0.0]]], requires_grad=True)
    keypoint_match_loss(far, target, conf, (100, 100), robust_scale=0.02).backward()
    robust_pull = far.grad.norm()
    far.grad = None
    keypoint_match_loss(far, target, conf, (100, 100)).backward()
    assert robust_pull < 0.05 * far.grad.norm()  # an outlier pulls far less


def test_scl_velocity_and_acceleration():
    t = torch.arange(5, dtype=torch.float64)
    uniform = torch.stack([t * 0.1, 0 * t, 0 * t], -1)[:, None, :].expand(5, 2, 3)  # 2 handles, constant speed
    # velocity form: (1/M) sum_i sum_tau |dP|^2 = (1/2) * 2 * 4 * 0.01
    assert spatio_temporal_consistency_loss(uniform, 1).item() == pytest.approx(0.04)
    assert spatio_temporal_consistency_loss(uniform, 2).item() == pytest.approx(0.0, abs=1e-12)  # no jitter
    jitter = uniform.clone()
    jitter[2, 0, 1] = 0.2
    # second differences at tau=1,2,3 on handle 0, y: 0.2, -0.4, 0.2
    assert spatio_temporal_consistency_loss(jitter, 2).item() == pytest.approx((0.04 + 0.16 + 0.04) / 2)
    with pytest.raises(ValueError, match="order"):
        spatio_temporal_consistency_loss(uniform, 3)


def test_arap_is_zero_for_rigid_motion_and_positive_otherwise():
    gen = torch.Generator().manual_seed(0)
    rest = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    nb = torch.cdist(rest, rest).topk(4, largest=False).indices[:, 1:]
    w = torch.ones(10, 3, dtype=torch.float64)
    angle = 0.7
    R = torch.tensor([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]], dtype=torch.float64)
    moved = rest @ R.T + torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)
    rots = R.expand(1, 10, 3, 3)
    assert as_rigid_as_possible_loss(moved[None], rots, rest, nb, w).item() == pytest.approx(0.0, abs=1e-20)
    stretched = moved * torch.tensor([1.2, 1.0, 1.0], dtype=torch.float64)
    assert as_rigid_as_possible_loss(stretched[None], rots, rest, nb, w).item() > 1e-3


# -- anchors --------------------------------------------------------------------------------------


def test_anchor_lifting_and_projection_of_a_known_point():
    # A flat wall of Gaussians at z = 0.1 facing the camera: the keypoint lifts onto it.
    xs = torch.linspace(-0.3, 0.3, 25, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    means = torch.cat([grid, torch.full((len(grid), 1), 0.1, dtype=torch.float64)], 1)
    wall = Gaussians.from_points(means, torch.ones_like(means) * 0.5, 0.02, 0.99)
    cam = Cameras.orbit(0.0, 0.0, 2.0, width=64, dtype=torch.float64)
    point = torch.tensor([[0.05, -0.08, 0.1]], dtype=torch.float64)
    pixel, _ = cam.project(point)
    lifted, ok = lift_keypoints(wall, cam, pixel)
    assert ok.item()
    torch.testing.assert_close(lifted, point, atol=2e-3, rtol=0)
    # Bound to two handles that both translate by (0.1, 0.2, 0): it moves by the same amount.
    handles = torch.tensor([[0.0, 0.0, 0.1], [0.1, 0.0, 0.1]], dtype=torch.float64)
    binding = Binding.nearest(lifted, handles, k=2)
    torch.testing.assert_close(binding.weights.sum(1), torch.ones(1, dtype=torch.float64))
    shift = torch.tensor([[[0.1, 0.2, 0.0]] * 2], dtype=torch.float64)
    motion = Deformed(None, None, None, handles[None] + shift, torch.eye(3, dtype=torch.float64).expand(1, 2, 3, 3), shift)
    moved = move_bound_points(motion, lifted, binding)
    projected, _ = cam.project(moved[0])
    f = 32 / math.tan(math.radians(49.1) / 2)
    depth = 2.0 - 0.1
    torch.testing.assert_close(projected - pixel, torch.tensor([[f * 0.1 / depth, -f * 0.2 / depth]], dtype=torch.float64), atol=0.05, rtol=0)
    # A pixel on empty background is not valid, but still gets a finite point (at the wall's depth).
    far, ok = lift_keypoints(wall, cam, torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    assert not ok.item() and torch.isfinite(far).all()
    assert cam.project(far)[1].item() == pytest.approx(1.9, abs=1e-3)


# -- the loop --------------------------------------------------------------------------------------


def test_events_and_snapshots(demo_inputs):
    stage = make_stage(demo_inputs)
    events = []
    assert stage.run(events.append) == "finished"
    kinds = [type(e) for e in events]
    assert kinds[0] is StageEvent and events[0].status == "started"
    assert events[-1].status == "finished"
    progress = [e for e in events if isinstance(e, ProgressEvent)]
    assert [p.iteration for p in progress] == list(range(1, 7))
    assert all({"loss", "loss_rgb", "loss_kml", "loss_scl"} <= set(p.losses) for p in progress)
    assert progress[-1].eta_s == 0.0
    snaps = [e for e in events if isinstance(e, SnapshotEvent)]
    assert [s.iteration for s in snaps] == [2, 4, 6] and [s.version for s in snaps] == [1, 2, 3]
    g, kp = snaps[-1].model.sample(torch.tensor([0.0, 0.5, 1.0]))
    assert g.batch_shape == (3,) and kp.shape == (3, 6, 3)


@pytest.mark.parametrize("stop_call", [7, 8], ids=["between-steps", "mid-step"])
def test_stop_and_exact_resume(demo_inputs, tmp_path, stop_call):
    """Stopping (between steps, or inside one after its forward pass) and resuming from the
    checkpoint gives bit-identical parameters to an uninterrupted run."""
    straight = make_stage(demo_inputs)
    straight.run()

    ckpt = tmp_path / "dynamic.pt"
    first = make_stage(demo_inputs)
    calls = {"n": 0}

    def stop():  # polled at the top of each step and once inside it: call 7 = before step 4, 8 = inside it
        calls["n"] += 1
        return calls["n"] >= stop_call

    assert first.run(should_stop=stop, checkpoint_path=ckpt) == "stopped"
    assert first.step == 3 and ckpt.exists()
    resumed = make_stage(demo_inputs)
    resumed.load_checkpoint(ckpt)
    assert resumed.step == 3
    assert resumed.run(checkpoint_path=ckpt) == "finished"
    for (name, a), b in zip(straight.deformation.state_dict().items(), resumed.deformation.state_dict().values()):
        assert torch.equal(a, b), name


def test_stop_request_is_honoured_within_a_second(demo_inputs, tmp_path):
    stage = make_stage(demo_inputs, iterations=10_000)
    start = time.monotonic()
    deadline = start + 1.0
    assert stage.run(should_stop=lambda: time.monotonic() > deadline, checkpoint_path=tmp_path / "c.pt") == "stopped"
    assert time.monotonic() - deadline < 1.0
    assert (tmp_path / "c.pt").exists()


def test_checkpoint_from_other_inputs_or_settings_is_refused(demo_inputs, tmp_path):
    stage = make_stage(demo_inputs)
    stage.train_step()
    path = stage.save_checkpoint(tmp_path / "c.pt")
    other = make_stage(demo_inputs, lambda_kml=1.0)
    with pytest.raises(ValueError, match="different settings"):
        other.load_checkpoint(path)
    changed = replace(demo_inputs.video, frames=demo_inputs.video.frames.flip(0))
    different = DynamicStage(small_config(), demo_inputs.object.static, changed, demo_inputs.support.keypoints, demo_inputs.track, demo_inputs.camera)
    with pytest.raises(ValueError, match="different inputs"):
        different.load_checkpoint(path)


def test_bad_stage_inputs_are_named(demo_inputs):
    i = demo_inputs
    short_track = replace(i.track, xy=i.track.xy[:3], confidence=i.track.confidence[:3], visible=i.track.visible[:3])
    with pytest.raises(ValueError, match="track has 3 frames but the video has 5"):
        DynamicStage(small_config(), i.object.static, i.video, i.support.keypoints, short_track, i.camera)
    with pytest.raises(ValueError, match="single camera"):
        DynamicStage(small_config(), i.object.static, i.video, i.support.keypoints, i.track, Cameras.evaluation_views())
    with pytest.raises(ValueError, match="unknown deformation mode"):
        make_deformation(i.object.static, DeformConfig(mode="spline"))


# -- the 4D model and its exports -----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(demo_inputs):
    stage = make_stage(demo_inputs, iterations=4)
    stage.run()
    return stage.result()


def test_time_sampling_at_any_rate(trained):
    assert trained.duration_s == pytest.approx(4 / 7.0)  # 5 frames at 7 fps
    t = trained.times(frame_count=15, fps=24.0)
    assert t[0] == 0 and t[-1] == 1.0 and (t.diff() >= 0).all()
    assert t[5].item() == pytest.approx((5 / 24) / (4 / 7))
    loop = trained.times(30, 24.0, mode="loop")
    assert loop.max() <= 1 and (loop.diff() < 0).any()
    ping = trained.times(60, 24.0, mode="pingpong")
    assert ping[13].item() == pytest.approx((13 / 24) / (4 / 7), abs=1e-6)  # still going forward
    assert ping[16].item() == pytest.approx(2 - (16 / 24) / (4 / 7), abs=1e-6)  # coming back
    with pytest.raises(ValueError, match="time mode"):
        trained.times(5, 24.0, mode="bounce")


def test_model_save_load_round_trip(trained, tmp_path):
    path = trained.save(tmp_path / "m.pt")
    back = Dynamic4D.load(path)
    t = torch.tensor([0.0, 0.33, 1.0])
    g1, k1 = trained.sample(t)
    g2, k2 = back.sample(t)
    torch.testing.assert_close(g1.means, g2.means)
    torch.testing.assert_close(k1, k2)
    assert back.keypoints.names == trained.keypoints.names
    (tmp_path / "x.pt").write_bytes(b"not a model")
    with pytest.raises(Exception):
        Dynamic4D.load(tmp_path / "x.pt")


def test_ply_sequence_with_sidecar(trained, tmp_path):
    sidecar = write_sequence(tmp_path / "seq", trained, fps=12.0, frame_count=7)
    data = read_sequence(sidecar)
    assert data["fps"] == 12.0 and data["frame_count"] == 7 and len(data["paths"]) == 7
    assert data["up"] == "+y" and len(data["keypoints"]["names"]) == 6
    assert np.array(data["keypoints"]["positions"]).shape == (7, 6, 3)
    assert np.array(data["camera"]["c2w"]).shape == (4, 4)
    g, kp = trained.sample(trained.times(7, 12.0))
    frame = read_ply(data["paths"][4])
    torch.testing.assert_close(frame.means, g.means[4])
    np.testing.assert_allclose(data["keypoints"]["positions"][4], kp[4].numpy(), atol=1e-5)
    json.loads(sidecar.read_text())


# -- the demo's ground truth ------------------------------------------------------------------------


def test_articulated_parts_move_rigidly():
    obj = make_articulated("lamp", 800)
    t = torch.tensor([0.0, 0.3, 0.8])
    g = obj.gaussians_at(t)
    torch.testing.assert_close(g.means[0], obj.static.means, atol=1e-6, rtol=0)
    for part in range(len(obj.parts)):
        sel = obj.part_of == part
        exact = "donot_use_mm_for_euclid_dist"  # the matmul form is off by ~1e-4 in float32
        d0 = torch.cdist(obj.static.means[sel], obj.static.means[sel], compute_mode=exact)
        d1 = torch.cdist(g.means[2, sel], g.means[2, sel], compute_mode=exact)
        torch.testing.assert_close(d0, d1, atol=1e-5, rtol=0)
    assert (g.means[2] - g.means[0]).norm(dim=-1).max() > 0.05  # it does move
    with pytest.raises(ValueError, match="unknown motion"):
        make_articulated("dance")


def test_hexplane_grid_sampling_equals_pointwise_sampling():
    from dynapose4d.deform import HexPlane

    field = HexPlane(HexPlaneConfig(channels=4, spatial_res=(8, 16), time_res=5))
    with torch.no_grad():
        for g in field.grids:
            g.uniform_(0.2, 1.0)
    xyz = torch.rand(7, 3) * 2.4 - 1.2  # some outside the bound, clamped
    t = torch.tensor([0.0, 0.35, 1.0])
    dense = field(xyz.expand(3, 7, 3), t[:, None].expand(3, 7))
    torch.testing.assert_close(field.forward_grid(xyz, t), dense)


def test_hexplane_separable_time_planes_match_grid_sample_with_gradients():
    """Points without a gradient take the matrix-product path; with one, grid_sample. Both give
    the same features and the same gradients to the planes."""
    from dynapose4d.deform import HexPlane

    field = HexPlane(HexPlaneConfig(channels=3, spatial_res=(8, 16), time_res=5)).double()
    with torch.no_grad():
        for g in field.grids:
            g.uniform_(0.2, 1.0)
    gen = torch.Generator().manual_seed(0)
    xyz = torch.rand(40, 3, generator=gen, dtype=torch.float64) * 2.4 - 1.2
    xyz[0] = torch.tensor([1.0, -1.0, 0.999])  # on the boundary samples
    t = torch.tensor([0.0, 0.1, 0.5, 0.77, 1.0], dtype=torch.float64)
    weights = torch.randn(5, 40, 6, generator=gen, dtype=torch.float64)
    results = []
    for needs_grad in (False, True):
        field.zero_grad()
        points = xyz.clone().requires_grad_(needs_grad)
        out = field.forward_grid(points, t)
        (out * weights).sum().backward()
        results.append((out.detach(), [g.grad.clone() for g in field.grids]))
    (fast, fast_grads), (ref, ref_grads) = results
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(fast_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
