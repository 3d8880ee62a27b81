"""Renderer correctness: projection vs gsplat's reference, the pair rasteriser vs a dense float64
reference (images and gradients), gradcheck, analytic cases, batching and bad input."""

import math

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

from dynapose4d.cameras import Cameras
from dynapose4d.gaussians import Gaussians, GaussiansError, transform_gaussians
from dynapose4d.render import RenderBudgetError, render
from dynapose4d.render.pairs import _contributing_pairs
from dynapose4d.render.projection import ALPHA_MIN, project_gaussians
from dynapose4d.render.reference import rasterize_dense
from dynapose4d.sh import eval_sh

D = torch.float64


def random_scene(n, sh_degree=0, seed=0, spread=0.35, dtype=D, batch=()):
    gen = torch.Generator().manual_seed(seed)
    shape = batch + (n,)
    k = (sh_degree + 1) ** 2 - 1
    return Gaussians(
        means=(torch.rand(shape + (3,), generator=gen, dtype=dtype) - 0.5) * 2 * spread,
        quats=torch.randn(shape + (4,), generator=gen, dtype=dtype),
        log_scales=math.log(0.04) + 0.5 * torch.randn(shape + (3,), generator=gen, dtype=dtype),
        opacity_logits=torch.randn(shape + (1,), generator=gen, dtype=dtype) * 1.5,
        sh_dc=torch.randn(shape + (3,), generator=gen, dtype=dtype) * 0.8,
        sh_rest=0.2 * torch.randn(shape + (k, 3), generator=gen, dtype=dtype) if k else None,
    )


def some_cameras(width=40, height=32, dtype=D):
    return Cameras.orbit(
        torch.tensor([0.0, 25.0, -30.0], dtype=dtype),
        torch.tensor([0.0, 70.0, -140.0], dtype=dtype),
        torch.tensor([2.0, 1.8, 2.2], dtype=dtype),
        width=width,
        height=height,
        dtype=dtype,
    )


def reference_render(g: Gaussians, cams: Cameras, background):
    """Dense float64 render that shares no code with the pair rasteriser's path: gsplat's own
    pure-torch projection plus the dense compositor."""
    covars, _ = _quat_scale_to_covar_preci(g.quats, g.scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        g.means[None], covars[None], cams.viewmats[None], cams.Ks[None], cams.width, cams.height
    )
    visible = (radii[0] > 0).all(-1) & (g.opacities >= ALPHA_MIN)[None]
    dirs = g.means[None] - cams.positions[:, None]
    colors = eval_sh(g.sh_coeffs[None].expand(len(dirs), -1, -1, -1), dirs)
    C = cams.batch_shape[0]
    rgb, alpha, depth_acc = rasterize_dense(
        means2d[0], conics[0], g.opacities[None].expand(C, -1), colors, depths[0], visible, cams.width, cams.height
    )
    rgb = rgb + (1 - alpha[..., None]) * background
    return rgb, alpha, depth_acc


def test_projection_matches_gsplat_reference():
    g = random_scene(500, spread=0.6)
    cams = some_cameras(64, 48)
    ours = project_gaussians(g.means, g.quats, g.scales, g.opacities, cams.viewmats, cams.Ks, 64, 48)
    covars, _ = _quat_scale_to_covar_preci(g.quats, g.scales, compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(g.means, covars, cams.viewmats, cams.Ks, 64, 48)
    valid = (radii > 0).all(-1) & (ours.radii > 0).all(-1)
    assert valid.sum() > 800  # most of the 1500 (camera, Gaussian) pairs are on screen
    torch.testing.assert_close(ours.means2d[valid], means2d[valid])
    torch.testing.assert_close(ours.conics[valid], conics[valid])
    torch.testing.assert_close(ours.depths, depths)
    # Our radii are gsplat's CUDA ones (opacity-aware), never larger than the 3.33-sigma ones.
    assert (ours.radii[valid] <= radii[valid]).all()


def test_radius_encloses_every_pixel_above_the_alpha_threshold():
    g = random_scene(200, spread=0.5)
    cams = some_cameras(48, 48)
    p = project_gaussians(g.means, g.quats, g.scales, g.opacities, cams.viewmats, cams.Ks, 48, 48)
    a, b, c = p.conics.unbind(-1)
    # Extent of the alpha >= 1/255 ellipse along x: sqrt(2 ln(255 op) / (a - b^2 / c)).
    level = 2 * torch.log(g.opacities * 255).clamp_min(0)[None]
    extent_x = torch.sqrt(level / (a - b * b / c))
    vis = (p.radii > 0).all(-1)
    assert (extent_x[vis] <= p.radii[..., 0][vis] + 1e-9).all()


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_pair_rasteriser_matches_dense_reference(sh_degree):
    g = random_scene(300, sh_degree=sh_degree, seed=sh_degree)
    cams = some_cameras()
    bg = torch.tensor([0.2, 0.5, 0.9], dtype=D)
    out = render(g, cams, bg, backend="torch")
    ref_rgb, ref_alpha, ref_depth_acc = reference_render(g, cams, bg)
    assert ref_alpha.max() > 0.99 and ref_alpha.min() < 0.01  # both covered and empty pixels
    torch.testing.assert_close(out.rgb, ref_rgb, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.alpha, ref_alpha, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.depth * out.alpha, ref_depth_acc, rtol=1e-9, atol=1e-9)


def test_gradients_match_dense_reference():
    g = random_scene(150, sh_degree=1, seed=3).requires_grad_()
    cams = some_cameras(32, 24)
    bg = torch.tensor([1.0, 1.0, 1.0], dtype=D)
    gen = torch.Generator().manual_seed(1)
    w_rgb = torch.randn(3, 24, 32, 3, generator=gen, dtype=D)
    w_alpha = torch.randn(3, 24, 32, generator=gen, dtype=D)
    w_depth = torch.randn(3, 24, 32, generator=gen, dtype=D)

    def loss(rgb, alpha, depth_acc):
        return (rgb * w_rgb).sum() + (alpha * w_alpha).sum() + (depth_acc * w_depth).sum()

    out = render(g, cams, bg, backend="torch")
    ours = torch.autograd.grad(loss(out.rgb, out.alpha, out.depth * out.alpha), list(g.tensors().values()))
    ref = torch.autograd.grad(loss(*reference_render(g, cams, bg)), list(g.tensors().values()))
    for name, a, b in zip(g.tensors(), ours, ref):
        assert b.abs().max() > 0, name  # every parameter gets a gradient
        rel = (a - b).norm() / b.norm()
        assert rel < 1e-4, f"{name}: relative gradient error {rel:.2e}"


def test_gradcheck_tiny_scene():
    g = random_scene(4, sh_degree=1, seed=5, spread=0.15)
    g.opacity_logits = torch.full_like(g.opacity_logits, 0.5)  # away from the 0.999 clamp
    cams = Cameras.orbit(torch.tensor([10.0], dtype=D), torch.tensor([20.0], dtype=D), 2.0, width=10, height=8, dtype=D)
    names = list(g.tensors())

    def fn(*params):
        scene = Gaussians(**dict(zip(names, params)))
        out = render(scene, cams, 0.5, backend="torch")
        return out.rgb, out.alpha

    params = [t.clone().requires_grad_() for t in g.tensors().values()]
    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_analytic_single_isotropic_gaussian_at_the_centre():
    s, op = 0.02, 0.8
    g = Gaussians.from_points(torch.zeros(1, 3, dtype=D), torch.tensor([[0.2, 0.4, 0.6]], dtype=D), s, op)
    cam = Cameras.orbit(0.0, 0.0, 2.0, width=64, dtype=D)
    out = render(g, cam, 1.0, backend="torch")
    f = 32 / math.tan(math.radians(49.1) / 2)
    var = (f * s / 2.0) ** 2 + 0.3  # projected variance plus the 0.3 px^2 dilation

    def alpha_at(dx, dy):
        return op * math.exp(-0.5 * (dx * dx + dy * dy) / var)

    # The image centre (32, 32) is a pixel corner: the four nearest centres are 0.5 px away.
    peak = alpha_at(0.5, 0.5)
    for i, j in [(31, 31), (31, 32), (32, 31), (32, 32)]:
        assert out.alpha[i, j].item() == pytest.approx(peak, rel=1e-12)
    assert out.alpha.max().item() == pytest.approx(peak, rel=1e-12)
    # Colour: premultiplied composite over a white background.
    torch.testing.assert_close(out.rgb[32, 32], torch.tensor([0.2, 0.4, 0.6], dtype=D) * peak + (1 - peak))
    assert out.depth[32, 32].item() == pytest.approx(2.0)
    # Extent: alpha is cut where it would fall below 1/255.
    radius = math.sqrt(2 * var * math.log(255 * op))
    ys, xs = torch.nonzero(out.alpha > 0, as_tuple=True)
    dist = torch.sqrt((xs + 0.5 - 32) ** 2 + (ys + 0.5 - 32) ** 2)
    assert dist.max() <= radius
    assert dist.max() > radius - 1.0
    assert out.alpha[out.alpha > 0].min() >= 1 / 255


def test_opacity_clamp_and_early_stop():
    # A (front) with opacity 0.9995 clamps to alpha 0.999 at its centre; B behind it would take
    # the transmittance to 0.001 * 0.05 = 5e-5 <= 1e-4, so the pixel stops before B.
    means = torch.tensor([[0.0, 0.0, 0.2], [0.0, 0.0, -0.2]], dtype=D)
    rgb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=D)
    g = Gaussians.from_points(means, rgb, torch.tensor([0.3, 0.3], dtype=D), torch.tensor([0.9995, 0.95], dtype=D))
    # Put the Gaussians' centres exactly on a pixel centre (odd image size).
    cam = Cameras.orbit(0.0, 0.0, 2.0, width=33, dtype=D)
    out = render(g, cam, 1.0, backend="torch")
    centre = out.rgb[16, 16]
    torch.testing.assert_close(centre, torch.tensor([0.999 + 0.001, 0.001, 0.001], dtype=D))
    assert out.alpha[16, 16].item() == pytest.approx(0.999)
    # Off-centre, alpha(A) is lower and B shows through.
    assert out.rgb[16, 26, 1] < 1.0 and out.rgb[16, 26, 0] > 0.5


def test_batched_scenes_and_cameras_equal_separate_renders():
    g = random_scene(120, batch=(3,), seed=7)
    cams = some_cameras(24, 20)
    shared = render(g, cams, 1.0, backend="torch")
    assert shared.rgb.shape == (3, 3, 20, 24, 3) and shared.alpha.shape == (3, 3, 20, 24)
    per_scene = Cameras(cams.c2w.expand(3, 3, 4, 4), cams.fovy.expand(3, 3), 24, 20)
    batched = render(g, per_scene, 1.0, backend="torch")
    for b in range(3):
        single = render(g.map(lambda t: t[b]), cams, 1.0, backend="torch")
        torch.testing.assert_close(shared.rgb[b], single.rgb)
        torch.testing.assert_close(batched.depth[b], single.depth)
    one = render(g.map(lambda t: t[0]), cams[1], 1.0, backend="torch")
    assert one.rgb.shape == (20, 24, 3)
    torch.testing.assert_close(one.rgb, shared.rgb[0, 1])


def test_rotating_scene_and_camera_together_changes_nothing():
    """Means, orientations and view-dependent (SH degree 3) colour all rotate consistently."""
    g = random_scene(200, sh_degree=3, seed=11)
    cams = some_cameras(32, 32)
    angle = math.radians(37.0)
    R = torch.tensor(
        [[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]], dtype=D
    ) @ torch.tensor([[1, 0, 0], [0, math.cos(0.3), -math.sin(0.3)], [0, math.sin(0.3), math.cos(0.3)]], dtype=D)
    moved = transform_gaussians(g, R)
    T = torch.eye(4, dtype=D)
    T[:3, :3] = R
    moved_cams = Cameras(T @ cams.c2w, cams.fovy, 32, 32)
    a = render(g, cams, 0.3, backend="torch")
    b = render(moved, moved_cams, 0.3, backend="torch")
    torch.testing.assert_close(a.rgb, b.rgb, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(a.depth, b.depth, rtol=1e-7, atol=1e-7)


def test_float32_matches_float64():
    g = random_scene(400, seed=2)
    cams = some_cameras(48, 40)
    a = render(g, cams, 1.0, backend="torch")
    b = render(g.to(dtype=torch.float32), cams.to(dtype=torch.float32), 1.0, backend="torch")
    assert (a.rgb - b.rgb.double()).abs().max() < 1e-4


def test_zero_gaussians_render_the_background():
    g = random_scene(0)
    out = render(g, some_cameras(8, 6), torch.tensor([0.1, 0.2, 0.3], dtype=D))
    assert out.rgb.shape == (3, 6, 8, 3)
    torch.testing.assert_close(out.rgb[1, 2, 3], torch.tensor([0.1, 0.2, 0.3], dtype=D))
    assert out.alpha.abs().sum() == 0 and out.depth.abs().sum() == 0


@pytest.mark.parametrize("field", ["means", "quats", "log_scales", "opacity_logits", "sh_dc"])
def test_non_finite_parameters_are_named(field):
    g = random_scene(10)
    getattr(g, field)[3, 0] = float("nan")
    with pytest.raises(GaussiansError, match=rf"{field} has non-finite values .* in 1 Gaussian"):
        render(g, some_cameras(8, 8))
    g = random_scene(10)
    getattr(g, field)[2, 0] = float("inf")
    with pytest.raises(GaussiansError, match=field):
        render(g, some_cameras(8, 8))


def test_bad_shapes_and_zero_quaternions_are_named():
    g = random_scene(10)
    g.quats = g.quats[:, :3]
    with pytest.raises(GaussiansError, match=r"quats must have shape \(10, 4\)"):
        render(g, some_cameras(8, 8))
    g = random_scene(10)
    g.quats[4] = 0
    with pytest.raises(GaussiansError, match="zero-length quaternions"):
        render(g, some_cameras(8, 8))
    with pytest.raises(ValueError, match="batch shape"):
        render(random_scene(10, batch=(2,)), Cameras(torch.eye(4).expand(3, 1, 4, 4).double(), torch.ones(3, 1, dtype=D), 8, 8))
    with pytest.raises(ValueError, match="background"):
        render(random_scene(10), some_cameras(8, 8), torch.ones(2, dtype=D))
    with pytest.raises(ValueError, match="unknown renderer"):
        render(random_scene(10), some_cameras(8, 8), backend="vulkan")


def test_degenerate_scales_render_finite_images():
    g = random_scene(50)
    g.log_scales[:10] = -60.0  # points: the 0.3 px^2 dilation keeps them drawable
    g.log_scales[10:12, 0] = -60.0  # flat discs
    out = render(g.requires_grad_(), some_cameras(24, 24), 1.0)
    assert torch.isfinite(out.rgb).all()
    out.rgb.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in g.tensors().values())


def test_camera_inside_the_scene():
    g = random_scene(300, spread=0.5)
    cam = Cameras.orbit(0.0, 0.0, 0.05, width=32, dtype=D)  # inside the cloud
    out = render(g, cam, 1.0)
    assert torch.isfinite(out.rgb).all() and out.alpha.max() > 0.5
    # Gaussians behind the camera are culled, not mirrored in front of it.
    behind = Gaussians.from_points(torch.tensor([[0.0, 0.0, 0.5]], dtype=D), torch.ones(1, 3, dtype=D), 0.05, 0.9)
    assert render(behind, Cameras.orbit(0.0, 0.0, 0.2, width=16, dtype=D)).alpha.max() == 0
    # A scene whose Gaussians would cover far too many pixels fails with a clear message.
    with pytest.raises(RenderBudgetError, match="camera inside the scene"):
        render(g, cam, 1.0, max_pairs=1000)


def test_early_stop_drops_pairs_behind_opaque_layers():
    g = random_scene(400, spread=0.1)
    g.opacity_logits.fill_(6.0)
    cams = some_cameras(32, 32)
    p = project_gaussians(g.means, g.quats, g.scales, g.opacities, cams.viewmats, cams.Ks, 32, 32)
    feats = torch.cat([p.means2d, p.conics, g.opacities[None, :, None].expand(3, -1, -1)], -1)
    with_stop, _, _ = _contributing_pairs(feats, p.radii, p.depths, 32, 32, 10**8)
    without_stop, _, _ = _contributing_pairs(feats, p.radii, p.depths, 32, 32, 10**8, transmittance_min=0.0)
    assert len(with_stop) < 0.5 * len(without_stop)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_screen_space_means_collect_gradients(backend):
    """Densification reads means2d.grad after backward: the returned tensor must be in the graph."""
    g = random_scene(60, seed=4).requires_grad_()
    for cams, shape in ((some_cameras(24, 20), (3, 60, 2)), (some_cameras(24, 20)[1], (60, 2))):
        out = render(g, cams, 1.0, backend=backend)
        out.means2d.retain_grad()
        out.rgb.sum().backward()
        assert out.means2d.shape == shape
        assert out.means2d.grad is not None and out.means2d.grad.abs().sum() > 0
