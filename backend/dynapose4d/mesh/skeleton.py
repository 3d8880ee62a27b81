"""A skeleton for export: the control points clustered by motion into at most ``max_bones`` rigid bones.

The deformation moves M control points (handles) each with its own rigid transform per frame.
Engines want tens of bones, not hundreds of handles, so:

1. Cluster the handles by motion: k-means on their trajectories (and, weakly, their rest
   positions, so a bone is one piece), then a few rounds of "fit each bone, give each handle to
   the bone that best explains its motion" (the idea of SSDR, on handles instead of vertices).
2. Fit one rigid transform per bone per frame (weighted Kabsch on the handles' local frames:
   each handle contributes its centre and three points along its rotated axes).
3. A hierarchy: a minimum spanning tree over the graph of bones whose handles are neighbours,
   weighted by how differently the two bones move at their junction, rooted at the bone that
   moves least. Parents come before children in the bone order.

Transforms are world-space maps of backend coordinates: bone b at frame f takes a rest point x
to ``R[f, b] @ x + t[f, b]`` (frame 0 of the sampled clip is the canonical pose: identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SkeletonConfig:
    max_bones: int = 48
    position_weight: float = 0.5  # rest position against motion in the clustering features
    refine_iterations: int = 4
    seed: int = 0

    def __post_init__(self):
        if not 1 <= self.max_bones <= 256:
            raise ValueError(f"max_bones must be within 1..256, got {self.max_bones}")


@dataclass
class Skeleton:
    """``heads [B, 3]`` joint positions at rest, ``parents [B]`` (-1 for the root; a parent's index
    is below its child's), ``rotations [F, B, 3, 3]`` and ``translations [F, B, 3]`` (world-space
    bone motion), ``handle_bone [M]`` (the bone of each handle), ``names [B]``."""

    heads: np.ndarray
    parents: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    handle_bone: np.ndarray
    names: list[str]

    @property
    def num_bones(self) -> int:
        return int(self.heads.shape[0])

    def transform(self, points: np.ndarray, bone: np.ndarray) -> np.ndarray:
        """``points [P, 3]`` moved rigidly by ``bone [P]`` at every frame: ``[F, P, 3]``."""
        return np.einsum("fpij,pj->fpi", self.rotations[:, bone], points) + self.translations[:, bone]

    def matrices(self) -> np.ndarray:
        """``[F, B, 4, 4]`` homogeneous world-space bone motion."""
        f, b = self.rotations.shape[:2]
        out = np.zeros((f, b, 4, 4))
        out[..., :3, :3] = self.rotations
        out[..., :3, 3] = self.translations
        out[..., 3, 3] = 1.0
        return out


def handle_frames(rest: np.ndarray, rotations: np.ndarray, positions: np.ndarray, arm: float) -> tuple[np.ndarray, np.ndarray]:
    """Each handle as 4 points (its centre and ``arm`` along each local axis), at rest ``[M, 4, 3]``
    and moved ``[F, M, 4, 3]``: a rigid fit to them recovers rotation, not only translation."""
    axes = np.eye(3) * arm
    rest_pts = np.concatenate([rest[:, None], rest[:, None] + axes[None]], 1)
    moved_axes = np.einsum("fmij,aj->fmai", rotations, axes)
    moved = np.concatenate([positions[:, :, None], positions[:, :, None] + moved_axes], 2)
    return rest_pts, moved


def fit_rigid(rest: np.ndarray, moved: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Kabsch per group and frame.

    ``rest [P, 3]``, ``moved [F, P, 3]``, ``weights [G, P]`` (one row per group) ->
    rotations ``[F, G, 3, 3]``, translations ``[F, G, 3]`` minimising
    ``sum_p w_gp |R rest_p + t - moved_fp|^2``."""
    w = weights / np.maximum(weights.sum(1, keepdims=True), 1e-12)  # [G, P]
    c_rest = w @ rest  # [G, 3]
    c_moved = np.einsum("gp,fpi->fgi", w, moved)  # [F, G, 3]
    # Cross-covariance sum_p w (moved - c_moved)(rest - c_rest)^T = sum_p w moved rest^T - c_moved c_rest^T.
    H = np.einsum("gp,fpi,pj->fgij", w, moved, rest, optimize=True) - c_moved[..., :, None] * c_rest[None, :, None, :]
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.ones(U.shape[:-1])
    D[..., -1] = d
    R = (U * D[..., None, :]) @ Vt
    t = c_moved - np.einsum("fgij,gj->fgi", R, c_rest)
    return R, t


def _kmeans(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    from scipy.cluster.vq import kmeans2

    _, label = kmeans2(features, k, minit="++", seed=np.random.default_rng(seed))
    return label


def build_skeleton(rest: np.ndarray, rotations: np.ndarray, positions: np.ndarray, config: SkeletonConfig = SkeletonConfig()) -> Skeleton:
    """Bones for handles with rest positions ``rest [M, 3]`` moving by ``rotations [F, M, 3, 3]``
    to ``positions [F, M, 3]`` (a point x bound to handle j goes to ``R_j (x - rest_j) + pos_j``)."""
    rest = np.asarray(rest, np.float64)
    rotations = np.asarray(rotations, np.float64)
    positions = np.asarray(positions, np.float64)
    m, frames = rest.shape[0], positions.shape[0]
    if m == 0:  # a still model: one bone that never moves
        eye = np.broadcast_to(np.eye(3), (frames, 1, 3, 3)).copy()
        return Skeleton(np.zeros((1, 3)), np.array([-1]), eye, np.zeros((frames, 1, 3)), np.zeros(0, np.int64), ["root"])
    size = float(np.ptp(rest, axis=0).max()) or 1.0
    spacing = _spacing(rest)
    rest_pts, moved = handle_frames(rest, rotations, positions, arm=spacing)
    flat_rest, flat_moved = rest_pts.reshape(-1, 3), moved.reshape(frames, -1, 3)
    # 1. Initial clusters: k-means on motion (displacements over the clip) and rest position.
    k = min(config.max_bones, m)
    motion = (positions - rest[None]).transpose(1, 0, 2).reshape(m, -1)
    motion_scale = float(np.sqrt((motion**2).sum(1).mean())) or 1.0
    features = np.concatenate([motion / motion_scale, config.position_weight * rest / size * np.sqrt(frames)], 1)
    label = _kmeans(features, k, config.seed) if k > 1 else np.zeros(m, np.int64)
    # 2. Refine: fit, then give each handle to the bone whose motion fits it best (among bones
    # near it, so a bone stays one piece).
    for _ in range(config.refine_iterations):
        label = _compact(label)
        R, t = fit_rigid(flat_rest, flat_moved, _membership(np.repeat(label, 4), label.max() + 1))
        centres = np.stack([rest[label == b].mean(0) for b in range(label.max() + 1)])
        err = _fit_error(R, t, rest_pts, moved)  # [M, B]
        far = np.linalg.norm(rest[:, None] - centres[None], axis=-1)
        err = err + (far > 3.0 * np.sort(far, 1)[:, :1] + 4.0 * spacing) * 1e12
        new = err.argmin(1)
        if np.array_equal(new, label):
            break
        label = new
    label = _compact(label)
    count = int(label.max()) + 1
    R, t = fit_rigid(flat_rest, flat_moved, _membership(np.repeat(label, 4), count))
    heads = np.stack([rest[label == b].mean(0) for b in range(count)])
    # 3. The hierarchy, and bones reordered so parents come first.
    parents = _spanning_tree(rest, label, heads, R, t, spacing)
    order = _topological(parents)
    new_index = np.empty(count, np.int64)
    new_index[order] = np.arange(count)
    parents = np.array([-1 if parents[b] < 0 else new_index[parents[b]] for b in order])
    return Skeleton(
        heads=heads[order], parents=parents, rotations=R[:, order], translations=t[:, order],
        handle_bone=new_index[label], names=[f"bone_{i:02d}" for i in range(count)],
    )


def _fit_error(R: np.ndarray, t: np.ndarray, rest_pts: np.ndarray, moved: np.ndarray, chunk: int = 8) -> np.ndarray:
    """``[M, B]``: mean squared distance of handle m's points ``rest_pts [M, 4, 3]`` moved by bone
    b (``R [F, B, 3, 3]``, ``t [F, B, 3]``) from where they went (``moved [F, M, 4, 3]``), over
    frames. Summed a few frames at a time: all frames at once is ``[F, M, B, 4, 3]`` float64,
    about 7 MB a frame at 512 handles and 48 bones (issue 27)."""
    frames = R.shape[0]
    total = np.zeros((rest_pts.shape[0], R.shape[1]))
    for s in range(0, frames, chunk):
        pred = np.einsum("fbij,mpj->fmbpi", R[s : s + chunk], rest_pts) + t[s : s + chunk, None, :, None, :]
        total += ((pred - moved[s : s + chunk, :, None]) ** 2).sum((0, 3, 4))
    return total / (frames * rest_pts.shape[1])


def _spacing(rest: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    if len(rest) < 2:
        return 0.05
    d, _ = cKDTree(rest).query(rest, k=2)
    return float(max(np.median(d[:, 1]), 1e-4))


def _compact(label: np.ndarray) -> np.ndarray:
    _, out = np.unique(label, return_inverse=True)
    return out.reshape(-1)


def _membership(label: np.ndarray, count: int) -> np.ndarray:
    w = np.zeros((count, len(label)))
    w[label, np.arange(len(label))] = 1.0
    return w


def _spanning_tree(rest, label, heads, R, t, spacing) -> np.ndarray:
    """Parents ``[B]`` of a minimum spanning tree over neighbouring bones (cost: how far apart the
    two bones carry their junction over the clip), rooted at the bone that moves least."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree
    from scipy.spatial import cKDTree

    count = len(heads)
    if count == 1:
        return np.array([-1])
    k = min(8, len(rest))
    _, nn = cKDTree(rest).query(rest, k=k)
    a, b = label[np.repeat(np.arange(len(rest)), k)], label[nn.reshape(-1)]
    pairs = {(int(min(x, y)), int(max(x, y))) for x, y in zip(a, b) if x != y}
    # Parts that touch no other part (separate pieces) still join the tree, by distance, at a
    # cost above any touching pair's.
    all_pairs = [(i, j) for i in range(count) for j in range(i + 1, count)]
    rows, cols, costs = [], [], []
    for i, j in all_pairs:
        junction = 0.5 * (heads[i] + heads[j])
        gap = np.linalg.norm((R[:, i] @ junction + t[:, i]) - (R[:, j] @ junction + t[:, j]), axis=-1).mean()
        cost = 1e-9 + gap + spacing * 1e-3
        if (i, j) not in pairs:
            cost += 1e6 * (1.0 + np.linalg.norm(heads[i] - heads[j]))
        rows.append(i), cols.append(j), costs.append(cost)
    tree = minimum_spanning_tree(coo_matrix((costs, (rows, cols)), shape=(count, count)).tocsr())
    moves = np.linalg.norm(np.einsum("fbij,bj->fbi", R, heads) + t - heads[None], axis=-1).mean(0)
    root = int(np.argmin(moves))
    _, pred = breadth_first_order(tree, root, directed=False, return_predecessors=True)
    parents = np.where(pred < 0, -1, pred).astype(np.int64)
    parents[root] = -1
    return parents


def _topological(parents: np.ndarray) -> np.ndarray:
    """Bone indices ordered so that every parent comes before its children."""
    children = {i: [] for i in range(len(parents))}
    for i, p in enumerate(parents):
        if p >= 0:
            children[int(p)].append(i)
    order, stack = [], [int(i) for i in np.flatnonzero(parents < 0)][::-1]
    while stack:
        b = stack.pop()
        order.append(b)
        stack.extend(children[b][::-1])
    return np.array(order, np.int64)
