"""Zero-1-to-3 guidance on tiny random-weight models in the public folder layout."""

import math

import pytest
import torch

from dynapose4d.guidance import Guidance, OrbitPose

pytest_plugins = ["tests.conftest_models"]

from dynapose4d.guidance.zero123 import Zero123Config, Zero123Guidance, annealed_timestep, camera_embedding  # noqa: E402

SIZE = 64  # guidance image size in tests: 8x8 latents with the 4-block tiny VAE


@pytest.fixture(scope="module")
def guidance(tiny_zero123):
    torch.manual_seed(0)
    g = Zero123Guidance(Zero123Config(model=str(tiny_zero123["zero123-xl"]), image_size=SIZE))
    g.set_reference(_reference_image())
    return g


@pytest.fixture(scope="module")
def stable_guidance(tiny_hf_cache):
    # By registered name from the (fake) HF cache: the variant comes from the registry.
    g = Zero123Guidance(Zero123Config(model="stable-zero123", cache_dir=str(tiny_hf_cache), image_size=SIZE))
    g.set_reference(_reference_image(), OrbitPose.of(20.0, 0.0, 2.0))
    return g


def _reference_image(size=SIZE):
    img = torch.ones(size, size, 3)
    img[size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = torch.tensor([0.9, 0.3, 0.1])
    return img


# -- camera embedding (DESIGN.md §4), hand-computed ------------------------------------------------


def test_camera_embedding_zero123_golden():
    ref = OrbitPose.of(0.0, 0.0, 2.0)
    emb = camera_embedding(OrbitPose.of([30.0, -15.0], [90.0, 180.0], [2.5, 2.0]), ref, "zero123")
    expected = torch.tensor(
        [
            [-0.5235987756, 1.0, 0.0, 0.5],  # 30 deg above the reference: polar angle decreases
            [0.2617993878, 0.0, -1.0, 0.0],  # 15 deg below, behind
        ]
    )
    torch.testing.assert_close(emb, expected, atol=1e-6, rtol=0)


def test_camera_embedding_nonzero_reference_both_variants():
    ref = OrbitPose.of(20.0, 10.0, 2.0)
    target = OrbitPose.of(-10.0, -50.0, 1.5)
    # e_ref - e = 30 deg; a - a_ref = -60 deg
    zero123 = camera_embedding(target, ref, "zero123")
    stable = camera_embedding(target, ref, "stable-zero123")
    torch.testing.assert_close(zero123, torch.tensor([[0.5235987756, -0.8660254038, 0.5, -0.5]]), atol=1e-6, rtol=0)
    # Stable Zero123's 4th value: rad(90 - e_ref) = rad(70), whatever the target radius.
    torch.testing.assert_close(stable, torch.tensor([[0.5235987756, -0.8660254038, 0.5, 1.2217304764]]), atol=1e-6, rtol=0)
    # At the reference itself: no rotation.
    same = camera_embedding(ref, ref, "stable-zero123")
    torch.testing.assert_close(same, torch.tensor([[0.0, 0.0, 1.0, math.radians(70.0)]]), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown Zero123 variant 'zero1234'"):
        camera_embedding(target, ref, "zero1234")


def test_annealed_timesteps():
    assert annealed_timestep(0.0, 1000, (0.02, 0.98)) == 980
    assert annealed_timestep(1.0, 1000, (0.02, 0.98)) == 20
    assert annealed_timestep(0.5, 1000, (0.02, 0.98)) == 500
    with pytest.raises(ValueError, match="step_fraction must be in"):
        annealed_timestep(1.5, 1000, (0.02, 0.98))


def test_conditioning_uses_the_variant_embedding(guidance, stable_guidance):
    """The projection layer receives [CLIP embedding, camera embedding] for each variant."""
    assert guidance.variant == "zero123" and stable_guidance.variant == "stable-zero123"
    pose = OrbitPose.of(-10.0, -50.0, 1.5)
    cases = (
        (guidance, OrbitPose.of(0.0, 0.0, 2.0), "zero123"),
        (stable_guidance, OrbitPose.of(20.0, 0.0, 2.0), "stable-zero123"),
    )
    for g, ref, variant in cases:
        seen = []
        handle = g.camera_projection.register_forward_hook(lambda m, inputs, out: seen.append(inputs[0]))
        context, concat = g.conditioning(pose)
        handle.remove()
        cam = seen[0][:, 0, -4:]
        torch.testing.assert_close(cam, camera_embedding(pose, ref, variant), atol=1e-6, rtol=0)
        torch.testing.assert_close(seen[0][:, 0, :-4], g.clip_embeddings[0])
        assert context.shape == (1, 1, g.unet.config.cross_attention_dim) and concat.shape == (1, 4, 8, 8)


def test_reference_latents_are_unscaled_posterior_mode(guidance):
    x = _reference_image().permute(2, 0, 1)[None]
    with torch.no_grad():
        mode = guidance.vae.encode(x * 2 - 1).latent_dist.mode()
    # (memory layouts pick different conv kernels: ~1e-4 apart; scaled latents would be 5x off)
    torch.testing.assert_close(guidance.reference_latents, mode, atol=1e-3, rtol=1e-3)
    assert not torch.allclose(guidance.reference_latents, mode * guidance.vae_scale, atol=1e-2)
    assert guidance.vae_scale == pytest.approx(0.18215)


# -- SDS ----------------------------------------------------------------------------------------


def test_sds_gradient_matches_the_formula(guidance, one_thread):
    """loss = 0.5 ||z - sg(z - grad)||^2 / B, grad = (1 - abar_t)(eps_hat - eps): check the image
    gradient against an independent evaluation with the same random numbers."""
    images = torch.rand(2, 48, 48, 3, requires_grad=True)
    pose = OrbitPose.of([10.0, -20.0], [45.0, 200.0], 2.0)
    losses = guidance(images, pose, 0.3, generator=torch.Generator().manual_seed(7))
    assert set(losses) == {"loss_sds"}
    losses["loss_sds"].backward()
    t = annealed_timestep(0.3, 1000, (0.02, 0.98))
    assert guidance.last_stats["t"].tolist() == [t, t]

    # Independent evaluation.
    gen = torch.Generator().manual_seed(7)
    x = images.detach().clone().requires_grad_(True)
    x_in = torch.nn.functional.interpolate(x.permute(0, 3, 1, 2), (SIZE, SIZE), mode="bilinear", antialias=True)
    z = guidance.vae.encode(x_in * 2 - 1).latent_dist.sample(gen) * guidance.vae_scale
    with torch.no_grad():
        eps = torch.randn(z.shape, generator=gen)
        abar = guidance.scheduler.alphas_cumprod[t]
        z_t = abar.sqrt() * z + (1 - abar).sqrt() * eps
        context, concat = guidance.conditioning(pose)
        tt = torch.full((2,), t)
        e_c = guidance.unet(torch.cat([z_t, concat], 1), tt, encoder_hidden_states=context).sample
        zeros, no_context = torch.zeros_like(concat), torch.zeros_like(context)
        e_u = guidance.unet(torch.cat([z_t, zeros], 1), tt, encoder_hidden_states=no_context).sample
        grad = (1 - abar) * (e_u + 5.0 * (e_c - e_u) - eps)
    (z * grad / 2).sum().backward()
    torch.testing.assert_close(images.grad, x.grad, atol=1e-5, rtol=1e-4)
    assert losses["loss_sds"].item() == pytest.approx(0.5 * grad.pow(2).sum().item() / 2, rel=1e-4)
    assert guidance.last_stats["grad_norm"].item() == pytest.approx(grad.norm().item(), rel=1e-4)


def test_sds_reaches_gaussian_means_through_the_renderer(guidance, one_thread):
    from dynapose4d.cameras import Cameras
    from dynapose4d.gaussians import Gaussians
    from dynapose4d.render import render

    gen = torch.Generator().manual_seed(3)
    means = torch.nn.functional.normalize(torch.randn(150, 3, generator=gen), dim=-1) * 0.4
    g = Gaussians.from_points(means, torch.rand(150, 3, generator=gen), scale=0.06, opacity=0.8).requires_grad_(True)
    elevation, azimuth = torch.tensor([15.0, -20.0]), torch.tensor([60.0, 150.0])
    out = render(g, Cameras.orbit(elevation, azimuth, 2.0, width=32), 1.0)
    assert out.rgb.shape == (2, 32, 32, 3)
    loss = guidance(out.rgb, OrbitPose.of(elevation, azimuth, 2.0), 0.1)["loss_sds"]
    loss.backward()
    grad = g.means.grad
    assert grad is not None and bool(torch.isfinite(grad).all())
    assert grad.abs().sum() > 0 and (grad.abs().sum(-1) > 0).sum() > 10  # many Gaussians receive gradient


def test_random_timesteps_reference_index_and_errors(guidance, tiny_zero123, one_thread):
    g = Zero123Guidance(Zero123Config(model=str(tiny_zero123["zero123-xl"]), image_size=SIZE, t_range=(0.2, 0.4)))
    with pytest.raises(RuntimeError, match="call set_reference"):
        g(torch.rand(1, 32, 32, 3), OrbitPose.of(0.0, 30.0, 2.0))
    g.set_reference(torch.stack([_reference_image(), 1 - _reference_image()]))
    assert g.clip_embeddings.shape[0] == 2 and not torch.allclose(g.reference_latents[0], g.reference_latents[1])
    images = torch.rand(3, 32, 32, 3, requires_grad=True)
    g(images, OrbitPose.of(0.0, [10.0, 20.0, 30.0], 2.0), reference_index=torch.tensor([1, 0, 1]))["loss_sds"].backward()
    t = g.last_stats["t"]
    assert bool(((t >= 200) & (t <= 400)).all()) and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"reference_index must be 3 indices in \[0, 2\)"):
        g(images, OrbitPose.of(0.0, 0.0, 2.0), reference_index=torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="got 2 poses for 3 images"):
        g(images, OrbitPose.of(0.0, [1.0, 2.0], 2.0))
    with pytest.raises(ValueError, match=r"images must be \[B, H, W, 3\]"):
        g(images.permute(0, 3, 1, 2), OrbitPose.of(0.0, 0.0, 2.0))
    assert isinstance(g, Guidance)


def test_novel_view_sample(guidance, one_thread):
    pose = OrbitPose.of([0.0, 20.0], [90.0, -90.0], 2.0)
    a = guidance.sample(pose, steps=2, seed=1)
    b = guidance.sample(pose, steps=2, seed=1)
    c = guidance.sample(pose, steps=2, seed=2)
    assert a.shape == (2, SIZE, SIZE, 3) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        guidance.sample(pose, steps=0)


def test_loading_checks_the_layout(tiny_svd):
    from dynapose4d.weights import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not a zero123 model in the diffusers layout"):
        Zero123Guidance(Zero123Config(model=str(tiny_svd)))
    with pytest.raises(ValueError, match="t_range must satisfy"):
        Zero123Guidance(Zero123Config(model=str(tiny_svd), t_range=(0.9, 0.1)))
