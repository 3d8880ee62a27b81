"""The static stage: one image -> 3D Gaussians (DreamGaussian's recipe, DESIGN.md §2).

Per step:
1. render the reference view: ``loss_rgb`` and ``loss_mask`` against the input (ramped by
   step / iterations as DreamGaussian's warm-up does);
2. render ``novel.views`` random orbit views (elevation within +-30 deg of the reference, any
   azimuth) and score them with the guidance: ``loss_sds`` (Zero-1-to-3, timesteps annealed
   0.98 -> 0.02, CFG 5);
3. Adam step with per-parameter learning rates (positions decay exponentially);
4. densify and prune on a schedule, from the screen-space gradients of the Gaussians' centres.

Without a guidance (no Zero123 weights) only the reference view supervises: useful for tests and
for seeing the pipeline run, not for good novel views.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..cameras import Cameras
from ..dynamic4d import Dynamic4D
from ..events import EventSink, SnapshotEvent, ignore
from ..gaussians import Gaussians, duplicate, remove, split
from ..imaging.images import ReferenceImage
from ..losses import loss_reference, weigh_terms
from ..render import render
from .loop import StopRequested, run_stage
from .novel_view import NovelViewConfig, NovelViewSDS

STAGE = "static"


@dataclass
class StaticConfig:
    iterations: int = 500
    num_points: int = 5000  # initial Gaussians, uniform in a ball (DreamGaussian)
    init_radius: float = 0.5
    resolution: int = 256  # the reference render (the paper's reference size)
    lambda_rgb: float = 10000.0
    lambda_mask: float = 1000.0
    ramp: bool = True
    lambda_sds: float = 1.0
    novel: NovelViewConfig = field(default_factory=NovelViewConfig)
    lr_means: tuple[float, float] = (1e-3, 2e-5)  # initial, final (exponential decay)
    lr_sh_dc: float = 1e-2
    lr_opacity: float = 5e-2
    lr_log_scales: float = 5e-3
    lr_quats: float = 5e-3
    densify_from: int = 100
    densify_until: int = 400
    densify_every: int = 50
    grad_threshold: float = 0.05  # mean screen-space gradient norm (loss per pixel of motion)
    split_scale: float = 0.01  # Gaussians larger than this (world units) split instead of cloning
    prune_opacity: float = 0.01
    max_gaussians: int = 200_000
    snapshot_every: int = 50
    checkpoint_every: int = 100
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def initial_gaussians(num: int, radius: float, generator: torch.Generator) -> Gaussians:
    """``num`` grey-ish Gaussians uniform in a ball, sized to their spacing, opacity 0.1."""
    direction = torch.nn.functional.normalize(torch.randn(num, 3, generator=generator), dim=-1)
    r = radius * torch.rand(num, 1, generator=generator) ** (1 / 3)
    means = direction * r
    spacing = radius * (4 / 3 * math.pi / num) ** (1 / 3)
    rgb = 0.5 + 0.1 * torch.rand(num, 3, generator=generator)
    return Gaussians.from_points(means, rgb, spacing * 0.5, 0.1)


class StaticStage:
    def __init__(self, config: StaticConfig, reference: ReferenceImage, camera: Cameras, sds: NovelViewSDS | None = None, initial: Gaussians | None = None):
        """``camera``: the reference camera (a single orbit camera, e.g. elevation 0, azimuth 0,
        radius 2); ``sds``: novel-view guidance already given the reference image."""
        if camera.batch_shape != ():
            raise ValueError("the reference camera must be a single camera")
        self.config, self.sds = config, sds
        res = config.resolution
        self.camera = camera.resized(res)
        image, mask = reference.image, reference.mask
        if image.shape[0] != res:
            import torch.nn.functional as F

            image = F.interpolate(image.permute(2, 0, 1)[None], size=(res, res), mode="area")[0].permute(1, 2, 0)
            mask = F.interpolate(mask[None, None], size=(res, res), mode="area")[0, 0]
        self.image, self.mask = image.float(), mask.float()
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        start = initial if initial is not None else initial_gaussians(config.num_points, config.init_radius, self.generator)
        self._set_params(start.tensors())
        self.step = 0
        self.snapshot_version = 0
        self._reset_stats()

    # -- parameters and their optimisers ----------------------------------------------------------
    def _set_params(self, tensors: dict, optimizer_states: dict | None = None) -> None:
        self.params = {k: torch.nn.Parameter(v.detach().clone()) for k, v in tensors.items()}
        c = self.config
        lrs = {"means": c.lr_means[0], "sh_dc": c.lr_sh_dc, "sh_rest": c.lr_sh_dc / 20, "opacity_logits": c.lr_opacity, "log_scales": c.lr_log_scales, "quats": c.lr_quats}
        # One Adam per parameter, so densification can edit each one's state (gsplat's habit).
        self.optimizers = {k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in self.params.items()}
        if optimizer_states:
            for k, state in optimizer_states.items():
                self.optimizers[k].load_state_dict(state)

    @property
    def gaussians(self) -> Gaussians:
        return Gaussians(**self.params)

    def _reset_stats(self) -> None:
        n = self.params["means"].shape[0]
        self.grad_sum = torch.zeros(n)
        self.grad_count = torch.zeros(n)

    # -- one step ------------------------------------------------------------------------------------
    def losses(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The unweighted terms and the reference render's screen-space means (for densification)."""
        g = self.gaussians
        out = render(g, self.camera, 1.0)
        out.means2d.retain_grad()
        terms = {}
        terms["loss_rgb"], terms["loss_mask"] = loss_reference(out.rgb[None], out.alpha[None], self.image[None], self.mask[None])
        if self.sds is not None and self.config.lambda_sds > 0:
            terms.update(self.sds(g, self.step / max(1, self.config.iterations)))
        return terms, out

    def weights(self) -> dict[str, float]:
        c = self.config
        r = (self.step + 1) / c.iterations if c.ramp else 1.0
        return {"loss_rgb": c.lambda_rgb * r, "loss_mask": c.lambda_mask * r, "loss_sds": c.lambda_sds}

    def train_step(self, should_stop: Callable[[], bool] = lambda: False) -> dict[str, float]:
        c = self.config
        frac = self.step / max(1, c.iterations)
        self.optimizers["means"].param_groups[0]["lr"] = c.lr_means[0] * (c.lr_means[1] / c.lr_means[0]) ** frac
        rng_before = (self.generator.get_state(), self.sds.state_dict() if self.sds else None)
        terms, out = self.losses()
        if should_stop():
            self.generator.set_state(rng_before[0])
            if self.sds:
                self.sds.load_state_dict(rng_before[1])
            raise StopRequested
        w = self.weights()
        total, values = weigh_terms(terms, w)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        total.backward()
        self._accumulate_stats(out)
        for opt in self.optimizers.values():
            opt.step()
        self.step += 1
        if c.densify_from <= self.step <= c.densify_until and self.step % c.densify_every == 0:
            self.densify()
        values["gaussians"] = float(self.params["means"].shape[0])
        return values

    @torch.no_grad()
    def _accumulate_stats(self, out) -> None:
        grad = out.means2d.grad
        if grad is None:
            return
        visible = (out.radii > 0).all(-1)
        norm = grad.norm(dim=-1) * (self.camera.width / 2)  # per half-image, as 3DGS measures it
        self.grad_sum[visible] += norm[visible]
        self.grad_count[visible] += 1

    @torch.no_grad()
    def densify(self) -> None:
        """3DGS's rule: clone small Gaussians with large screen-space gradients, split large
        ones, prune transparent ones; moments of new Gaussians start at zero."""
        c = self.config
        mean_grad = self.grad_sum / self.grad_count.clamp_min(1)
        big_grad = mean_grad > c.grad_threshold
        size = torch.exp(self.params["log_scales"]).amax(-1)
        room = c.max_gaussians - self.params["means"].shape[0]
        if room > 0:
            clone = big_grad & (size <= c.split_scale)
            duplicate(self.params, self.optimizers, _limit(clone, room))
            grow = self.params["means"].shape[0] - len(clone)
            splitting = torch.cat([big_grad & (size > c.split_scale), torch.zeros(grow, dtype=torch.bool)])
            split(self.params, self.optimizers, _limit(splitting, max(0, room - grow)), self.generator)
        transparent = torch.sigmoid(self.params["opacity_logits"][:, 0]) < c.prune_opacity
        if transparent.any() and (~transparent).sum() > 0:
            remove(self.params, self.optimizers, transparent)
        self._reset_stats()

    # -- the loop --------------------------------------------------------------------------------------
    def run(self, emit: EventSink = ignore, should_stop: Callable[[], bool] = lambda: False, checkpoint_path=None) -> str:
        c = self.config
        return run_stage(
            self, STAGE, c.iterations, c.snapshot_every, c.checkpoint_every, emit, should_stop, checkpoint_path,
            summary=lambda: f"{self.params['means'].shape[0]:,} Gaussians",
        )

    def snapshot(self) -> SnapshotEvent:
        self.snapshot_version += 1
        return SnapshotEvent(STAGE, self.step, self.snapshot_version, Dynamic4D.still(self.result(), self.camera))

    def result(self) -> Gaussians:
        return self.gaussians.detach().clone()

    # -- checkpoints -----------------------------------------------------------------------------------
    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": "dynapose4d.static-checkpoint/1",
            "config": self.config.to_dict(),
            "step": self.step,
            "snapshot_version": self.snapshot_version,
            "params": {k: v.detach() for k, v in self.params.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "sds": self.sds.state_dict() if self.sds else None,
            "grad_sum": self.grad_sum,
            "grad_count": self.grad_count,
            "torch_rng": torch.get_rng_state(),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != "dynapose4d.static-checkpoint/1":
            raise ValueError(f"{path}: not a static-stage checkpoint")
        if state["config"] != self.config.to_dict():
            raise ValueError(f"{path}: the checkpoint was made with different settings")
        self._set_params(state["params"], state["optimizers"])
        self.generator.set_state(state["generator"])
        if self.sds and state["sds"]:
            self.sds.load_state_dict(state["sds"])
        self.grad_sum, self.grad_count = state["grad_sum"], state["grad_count"]
        torch.set_rng_state(state["torch_rng"])
        self.step, self.snapshot_version = state["step"], state["snapshot_version"]


def _limit(mask: torch.Tensor, count: int) -> torch.Tensor:
    """Keep at most ``count`` of the selected entries (the first ones)."""
    if int(mask.sum()) <= count:
        return mask
    keep = torch.zeros_like(mask)
    keep[torch.where(mask)[0][:count]] = True
    return keep
