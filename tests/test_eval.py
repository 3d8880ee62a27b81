"""``dynapose4d eval``: hand-computed PSNR/SSIM, the missing-weights report, the loaders on random
networks in the real file layouts, and agreement with the ablation's scoring on benchmark-dev."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.cameras import Cameras
from dynapose4d.evaluation import perceptual
from dynapose4d.evaluation.consistent4d import evaluate_result, format_table, load_result, load_truth, read_on_white, render_views
from dynapose4d.evaluation.metrics import psnr, ssim
from dynapose4d.evaluation.scenes import sphere_scene
from dynapose4d.dynamic4d import Dynamic4D
from dynapose4d.testing.tiny_models import fake_hf_cache, save_random_lpips, save_stand_in_i3d, save_tiny_clip

NO_WEIGHTS = {"DYNAPOSE4D_LPIPS": "", "DYNAPOSE4D_CLIP": "", "DYNAPOSE4D_I3D": ""}


# -------------------------------------------------------------------------------------------------
# hand-computed values


def test_psnr_and_ssim_of_constant_images_match_hand_values():
    a = torch.full((1, 16, 16, 3), 0.5)
    b = torch.full((1, 16, 16, 3), 0.6)
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    # Constant images: variances and covariance vanish, SSIM = (2ab + c1) / (a^2 + b^2 + c1).
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1), abs=1e-5)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)


def test_ssim_of_a_contrast_change_matches_hand_value():
    # y = 0.5 + k (x - 0.5) for a pattern x with window mean exactly 0.5 (checkerboard of 0.25/0.75 under an
    # even window is not exact, so use a constant-variance field: every window sees the same statistics).
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.choice([0.25, 0.75], size=(1, 64, 64, 3))).float()
    y = 0.5 + 0.5 * (x - 0.5)
    s = ssim(x, y)
    # Per window: mu_y = 0.5 + 0.5 (mu_x - 0.5), sigma_y = 0.5 sigma_x, sigma_xy = 0.5 sigma_x^2. With mu near 0.5
    # and sigma_x^2 near 1/16: ssim ~ (2 mu_x mu_y + c1)/(mu_x^2 + mu_y^2 + c1) * (sigma_x^2 + c2)/(1.25 sigma_x^2 + c2).
    c2 = 0.03**2
    expected_contrast = (1 / 16 + c2) / (1.25 / 16 + c2)
    assert s == pytest.approx(expected_contrast, abs=0.01)
    assert s < 0.9


def test_mean_per_image_psnr_differs_from_pooled_as_computed_by_hand():
    gt = torch.full((2, 8, 8, 3), 0.5)
    pred = gt.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1] += 0.01  # MSE 0.0001 -> 40 dB
    per_image = [psnr(p, g) for p, g in zip(pred, gt)]
    assert np.mean(per_image) == pytest.approx(30.0, abs=1e-3)
    assert psnr(pred, gt) == pytest.approx(10 * math.log10(1 / 0.00505), abs=1e-3)


def test_frechet_distance_matches_hand_value():
    a = np.array([[0.0], [2.0]])  # mean 1, variance 2
    b = np.array([[1.0], [5.0]])  # mean 3, variance 8
    assert perceptual.frechet_distance(a, b) == pytest.approx(4 + 2 + 8 - 2 * 4, abs=1e-9)
    x = np.random.default_rng(0).normal(size=(8, 5))
    assert perceptual.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


# -------------------------------------------------------------------------------------------------
# a result and its ground truth


def _still_result(tmp_path, n=600):
    model = Dynamic4D.still(sphere_scene(n, seed=3), Cameras.orbit(10.0, 0.0, 2.0, width=64))
    job = tmp_path / "job"
    job.mkdir()
    model.save(job / "model.pt")
    return job


def _write_truth(folder, views):
    """views [T, 4, H, W, 3] in [0, 1] -> eval_K/NNNN.png (RGBA, alpha 1)."""
    for k in range(4):
        (folder / f"eval_{k}").mkdir(parents=True)
        for i, img in enumerate(views[:, k].numpy()):
            rgba = np.concatenate([img, np.ones_like(img[..., :1])], -1)
            Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA").save(folder / f"eval_{k}" / f"{i}.png")
    return folder


def test_eval_scores_its_own_renders_high_and_a_wrong_view_order_low(tmp_path):
    job = _still_result(tmp_path)
    result = load_result(job)
    renders = render_views(result, torch.linspace(0, 1, 3), 64)
    good = _write_truth(tmp_path / "gt", renders)
    bad = _write_truth(tmp_path / "gt_swapped", renders[:, [2, 3, 0, 1]])  # views 180 degrees off
    r_good = evaluate_result(job, good, size=64, env=NO_WEIGHTS, lpips=str(tmp_path / "none"), clip=str(tmp_path / "none"), i3d=str(tmp_path / "none"))
    r_bad = evaluate_result(job, bad, size=64, env=NO_WEIGHTS, lpips=str(tmp_path / "none"), clip=str(tmp_path / "none"), i3d=str(tmp_path / "none"))
    assert r_good["metrics"]["psnr"] > 45 and r_good["metrics"]["ssim"] > 0.99  # only 8-bit rounding differs
    assert r_bad["metrics"]["psnr"] < r_good["metrics"]["psnr"] - 15
    assert r_good["protocol"]["frames"] == 3 and r_good["protocol"]["size"] == 64


def test_missing_networks_are_reported_with_what_to_download_and_the_rest_is_computed(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no hub checkpoints there
    job = _still_result(tmp_path)
    gt = _write_truth(tmp_path / "gt", render_views(load_result(job), torch.linspace(0, 1, 2), 32))
    report = evaluate_result(job, gt, size=32, env=NO_WEIGHTS, clip=str(tmp_path / "no-clip"))
    assert set(report["metrics"]) == {"psnr", "psnr_pooled", "ssim"}
    nc = report["not_computed"]
    assert set(nc) == {"lpips", "clip", "fvd"}
    assert "vgg16-397923af.pth" in nc["lpips"] and "BSD-2-Clause" in nc["lpips"] and "CC BY 4.0" in nc["lpips"]
    assert "openai/clip-vit-base-patch32" in nc["clip"] and "MIT" in nc["clip"]
    assert "i3d_torchscript.pt" in nc["fvd"] and "Apache-2.0" in nc["fvd"]
    table = format_table(report)
    assert table.count("not computed:") == 3 and "PSNR" in table


def test_cli_eval_prints_a_table_and_writes_json(tmp_path):
    job = _still_result(tmp_path)
    gt = _write_truth(tmp_path / "gt", render_views(load_result(job), torch.linspace(0, 1, 2), 32))
    env = dict(os.environ, TORCH_HOME=str(tmp_path / "th"), HF_HUB_CACHE=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", **NO_WEIGHTS)
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "dynapose4d", "eval", str(job), str(gt), "--size", "32", "--json", str(out), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PSNR (dB), mean per image" in proc.stdout and proc.stdout.count("not computed:") == 3
    report = json.loads(out.read_text())
    assert report["metrics"]["psnr"] > 40 and "clip" in report["not_computed"]
    # Bad input: a clear message, no traceback.
    proc = subprocess.run([sys.executable, "-m", "dynapose4d", "eval", str(job), str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1 and "eval_0/" in proc.stderr and "Traceback" not in proc.stderr


def test_ply_sequence_result_scores_like_its_model(tmp_path):
    from dynapose4d.io.sequence import write_sequence

    job = _still_result(tmp_path)
    model = Dynamic4D.load(job / "model.pt")
    write_sequence(tmp_path / "seq", model, fps=7.0, frame_count=3)
    gt = _write_truth(tmp_path / "gt", render_views(load_result(job), torch.linspace(0, 1, 3), 32))
    kw = dict(size=32, env=NO_WEIGHTS, lpips=str(tmp_path / "x"), clip=str(tmp_path / "x"), i3d=str(tmp_path / "x"))
    a, b = evaluate_result(job, gt, **kw), evaluate_result(tmp_path / "seq", gt, **kw)
    assert b["metrics"]["psnr_pooled"] == pytest.approx(a["metrics"]["psnr_pooled"], abs=0.05)


# -------------------------------------------------------------------------------------------------
# loaders on random networks in the real layouts


def test_lpips_loads_torchvision_and_lpips_files_and_behaves_like_a_distance(tmp_path, monkeypatch):
    folder = save_random_lpips(tmp_path / "lpips")
    vgg, lin = perceptual.find_lpips_weights(folder, env={})
    net = perceptual.LPIPS.from_files(vgg, lin)
    saved = torch.load(vgg, weights_only=True)
    assert torch.equal(net.features[28].weight, saved["features.28.weight"])  # conv5_3, torchvision's index
    assert net.features[28].weight.shape == (512, 512, 3, 3)
    x = torch.rand(2, 48, 48, 3)
    d_same = net(x, x)
    d_near = net(x, (x + 0.02 * torch.randn_like(x)).clamp(0, 1))
    d_far = net(x, torch.rand(2, 48, 48, 3))
    assert torch.allclose(d_same, torch.zeros(2), atol=1e-6)
    assert (d_near > 0).all() and (d_far > d_near).all()
    # Found without an explicit folder, in torch's hub checkpoints folder.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    (tmp_path / "th" / "hub").mkdir(parents=True)
    folder.rename(tmp_path / "th" / "hub" / "checkpoints")
    assert perceptual.find_lpips_weights(env={})[0].parent == tmp_path / "th" / "hub" / "checkpoints"


def test_clip_found_in_the_hf_cache_offline_and_scores_similarity(tmp_path, monkeypatch):
    from huggingface_hub import constants

    source = save_tiny_clip(tmp_path / "clip")
    cache = tmp_path / "hf-cache"
    fake_hf_cache(cache, perceptual.CLIP_HUB_ID, source)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    folder = perceptual.find_clip(env={})
    assert folder.parent.parent.name == "models--openai--clip-vit-base-patch32"
    sim = perceptual.CLIPSimilarity(folder)
    x = torch.rand(3, 40, 40, 3)
    assert torch.allclose(sim(x, x), torch.ones(3), atol=1e-5)
    assert (sim(x, 1 - x) < 0.9999).all()


def test_fvd_path_runs_a_torchscript_detector_with_the_i3d_signature(tmp_path):
    path = save_stand_in_i3d(tmp_path / "i3d_torchscript.pt")
    assert perceptual.find_i3d(tmp_path, env={}) == path
    feats = perceptual.I3DFeatures(path)
    videos = torch.rand(4, 6, 32, 32, 3)
    f = feats(videos)
    assert f.shape == (4, 400)
    assert perceptual.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-4)
    assert perceptual.frechet_distance(f, feats(1 - videos)) > 0


def test_eval_with_every_network_present_computes_every_metric(tmp_path):
    job = _still_result(tmp_path)
    gt = _write_truth(tmp_path / "gt", render_views(load_result(job), torch.linspace(0, 1, 3), 32))
    report = evaluate_result(
        job, gt, size=32, env={},
        lpips=str(save_random_lpips(tmp_path / "lpips")),
        clip=str(save_tiny_clip(tmp_path / "clip")),
        i3d=str(save_stand_in_i3d(tmp_path / "i3d.pt")),
    )
    assert report["not_computed"] == {}
    m = report["metrics"]
    assert m["lpips"] < 0.05 and m["clip"] > 0.99 and abs(m["fvd"]) < 1.0


# -------------------------------------------------------------------------------------------------
# benchmark-dev: the same result scored as scripts/bench_ablation.py scores it


def test_benchmark_dev_psnr_agrees_with_the_ablation_scoring(benchmark_dev, tmp_path):
    from dynapose4d.evaluation.ground_truth import GroundTruth, evaluate
    from dynapose4d.io import read_ply

    scene = benchmark_dev / "crane"
    frames = 16
    camera = Cameras.orbit(0.0, 0.0, 2.0, width=256)
    model = Dynamic4D.still(read_ply(scene / "static_gt.ply", up_axis="z"), camera)
    (tmp_path / "job").mkdir()
    model.save(tmp_path / "job" / "model.pt")
    truth = load_truth(scene, frames)
    # The ablation's GroundTruth for the same frames (bench_ablation.dev_case: reference = input/, novel = eval_K/).
    pick = truth.frame_index
    reference = torch.from_numpy(np.stack([read_on_white(scene / "input" / f"{i:04d}.png") for i in pick]))
    ablation = evaluate(model, GroundTruth(times=torch.linspace(0, 1, frames), reference=reference.float(), camera=camera, novel=truth.views.float()))
    report = evaluate_result(tmp_path / "job", truth, size=256, env=NO_WEIGHTS, lpips="-", clip=str(tmp_path / "x"), i3d=str(tmp_path / "x"))
    assert report["metrics"]["psnr_pooled"] == pytest.approx(ablation["novel_psnr"], abs=0.1)
    assert report["metrics"]["ssim"] == pytest.approx(ablation["novel_ssim"], abs=0.005)
