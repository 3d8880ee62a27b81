"""A 4D model with known, articulated motion, without running the pipeline.

The control deformation's field is fitted (Adam, a few hundred steps) so that its control points
follow a procedural articulated object (``articulated.make_articulated``): each control point
moves rigidly with the part it lies on. Tests and benchmarks of the exports (mesh, skeleton,
glTF) get a real :class:`Dynamic4D` whose motion is piecewise rigid and known.
"""

from __future__ import annotations

import torch

from ..cameras import Cameras
from ..deform.anchors import Anchors
from ..deform.deformations import Binding, DeformConfig, make_deformation
from ..dynamic4d import Dynamic4D, Keypoints3D
from ..evaluation.articulated import ArticulatedObject, make_articulated


def articulated_model(obj: ArticulatedObject | None = None, *, controls: int = 128, frames: int = 8, steps: int = 300, seed: int = 0) -> tuple[Dynamic4D, ArticulatedObject]:
    """``(model, obj)``: a Dynamic4D over ``obj.static`` whose control points follow ``obj``'s parts."""
    torch.manual_seed(seed)
    obj = obj or make_articulated("lamp", 2000, seed=seed)
    static = obj.static
    config = DeformConfig(num_controls=controls)
    deform = make_deformation(static, config)
    t = torch.linspace(0.0, 1.0, frames)[1:]
    part = obj.nearest_part(deform.controls)
    target = obj.move_points(deform.controls, part, t)  # [F, M, 3]
    R_true, _ = obj.part_transforms(t)
    R_true = R_true[:, part]
    opt = torch.optim.Adam(deform.net.parameters(), lr=1e-2)
    for _ in range(steps):
        motion = deform.motion(t)
        loss = (motion.handles - target).pow(2).sum(-1).mean() + 0.01 * (motion.handle_rot - R_true).pow(2).sum((-1, -2)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    names = tuple(p.name for p in obj.parts)
    rest = torch.stack([torch.tensor(p.joint) for p in obj.parts]).to(static.means.dtype)
    anchors = Anchors(rest, torch.ones(len(names), dtype=torch.bool), Binding.nearest(rest, deform.handles_rest))
    edges = torch.tensor([[p.parent, i] for i, p in enumerate(obj.parts) if p.parent >= 0], dtype=torch.long)
    model = Dynamic4D(
        static=static,
        deform_config=config,
        deform_state={k: v.detach().clone() for k, v in deform.state_dict().items()},
        keypoints=Keypoints3D(names, edges, anchors),
        camera=Cameras.orbit(0.0, 0.0, 2.0, width=256),
        video_fps=7.0,
        num_frames=frames,
        info={"fit_loss": loss.item(), "snapshot": {"version": 1, "iteration": steps, "stage": "testing"}},
    )
    return model, obj
