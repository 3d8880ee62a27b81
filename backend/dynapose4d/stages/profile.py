"""Where a dynamic-stage step spends its time: forward and backward of the deformation, the
renderer (projection and rasteriser apart) and the losses, and the optimiser.

:func:`profile_steps` runs real :meth:`DynamicStage.train_step` calls (the model trains on) and
times them from the outside: the forward pieces by wrapping the calls, the backward pieces by
gradient hooks, which fire when autograd reaches a tensor. Autograd on the CPU runs one node at
a time, so the hook times split the backward pass into what lies after the loss (the losses'
own backward), between the renderer's output and its inputs (the renderer's backward), and
below it (the deformation's backward, down to the HexPlane and the skinning weights).
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from unittest import mock

import torch

from . import dynamic as dynamic_module

# Phases in the order a step runs them; "other" is the rest of the step (sampling, weighing).
PHASES = (
    "deform_forward", "project_forward", "raster_forward", "loss_forward",
    "loss_backward", "raster_backward", "project_backward", "deform_backward",
    "optimizer", "other",
)


class _Clock:
    """Event times of one step, in seconds since it started."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.spans: dict[str, float] = {}
        self.marks: dict[str, float] = {}

    def add(self, name: str, seconds: float):
        self.spans[name] = self.spans.get(name, 0.0) + seconds

    def first(self, name: str):
        self.marks.setdefault(name, time.perf_counter())

    def last(self, name: str):
        self.marks[name] = time.perf_counter()


def _hook_all(tensors, clock: _Clock, mark: str, first: bool):
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.requires_grad:
            t.register_hook(lambda g, m=mark: (clock.first(m) if first else clock.last(m)) or None)


def profile_steps(stage: "dynamic_module.DynamicStage", steps: int) -> dict:
    """Run ``steps`` training steps of ``stage``; returns mean seconds per step by phase
    (:data:`PHASES`) plus ``"step"``, the mean wall time of a whole step."""
    from ..render import numba_raster

    totals = dict.fromkeys(PHASES, 0.0)
    totals["step"] = 0.0
    clock = _Clock()
    real_render = dynamic_module.render
    real_raster = numba_raster.rasterize_numba
    real_deform = stage.deformation.frames_and_handles
    real_losses = stage.losses
    real_opt_step = stage.optimizer.step

    def timed(name, fn):
        def call(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            clock.add(name, time.perf_counter() - t)
            return out
        return call

    def render(gaussians, *a, **k):
        t = time.perf_counter()
        _hook_all(gaussians.tensors().values(), clock, "project_backward_end", first=False)
        out = real_render(gaussians, *a, **k)
        clock.add("render_forward", time.perf_counter() - t)
        _hook_all((out.rgb, out.alpha), clock, "loss_backward_end", first=True)
        return out

    def raster(means2d, *a, **k):
        t = time.perf_counter()
        _hook_all((means2d,) + a[:4], clock, "raster_backward_end", first=False)
        out = real_raster(means2d, *a, **k)
        clock.add("raster_forward", time.perf_counter() - t)
        return out

    def losses(frame_ids):
        out = real_losses(frame_ids)
        clock.last("losses_end")
        return out

    def opt_step(*a, **k):
        clock.last("backward_end")
        t = time.perf_counter()
        out = real_opt_step(*a, **k)
        clock.add("optimizer", time.perf_counter() - t)
        return out

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(dynamic_module, "render", render))
        stack.enter_context(mock.patch.object(numba_raster, "rasterize_numba", raster))
        stack.enter_context(mock.patch.object(stage.deformation, "frames_and_handles", timed("deform_forward", real_deform)))
        stack.enter_context(mock.patch.object(stage, "losses", timed("losses", losses)))
        stack.enter_context(mock.patch.object(stage.optimizer, "step", opt_step))
        for _ in range(steps):
            clock = _Clock()
            stage.train_step()
            total = time.perf_counter() - clock.t0
            s, m = clock.spans, clock.marks
            raster_fwd = s.get("raster_forward", 0.0)  # 0 when the renderer is not numba
            phase = {
                "deform_forward": s["deform_forward"],
                "raster_forward": raster_fwd,
                "project_forward": s["render_forward"] - raster_fwd,
                "loss_forward": s["losses"] - s["deform_forward"] - s["render_forward"],
                "loss_backward": m["loss_backward_end"] - m["losses_end"],
                "optimizer": s["optimizer"],
            }
            raster_end = m.get("raster_backward_end", m["loss_backward_end"])
            phase["raster_backward"] = raster_end - m["loss_backward_end"]
            phase["project_backward"] = m["project_backward_end"] - raster_end
            phase["deform_backward"] = m["backward_end"] - m["project_backward_end"]
            phase["other"] = total - sum(phase.values())
            for k, v in phase.items():
                totals[k] += v
            totals["step"] += total
    return {k: v / max(1, steps) for k, v in totals.items()}


def format_profile(rows: dict[str, dict]) -> str:
    """A table: one column per profiled setting (``rows``: name -> :func:`profile_steps` output),
    seconds per step and share of the step."""
    names = list(rows)
    head = f"{'phase':<18}" + "".join(f"{n:>26}" for n in names)
    lines = [head]
    for p in PHASES + ("step",):
        cells = []
        for n in names:
            v, step = rows[n][p], rows[n]["step"]
            cells.append(f"{v:>12.3f} s {100 * v / step:>9.1f} %  ")
        lines.append(f"{p:<18}" + "".join(cells))
    return "\n".join(lines)
