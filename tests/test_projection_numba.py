"""The fused numba projection against the PyTorch one (``projection.py``, itself tested against
gsplat's reference): outputs, radii and gradients, including Gaussians behind the camera, far
off screen (the clamped Jacobian), culled by opacity, and batches of scenes with cameras each.
And that ``render`` uses it for training on the numba path, and the PyTorch one for renders
without gradients and where a camera wants one."""

import pytest
import torch

from dynapose4d.cameras import Cameras
from dynapose4d.render import render
from dynapose4d.render import numba_projection
from dynapose4d.render.numba_projection import project_gaussians_numba
from dynapose4d.render.projection import project_gaussians
from tests.test_render import random_scene, some_cameras

D = torch.float64


def hard_scene(n=400, seed=0, batch=2, dtype=D):
    """Random Gaussians, some behind the cameras, some far outside the view, some transparent."""
    g = random_scene(n, spread=1.5, seed=seed, batch=(batch,), dtype=dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    means = g.means.clone()
    means[:, :20] = means[:, :20] * 8.0  # far off screen: the Jacobian's clamp
    means[:, 20:30] = 2.2 * torch.tensor([0.0, 0.35, 1.0], dtype=dtype)  # at and near the camera
    logits = g.opacity_logits.clone()
    logits[:, 30:40] = -8.0  # below 1/255: culled
    quats = g.quats * (0.2 + 3 * torch.rand(g.quats.shape[:-1] + (1,), generator=gen, dtype=dtype))  # unnormalised
    return type(g)(means=means, quats=quats, log_scales=g.log_scales, opacity_logits=logits, sh_dc=g.sh_dc, sh_rest=g.sh_rest)


def cameras_per_scene(batch=2, dtype=D):
    cams = some_cameras(48, 40, dtype=dtype)
    C = cams.batch_shape[0]
    viewmats = cams.viewmats[None].expand(batch, C, 4, 4).clone()
    viewmats[1:, :, :3, 3] += 0.1  # the scenes do not share cameras
    return viewmats, cams.Ks[None].expand(batch, C, 3, 3).clone(), cams.width, cams.height


def both(g, viewmats, Ks, W, H):
    leaves = [t.detach().clone().requires_grad_() for t in (g.means, g.quats, g.log_scales)]
    outs = []
    for fn in (project_gaussians, project_gaussians_numba):
        means, quats, log_scales = (t.detach().clone().requires_grad_() for t in leaves)
        p = fn(means, quats, log_scales.exp(), g.opacities, viewmats, Ks, W, H)
        gen = torch.Generator().manual_seed(7)
        keep = (p.radii > 0).all(-1)  # the rasteriser sends gradients only for drawn Gaussians
        w2, w3, w1 = (torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in (p.means2d, p.conics, p.depths))
        loss = (p.means2d * w2 * keep[..., None]).sum() + (p.conics * w3 * keep[..., None]).sum() + (p.depths * w1).sum()
        outs.append((p, torch.autograd.grad(loss, [means, quats, log_scales])))
    return outs


def test_outputs_and_gradients_match_the_pytorch_projection():
    g = hard_scene()
    viewmats, Ks, W, H = cameras_per_scene()
    (ref, ref_grads), (ours, grads) = both(g, viewmats, Ks, W, H)
    keep = (ref.radii > 0).all(-1)
    assert keep.sum() > 800 and (~keep).sum() > 100  # both kinds are exercised
    assert torch.equal(ours.radii, ref.radii)
    torch.testing.assert_close(ours.depths, ref.depths, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.means2d[keep], ref.means2d[keep], rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(ours.conics[keep], ref.conics[keep], rtol=1e-10, atol=1e-10)
    for name, a, b in zip(("means", "quats", "log_scales"), grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8, msg=lambda m: f"{name}: {m}")


def test_float32_close_to_the_pytorch_projection():
    g = hard_scene(dtype=torch.float32)
    viewmats, Ks, W, H = cameras_per_scene(dtype=torch.float32)
    (ref, ref_grads), (ours, grads) = both(g, viewmats, Ks, W, H)
    assert ours.means2d.dtype == torch.float32 and grads[0].dtype == torch.float32
    keep = (ref.radii > 0).all(-1) & (ours.radii > 0).all(-1)
    # A radius is a ceil: float32 and float64 arithmetic may round a few differently.
    assert (ours.radii != ref.radii).any(-1).float().mean() < 0.01
    torch.testing.assert_close(ours.conics[keep], ref.conics[keep], rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=2e-3, atol=2e-3 * b.abs().max().item())


def test_gradcheck():
    g = hard_scene(n=12, batch=1)
    viewmats, Ks, W, H = cameras_per_scene(batch=1)
    opac = g.opacities

    def fn(means, quats, scales):
        p = project_gaussians_numba(means, quats, scales, opac, viewmats, Ks, W, H)
        return p.means2d, p.conics, p.depths

    inputs = [t.detach().clone().requires_grad_() for t in (g.means[:, 30:], g.quats[:, 30:], g.scales[:, 30:])]
    opac = opac[:, 30:]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_camera_gradients_are_refused_and_render_falls_back():
    g = random_scene(50)
    cams = some_cameras()
    viewmats = cams.viewmats.clone().requires_grad_()
    with pytest.raises(ValueError, match="cameras"):
        project_gaussians_numba(g.means[None], g.quats[None], g.scales[None], g.opacities[None], viewmats[None], cams.Ks[None], 40, 32)
    # A camera that wants a gradient gets one through render (the PyTorch projection).
    c2w = cams.c2w.clone().requires_grad_()
    out = render(g, Cameras(c2w, cams.fovy, cams.width, cams.height), backend="numba")
    (grad,) = torch.autograd.grad(out.rgb.sum(), [c2w])
    assert grad.abs().sum() > 0


def test_render_uses_the_fused_projection_for_training_only(monkeypatch):
    calls = []
    real = numba_projection.project_gaussians_numba
    monkeypatch.setattr(numba_projection, "project_gaussians_numba", lambda *a, **k: calls.append(1) or real(*a, **k))
    g = random_scene(80)
    cams = some_cameras()
    # Without gradients: the PyTorch projection, so the image is the one earlier releases made.
    still = render(g, cams, 1.0, backend="numba")
    assert not calls
    # Gaussians that want gradients: the fused projection, the same image to rounding.
    leaves = type(g)(**{k: v.detach().clone().requires_grad_() for k, v in g.tensors().items()})
    trained = render(leaves, cams, 1.0, backend="numba")
    assert calls
    torch.testing.assert_close(trained.rgb.detach(), still.rgb, rtol=1e-8, atol=1e-8)
    with torch.no_grad():
        calls.clear()
        render(leaves, cams, 1.0, backend="numba")
    assert not calls
