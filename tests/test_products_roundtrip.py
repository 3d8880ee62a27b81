"""Every stage product saves and loads back unchanged (the shared save/load test).

A job resumes by reading its products back (pipeline/steps.py), so a product that does not
round-trip makes a resumed job differ from a first run. Each case builds a small, asymmetric
product, saves it with its own ``save``, loads it with its own ``load``, and compares.
"""

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
import pytest
import torch

from dynapose4d.cameras import Cameras
from dynapose4d.dynamic4d import Dynamic4D
from dynapose4d.imaging.images import ReferenceImage, prepare_reference
from dynapose4d.io import read_ply, write_ply
from dynapose4d.keypoints import SupportKeypoints, TrackResult
from dynapose4d.pipeline.demo import DemoConfig, make_demo_inputs
from dynapose4d.stages.dynamic import DynamicConfig, DynamicStage
from dynapose4d.evaluation.scenes import sphere_scene
from dynapose4d.video.clip import DrivingVideo


@dataclass
class Product:
    make: Callable[[], Any]
    save: Callable[[Any, Any], None]  # (product, tmp_path)
    load: Callable[[Any], Any]  # tmp_path -> product
    same: Callable[[Any, Any], None]  # asserts


def _gaussians():
    """An asymmetric scene: turned, anisotropic, with degree-1 SH colours."""
    g = torch.Generator().manual_seed(3)
    base = sphere_scene(50, seed=3)
    return replace(
        base,
        quats=torch.nn.functional.normalize(torch.randn(50, 4, generator=g), dim=-1),
        log_scales=base.log_scales + torch.randn(50, 3, generator=g) * 0.3,
        sh_rest=torch.randn(50, 3, 3, generator=g) * 0.1,
    )


def _same_gaussians(a, b, atol=1e-6):
    for name, ta in a.tensors().items():
        torch.testing.assert_close(getattr(b, name).float(), ta.float(), atol=atol, rtol=0, msg=name)


def _reference():
    rgb = np.full((80, 120, 3), 255, np.uint8)
    rgb[20:60, 30:70] = (200, 40, 20)  # off-centre, wider than tall
    return prepare_reference(rgb, size=64)


def _same_reference(a: ReferenceImage, b: ReferenceImage):
    torch.testing.assert_close(b.image, a.image, atol=1 / 255, rtol=0)  # saved as 8-bit PNG
    torch.testing.assert_close(b.mask, a.mask, atol=1 / 255, rtol=0)
    assert b.crop == a.crop and b.scale == a.scale and b.offset == a.offset
    np.testing.assert_allclose(b.to_reference(np.array([[10.0, 5.0]])), a.to_reference(np.array([[10.0, 5.0]])))


def _video():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 16, 24, 3, generator=g)
    masks = (torch.rand(3, 16, 24, generator=g) > 0.5).float()
    return DrivingVideo(frames, masks, 9.5, "test source", {"note": "asymmetric 16x24"})


def _same_video(a: DrivingVideo, b: DrivingVideo):
    torch.testing.assert_close(b.frames, a.frames, atol=0.5 / 255 + 1e-6, rtol=0)
    torch.testing.assert_close(b.masks, a.masks, atol=0.5 / 255 + 1e-6, rtol=0)
    assert (b.fps, b.source, b.num_frames) == (a.fps, a.source, a.num_frames)


def _keypoints():
    xy = np.array([[3.5, 7.25], [20.0, 1.0], [11.0, 12.5]], np.float32)
    support = SupportKeypoints(xy, np.array([True, False, True]), ["a", "b", "c"], np.array([[0, 1], [1, 2]]), image_size=(24, 16))
    track_xy = np.stack([xy + i for i in range(4)]).astype(np.float32)
    confidence = np.linspace(0, 1, 12, dtype=np.float32).reshape(4, 3)
    track = TrackResult(track_xy, confidence, confidence > 0.3, support.names, support.edges, "tracker", {"k": 1})
    return support, track


def _save_keypoints(p, tmp):
    p[0].save(tmp / "support.json")
    p[1].save(tmp / "track.npz")


def _same_keypoints(a, b):
    np.testing.assert_array_equal(b[0].xy, a[0].xy)
    np.testing.assert_array_equal(b[0].visible, a[0].visible)
    np.testing.assert_array_equal(b[0].edges, a[0].edges)
    assert b[0].names == a[0].names
    for name in ("xy", "confidence", "visible"):
        np.testing.assert_array_equal(getattr(b[1], name), getattr(a[1], name))
    assert (b[1].names, b[1].estimator) == (a[1].names, a[1].estimator)


def _dynamic():
    cfg = DemoConfig(gaussians=300, frames=4, video_size=64)
    inputs = make_demo_inputs(cfg)
    stage = DynamicStage(DynamicConfig(iterations=2, resolution=32), inputs.object.static, inputs.video,
                         inputs.support.keypoints, inputs.track, inputs.camera)
    stage.run()
    return stage.result()


def _same_dynamic(a: Dynamic4D, b: Dynamic4D):
    times = torch.tensor([0.0, 0.4, 1.0])
    ga, ka = a.sample(times)
    gb, kb = b.sample(times)
    _same_gaussians(ga, gb)
    torch.testing.assert_close(kb, ka)
    assert (b.num_frames, b.video_fps, b.keypoints.names) == (a.num_frames, a.video_fps, a.keypoints.names)
    torch.testing.assert_close(b.camera.c2w, a.camera.c2w)


PRODUCTS = {
    "static gaussians": Product(
        _gaussians,
        lambda g, tmp: write_ply(tmp / "static.ply", g, sh_degree=None),  # as the static step writes it
        lambda tmp: read_ply(tmp / "static.ply"),
        _same_gaussians,
    ),
    "reference image": Product(_reference, lambda r, tmp: r.save(tmp / "reference"), lambda tmp: ReferenceImage.load(tmp / "reference"), _same_reference),
    "driving video": Product(_video, lambda v, tmp: v.save(tmp / "video"), lambda tmp: DrivingVideo.load(tmp / "video"), _same_video),
    "keypoints": Product(
        _keypoints,
        _save_keypoints,
        lambda tmp: (SupportKeypoints.load(tmp / "support.json", image_size=(24, 16)), TrackResult.load(tmp / "track.npz")),
        _same_keypoints,
    ),
    "4d result": Product(_dynamic, lambda m, tmp: m.save(tmp / "model.pt"), lambda tmp: Dynamic4D.load(tmp / "model.pt"), _same_dynamic),
}


@pytest.mark.parametrize("name", PRODUCTS)
def test_stage_products_round_trip(name, tmp_path):
    product = PRODUCTS[name]
    made = product.make()
    product.save(made, tmp_path)
    loaded = product.load(tmp_path)
    product.same(made, loaded)
    # Saving what was loaded gives the same product again (nothing drifts across resumes).
    again = tmp_path / "again"
    again.mkdir()
    product.save(loaded, again)
    product.same(loaded, product.load(again))
