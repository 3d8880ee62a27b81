"""The numba tile rasteriser: images and gradients against the dense float64 reference and the
PyTorch pair rasteriser, the early stop and the 0.999 clamp, batching, empty scenes, float32,
the backend choice, and properties of its own (thread-count independence, fork safety)."""

import math
import os
import sys

import pytest
import torch

from dynapose4d.cameras import Cameras
from dynapose4d.render import RenderBudgetError, choose_backend, render
from dynapose4d.render import reference as reference_module
from dynapose4d.render.numba_raster import rasterize_numba
from dynapose4d.render.pairs import rasterize
from dynapose4d.render.projection import project_gaussians
from dynapose4d.render.reference import rasterize_dense
from dynapose4d.sh import eval_sh
from tests.test_render import random_scene, reference_render, some_cameras

D = torch.float64
FIELDS = ("means2d", "conics", "opacities", "colors", "depths")


def screen_space(g, cams):
    """Projected Gaussians for each camera, as detached leaves: (dict of FIELDS, radii)."""
    with torch.no_grad():
        p = project_gaussians(g.means, g.quats, g.scales, g.opacities, cams.viewmats, cams.Ks, cams.width, cams.height)
        C = cams.batch_shape[0]
        colors = eval_sh(g.sh_coeffs[None].expand(C, -1, -1, -1), g.means[None] - cams.positions[:, None])
        opacities = g.opacities[None].expand(C, -1)
        params = dict(means2d=p.means2d, conics=p.conics, opacities=opacities, colors=colors, depths=p.depths)
    return {k: v.clone().contiguous() for k, v in params.items()}, p.radii


def stacked_scene(n=30, size=24, opacity=0.95, seed=0, radius=12):
    """``n`` nearly coincident round Gaussians in one image: opaque enough that a pixel stops
    after a few of them. The deeper ones are brighter, so including one past the stop shows."""
    gen = torch.Generator().manual_seed(seed)
    depths = torch.rand(1, n, generator=gen, dtype=D) + 1.0
    params = dict(
        means2d=size / 2 + 0.8 * torch.randn(1, n, 2, generator=gen, dtype=D),
        conics=torch.tensor([1 / 9, 0.0, 1 / 9], dtype=D).expand(1, n, 3).clone(),
        opacities=torch.full((1, n), opacity, dtype=D),
        colors=torch.rand(1, n, 3, generator=gen, dtype=D) + 5.0 * (depths[..., None] - 1.0),
        depths=depths,
    )
    radii = torch.full((1, n, 2), radius, dtype=torch.int32)
    return params, radii


def run(fn, params, radii, width, height, weights):
    """Images and the gradients of a weighted sum of them w.r.t. every screen-space parameter."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    images = fn(*(leaves[k] for k in FIELDS), radii, width, height)
    loss = sum((im * w).sum() for im, w in zip(images, weights))
    return [im.detach() for im in images], torch.autograd.grad(loss, [leaves[k] for k in FIELDS])


def dense(*args):
    means2d, conics, opacities, colors, depths, radii, width, height = args
    return rasterize_dense(means2d, conics, opacities, colors, depths, (radii > 0).all(-1), width, height)


def loss_weights(n_img, width, height, seed=1, dtype=D):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n_img, height, width, 3), (n_img, height, width), (n_img, height, width)]
    return [torch.randn(s, generator=gen, dtype=D).to(dtype) for s in shapes]


def assert_same(a, b, image_tol=1e-10, grad_tol=1e-4):
    (images_a, grads_a), (images_b, grads_b) = a, b
    for name, x, y in zip(("rgb", "alpha", "depth_acc"), images_a, images_b):
        torch.testing.assert_close(x, y, rtol=image_tol, atol=image_tol, msg=lambda m: f"{name}: {m}")
    for name, x, y in zip(FIELDS, grads_a, grads_b):
        assert y.abs().max() > 0, name  # the scene exercises every parameter
        rel = ((x - y).norm() / y.norm()).item()
        assert rel < grad_tol, f"{name}: relative gradient error {rel:.2e}"


@pytest.mark.parametrize("sh_degree", [0, 1])
def test_render_matches_dense_reference(sh_degree):
    g = random_scene(300, sh_degree=sh_degree, seed=sh_degree)
    cams = some_cameras()
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=D)
    out = render(g, cams, bg, backend="numba")
    assert out.backend == "numba"
    ref_rgb, ref_alpha, ref_depth_acc = reference_render(g, cams, bg)
    assert ref_alpha.max() > 0.99 and ref_alpha.min() < 0.01  # both covered and empty pixels
    torch.testing.assert_close(out.rgb, ref_rgb, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.alpha, ref_alpha, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.depth * out.alpha, ref_depth_acc, rtol=1e-9, atol=1e-9)


def test_render_gradients_match_dense_reference():
    """Through projection and SH: every Gaussian parameter, three cameras."""
    g = random_scene(150, sh_degree=1, seed=3).requires_grad_()
    cams = some_cameras(32, 24)
    bg = torch.tensor([1.0, 1.0, 1.0], dtype=D)
    w_rgb, w_alpha, w_depth = loss_weights(3, 32, 24)

    def loss(rgb, alpha, depth_acc):
        return (rgb * w_rgb).sum() + (alpha * w_alpha).sum() + (depth_acc * w_depth).sum()

    out = render(g, cams, bg, backend="numba")
    ours = torch.autograd.grad(loss(out.rgb, out.alpha, out.depth * out.alpha), list(g.tensors().values()))
    ref = torch.autograd.grad(loss(*reference_render(g, cams, bg)), list(g.tensors().values()))
    for name, a, b in zip(g.tensors(), ours, ref):
        assert b.abs().max() > 0, name
        rel = (a - b).norm() / b.norm()
        assert rel < 1e-4, f"{name}: relative gradient error {rel:.2e}"


@pytest.mark.parametrize("sh_degree", [0, 1])
def test_screen_space_matches_dense_and_pair_rasterisers(sh_degree):
    """Batched images (three cameras), a frame wider than tall and not a multiple of the tile."""
    g = random_scene(250, sh_degree=sh_degree, seed=10 + sh_degree)
    cams = some_cameras(45, 37)
    params, radii = screen_space(g, cams)
    weights = loss_weights(3, 45, 37)
    ours = run(rasterize_numba, params, radii, 45, 37, weights)
    assert_same(ours, run(dense, params, radii, 45, 37, weights))
    assert_same(ours, run(rasterize, params, radii, 45, 37, weights), grad_tol=1e-9)


def test_early_stop_matches_reference(monkeypatch):
    params, radii = stacked_scene()
    weights = loss_weights(1, 24, 24, seed=2)
    ours = run(rasterize_numba, params, radii, 24, 24, weights)
    assert_same(ours, run(dense, params, radii, 24, 24, weights))
    assert_same(ours, run(rasterize, params, radii, 24, 24, weights), grad_tol=1e-9)
    # The stop matters in this scene: compositing every Gaussian gives another image.
    monkeypatch.setattr(reference_module, "TRANSMITTANCE_MIN", 0.0)
    no_stop = run(dense, params, radii, 24, 24, weights)
    assert (no_stop[0][0] - ours[0][0]).abs().max() > 1e-5


def test_alpha_clamp_matches_reference(monkeypatch):
    params, radii = stacked_scene(n=6, opacity=0.9999, seed=4, radius=24)
    params["conics"] = params["conics"] / 4  # wide footprints (std 6 px): many clamped pixels
    weights = loss_weights(1, 24, 24, seed=3)
    ours = run(rasterize_numba, params, radii, 24, 24, weights)
    assert_same(ours, run(dense, params, radii, 24, 24, weights))
    assert_same(ours, run(rasterize, params, radii, 24, 24, weights), grad_tol=1e-9)
    monkeypatch.setattr(reference_module, "ALPHA_MAX", 1.0)
    unclamped = run(dense, params, radii, 24, 24, weights)
    assert (unclamped[0][1] - ours[0][1]).abs().max() > 1e-5


def test_fully_clamped_gaussian_passes_no_gradient_to_opacity_or_shape():
    # Opacity 0.9999 and a footprint so wide that opacity exp(-sigma) > 0.999 at every pixel.
    params = dict(
        means2d=torch.tensor([[[4.0, 4.0]]], dtype=D),
        conics=torch.tensor([[[1e-6, 0.0, 1e-6]]], dtype=D),
        opacities=torch.tensor([[0.9999]], dtype=D),
        colors=torch.tensor([[[0.2, 0.4, 0.6]]], dtype=D),
        depths=torch.tensor([[2.0]], dtype=D),
    )
    radii = torch.tensor([[[8, 8]]], dtype=torch.int32)
    (rgb, alpha, _), grads = run(rasterize_numba, params, radii, 8, 8, loss_weights(1, 8, 8))
    assert (alpha == 0.999).all()
    for name, grad in zip(FIELDS, grads):
        assert (grad.abs().max() > 0) == (name in ("colors", "depths")), name


def test_batched_scenes_and_cameras_match_the_pair_rasteriser():
    g = random_scene(120, batch=(3,), seed=7)
    cams = some_cameras(24, 20)
    per_scene = Cameras(cams.c2w.expand(3, 3, 4, 4), cams.fovy.expand(3, 3), 24, 20)
    for cameras in (cams, per_scene):
        a = render(g, cameras, 1.0, backend="numba")
        b = render(g, cameras, 1.0, backend="torch")
        assert a.rgb.shape == (3, 3, 20, 24, 3)
        torch.testing.assert_close(a.rgb, b.rgb, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(a.depth, b.depth, rtol=1e-9, atol=1e-9)
    single = render(g.map(lambda t: t[1]), cams[2], 1.0, backend="numba")
    torch.testing.assert_close(single.rgb, render(g, cams, 1.0, backend="numba").rgb[1, 2])


def test_empty_scenes_and_images():
    # No Gaussians at all, through render() and through the rasteriser itself.
    out = render(random_scene(0), some_cameras(8, 6), torch.tensor([0.1, 0.2, 0.3], dtype=D), backend="numba")
    torch.testing.assert_close(out.rgb[1, 2, 3], torch.tensor([0.1, 0.2, 0.3], dtype=D))
    params = {k: torch.zeros((2, 0) + s, dtype=D) for k, s in zip(FIELDS, [(2,), (3,), (), (3,), ()])}
    images, grads = run(rasterize_numba, params, torch.zeros(2, 0, 2, dtype=torch.int32), 8, 6, loss_weights(2, 8, 6))
    assert all(im.abs().sum() == 0 for im in images) and images[0].shape == (2, 6, 8, 3)
    assert [gr.shape for gr in grads] == [params[k].shape for k in FIELDS]
    # Two images, the second with every Gaussian culled (radii 0) or off screen.
    g = random_scene(100, seed=5)
    params, radii = screen_space(g, some_cameras(20, 16))
    radii[1] = 0
    params["means2d"][2] -= 1000.0  # boxes clamp to nothing
    images, grads = run(rasterize_numba, params, radii, 20, 16, loss_weights(3, 20, 16))
    assert images[1][0].abs().max() > 0.5
    assert all(im[1:].abs().sum() == 0 for im in images)
    for grad in grads:
        assert grad[1:].abs().sum() == 0 and grad[0].abs().sum() > 0


def test_float32_close_to_float64():
    g = random_scene(400, seed=2)
    cams = some_cameras(48, 40)
    params, radii = screen_space(g, cams)
    weights = loss_weights(3, 48, 40)
    (images64, grads64) = run(rasterize_numba, params, radii, 48, 40, weights)
    params32 = {k: v.float() for k, v in params.items()}
    (images32, grads32) = run(rasterize_numba, params32, radii, 48, 40, [w.float() for w in weights])
    assert all(t.dtype == torch.float32 for t in list(images32) + list(grads32))
    for a, b in zip(images64, images32):
        assert (a - b.double()).abs().max() < 1e-4
    for name, a, b in zip(FIELDS, grads64, grads32):
        rel = (a - b.double()).norm() / a.norm()
        assert rel < 1e-3, f"{name}: {rel:.2e}"
    # And through render(), as test_render does for the PyTorch path.
    a = render(g, cams, 1.0, backend="numba")
    b = render(g.to(dtype=torch.float32), cams.to(dtype=torch.float32), 1.0, backend="numba")
    assert (a.rgb - b.rgb.double()).abs().max() < 1e-4


def test_gradcheck_tiny_scene():
    g = random_scene(5, seed=5, spread=0.15)
    cams = Cameras.orbit(torch.tensor([10.0], dtype=D), torch.tensor([20.0], dtype=D), 2.0, width=10, height=8, dtype=D)
    params, radii = screen_space(g, cams)
    params["opacities"] = torch.full_like(params["opacities"], 0.6)  # away from the 0.999 clamp
    leaves = [params[k].requires_grad_() for k in FIELDS]
    assert torch.autograd.gradcheck(
        lambda *t: rasterize_numba(*t, radii, 10, 8), leaves, eps=1e-6, atol=1e-6, rtol=1e-4
    )


def test_gradients_do_not_depend_on_the_thread_count():
    g = random_scene(300, seed=8)
    params, radii = screen_space(g, some_cameras(40, 32))
    weights = loss_weights(3, 40, 32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(rasterize_numba, params, radii, 40, 32, weights)
        torch.set_num_threads(2)
        two = run(rasterize_numba, params, radii, 40, 32, weights)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip([*one[0], *one[1]], [*two[0], *two[1]]):
        assert torch.equal(a, b)


def test_budget_error_names_the_cause():
    g = random_scene(300, spread=0.5)
    cam = Cameras.orbit(0.0, 0.0, 0.05, width=32, dtype=D)  # inside the cloud
    with pytest.raises(RenderBudgetError, match="camera inside the scene"):
        render(g, cam, 1.0, backend="numba", max_pairs=1000)


def test_backend_choice(monkeypatch):
    render_module = sys.modules["dynapose4d.render"]
    cpu = torch.device("cpu")
    monkeypatch.delenv("DYNAPOSE4D_RENDERER", raising=False)
    assert choose_backend(cpu) == "numba"
    assert choose_backend(cpu, "torch") == "torch"
    monkeypatch.setenv("DYNAPOSE4D_RENDERER", "torch")
    assert choose_backend(cpu) == "torch"
    assert render(random_scene(20), some_cameras(8, 8)).backend == "torch"
    monkeypatch.setenv("DYNAPOSE4D_RENDERER", "numba")
    assert choose_backend(cpu) == "numba"
    with pytest.raises(RuntimeError, match="needs CPU tensors"):
        choose_backend(torch.device("cuda"), "numba")
    # Without numba, auto falls back to the PyTorch path and an explicit request says why.
    monkeypatch.delenv("DYNAPOSE4D_RENDERER")
    monkeypatch.setattr(render_module, "_numba_problem", lambda: "the numba rasteriser does not import (test)")
    assert choose_backend(cpu) == "torch"
    with pytest.raises(RuntimeError, match="does not import .*renderer='torch'"):
        choose_backend(cpu, "numba")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_can_render():
    """numba's GNU OpenMP layer kills a forked child that starts a parallel region; the layer we
    default to must not (DataLoader workers and multiprocessing's fork start method fork). The
    child renders on one torch thread: torch's own OpenMP (MKL's threaded exp) is not fork-safe
    either, and hangs a forked child that uses more."""
    g = random_scene(50)
    cam = Cameras.orbit(0.0, 0.0, 2.0, width=16, dtype=D)
    before = render(g, cam, backend="numba").rgb
    pid = os.fork()
    if pid == 0:  # child: report through the exit code only, never return into pytest
        code = 3
        try:
            torch.set_num_threads(1)
            code = 0 if torch.equal(render(g, cam, backend="numba").rgb, before) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_analytic_single_gaussian():
    """One isotropic Gaussian on a pixel centre: alpha at a pixel is opacity exp(-d^2 / 2 var)."""
    var, op = 4.0, 0.8
    params = dict(
        means2d=torch.tensor([[[16.5, 8.5]]], dtype=D),
        conics=torch.tensor([[[1 / var, 0.0, 1 / var]]], dtype=D),
        opacities=torch.tensor([[op]], dtype=D),
        colors=torch.tensor([[[0.2, 0.4, 0.6]]], dtype=D),
        depths=torch.tensor([[3.0]], dtype=D),
    )
    radii = torch.tensor([[[7, 7]]], dtype=torch.int32)
    rgb, alpha, depth_acc = rasterize_numba(*(params[k] for k in FIELDS), radii, 33, 17)
    for i, j in [(8, 16), (8, 18), (11, 14), (5, 20)]:
        d2 = (j + 0.5 - 16.5) ** 2 + (i + 0.5 - 8.5) ** 2
        assert alpha[0, i, j].item() == pytest.approx(op * math.exp(-0.5 * d2 / var), rel=1e-14)
    torch.testing.assert_close(rgb[0], alpha[0, ..., None] * params["colors"][0, 0])
    torch.testing.assert_close(depth_acc[0], 3.0 * alpha[0])
    # Cut below 1/255 and outside the box.
    assert alpha[alpha > 0].min() >= 1 / 255 and alpha[0, :, :9].abs().sum() == 0
