"""Evaluate a 4D model against ground truth, beside the do-nothing baseline (the static model at
every frame), measured in the same call: reference-view PSNR, moving-region PSNR, PSNR/SSIM at
the four Consistent4D views, 3D keypoint error split into image-plane and depth parts, jitter."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..cameras import Cameras
from ..dynamic4d import Dynamic4D
from ..render import render
from .metrics import jitter, keypoint_error, moving_region, psnr, ssim


@dataclass
class GroundTruth:
    """True frames and trajectories at normalised ``times [T]``.

    reference [T, H, W, 3]: the reference view on white; novel [T, 4, H, W, 3] or None: the
    Consistent4D views (azimuths -75, 15, 105, 195) at the reference elevation and radius;
    keypoints [T, P, 3] or None: true positions of the model's keypoint anchors (world units);
    keypoints_valid [P] or None: which of them to score (e.g. points hidden at frame 0 cannot be
    lifted from the reference view and are left out); camera: the reference camera at the
    frames' resolution.
    """

    times: Tensor
    reference: Tensor
    camera: Cameras
    novel: Tensor | None = None
    keypoints: Tensor | None = None
    keypoints_valid: Tensor | None = None


def consistent4d_views(camera: Cameras, size: int | None = None) -> Cameras:
    """The four evaluation views around the reference camera (same elevation, radius, fov; its
    size unless ``size`` is given)."""
    pos = camera.c2w[:3, 3]
    radius = float(pos.norm())
    elevation = float(torch.rad2deg(torch.asin(pos[1] / radius)))
    fovy = float(torch.rad2deg(camera.fovy))
    return Cameras.evaluation_views(elevation_deg=elevation, radius=radius, size=size or camera.width, fovy_deg=fovy)


@torch.no_grad()
def evaluate(model: Dynamic4D, truth: GroundTruth, chunk: int = 8) -> dict[str, float]:
    """Metrics of ``model`` and (suffix ``_static_baseline``) of its static Gaussians held still."""
    T = len(truth.times)
    pred, kp = model.sample(truth.times)
    still = model.static.map(lambda t: t[None].expand((T,) + t.shape))
    views = consistent4d_views(truth.camera)
    moving = moving_region(truth.reference).expand(T, -1, -1)

    def renders(scene, cams):
        return torch.cat([render(scene.map(lambda t: t[i : i + chunk]), cams, 1.0).rgb for i in range(0, T, chunk)])

    results: dict[str, float] = {}
    for suffix, scene in (("", pred), ("_static_baseline", still)):
        ref = renders(scene, truth.camera)
        results["ref_psnr" + suffix] = psnr(ref, truth.reference)
        results["moving_psnr" + suffix] = psnr(ref, truth.reference, moving)
        if truth.novel is not None:
            novel = renders(scene, views)
            results["novel_psnr" + suffix] = psnr(novel, truth.novel)
            results["novel_ssim" + suffix] = ssim(novel, truth.novel)
    if truth.keypoints is not None:
        valid = model.keypoints.anchors.valid
        if truth.keypoints_valid is not None:
            valid = valid & truth.keypoints_valid
        results["kp_scored"] = float(valid.sum())
        rest = model.keypoints.anchors.rest
        for suffix, traj in (("", kp), ("_static_baseline", rest[None].expand(T, -1, -1))):
            for key, value in keypoint_error(traj[:, valid], truth.keypoints[:, valid], truth.camera.c2w).items():
                results[key + suffix] = value
            results["jitter" + suffix] = jitter(traj[:, valid])
        results["jitter_truth"] = jitter(truth.keypoints[:, valid])
    return {k: round(v, 4) for k, v in results.items()}
