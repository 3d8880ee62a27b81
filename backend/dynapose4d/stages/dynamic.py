"""The dynamic stage: static Gaussians + a driving video + keypoints -> 4D Gaussians.

Per step (DynaPose4D on DG4D's recipe, DESIGN.md §2):
1. sample a batch of frames and deform the static Gaussians to their times;
2. render them from the reference camera in one batched call;
3. ``loss_rgb``, ``loss_mask`` against the driving frames (weights ramped by step / iterations,
   as DG4D does), ``loss_kml`` between the projected keypoint anchors and the estimator's
   keypoints (frames 1..T-1), ``loss_scl`` over the handles' trajectories (all T frames),
   ``loss_tv`` on the HexPlane, and any novel-view guidance terms (``loss_sds``);
4. Adam step with per-group learning rates.

It emits progress and snapshot events, writes checkpoints that resume exactly, and stops on
request between (or within) steps.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch import Tensor

from ..cameras import Cameras
from ..deform.anchors import make_anchors
from ..deform.deformations import DeformConfig, make_deformation
from ..dynamic4d import Dynamic4D, Keypoints3D
from ..events import EventSink, LogEvent, SnapshotEvent, ignore
from ..gaussians import Gaussians
from ..keypoints.base import SupportKeypoints, TrackResult
from ..losses import (
    as_rigid_as_possible_loss,
    keypoint_match_loss,
    loss_reference,
    spatio_temporal_consistency_loss,
    weigh_terms,
)
from ..render import render
from ..video.clip import DrivingVideo
from ..video.masks import trust_keypoints
from .loop import StopRequested, run_stage

STAGE = "dynamic"
KEYPOINT_TRUST_RADIUS = 0.03  # of the render size: the disk around a keypoint the mask lost where the mask is not trusted
MAX_MEAN_SCALE_CHANGE = 0.1  # a mean-motion scale off 1 by more than this is reported as a warning


@dataclass
class DynamicConfig:
    iterations: int = 500
    frames_per_step: int = 0  # 0: every frame each step (DG4D); fewer is faster on a CPU (sample_frames)
    resolution: int = 256  # reference-view render size; frames are resized to it
    # Loss weights (lambda_<x> weights loss_<x>). rgb and mask ramp from 0 as DG4D's do.
    lambda_rgb: float = 10000.0
    lambda_mask: float = 1000.0
    ramp: bool = True
    lambda_kml: float = 20000.0
    # Cauchy KML scale in normalised image units (0: the paper's squared form). The ablation:
    # with 20% silent outliers the squared form doubled keypoint error; 0.02 matched clean runs.
    kml_robust_scale: float = 0.02
    lambda_scl: float = 100.0  # ablation: 1000 over-smoothed fast motion (-2 dB on "swing")
    scl_order: int = 1  # 1: the paper's velocity form; 2: acceleration (jitter only)
    lambda_arap: float = 1000.0  # our addition (losses.py); 0 gives the paper's losses only
    arap_knn: int = 8
    lambda_tv: float = 1.0
    lambda_sds: float = 1.0
    # Learning rates (Adam).
    lr_grid: float = 1e-2
    lr_mlp: float = 1e-3
    lr_skin: float = 1e-2
    lr_decay: float = 0.1  # final / initial learning rate (exponential schedule)
    train_static: bool = True
    lr_static: dict = field(
        default_factory=lambda: {
            "means": 1.6e-4,
            "quats": 1e-3,
            "log_scales": 5e-3,
            "opacity_logits": 2.5e-2,
            "sh_dc": 2.5e-3,
            "sh_rest": 1.25e-4,
        }
    )
    anchor_knn: int = 4
    snapshot_every: int = 50
    checkpoint_every: int = 100
    seed: int = 0
    deform: DeformConfig = field(default_factory=DeformConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DynamicConfig":
        d = dict(d)
        deform = DeformConfig.from_dict(d.pop("deform", {}))
        return cls(deform=deform, **d)


class NovelViewGuidance(Protocol):
    """The hook for novel-view guidance (Zero-1-to-3 SDS conditioned on frame t, as DG4D does).

    Called each step with the deformed Gaussians of the step's frames (batch shape [F]), their
    frame indices, and the step fraction in [0, 1]; returns named losses (``loss_sds``, ...),
    each weighted by the config's ``lambda_<name>``.
    """

    def __call__(self, gaussians: Gaussians, frame_ids: Tensor, step_fraction: float) -> dict[str, Tensor]: ...


def _learning_rate(config: DynamicConfig, group: str) -> float:
    try:
        return getattr(config, f"lr_{group}")
    except AttributeError:
        raise ValueError(f"the deformation has a parameter group {group!r} but DynamicConfig has no lr_{group}") from None


class DynamicStage:
    def __init__(
        self,
        config: DynamicConfig,
        static: Gaussians,
        video: DrivingVideo,
        support: SupportKeypoints,
        track: TrackResult,
        camera: Cameras,
        guidance: NovelViewGuidance | None = None,
        info: dict | None = None,
        anchor_views: list | None = None,
    ):
        # 1. Check inputs.
        static.validate()
        if static.batch_shape:
            raise ValueError("the static model must be a single scene (no batch dims)")
        T = video.num_frames
        if T < 2:
            raise ValueError("a driving video needs at least 2 frames")
        if track.num_frames != T:
            raise ValueError(f"the keypoint track has {track.num_frames} frames but the video has {T}")
        if track.xy.shape[1] != support.n:
            raise ValueError(f"the track has {track.xy.shape[1]} keypoints but the support has {support.n}")
        if camera.batch_shape != ():
            raise ValueError("the reference camera must be a single camera")
        self.config, self.guidance = config, guidance
        self.extra_info = dict(info or {})  # carried into every result (e.g. the user frame)
        self.num_frames, self.video_fps = T, float(video.fps)
        res = config.resolution
        self.camera = camera.resized(res).to(dtype=static.means.dtype)
        torch.manual_seed(config.seed)

        # 2. Targets at the render resolution; keypoints scaled from the video's pixels.
        vh, vw = video.frames.shape[1:3]
        resized = video.resized(res)
        self.frames, self.masks = resized.frames.float(), resized.masks.float()
        scale = torch.tensor([res / vw, res / vh])
        self.track_xy = torch.from_numpy(track.xy) * scale
        self.track_weight = torch.from_numpy(track.confidence * track.visible)
        self.mask_weight, self.mask_info = self._mask_weight(resized, res)
        self.support = support
        self.track_info = {"estimator": track.estimator}

        # 3. The model: static Gaussians (trainable or not), deformation, anchors.
        self.static_params = {k: torch.nn.Parameter(v.detach().clone(), requires_grad=config.train_static) for k, v in static.tensors().items()}
        self.deformation = make_deformation(self.static, config.deform)
        if not self.deformation.trainable:
            raise ValueError(
                f"deformation mode {config.deform.mode!r} has nothing to train; the dynamic stage trains 'control' (default) or 'per_gaussian'"
            )
        sx, sy = support.image_size or (vw, vh)
        support_px = torch.from_numpy(support.xy) * torch.tensor([res / sx, res / sy])
        self.anchors = make_anchors(self.static.detach(), self.camera, support_px.to(self.camera.c2w), self.deformation.handles_rest, config.anchor_knn)
        if anchor_views:  # multi-view keypoints: refine the lifted anchors' depths (keypoints/multiview.py)
            from ..keypoints.multiview import refine_anchors

            self.anchors, report = refine_anchors(self.anchors, self.camera, anchor_views, self.deformation.handles_rest, config.anchor_knn)
            self.extra_info["multiview_keypoints"] = report.to_dict()
        self.anchor_weight = (self.anchors.valid & torch.from_numpy(support.visible)).to(self.track_weight)
        rest = self.deformation.handles_rest
        k = min(config.arap_knn + 1, rest.shape[0])
        dist, idx = torch.cdist(rest, rest).topk(k, largest=False)  # the first is the point itself
        self.arap_neighbours = idx[:, 1:]
        sigma = dist[:, 1:].mean().clamp_min(1e-6)
        self.arap_weights = torch.exp(-(dist[:, 1:] ** 2) / (2 * sigma**2))

        # 4. Optimiser with per-group learning rates. (The frame schedule needs no generator; this
        # one stays in checkpoints for guidance and older checkpoints.)
        groups = [{"name": name, "params": params, "lr": _learning_rate(config, name)} for name, params in self.deformation.parameter_groups().items()]
        if config.train_static:
            groups += [{"name": k, "params": [p], "lr": config.lr_static[k]} for k, p in self.static_params.items()]
        for g in groups:
            g["initial_lr"] = g["lr"]
        self.optimizer = torch.optim.Adam(groups, eps=1e-15)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.snapshot_version = 0
        self.inputs_digest = _digest(static, video, track)

    # -- model pieces --------------------------------------------------------------------
    @property
    def static(self) -> Gaussians:
        return Gaussians(**self.static_params)

    def times(self, frame_ids: Tensor) -> Tensor:
        return frame_ids.to(self.static_params["means"].dtype) / (self.num_frames - 1)

    def sample_frames(self) -> Tensor:
        """This step's frame indices, sorted: every frame, or ``frames_per_step`` of them.

        A subset is read off a stream of shuffled passes over all T frames, k per step, so every
        frame is visited equally often (a pure random pick leaves some frames unseen for long
        stretches). The stream is a function of the seed and the step alone, so a resumed run
        picks the same frames without extra checkpoint state.
        """
        k, T = self.config.frames_per_step, self.num_frames
        if k <= 0 or k >= T:
            return torch.arange(T)
        picked: list[int] = []
        pos = self.step * k
        while len(picked) < k:
            epoch, offset = divmod(pos, T)
            take = self._pass_order(epoch)[offset : offset + k - len(picked)]
            picked += take
            pos += len(take)
        return torch.tensor(sorted(picked))

    def _pass_order(self, epoch: int) -> list[int]:
        """The frames of pass ``epoch`` of the schedule in visiting order. A step that straddles
        two passes must not draw a frame twice, so the frames the previous pass contributes to
        that step go to the back of this one."""
        cache = self.__dict__.setdefault("_pass_orders", {})
        T, k = self.num_frames, self.config.frames_per_step
        for e in range(max((e for e in cache if e <= epoch), default=-1) + 1, epoch + 1):  # in order: e needs e - 1
            g = torch.Generator().manual_seed((self.config.seed << 24) + e)
            order = torch.randperm(T, generator=g).tolist()
            if e > 0:
                boundary = (e * T) // k * k  # stream position of the straddling step
                tail = set(cache[e - 1][boundary - (e - 1) * T :])
                order = [f for f in order if f not in tail] + [f for f in order if f in tail]
            cache[e] = order
        return cache[epoch]

    def _mask_weight(self, video: DrivingVideo, res: int) -> tuple[Tensor, dict]:
        """The reference losses' per-pixel weight: the video's mask confidence, cleared around the
        tracked keypoints the masks lost (video/masks.py), and what it holds, for the result."""
        weights, lost = trust_keypoints(video.weights.numpy(), self.masks.numpy(), self.track_xy.numpy(),
                                        self.track_weight.numpy(), KEYPOINT_TRUST_RADIUS * res)
        weight = torch.from_numpy(weights)
        return weight, {"unsure_share": round(float((weight < 0.5).float().mean()), 4), "keypoints_outside_mask": lost}

    def losses(self, frame_ids: Tensor) -> dict[str, Tensor]:
        """The unweighted loss terms for one batch of frames (``loss_<name>``)."""
        c = self.config
        static = self.static
        all_t = self.times(torch.arange(self.num_frames))
        deformed, handles = self.deformation.frames_and_handles(static, all_t, frame_ids)
        scenes = deformed.gaussians(static)
        out = render(scenes, self.camera, 1.0)
        losses = {}
        losses["loss_rgb"], losses["loss_mask"] = loss_reference(out.rgb, out.alpha, self.frames[frame_ids], self.masks[frame_ids], self.mask_weight[frame_ids])
        later = frame_ids > 0  # frame 0 is the one-shot support
        if later.any():
            pixels, _ = self.camera.project(self.anchors.positions(deformed)[later])
            weight = self.track_weight[frame_ids[later]] * self.anchor_weight
            losses["loss_kml"] = keypoint_match_loss(
                pixels, self.track_xy[frame_ids[later]].to(pixels), weight, (self.camera.width, self.camera.height), c.kml_robust_scale
            )
        losses["loss_scl"] = spatio_temporal_consistency_loss(handles.handles, c.scl_order)
        losses["loss_arap"] = as_rigid_as_possible_loss(
            handles.handles, handles.handle_rot, self.deformation.handles_rest, self.arap_neighbours, self.arap_weights
        )
        losses.update(self.deformation.regularizers())
        if self.guidance is not None:
            losses.update(self.guidance(scenes, frame_ids, self.step / max(1, c.iterations)))
        return losses

    def weights(self) -> dict[str, float]:
        c = self.config
        r = (self.step + 1) / c.iterations if c.ramp else 1.0
        return {
            "loss_rgb": c.lambda_rgb * r,
            "loss_mask": c.lambda_mask * r,
            "loss_kml": c.lambda_kml,
            "loss_scl": c.lambda_scl,
            "loss_arap": c.lambda_arap,
            "loss_tv": c.lambda_tv,
            "loss_sds": c.lambda_sds,
        }

    # -- the loop --------------------------------------------------------------------------
    def run(
        self,
        emit: EventSink = ignore,
        should_stop: Callable[[], bool] = lambda: False,
        checkpoint_path: str | os.PathLike | None = None,
    ) -> str:
        """Optimise until ``config.iterations``; returns ``"finished"`` or ``"stopped"``.

        ``should_stop`` is polled before and during each step; on a stop the last completed
        step is checkpointed (when ``checkpoint_path`` is given) and ``"stopped"`` returned.
        """
        c = self.config

        def summary() -> str:
            # The scale of the mean motion per frame, in the finished message and the result's
            # info; a global swelling (the video framed larger than the model) also warns.
            scales = self.extra_info["motion_scale"] = self.motion_scale()
            text = "scale of the mean motion per frame " + " ".join(f"{v:.3f}" for v in scales)
            if max(abs(v - 1.0) for v in scales) > MAX_MEAN_SCALE_CHANGE:
                emit(LogEvent(f"dynamic: the object grows or shrinks as a whole over the clip ({text}): "
                              "the video and the model may be framed differently", "warning"))
            return text

        return run_stage(self, STAGE, c.iterations, c.snapshot_every, c.checkpoint_every, emit, should_stop, checkpoint_path, summary)

    @torch.no_grad()
    def motion_scale(self) -> list[float]:
        """Per frame, the scale of the deformation's mean motion: the opacity-weighted RMS
        distance of the deformed means from their centroid over that of the static means (1.0 =
        no global growth; a video framed larger than the model shows up as values above 1)."""
        static = self.static.detach()
        w = static.opacities.reshape(-1)
        w = w / w.sum().clamp_min(1e-12)

        def spread(x):
            c = (w[:, None] * x).sum(0)
            return float(((w * ((x - c) ** 2).sum(-1)).sum()).sqrt())

        rest = max(spread(static.means), 1e-12)
        times = self.times(torch.arange(self.num_frames))
        out = []
        for i in range(0, self.num_frames, 8):
            deformed = self.deformation(static, times[i : i + 8]).gaussians(static)
            out += [round(spread(deformed.means[j]) / rest, 4) for j in range(deformed.means.shape[0])]
        return out

    def train_step(self, should_stop: Callable[[], bool] = lambda: False) -> dict[str, float]:
        """One optimisation step; returns the weighted loss terms and their total."""
        self._set_learning_rates()
        rng_before = self.generator.get_state()
        frame_ids = self.sample_frames()
        terms = self.losses(frame_ids)
        if should_stop():  # drop the half-done step so a resume repeats it exactly
            self.generator.set_state(rng_before)
            raise StopRequested
        w = self.weights()
        total, values = weigh_terms(terms, w)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.step += 1
        return values

    def _set_learning_rates(self):
        frac = self.step / max(1, self.config.iterations)
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * self.config.lr_decay**frac

    def snapshot(self) -> SnapshotEvent:
        self.snapshot_version += 1
        return SnapshotEvent(STAGE, self.step, self.snapshot_version, self.result())

    def result(self) -> Dynamic4D:
        names = self.support.names
        return Dynamic4D(
            static=self.static.detach(),
            deform_config=self.config.deform,
            deform_state={k: v.detach().clone() for k, v in self.deformation.state_dict().items()},
            keypoints=Keypoints3D(tuple(names), torch.from_numpy(self.support.edges), self.anchors),
            camera=self.camera,
            video_fps=self.video_fps,
            num_frames=self.num_frames,
            info={"iterations": self.step, "config": self.config.to_dict(), **self.track_info, "masks": self.mask_info, **self.extra_info},
        )

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": "dynapose4d.dynamic-checkpoint/1",
            "step": self.step,
            "snapshot_version": self.snapshot_version,
            "config": self.config.to_dict(),
            "inputs_digest": self.inputs_digest,
            "model": self.deformation.state_dict(),
            "static": {k: v.detach() for k, v in self.static_params.items()},
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "guidance": self.guidance.state_dict() if hasattr(self.guidance, "state_dict") else None,
        }

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint intact
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != "dynapose4d.dynamic-checkpoint/1":
            raise ValueError(f"{path}: not a dynamic-stage checkpoint")
        if state["inputs_digest"] != self.inputs_digest:
            raise ValueError(f"{path}: the checkpoint was made from different inputs (video, keypoints or static model)")
        if state["config"] != self.config.to_dict():
            raise ValueError(f"{path}: the checkpoint was made with different settings")
        self.deformation.load_state_dict(state["model"])
        with torch.no_grad():
            for k, v in state["static"].items():
                self.static_params[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if state["guidance"] is not None and hasattr(self.guidance, "load_state_dict"):
            self.guidance.load_state_dict(state["guidance"])
        self.step = state["step"]
        self.snapshot_version = state["snapshot_version"]


def _digest(static: Gaussians, video: DrivingVideo, track: TrackResult) -> str:
    h = hashlib.sha256()
    # The confidence counts only where there is one: a job written before masks had one keeps its
    # digest, so its checkpoint still resumes.
    confidence = [] if video.confidence is None else [video.confidence]
    for t in list(static.tensors().values()) + [video.frames, video.masks] + confidence:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(track.xy).tobytes())
    h.update(np.ascontiguousarray(track.confidence).tobytes())
    h.update(repr(video.fps).encode())
    return h.hexdigest()
