"""Rigid parts for the animated splat: recovered exactly from rigid motion, chosen from the error on
a real 4D model, and handles made from frames alone (a PLY sequence)."""

import numpy as np
import pytest

from dynapose4d.mesh.splat_parts import (
    SplatPartsConfig,
    fit_rigid_groups,
    fit_splat_parts,
    handles_of_frames,
    handles_of_model,
    quat_wxyz_to_matrix,
)
from tests.splat_fixtures import quat_wxyz_matrix, tiny_result


def _axis_angle(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def three_rigid_blocks(frames=5, per=300, seed=0):
    """Three separate blocks of points, each turning about its own axis and sliding: ``rest [N, 3]``,
    ``moved [F, N, 3]``, ``quats [F, N, 4]`` (wxyz: the block's rotation) and each point's block."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-0.3, 0.0, 0.0], [0.0, 0.25, 0.1], [0.3, -0.1, -0.05]])
    axes = [(0, 0, 1), (1, 0.2, 0), (0.3, 1, 0.5)]
    block = np.repeat(np.arange(3), per)
    rest = centres[block] + rng.uniform(-0.08, 0.08, (len(block), 3))
    moved, quats = [], []
    for f in range(frames):
        R = np.stack([_axis_angle(axes[b], 0.3 * f * (b + 1)) for b in range(3)])
        t = np.array([[0.02 * f, 0, 0], [0, -0.03 * f, 0], [0, 0, 0.015 * f]])
        moved.append(np.einsum("nij,nj->ni", R[block], rest - centres[block]) + centres[block] + t[block])
        half = 0.15 * f * (np.arange(3) + 1)
        ax = np.stack([np.asarray(a, float) / np.linalg.norm(a) for a in axes])
        quats.append(np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * ax], 1)[block])
    return rest, np.stack(moved), np.stack(quats), block


def test_fit_rigid_groups_is_exact_for_rigid_groups():
    rest, moved, _, block = three_rigid_blocks()
    R, t = fit_rigid_groups(rest, moved, block, 3, np.ones(len(rest)))
    again = np.stack([np.einsum("nij,nj->ni", R[f, block], rest) + t[f, block] for f in range(len(moved))])
    np.testing.assert_allclose(again, moved, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)


def test_rigid_blocks_give_three_exact_parts_from_frames_alone():
    rest, moved, quats, block = three_rigid_blocks()
    handles = handles_of_frames(moved, quats, count=60)
    np.testing.assert_allclose(quat_wxyz_to_matrix(quats[3, :2]), quat_wxyz_matrix(quats[3, :2]), atol=1e-12)
    parts = fit_splat_parts(rest, moved, handles)
    assert parts.num_parts <= 4  # the fewest within the tolerance: 1 and 2 parts cannot be
    assert parts.err_max.max() < 1e-6 and parts.trials[0]["parts"] == 1 and parts.trials[0]["err_p99"] > 0.05
    # Each part is one block (a block may not be split across parts that move alike).
    for p in range(parts.num_parts):
        assert len(np.unique(block[parts.label == p])) == 1
    np.testing.assert_allclose(parts.moved(rest), moved, atol=1e-6)
    t, R = parts.node_motion()  # node origin at the pivot: R pivot + t
    np.testing.assert_allclose(t[:, 0], np.einsum("fij,j->fi", parts.rotations[:, 0], parts.pivots[0]) + parts.translations[:, 0])


@pytest.fixture(scope="module")
def lamp():
    import torch

    model = tiny_result()
    times = model.times(12, 24.0)
    with torch.no_grad():
        g, _ = model.sample(times)
    return model, times, g.means.double().numpy()


def test_a_real_models_parts_are_chosen_from_the_error(lamp):
    model, times, moved = lamp
    rest = model.static.means.double().numpy()
    handles = handles_of_model(model, times)
    assert handles.index.shape == (model.static.num, handles.weights.shape[1]) and np.allclose(handles.weights.sum(1), 1)
    parts = fit_splat_parts(rest, moved, handles, model.static.opacities.numpy())
    report = parts.report()
    assert report["parts"] == parts.num_parts and report["max_motion"] > 0.05
    # The choice: the first trial within the tolerance, every earlier one outside it.
    *before, chosen = parts.trials
    assert chosen["parts"] == parts.num_parts and chosen["err_p99"] <= 0.05
    assert all(t["err_p99"] > 0.05 or np.max(parts.err_mean) > 0.01 for t in before)
    assert parts.trials[0]["parts"] == 1 and parts.trials[0]["err_mean"] > 5 * report["rigid_err_mean"]
    # A fixed count is honoured (the skeleton may merge bones that move alike).
    two = fit_splat_parts(rest, moved, handles, config=SplatPartsConfig(parts=2))
    assert two.num_parts <= 2 and len(two.trials) == 1 and two.err_mean.mean() > parts.err_mean.mean()


def test_a_still_result_is_one_part_without_error():
    rest, moved, quats, _ = three_rigid_blocks(frames=3)
    still = np.repeat(rest[None], 3, 0)
    parts = fit_splat_parts(rest, still, handles_of_frames(still, np.repeat(quats[:1], 3, 0), count=20))
    assert parts.num_parts == 1 and parts.max_motion == 0 and parts.err_max.max() < 1e-12
