"""Gaussian scenes: activations, helpers, and densification ops that keep Adam's state aligned."""

import math

import pytest
import torch

from dynapose4d.gaussians import (
    SH_C0,
    Gaussians,
    duplicate,
    quat_multiply,
    quat_to_rotmat,
    remove,
    reset_opacity,
    rotmat_to_quat,
    split,
)


def params_and_adam(n=6):
    g = Gaussians.from_points(torch.arange(n * 3, dtype=torch.float32).reshape(n, 3), torch.rand(n, 3), 0.05, 0.5)
    params = {k: torch.nn.Parameter(v) for k, v in g.tensors().items()}
    opts = {k: torch.optim.Adam([p], lr=0.01) for k, p in params.items()}
    loss = sum((p * torch.arange(1, n + 1).reshape((n,) + (1,) * (p.dim() - 1))).sum() for p in params.values())
    loss.backward()
    for o in opts.values():
        o.step()
    return params, opts


def adam_state(opts, name, params):
    return opts[name].state[params[name]]


def test_activations():
    g = Gaussians.from_points(torch.zeros(2, 3), torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]]), 0.1, 0.25)
    torch.testing.assert_close(g.scales, torch.full((2, 3), 0.1))
    torch.testing.assert_close(g.opacities, torch.full((2,), 0.25))
    torch.testing.assert_close(g.rgb, torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]]))
    torch.testing.assert_close(g.sh_dc[0, 0], torch.tensor(-0.5 / SH_C0))
    assert g.sh_degree == 0
    assert Gaussians.from_points(torch.zeros(1, 3), torch.ones(1, 3), sh_degree=2).sh_rest.shape == (1, 8, 3)


def test_select_and_cat():
    g = Gaussians.from_points(torch.arange(12.0).reshape(4, 3), torch.rand(4, 3))
    sub = g.select(torch.tensor([True, False, True, False]))
    assert sub.num == 2 and torch.equal(sub.means[1], g.means[2])
    both = Gaussians.cat([sub, g.select(torch.tensor([3]))])
    assert both.num == 3 and torch.equal(both.means[2], g.means[3])
    batched = g.map(lambda t: t[None].expand((2,) + t.shape))
    assert batched.select(torch.tensor([0, 1])).means.shape == (2, 2, 3)


def test_duplicate_appends_copies_with_fresh_moments():
    params, opts = params_and_adam()
    before = {k: p.detach().clone() for k, p in params.items()}
    old_m = adam_state(opts, "means", params)["exp_avg"].clone()
    duplicate(params, opts, torch.tensor([False, True, False, False, True, False]))
    assert params["means"].shape == (8, 3)
    torch.testing.assert_close(params["means"][6:], before["means"][[1, 4]])
    state = adam_state(opts, "means", params)
    torch.testing.assert_close(state["exp_avg"][:6], old_m)
    assert state["exp_avg"][6:].abs().sum() == 0
    assert opts["means"].param_groups[0]["params"][0] is params["means"]


def test_split_replaces_parents_by_smaller_children_inside_them():
    params, opts = params_and_adam()
    parent = params["means"][2].detach().clone()
    parent_log_scale = params["log_scales"][2].detach().clone()
    split(params, opts, torch.tensor([False, False, True, False, False, False]), torch.Generator().manual_seed(0))
    assert params["means"].shape == (7, 3)
    children = params["means"][5:].detach()
    assert (children - parent).norm(dim=-1).max() < 0.05 * 5  # within a few standard deviations
    torch.testing.assert_close(params["log_scales"][5:].detach(), (parent_log_scale - math.log(1.6)).expand(2, 3))
    state = adam_state(opts, "log_scales", params)
    assert state["exp_avg"].shape == (7, 3) and state["exp_avg"][5:].abs().sum() == 0


def test_remove_and_reset_opacity():
    params, opts = params_and_adam()
    keep_m = adam_state(opts, "quats", params)["exp_avg"][[0, 2, 3, 5]].clone()
    remove(params, opts, torch.tensor([False, True, False, False, True, False]))
    assert params["sh_dc"].shape == (4, 3)
    torch.testing.assert_close(adam_state(opts, "quats", params)["exp_avg"], keep_m)
    reset_opacity(params, opts, 0.01)
    assert torch.sigmoid(params["opacity_logits"]).max() <= 0.01 + 1e-6
    assert adam_state(opts, "opacity_logits", params)["exp_avg"].abs().sum() == 0
    # The optimiser keeps working on the edited tensors.
    params["opacity_logits"].sum().backward()
    opts["opacity_logits"].step()


def test_quaternion_helpers():
    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(50, 4, generator=gen, dtype=torch.float64), dim=-1)
    R = quat_to_rotmat(q)
    q2 = rotmat_to_quat(R)
    torch.testing.assert_close(q2 * torch.sign(q2[:, :1]), q * torch.sign(q[:, :1]))
    p = torch.nn.functional.normalize(torch.randn(50, 4, generator=gen, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(quat_to_rotmat(quat_multiply(p, q)), quat_to_rotmat(p) @ R)
    # Rotation by +90 degrees about +Y takes +Z to +X (right-handed).
    half = math.sqrt(0.5)
    Ry = quat_to_rotmat(torch.tensor([half, 0.0, half, 0.0], dtype=torch.float64))
    torch.testing.assert_close(Ry @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))


def test_validate_accepts_good_and_batched_scenes():
    g = Gaussians.from_points(torch.rand(2, 5, 3), torch.rand(2, 5, 3))
    assert g.validate() is g and g.batch_shape == (2,)
    g.sh_rest = torch.zeros(2, 5, 2, 3)
    with pytest.raises(ValueError, match=r"\(degree\+1\)\^2 - 1"):
        g.validate()
