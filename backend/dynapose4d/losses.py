"""Loss terms of the dynamic stage; names match the config's ``lambda_<x>`` weights.

- ``loss_rgb``, ``loss_mask``: reference-view MSE against the driving frame (DG4D).
- ``loss_kml``: the Keypoint Match Loss (paper Eq. 4), confidence-weighted.
- ``loss_scl``: the Spatio-temporal Consistency Loss (paper Eq. 5) over handle trajectories,
  with an acceleration variant (second differences) that penalises jitter but not speed.
- ``loss_arap``: an as-rigid-as-possible prior between neighbouring handles (our addition, not
  in the paper): without novel-view guidance the reference view fixes only 2 of 3 degrees of
  freedom, and this keeps parts from drifting in depth.
"""

from __future__ import annotations

import torch
from torch import Tensor


def loss_reference(
    rgb: Tensor, alpha: Tensor, target_rgb: Tensor, target_mask: Tensor, weight: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """MSE of colour ``[F, H, W, 3]`` and of the silhouette ``alpha [F, H, W]`` vs the mask.

    ``weight [F, H, W]`` in [0, 1] (the driving video's mask confidence): an unsure pixel (0)
    neither pulls the object in nor pushes it away; the mean is still over all pixels, so a sure
    pixel weighs the same whatever the share of unsure ones (the loss's scale, and so its lambda,
    does not change)."""
    if weight is None:
        return torch.mean((rgb - target_rgb) ** 2), torch.mean((alpha - target_mask) ** 2)
    w = weight.to(rgb)
    return torch.mean(w[..., None] * (rgb - target_rgb) ** 2), torch.mean(w * (alpha - target_mask) ** 2)


def keypoint_match_loss(
    pred: Tensor, target: Tensor, confidence: Tensor, image_size: tuple[int, int], robust_scale: float = 0.0
) -> Tensor:
    """KML: confidence-weighted mean squared keypoint distance in normalised image coordinates.

    ``pred``, ``target``: pixels ``[F, N, 2]`` in images of ``image_size = (width, height)``;
    ``confidence [F, N]`` in [0, 1] (0 for invisible or failed keypoints). Coordinates are divided
    by the image size so the loss does not depend on resolution. Per frame the squared distances
    are averaged with the confidences as weights (the paper's mean over keypoints); frames are
    averaged (the paper sums over tau = 1..T-1; the mean keeps lambda independent of T).
    The caller passes frames 1..T-1 only: frame 0 is the one-shot support.

    ``robust_scale`` c > 0 replaces the squared distance d^2 by the Cauchy loss
    ``c^2 log(1 + d^2 / c^2)``: the same for errors well below c, but a keypoint the estimator
    got wrong (an outlier it did not flag) pulls with bounded force. 0 is the paper's form.
    """
    scale = torch.tensor(image_size, dtype=pred.dtype, device=pred.device)
    sq = (((pred - target) / scale) ** 2).sum(-1)  # [F, N]
    if robust_scale > 0:
        sq = robust_scale**2 * torch.log1p(sq / robust_scale**2)
    w = confidence.to(pred.dtype)
    # where(), not a product: a zero-weight keypoint must not turn the sum into NaN via 0 * inf.
    per_frame = torch.where(w > 0, w * sq, torch.zeros_like(sq)).sum(-1) / w.sum(-1).clamp_min(1e-8)
    return per_frame.mean() if per_frame.numel() else pred.sum() * 0.0


def spatio_temporal_consistency_loss(handles: Tensor, order: int = 1) -> Tensor:
    """SCL over handle trajectories ``[T, M, 3]`` (consecutive frames in time order).

    order 1 (the paper): ``(1/M) sum_i sum_tau ||P_{tau+1} - P_tau||^2`` (penalises speed);
    order 2: the same with second differences ``P_{tau+1} - 2 P_tau + P_{tau-1}`` (jitter).
    """
    if order not in (1, 2):
        raise ValueError(f"SCL order must be 1 (velocity) or 2 (acceleration), got {order}")
    diff = handles[1:] - handles[:-1]
    if order == 2:
        diff = diff[1:] - diff[:-1]
    return (diff**2).sum() / handles.shape[1]


def as_rigid_as_possible_loss(handles: Tensor, rotations: Tensor, rest: Tensor, neighbours: Tensor, weights: Tensor) -> Tensor:
    """Neighbouring handles keep their offsets, rotated with each handle's own rotation.

    ``handles [T, M, 3]`` positions, ``rotations [T, M, 3, 3]``, ``rest [M, 3]`` rest positions,
    ``neighbours [M, K]`` handle ids and ``weights [M, K]``. The loss is the weighted mean of
    ``|| (P_j(t) - P_i(t)) - R_i(t) (P_j - P_i) ||^2`` over t, i and its neighbours j.
    """
    now = handles[:, neighbours] - handles[:, :, None]  # [T, M, K, 3]
    then = rest[neighbours] - rest[:, None]  # [M, K, 3]
    expected = (rotations[:, :, None] @ then[None, ..., None])[..., 0]
    return (weights[None, ..., None] * (now - expected) ** 2).sum((-1, -2)).mean()


def weigh_terms(terms: dict[str, Tensor], weights: dict[str, float]) -> tuple[Tensor, dict[str, float]]:
    """The weighted total of the loss terms, and each weighted term as a float (for the log).

    Every term needs its weight (``lambda_<name>`` of the stage config): a term without one is
    an error, never silently weighted 1 (a misspelt or new term would otherwise dominate)."""
    unknown = sorted(set(terms) - set(weights))
    if unknown:
        raise KeyError(f"loss term(s) {', '.join(unknown)} have no weight; known: {', '.join(sorted(weights))}")
    total = sum(weights[k] * v for k, v in terms.items())
    values = {k: float(weights[k] * v.detach()) for k, v in terms.items()}
    values["loss"] = float(total.detach())
    return total, values
