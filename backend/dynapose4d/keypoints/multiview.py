"""Multi-view keypoints: 2D keypoints found in other views check and refine the lifted anchors' depth.

The support keypoints are lifted to 3D along the reference camera's rays from the static model's
rendered depth (:func:`dynapose4d.deform.lift_keypoints`). That depth is only as good as the
model's surface, and a keypoint near a silhouette or in front of a hidden part can land on the
wrong surface. A keypoint estimator run on *other views* of frame 0 (novel-view samples of
Zero-1-to-3, see :func:`zero123_views`, or any images with known cameras) sees the same points
from elsewhere; each anchor slides along its reference ray to the depth whose projections best
match those detections:

- cost(z) = sum over views of ``confidence * log(1 + (r / robust_px)^2)`` with r the reprojection
  error in pixels (at a 256-pixel view), searched over ``z0 * (1 +- search)`` on a grid, then
  refined by a parabola through the best grid point and its neighbours;
- the check: the weighted reprojection error at the lifted depth (``residual_before_px``); an
  anchor whose detections agree with its lift within ``check_px`` keeps its depth (refining it
  would only fit the detections' noise);
- otherwise the refined depth is taken where at least ``min_views`` confident detections exist
  and it brings the reprojection error below ``accept_px``; else the lift is kept.

The reference pixel never moves (the ray is the one the support keypoint defines).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras
from .base import KeypointEstimator, Support


@dataclass
class ViewDetections:
    """Keypoints found in one view: ``camera`` (a single camera), ``xy [P, 2]`` pixels in that
    view (our convention), ``confidence [P]`` (0 = not found)."""

    camera: Cameras
    xy: np.ndarray
    confidence: np.ndarray


@dataclass
class DepthRefinement:
    """Per anchor: positions after refinement, z-depths (reference camera) before/after, the
    confidence-weighted reprojection error (px at 256) before/after, views used, and whether the
    depth changed."""

    points: Tensor
    depth_before: Tensor
    depth_after: Tensor
    residual_before_px: Tensor
    residual_after_px: Tensor
    views_used: Tensor
    changed: Tensor

    def to_dict(self) -> dict:
        return {
            "changed": int(self.changed.sum()),
            "anchors": len(self.changed),
            "median_residual_before_px": float(self.residual_before_px.nanmedian()),
            "median_residual_after_px": float(self.residual_after_px.nanmedian()),
        }


def _weighted_residual(pixels: Tensor, front: Tensor, targets: Tensor, conf: Tensor, scale: Tensor) -> Tensor:
    """``[..., P]`` confidence-weighted mean reprojection error over views (nan where no view counts)."""
    r = (pixels - targets).norm(dim=-1) * scale  # [V, ..., P]
    w = conf * front
    return (w * r).sum(0) / w.sum(0).where(w.sum(0) > 0, torch.tensor(float("nan"), dtype=r.dtype))


@torch.no_grad()
def refine_anchor_depths(
    points: Tensor,
    reference: Cameras,
    views: list[ViewDetections],
    *,
    valid: Tensor | None = None,
    search: float = 0.3,
    samples: int = 241,
    robust_px: float = 4.0,
    min_confidence: float = 0.3,
    min_views: int = 1,
    check_px: float = 6.0,
    accept_px: float = 6.0,
) -> DepthRefinement:
    """Slide anchors ``points [P, 3]`` along ``reference``'s rays to match ``views`` (module docstring)."""
    points = points.detach().double()
    n = points.shape[0]
    valid = torch.ones(n, dtype=torch.bool) if valid is None else valid.to(torch.bool).cpu()
    ref = reference.to(dtype=torch.float64)
    pix0, z0 = ref.project(points)
    factors = 1.0 + torch.linspace(-search, search, samples, dtype=torch.float64)
    z = z0[None, :] * factors[:, None]  # [S, P]
    cand = ref.unproject(pix0[None].expand(samples, -1, -1), z)  # [S, P, 3]
    if not views:
        raise ValueError("refine_anchor_depths needs at least one view")
    proj, front, targets, conf, scales = [], [], [], [], []
    for v in views:
        cam = v.camera.to(dtype=torch.float64)
        p, d = cam.project(cand)
        proj.append(p)
        front.append((d > 1e-6).double())
        targets.append(torch.as_tensor(np.asarray(v.xy), dtype=torch.float64)[None].expand(samples, -1, -1))
        c = torch.as_tensor(np.asarray(v.confidence), dtype=torch.float64)
        conf.append(torch.where(c >= min_confidence, c, torch.zeros_like(c))[None].expand(samples, -1))
        scales.append(torch.tensor(256.0 / max(cam.width, cam.height), dtype=torch.float64))
    proj, front, targets, conf = (torch.stack(x) for x in (proj, front, targets, conf))  # [V, S, P, ...]
    scale = torch.stack(scales)[:, None, None]
    r = (proj - targets).norm(dim=-1) * scale
    cost = (conf * front * torch.log1p((r / robust_px) ** 2)).sum(0)  # [S, P]
    best = cost.argmin(0)  # [P]
    # Parabolic refinement through the best sample and its neighbours.
    i = best.clamp(1, samples - 2)
    c_l, c_m, c_r = (cost.gather(0, (i + k)[None])[0] for k in (-1, 0, 1))
    denom = c_l - 2 * c_m + c_r
    offset = torch.where(denom > 1e-12, 0.5 * (c_l - c_r) / denom, torch.zeros_like(denom)).clamp(-1, 1)
    step = factors[1] - factors[0]
    f_best = torch.where((best > 0) & (best < samples - 1), factors[i] + offset * step, factors[best])
    z_new = z0 * f_best
    x_new = ref.unproject(pix0, z_new)
    mid = samples // 2  # factor 1: the lifted depth itself

    def residual(x: Tensor) -> Tensor:
        ps, ds = zip(*(v.camera.to(dtype=torch.float64).project(x) for v in views))
        return _weighted_residual(torch.stack(ps), (torch.stack(ds) > 1e-6).double(), targets[:, mid], conf[:, mid],
                                  scale[:, 0])

    before, after = residual(points), residual(x_new)
    used = ((conf[:, mid] > 0) & (front[:, mid] > 0)).sum(0)
    take = valid & (used >= min_views) & (before > check_px) & (after < before) & (after < accept_px)
    points_out = torch.where(take[:, None], x_new, points)
    return DepthRefinement(points_out.float(), z0.float(), torch.where(take, z_new, z0).float(), before.float(),
                           torch.where(take, after, before).float(), used, take)


def save_views(path, views: list[ViewDetections]) -> None:
    """The detections of several views as one ``.npz`` (cameras, pixels, confidences)."""
    c2w = np.stack([v.camera.c2w.reshape(4, 4).cpu().numpy() for v in views])
    fovy = np.array([float(v.camera.fovy) for v in views], np.float32)
    width, height = views[0].camera.width, views[0].camera.height  # one image size (the Zero-1-to-3 samples')
    np.savez(path, c2w=c2w, fovy=fovy, width=width, height=height,
             xy=np.stack([v.xy for v in views]).astype(np.float32), confidence=np.stack([v.confidence for v in views]).astype(np.float32))


def load_views(path) -> list[ViewDetections]:
    with np.load(path) as f:
        cams = Cameras(torch.from_numpy(f["c2w"]), torch.from_numpy(f["fovy"]), int(f["width"]), int(f["height"]))
        return [ViewDetections(cams[i], f["xy"][i], f["confidence"][i]) for i in range(len(f["xy"]))]


def view_detections(estimator: KeypointEstimator, support: Support, images, cameras: Cameras) -> list[ViewDetections]:
    """The estimator's keypoints in each of V views ``images [V, H, W, 3]`` with ``cameras`` (batch V).

    The views go through the estimator as if they were frames; a per-frame estimator (CAPE) is the
    one to use, since consecutive views are not a smooth video.
    """
    res = estimator.estimate(support, images)
    conf = np.where(res.visible, res.confidence, 0.0)
    return [ViewDetections(cameras[i], res.xy[i], conf[i]) for i in range(len(res.xy))]


def zero123_views(guidance, reference_image, azimuths, elevation: float = 0.0, radius: float = 2.0, *,
                  steps: int = 50, seed: int = 0):
    """Novel views of ``reference_image`` (``[H, W, 3]`` in [0, 1] on white) from a loaded
    :class:`~dynapose4d.guidance.zero123.Zero123Guidance`: ``(images [V, S, S, 3] numpy, Cameras)``.
    The reference camera is the default one (elevation 0, azimuth 0, radius 2)."""
    from ..guidance import OrbitPose

    ref = torch.as_tensor(np.asarray(reference_image), dtype=torch.float32)
    guidance.set_reference(ref)
    pose = OrbitPose.of(elevation, list(azimuths), radius)
    images = guidance.sample(pose, steps=steps, seed=seed).float().cpu().numpy()
    cams = Cameras.orbit(pose.elevation.cpu(), pose.azimuth.cpu(), pose.radius.cpu(), width=images.shape[2],
                         height=images.shape[1])
    return np.clip(images, 0, 1), cams


def refine_anchors(anchors, reference: Cameras, views: list[ViewDetections], handles_rest: Tensor, k: int = 4, **options):
    """:class:`~dynapose4d.deform.Anchors` with refined rest positions, re-bound to their nearest
    handles, and the :class:`DepthRefinement` report. ``options`` go to :func:`refine_anchor_depths`.

    Where a job has the views (CAPE on Zero-1-to-3 samples of frame 0), this is the one call
    between ``make_anchors`` and the optimisation.
    """
    from ..deform import Anchors
    from ..deform.deformations import Binding

    report = refine_anchor_depths(anchors.rest, reference, views, valid=anchors.valid, **options)
    rest = report.points.to(anchors.rest)
    return Anchors(rest, anchors.valid, Binding.nearest(rest, handles_rest.to(rest), k)), report
