"""The animated splat as rigid parts: what glTF can play of a 4D Gaussian result.

glTF animates node transforms, not splat attributes, so a moving ``KHR_gaussian_splatting`` splat
is a set of parts, each a node holding its Gaussians (in their rest pose) with one rigid motion
per frame as node TRS animation. The parts come from the skeleton the mesh export fits
(:func:`~dynapose4d.mesh.skeleton.build_skeleton` on the deformation's handles):

1. bones for at most ``k`` parts, from the handles' motion;
2. each Gaussian goes to the bone that moves it most (the largest sum of its skinning weights
   over the bone's handles);
3. each part's rigid motion is fitted to its own Gaussians' full deformation (weighted Kabsch,
   weights = opacity: a faint Gaussian matters less on screen), then each Gaussian may move to
   the part among its handles' bones that explains its motion best, and the parts are fitted
   again (``refine_iterations`` times);
4. the error: per frame, the distance between each Gaussian's rigid-part position and its full
   deformation, mean, 99th percentile and max over the Gaussians, divided by the largest motion
   of any Gaussian over the clip (so 0.05 = 5% of the largest motion).

``k`` is chosen from the error: the smallest of ``candidates`` whose error is within ``max_err``
for the 99th percentile and ``mean_err`` for the mean, both at the worst frame; when none is,
the one with the lowest 99th percentile. The search runs on a random subset of
``search_sample`` Gaussians (the skeletons, which depend on the handles only, are reused), and
the chosen count is then fitted on all of them: its cost no longer grows with N x candidates. Not the max: the Gaussians on a joint are moved by a
blend of two parts' motions, which no rigid part follows (on the articulated test objects the
max stays at 6-9% from 8 to 64 parts while the mean falls below 1%). Fewer parts are better in
a browser: three.js sorts splats within a part, and the parts against each other only as
whole objects.

Transforms are world-space maps of backend coordinates, as the skeleton's: part p at frame f
takes a rest point x to ``R[f, p] @ x + t[f, p]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .skeleton import SkeletonConfig, build_skeleton

DEFAULT_CANDIDATES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)


@dataclass(frozen=True)
class SplatPartsConfig:
    parts: int = 0  # a fixed part count; 0 chooses it from the error
    candidates: tuple[int, ...] = DEFAULT_CANDIDATES
    max_err: float = 0.05  # 99th percentile over the Gaussians, worst frame, in units of the largest motion
    mean_err: float = 0.01  # mean over the Gaussians, worst frame, same units
    refine_iterations: int = 2
    search_sample: int = 20_000  # the count is chosen on at most this many Gaussians, then fitted on all
    seed: int = 0

    def __post_init__(self):
        if self.parts < 0 or self.parts > 256:
            raise ValueError(f"parts must be within 0..256 (0 = choose from the error), got {self.parts}")
        if not self.candidates or min(self.candidates) < 1:
            raise ValueError(f"candidates must be positive part counts, got {self.candidates}")


@dataclass
class HandleMotion:
    """The deformation's handles and how the Gaussians hang on them.

    ``rest [M, 3]``, ``rotations [F, M, 3, 3]``, ``positions [F, M, 3]`` (a point bound to handle j
    goes to ``R_j (x - rest_j) + pos_j``), ``index [N, K]`` / ``weights [N, K]`` each Gaussian's
    handles and skinning weights (rows summing to 1)."""

    rest: np.ndarray
    rotations: np.ndarray
    positions: np.ndarray
    index: np.ndarray
    weights: np.ndarray


@dataclass
class SplatParts:
    """``label [N]`` each Gaussian's part; ``pivots [P, 3]`` each part's rest centre (its node's
    origin); ``rotations [F, P, 3, 3]``, ``translations [F, P, 3]`` the parts' motion (rest x ->
    ``R x + t``); ``err_mean [F]``, ``err_p99 [F]``, ``err_max [F]`` relative to ``max_motion``
    (the largest distance any Gaussian moves from its rest position); ``trials`` the part counts
    tried."""

    label: np.ndarray
    pivots: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    err_mean: np.ndarray
    err_p99: np.ndarray
    err_max: np.ndarray
    max_motion: float
    trials: list[dict] = field(default_factory=list)

    @property
    def num_parts(self) -> int:
        return int(self.pivots.shape[0])

    @property
    def frame_count(self) -> int:
        return int(self.rotations.shape[0])

    def moved(self, rest: np.ndarray) -> np.ndarray:
        """Rest points ``[N, 3]`` (one per Gaussian) moved by their parts: ``[F, N, 3]``."""
        return move_by_parts(rest, self.rotations, self.translations, self.label)

    def node_motion(self) -> tuple[np.ndarray, np.ndarray]:
        """Each part node's TRS at each frame when its Gaussians are stored relative to its pivot
        (``x - pivot``): translations ``[F, P, 3]`` = ``R pivot + t`` and rotation matrices."""
        return np.einsum("fpij,pj->fpi", self.rotations, self.pivots) + self.translations, self.rotations

    def report(self) -> dict:
        return {
            "parts": self.num_parts,
            "rigid_err_mean": round(float(self.err_mean.mean()), 6), "rigid_err_p99": round(float(self.err_p99.max()), 6),
            "rigid_err_max": round(float(self.err_max.max()), 6),
            "rigid_err_mean_per_frame": self.err_mean.round(6).tolist(), "rigid_err_max_per_frame": self.err_max.round(6).tolist(),
            "max_motion": round(self.max_motion, 6), "trials": self.trials,
        }


def fit_splat_parts(rest: np.ndarray, moved: np.ndarray, handles: HandleMotion, opacity: np.ndarray | None = None,
                    config: SplatPartsConfig = SplatPartsConfig()) -> SplatParts:
    """Rigid parts for Gaussians at ``rest [N, 3]`` whose full deformation is ``moved [F, N, 3]``."""
    rest = np.asarray(rest, np.float64)
    moved = np.asarray(moved, np.float64)
    n = rest.shape[0]
    w = np.ones(n) if opacity is None else np.clip(np.asarray(opacity, np.float64).reshape(n), 1e-3, None)
    max_motion = float(np.linalg.norm(moved - rest[None], axis=-1).max()) if n else 0.0
    m = handles.rest.shape[0]
    counts = [config.parts] if config.parts else sorted({min(c, max(m, 1)) for c in config.candidates})
    skeletons: dict[int, object] = {}
    # The search, on a subset when there are many Gaussians.
    sub = np.arange(n)
    if len(counts) > 1 and n > config.search_sample:
        sub = np.sort(np.random.default_rng(config.seed).choice(n, config.search_sample, replace=False))
    sub_handles = HandleMotion(handles.rest, handles.rotations, handles.positions, handles.index[sub], handles.weights[sub])
    best_k, best_p99, trials = counts[0], np.inf, []
    for k in counts:
        parts = _fit_k(rest[sub], moved[:, sub], sub_handles, w[sub], k, max_motion, config, skeletons)
        worst, mean = float(parts.err_p99.max()), float(parts.err_mean.max())
        trials.append({"parts": parts.num_parts, "err_mean": round(float(parts.err_mean.mean()), 6), "err_p99": round(worst, 6),
                       "err_max": round(float(parts.err_max.max()), 6), "gaussians": len(sub)})
        passes = worst <= config.max_err and mean <= config.mean_err
        if passes or worst < best_p99:
            best_k, best_p99 = k, worst
        if passes or max_motion == 0.0:
            break
    best = parts if len(sub) == n and best_k == k else _fit_k(rest, moved, handles, w, best_k, max_motion, config, skeletons)
    best.trials = trials
    return best


def _fit_k(rest, moved, handles: HandleMotion, w, k: int, max_motion: float, config: SplatPartsConfig, skeletons: dict) -> SplatParts:
    n = rest.shape[0]
    if handles.rest.shape[0] == 0 or k == 1:
        label = np.zeros(n, np.int64)
        candidates = label[:, None]
    else:
        # 1-2. Bones from the handles; each Gaussian to the bone with most of its skinning weight.
        if k not in skeletons:
            skeletons[k] = build_skeleton(handles.rest, handles.rotations, handles.positions, SkeletonConfig(max_bones=k, seed=config.seed))
        sk = skeletons[k]
        bone_of = sk.handle_bone[handles.index]  # [N, K]
        dense = np.zeros((n, sk.num_bones))
        np.add.at(dense, (np.repeat(np.arange(n), bone_of.shape[1]), bone_of.reshape(-1)), handles.weights.reshape(-1))
        label = dense.argmax(1)
        candidates = bone_of
    # 3. Fit each part to its Gaussians, let Gaussians move to a better neighbouring part, refit.
    for _ in range(config.refine_iterations + 1):
        label, candidates = _compact(label, candidates)
        R, t = fit_rigid_groups(rest, moved, label, int(label.max()) + 1, w)
        # Only Gaussians with another part among their handles' bones can move.
        edge = np.flatnonzero((candidates != label[:, None]).any(1))
        if len(edge) == 0:
            break
        x, y = rest[edge], moved[:, edge]
        err = np.stack([_sq_err(x, y, R, t, candidates[edge, c]) for c in range(candidates.shape[1])], 1)  # [E, K]
        new = label.copy()
        new[edge] = candidates[edge, err.argmin(1)]
        if np.array_equal(new, label):
            break
        label = new
    label, candidates = _compact(label, candidates)
    count = int(label.max()) + 1 if n else 1
    R, t = fit_rigid_groups(rest, moved, label, count, w)
    pivots = np.zeros((count, 3))
    np.add.at(pivots, label, rest * w[:, None])
    pivots /= np.maximum(np.bincount(label, weights=w, minlength=count), 1e-12)[:, None]
    # 4. The error against the full deformation.
    dist = np.linalg.norm(move_by_parts(rest, R, t, label) - moved, axis=-1)  # [F, N]
    scale = max_motion if max_motion > 0 else 1.0
    return SplatParts(label, pivots, R, t, dist.mean(1) / scale, np.percentile(dist, 99, axis=1) / scale, dist.max(1) / scale, max_motion)


def move_by_parts(rest: np.ndarray, R: np.ndarray, t: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``rest [N, 3]`` moved by parts ``part [N]`` with motion ``R [F, P, 3, 3]``, ``t [F, P, 3]``:
    ``[F, N, 3]`` (one frame at a time: the gathered matrices of all frames need not exist)."""
    return np.stack([np.einsum("nij,nj->ni", R[f, part], rest) + t[f, part] for f in range(R.shape[0])])


def _sq_err(rest, moved, R, t, part) -> np.ndarray:
    """Sum over frames of the squared distance of each Gaussian moved by ``part [N]``."""
    return sum(((np.einsum("nij,nj->ni", R[f, part], rest) + t[f, part] - moved[f]) ** 2).sum(1) for f in range(R.shape[0]))


def _compact(label: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 0..P-1 in order of first use; candidate parts mapped alike (a candidate
    bone with no Gaussians falls back to the Gaussian's own part)."""
    used, label = np.unique(label, return_inverse=True)
    lookup = np.full(int(max(used.max(), candidates.max())) + 1, -1)
    lookup[used] = np.arange(len(used))
    cand = lookup[candidates]
    cand = np.where(cand < 0, label[:, None], cand)
    return label.reshape(-1), cand


def fit_rigid_groups(rest: np.ndarray, moved: np.ndarray, label: np.ndarray, count: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Kabsch per group of points: ``rest [N, 3]``, ``moved [F, N, 3]``, ``label [N]``
    in 0..count-1, ``weights [N]`` -> rotations ``[F, count, 3, 3]``, translations ``[F, count, 3]``
    minimising ``sum_i w_i |R rest_i + t - moved_fi|^2`` within each group (a group with fewer
    than 3 points gets its centroid's translation and the rotation of the best fit it allows)."""
    from scipy.sparse import csr_matrix

    frames, n = moved.shape[0], rest.shape[0]
    group = csr_matrix((weights, (label, np.arange(n))), shape=(count, n))  # weighted sums per group, as a product
    wsum = np.maximum(np.asarray(group.sum(1)).reshape(count), 1e-12)
    c_rest = (group @ rest) / wsum[:, None]
    x = rest - c_rest[label]
    R = np.empty((frames, count, 3, 3))
    t = np.empty((frames, count, 3))
    for f in range(frames):
        y = moved[f]
        # sum w (y - c_y) x^T = sum w y x^T, as x is centred within each group.
        sums = group @ np.concatenate([y, (y[:, :, None] * x[:, None, :]).reshape(n, 9)], 1)  # [count, 12]
        c_moved = sums[:, :3] / wsum[:, None]
        H = sums[:, 3:].reshape(count, 3, 3)
        U, _, Vt = np.linalg.svd(H)
        D = np.ones((count, 3))
        D[:, 2] = np.sign(np.linalg.det(U @ Vt))
        D[D == 0] = 1.0
        R[f] = (U * D[:, None, :]) @ Vt
        t[f] = c_moved - np.einsum("gij,gj->gi", R[f], c_rest)
    return R, t


# -- handles from the inputs we have ----------------------------------------------------------------

def handles_of_model(model, times) -> HandleMotion:
    """The deformation's handles at ``times [F]`` and each Gaussian's binding to them, for a
    :class:`~dynapose4d.dynamic4d.Dynamic4D`."""
    import torch

    from ..deform.deformations import Binding

    deform = model.deformation()
    static = model.static
    with torch.no_grad():
        motion = deform.handle_motion(static, times)
        rest = deform.handles_rest.detach().double().numpy()
        if hasattr(deform, "skin_logits"):  # control points: the model's own skinning weights
            index = deform.knn.numpy()
            weights = torch.softmax(deform.skin_logits.detach().double(), -1).numpy()
        elif len(rest):
            binding = Binding.nearest(static.means.detach(), deform.handles_rest.detach())
            index, weights = binding.index.numpy(), binding.weights.double().numpy()
        else:
            index, weights = np.zeros((static.num, 1), np.int64), np.ones((static.num, 1))
    return HandleMotion(rest, motion.handle_rot.double().numpy(), motion.handles.double().numpy(), index, weights)


def handles_of_frames(means: np.ndarray, quats: np.ndarray, opacity: np.ndarray | None = None, count: int = 512, k: int = 4) -> HandleMotion:
    """Handles for a result that only has frames (a PLY sequence): ``count`` Gaussians spread over
    frame 0 (farthest points, favouring opaque ones), each moving with its own position and
    rotation (``quats [F, N, 4]`` wxyz); every Gaussian bound to its ``k`` nearest, with Gaussian
    weights on distance (as :meth:`Binding.nearest <dynapose4d.deform.deformations.Binding.nearest>`)."""
    from scipy.spatial import cKDTree

    means = np.asarray(means, np.float64)
    n = means.shape[1]
    pick = farthest_points(means[0], min(count, n), opacity)
    q = np.asarray(quats, np.float64)[:, pick]
    rot = quat_wxyz_to_matrix(q)
    rot = rot @ np.swapaxes(rot[:1], -1, -2)  # each handle's rotation since frame 0
    k = min(k, len(pick))
    dist, index = cKDTree(means[0, pick]).query(means[0], k=k)
    dist, index = dist.reshape(n, k), index.reshape(n, k)
    sigma2 = np.maximum(dist[:, -1:], 1e-6) ** 2 / np.log(4.0)
    logits = -(dist**2) / (2 * sigma2)
    weights = np.exp(logits - logits.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    return HandleMotion(means[0, pick], rot, means[:, pick], index, weights)


def farthest_points(points: np.ndarray, count: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Indices ``[count]`` of well-spread points (distances scaled by ``weights`` so heavy points win)."""
    points = np.asarray(points, np.float64)
    w = np.ones(len(points)) if weights is None else np.clip(np.asarray(weights, np.float64).reshape(-1), 1e-3, None)
    chosen = [int(np.argmax(w))]
    d = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(1, count):
        nxt = int(np.argmax(d * w))
        chosen.append(nxt)
        d = np.minimum(d, np.linalg.norm(points - points[nxt], axis=1))
    return np.array(chosen, np.int64)


def quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``[..., 4]`` (w, x, y, z; normalised here)."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
