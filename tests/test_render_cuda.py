"""On a CUDA GPU: gsplat and our renderers agree (skipped without CUDA, as on the CI machines)."""

import pytest
import torch

from dynapose4d.evaluation.metrics import psnr
from dynapose4d.render import render
from dynapose4d.evaluation.scenes import sphere_scene
from tests.test_render import random_scene, some_cameras

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("n", [1000, 20000])
def test_gsplat_matches_the_cpu_renderer(n):
    g = sphere_scene(n)
    cams = some_cameras(256, 256, dtype=torch.float32)
    cpu = render(g, cams, 1.0, backend="torch")
    gpu = render(g.to("cuda"), cams.to("cuda"), 1.0, backend="gsplat")
    assert psnr(gpu.rgb.cpu(), cpu.rgb) > 40
    assert psnr(gpu.alpha.cpu()[..., None].expand(-1, -1, -1, 3), cpu.alpha[..., None].expand(-1, -1, -1, 3)) > 40


def test_gsplat_gradients_point_the_same_way():
    g = random_scene(300, seed=1, dtype=torch.float32)
    cams = some_cameras(64, 64, dtype=torch.float32)
    grads = {}
    for backend, device in (("torch", "cpu"), ("gsplat", "cuda")):
        scene = g.to(device).requires_grad_()
        render(scene, cams.to(device), 1.0, backend=backend).rgb.square().sum().backward()
        grads[backend] = scene.means.grad.cpu().flatten()
    cosine = torch.nn.functional.cosine_similarity(grads["torch"], grads["gsplat"], dim=0)
    assert cosine > 0.99


def test_torch_rasteriser_runs_on_cuda_as_the_fallback():
    g = random_scene(200, seed=2, dtype=torch.float32)
    cams = some_cameras(48, 40, dtype=torch.float32)
    a = render(g, cams, 1.0, backend="torch")
    b = render(g.to("cuda"), cams.to("cuda"), 1.0, backend="torch")
    assert (a.rgb - b.rgb.cpu()).abs().max() < 1e-4
