"""The fused skinning kernels (forward and backward) against the PyTorch path, saved
deformations rebuilt without resampling, and the server's frames sampled ahead for a client
walking a sequence."""

import numpy as np
import pytest
import torch

from blender_addon.format.wire import decode_frame
from dynapose4d.deform import DeformConfig, make_deformation
from dynapose4d.deform import deformations, skinning_numba
from dynapose4d.evaluation.scenes import sphere_scene
from dynapose4d.pipeline import JobFolder
from dynapose4d.server.frames import SnapshotFrames
from dynapose4d.testing.moving import articulated_model


def _moving_deformation(dtype, n=600, controls=48, knn=4):
    torch.manual_seed(1)
    static = sphere_scene(n).to(dtype=dtype)
    static = type(static)(**{**static.tensors(), "quats": torch.nn.functional.normalize(torch.randn(n, 4, dtype=dtype), dim=-1)})
    model = make_deformation(static, DeformConfig(num_controls=controls, knn=knn)).to(dtype)
    with torch.no_grad():  # large random motion: rotations well away from the identity
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return static, model


def _skin_inputs(model, static, t):
    """The arguments ``blend`` gives the skinning function, as fresh leaves."""
    captured = {}
    real = skinning_numba.skin

    def capture(*args):
        captured["args"] = args
        return real(*args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(skinning_numba, "skin", capture)
        model(static, t)
    return [a.detach().clone().requires_grad_(a.is_floating_point()) for a in captured["args"]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("knn", [1, 4])
def test_fused_skinning_equals_the_pytorch_path_with_gradients(dtype, knn):
    static, model = _moving_deformation(dtype, knn=knn)
    t = torch.tensor([0.0, 0.35, 1.0], dtype=dtype)
    args = _skin_inputs(model, static, t)
    gen = torch.Generator().manual_seed(3)
    results = []
    for fn in (deformations.skin_torch, skinning_numba.skin):
        leaves = [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
        outs = fn(*leaves)
        weights = [torch.randn(o.shape, generator=gen.manual_seed(3 + i), dtype=dtype) for i, o in enumerate(outs)]
        loss = sum((o * w).sum() for o, w in zip(outs, weights))
        grads = torch.autograd.grad(loss, [a for a in leaves if a.requires_grad])
        results.append(([o.detach() for o in outs], grads))
    (ref_out, ref_grads), (out, grads) = results
    assert (ref_out[0] - static.means).abs().max() > 0.05  # the motion is not trivial
    tol = {"atol": 2e-5, "rtol": 0} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 0}
    for name, a, b in zip(("means", "quats", "log_scales"), out, ref_out):
        torch.testing.assert_close(a, b, **tol, msg=name)
    names = ("maps", "logits", "rest means", "rest quats", "rest log-scales")
    for name, a, b in zip(names, grads, ref_grads):
        scale = b.abs().max().item()
        gtol = {"atol": 1e-4 * scale, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 1e-10 * scale, "rtol": 1e-9}
        torch.testing.assert_close(a, b, **gtol, msg=name)


def test_the_deformation_uses_the_fused_skinning_on_the_cpu_and_trains_through_it():
    static, model = _moving_deformation(torch.float32)
    calls = []
    real = skinning_numba.skin
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(skinning_numba, "skin", lambda *a: calls.append(1) or real(*a))
        out = model(static, torch.tensor([0.5]))
    assert calls
    out.means.sum().backward()
    assert model.skin_logits.grad is not None and model.skin_logits.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.net.head_shift.parameters())


def test_skinning_gradcheck():
    static, model = _moving_deformation(torch.float64, n=20, controls=6, knn=3)
    args = _skin_inputs(model, static, torch.tensor([0.3, 0.9], dtype=torch.float64))
    knn = args[1]
    fn = lambda maps, logits, means, quats, log_scales: skinning_numba.skin(maps, knn, logits, means, quats, log_scales)  # noqa: E731
    assert torch.autograd.gradcheck(fn, [args[0], args[2], args[3], args[4], args[5]], eps=1e-6, atol=1e-6)


def test_a_saved_deformation_is_rebuilt_from_its_state_without_sampling(monkeypatch):
    static, model = _moving_deformation(torch.float32)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def refuse(*args, **kwargs):
        raise AssertionError("farthest-point sampling ran for a saved deformation")

    monkeypatch.setattr(deformations, "farthest_point_sample", refuse)
    again = make_deformation(static, model.config, state)
    t = torch.tensor([0.2, 0.8])
    with torch.no_grad():
        for name in ("means", "quats", "log_scales", "handles"):
            torch.testing.assert_close(getattr(again(static, t), name), getattr(model(static, t), name))
    with pytest.raises(AssertionError, match="farthest-point"):
        make_deformation(static, model.config)  # a new one still samples


@pytest.fixture(scope="module")
def served_job(tmp_path_factory):
    model, _ = articulated_model(controls=32, frames=8, steps=40)
    job_dir = tmp_path_factory.mktemp("job")
    model.save(JobFolder(job_dir).snapshot)
    return job_dir


def _decoded(data):
    frame = decode_frame(data)
    return {name: getattr(frame, name) for name in ("positions", "rotations", "scales", "opacities", "colors", "keypoints")}


def test_frames_sampled_ahead_equal_frames_sampled_one_at_a_time(served_job):
    walker = SnapshotFrames(frames_ahead=8)
    single = SnapshotFrames(frames_ahead=1)
    fetched = [walker.frame("job", served_job, i, fps=24.0, frame_count=12)[0] for i in range(12)]
    cached = {key[-1] for key in walker._frames}
    assert cached == set(range(12))
    for i in (0, 3, 7, 8, 11):
        alone = _decoded(single.frame("job", served_job, i, fps=24.0, frame_count=12)[0])
        ahead = _decoded(fetched[i])
        assert decode_frame(fetched[i]).header["frame"]["index"] == i
        for name, values in alone.items():
            np.testing.assert_allclose(ahead[name], values, atol=1e-6, rtol=0, err_msg=f"frame {i} {name}")
    moving = np.abs(_decoded(fetched[11])["positions"] - _decoded(fetched[0])["positions"]).max()
    assert moving > 0.01  # frames differ: the ahead frames are not copies of the first


def test_frames_are_sampled_ahead_only_for_a_client_walking_in_order(served_job):
    frames = SnapshotFrames(frames_ahead=4)
    frames.frame("job", served_job, 0, fps=24.0, frame_count=20)
    assert sorted(key[-1] for key in frames._frames) == [0, 1, 2, 3]
    frames.frame("job", served_job, 10, fps=24.0, frame_count=20)  # a jump: only what was asked
    assert sorted(key[-1] for key in frames._frames) == [0, 1, 2, 3, 10]
    frames.frame("job", served_job, 4, fps=24.0, frame_count=20)  # 3 is cached: walking on
    assert sorted(key[-1] for key in frames._frames) == [0, 1, 2, 3, 4, 5, 6, 7, 10]
    frames.frame("job", served_job, 18, fps=24.0, frame_count=20)
    frames.frame("job", served_job, 19, fps=24.0, frame_count=20)  # the clip's end bounds it
    assert sorted(key[-1] for key in frames._frames)[-3:] == [10, 18, 19]
