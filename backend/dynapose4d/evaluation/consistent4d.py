"""``dynapose4d eval``: the Consistent4D protocol on a result.

Ground truth in the Consistent4D test-set layout: ``eval_0/ .. eval_3/`` hold the T frames
(natural sort order; RGBA is composited on white) seen from azimuths -75, 15, 105, 195 at the
input view's elevation and radius. The result is a job folder (``model.pt``) or a PLY sequence
(``sequence.json`` + one PLY per frame). Its reference camera (the input view) fixes elevation,
radius and field of view; the four views are rendered around it on white at ``size`` x ``size``
(ground truth of another size is resized to it) and scored frame by frame:

- PSNR (mean over the 4 x T images of each image's PSNR) and ``psnr_pooled`` (one MSE over all
  images: what ``scripts/bench_ablation.py`` reports as novel-view PSNR), SSIM (11x11 Gaussian
  window), no weights needed;
- LPIPS (VGG), CLIP image similarity (ViT-B/32) and FVD (I3D, the 4 rendered view videos against
  the 4 true ones) when their networks are on this machine; otherwise "not computed: <what to
  download, its licence>" and the rest are still computed.

Frame times: ground-truth frame i of T is the result at normalised time i / (T - 1). With
``frames=N`` only N frames evenly spread over the T are scored (rounded indices, as a driving
video of N frames sampled from the clip has them), at times j / (N - 1): the times a result
driven by those N frames gave them.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..cameras import Cameras
from ..gaussians import Gaussians
from ..imaging.images import load_on_white
from .metrics import psnr, ssim

__all__ = ["EvalError", "read_on_white", "Truth", "Result", "load_truth", "load_result", "evaluate_result", "format_table", "METRIC_ORDER"]

NUM_VIEWS = 4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
METRIC_ORDER = ("psnr", "psnr_pooled", "ssim", "lpips", "clip", "fvd")


class EvalError(ValueError):
    """The result or the ground truth cannot be evaluated; the message says why."""


# -------------------------------------------------------------------------------------------------
# inputs


@dataclass
class Truth:
    views: Tensor  # [T, 4, H, W, 3] on white
    frame_index: np.ndarray  # [T] indices into the folder's frames
    times: Tensor  # [T] normalised times at which the result is rendered
    total_frames: int
    folder: Path


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def read_on_white(path: Path) -> np.ndarray:
    """``[H, W, 3]`` float32: a ground-truth image composited on white (:func:`images.load_on_white`)."""
    return load_on_white(path)[0]


def load_truth(folder: str | Path, frames: int | None = None) -> Truth:
    """The four view sequences of a ground-truth folder (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"ground truth {folder}: no such folder")
    lists = []
    for k in range(NUM_VIEWS):
        sub = folder / f"eval_{k}"
        if not sub.is_dir():
            raise EvalError(f"ground truth {folder} lacks eval_{k}/ (the Consistent4D layout has eval_0 .. eval_3)")
        files = sorted((p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
        if not files:
            raise EvalError(f"{sub} holds no images")
        lists.append(files)
    counts = {len(f) for f in lists}
    if len(counts) != 1:
        raise EvalError(f"ground truth {folder}: the views have different frame counts {[len(f) for f in lists]}")
    total = counts.pop()
    if frames is None or frames >= total:
        pick = np.arange(total)
        times = torch.linspace(0.0, 1.0, total) if total > 1 else torch.zeros(1)
    else:
        if frames < 2:
            raise EvalError(f"frames must be at least 2, got {frames}")
        pick = np.linspace(0, total - 1, frames).round().astype(int)
        times = torch.linspace(0.0, 1.0, frames)
    views = np.stack([np.stack([read_on_white(lists[k][i]) for k in range(NUM_VIEWS)]) for i in pick])
    if views.shape[-3] != views.shape[-2]:
        raise EvalError(f"ground truth {folder}: frames are {views.shape[-2]}x{views.shape[-3]}; square frames expected")
    return Truth(torch.from_numpy(views), pick, times, total, folder)


@dataclass
class Result:
    """What is scored: scenes at any normalised time, and the reference (input-view) camera."""

    camera: Cameras
    describe: str
    _model: object = None
    _frames: list[Path] = field(default_factory=list)
    _frame_times: np.ndarray | None = None

    def scenes(self, times: Tensor) -> Gaussians:
        """Gaussians with batch shape ``[len(times)]``."""
        if self._model is not None:
            with torch.no_grad():
                return self._model.sample(times)[0]
        from ..io import read_ply

        nearest = [int(np.abs(self._frame_times - float(t)).argmin()) for t in times]
        frames = [read_ply(self._frames[i]) for i in nearest]
        if len({g.num for g in frames}) != 1:
            raise EvalError("the PLY sequence's frames hold different numbers of Gaussians; write it with one topology")
        fields = {}
        for name in Gaussians.PARAMS:
            values = [getattr(g, name) for g in frames]
            fields[name] = None if values[0] is None else torch.stack(values)
        return Gaussians(**fields)


def load_result(path: str | Path) -> Result:
    """A job folder (``model.pt``), a ``model.pt`` file, or a PLY sequence (folder or sidecar)."""
    from ..io.job_folder import JobFolder

    path = Path(path)
    job = JobFolder(path)
    if path.is_dir() and job.model.is_file():
        path = job.model
    if path.is_file() and path.suffix == ".pt":
        from ..dynamic4d import Dynamic4D

        model = Dynamic4D.load(path)
        return Result(model.camera, f"4D model {path}", _model=model)
    sidecar = path / "sequence.json" if path.is_dir() else path
    if path.is_dir() and not sidecar.is_file() and job.sequence_file.is_file():
        sidecar = job.sequence_file
    if not sidecar.is_file():
        raise EvalError(f"{path} is neither a job folder with model.pt nor a PLY sequence with sequence.json")
    from ..io.sequence import read_sequence

    seq = read_sequence(sidecar)
    cam = seq["camera"]
    camera = Cameras(
        torch.tensor(cam["c2w"], dtype=torch.float32),
        torch.tensor(math.radians(cam["fovy_deg"]), dtype=torch.float32),
        int(cam["width"]),
        int(cam["height"]),
    )
    times = np.asarray(seq["times"], np.float64)
    return Result(camera, f"PLY sequence {sidecar} ({len(times)} frames)", _frames=seq["paths"], _frame_times=times)


def consistent4d_cameras(reference: Cameras, size: int) -> Cameras:
    """The four views around the reference camera at ``size`` x ``size``."""
    from .ground_truth import consistent4d_views

    return consistent4d_views(reference, size=size)


# -------------------------------------------------------------------------------------------------
# scoring


def _resize(images: Tensor, size: int) -> Tensor:
    """``[N, H, W, 3]`` -> ``[N, size, size, 3]`` (area when shrinking, bicubic when growing)."""
    if images.shape[1] == size:
        return images
    x = images.permute(0, 3, 1, 2)
    if size < images.shape[1]:
        x = F.interpolate(x, (size, size), mode="area")
    else:
        x = F.interpolate(x, (size, size), mode="bicubic", align_corners=False)
    return x.clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def _chunked_ssim(pred: Tensor, target: Tensor, chunk: int = 8) -> float:
    """Mean SSIM of ``[T, H, W, 3]`` pairs, ``chunk`` images at a time (same value, bounded memory)."""
    total = sum(ssim(pred[i : i + chunk], target[i : i + chunk]) * len(pred[i : i + chunk]) for i in range(0, len(pred), chunk))
    return total / len(pred)


def render_views(result: Result, times: Tensor, size: int, *, device="cpu", chunk: int = 4) -> Tensor:
    """The result's four Consistent4D views at ``times``: ``[T, 4, size, size, 3]`` on white."""
    from ..render import render

    cams = consistent4d_cameras(result.camera, size).to(device)
    out = []
    for i in range(0, len(times), chunk):
        scenes = result.scenes(times[i : i + chunk]).to(device)
        with torch.no_grad():
            out.append(render(scenes, cams, 1.0).rgb.float().cpu())
    return torch.cat(out)


def evaluate_result(
    result: str | Path | Result,
    truth: str | Path | Truth,
    *,
    size: int = 512,
    frames: int | None = None,
    lpips: str | None = None,
    clip: str | None = None,
    i3d: str | None = None,
    device: str = "cpu",
    env: dict | None = None,
) -> dict:
    """Score ``result`` against ``truth``; returns ``{"metrics": {...}, "not_computed": {...}, ...}``."""
    from . import perceptual

    t0 = time.perf_counter()
    result = result if isinstance(result, Result) else load_result(result)
    truth = truth if isinstance(truth, Truth) else load_truth(truth, frames)
    T = len(truth.times)
    pred = render_views(result, truth.times, size, device=device)  # [T, 4, S, S, 3]
    gt = _resize(truth.views.reshape((-1,) + truth.views.shape[-3:]), size).reshape(pred.shape)
    flat_pred, flat_gt = pred.reshape((-1,) + pred.shape[-3:]), gt.reshape((-1,) + gt.shape[-3:])

    metrics: dict[str, float] = {}
    per_view: dict[str, list[float]] = {}
    per_image_psnr = torch.tensor([psnr(p, g) for p, g in zip(flat_pred, flat_gt)]).view(T, NUM_VIEWS)
    metrics["psnr"] = float(per_image_psnr.mean())
    metrics["psnr_pooled"] = psnr(flat_pred, flat_gt)
    per_view["psnr"] = per_image_psnr.mean(0).tolist()
    # SSIM per view (every view has T images, so their mean is the mean over all images), in
    # chunks of frames: its window statistics are several copies of the images.
    per_view["ssim"] = [_chunked_ssim(pred[:, k], gt[:, k]) for k in range(NUM_VIEWS)]
    metrics["ssim"] = float(np.mean(per_view["ssim"]))

    not_computed: dict[str, str] = {}
    # LPIPS and CLIP: mean over the 4 x T images; FVD over the 4 view videos.
    def per_image(name: str, load, batch: int) -> None:
        """A network metric of each (prediction, truth) pair, in batches; its mean and per view."""
        try:
            net = load()
        except perceptual.MetricUnavailable as exc:
            not_computed[name] = str(exc)
            return
        values = torch.cat([net(flat_pred[i : i + batch], flat_gt[i : i + batch]).cpu() for i in range(0, len(flat_pred), batch)])
        metrics[name] = float(values.mean())
        per_view[name] = values.view(T, NUM_VIEWS).mean(0).tolist()

    per_image("lpips", lambda: perceptual.LPIPS.from_files(*perceptual.find_lpips_weights(lpips, env)).to(device), 8)
    per_image("clip", lambda: perceptual.CLIPSimilarity(perceptual.find_clip(clip, env), device), 16)
    try:
        features = perceptual.I3DFeatures(perceptual.find_i3d(i3d, env), device)
        metrics["fvd"] = perceptual.frechet_distance(features(pred.transpose(0, 1)), features(gt.transpose(0, 1)))
    except perceptual.MetricUnavailable as exc:
        not_computed["fvd"] = str(exc)

    return {
        "result": result.describe,
        "ground_truth": str(truth.folder),
        "protocol": {
            "views_azimuth_deg": [-75.0, 15.0, 105.0, 195.0],
            "frames": T,
            "ground_truth_frames": truth.total_frames,
            "frame_indices": truth.frame_index.tolist(),
            "size": size,
            "ground_truth_size": int(truth.views.shape[-2]),
            "background": "white",
        },
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "per_view": {k: [round(x, 4) for x in v] for k, v in per_view.items()},
        "not_computed": not_computed,
        "seconds": round(time.perf_counter() - t0, 1),
    }


_LABELS = {
    "psnr": "PSNR (dB), mean per image",
    "psnr_pooled": "PSNR (dB), pooled MSE",
    "ssim": "SSIM",
    "lpips": "LPIPS (VGG)",
    "clip": "CLIP similarity (ViT-B/32)",
    "fvd": "FVD (I3D)",
}


def format_table(report: dict) -> str:
    """The report as a text table: one row per metric, its four views, and what was not computed."""
    p = report["protocol"]
    lines = [
        f"result:       {report['result']}",
        f"ground truth: {report['ground_truth']} ({p['frames']} of {p['ground_truth_frames']} frames, "
        f"{p['ground_truth_size']} px scored at {p['size']} px, on white)",
        "",
        f"{'metric':<30}{'value':>10}   " + "".join(f"{'az ' + format(a, 'g'):>10}" for a in p["views_azimuth_deg"]),
    ]
    for key in METRIC_ORDER:
        if key in report["metrics"]:
            views = report["per_view"].get(key)
            cells = "".join(f"{v:>10.4f}" for v in views) if views else ""
            lines.append(f"{_LABELS[key]:<30}{report['metrics'][key]:>10.4f}   {cells}")
        elif key in report["not_computed"]:
            lines.append(f"{_LABELS[key]:<30}{'-':>10}   not computed: {report['not_computed'][key]}")
    return "\n".join(lines)


def run(args) -> int:
    """The ``eval`` command (see :mod:`dynapose4d.evaluation.cli`)."""
    report = evaluate_result(
        args.result, args.ground_truth, size=args.size, frames=args.frames,
        lpips=args.lpips, clip=args.clip, i3d=args.i3d, device=args.device,
    )
    print(format_table(report))
    out = Path(args.json) if args.json else None
    if out is None:
        base = Path(args.result)
        out = (base if base.is_dir() else base.parent) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return 0
