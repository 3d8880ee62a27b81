"""Our PoseAnything against the original: the real checkpoint layout and the golden data.

The golden data (``tests/data/poseanything``, a copy of ``../shared/poseanything``) was computed by
the original code; every stored output and intermediate must match within 10x its float64 gap
(floor 1e-6), preprocessing from the raw images included.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from dynapose4d.keypoints.poseanything import DEMO_B, PoseAnything, PoseAnythingConfig
from dynapose4d.keypoints.poseanything.preprocess import (
    Geometry,
    output_to_pixels,
    prepare_images,
    support_heatmaps,
)

from tests.conftest import ROOT

DATA_DIRS = [ROOT / "tests" / "data" / "poseanything", ROOT.parent / "shared" / "poseanything"]
TOLERANCE_FACTOR, TOLERANCE_FLOOR = 10.0, 1e-6


def _data_file(name: str) -> Path:
    for folder in DATA_DIRS:
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"{name} is in neither tests/data/poseanything nor ../shared/poseanything")


@pytest.fixture(scope="module")
def golden():
    return torch.load(_data_file("golden_small.pt"), weights_only=True)


@pytest.fixture(scope="module")
def small(golden):
    model = PoseAnything(PoseAnythingConfig.from_original(golden["config"]["model"])).eval()
    model.load_state_dict(golden["state_dict"], strict=True)
    return model


def _tolerance(golden, key: str) -> float:
    gaps = golden["fp64_gap"]
    if key in gaps:
        gap = gaps[key]
    else:  # the batch case stores no gaps for its intermediates: use the demo cases' for that tensor
        suffix = key.split("/", 2)[2]
        gap = max(v for k, v in gaps.items() if k.split("/", 2)[2] == suffix)
    return max(TOLERANCE_FACTOR * gap, TOLERANCE_FLOOR)


def _assert_close(golden, key: str, ours: torch.Tensor, ref: torch.Tensor):
    assert ours.shape == ref.shape, f"{key}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    err = (ours.double() - ref.double()).abs().max().item()
    tol = _tolerance(golden, key)
    assert err <= tol, f"{key}: max |diff| {err:.3g} > tolerance {tol:.3g}"
    return err


def _run(model, golden, case: str):
    """Our forward on the golden case's stored (preprocessed) inputs, with a trace."""
    inp = golden["inputs"][case]
    if case == "batch2_predict":
        img_s = torch.cat(inp["img_s_elements"])[None]
        target_s = torch.cat(inp["target_s_elements"])[None]
        img_q = torch.cat(inp["img_q_elements"])
        skeletons = [m["sample_skeleton"][0] for m in inp["img_metas"]]
    else:
        img_s, target_s, img_q = torch.stack(inp["img_s"]), torch.stack(inp["target_s"]), inp["img_q"]
        skeletons = [inp["img_metas"][0]["sample_skeleton"][0]]
    mask = torch.stack(inp["target_weight_s"]).prod(0)[..., 0] > 0
    trace = {}
    with torch.no_grad():
        out = model(img_q, img_s, target_s, mask, skeletons, trace=trace)
    return out, trace, mask


def _read_tsv(path: Path):
    rows = []
    for line in path.read_text().splitlines():
        name, shape, dtype, kind = line.split("\t")
        rows.append((name, tuple(int(s) for s in shape.strip("[]").split(",") if s.strip()), dtype, kind))
    return rows


def test_full_size_layout_equals_the_released_checkpoint():
    rows = _read_tsv(_data_file("keys_demo_b.tsv"))
    model = PoseAnything(DEMO_B)
    params = {n for n, _ in model.named_parameters()}
    ours = [(n, tuple(t.shape), str(t.dtype).removeprefix("torch."), "param" if n in params else "buffer")
            for n, t in model.state_dict().items()]
    assert len(ours) == len(rows) == 619
    for mine, theirs in zip(ours, rows):
        assert mine == theirs
    assert sum(p.numel() for p in model.parameters()) == 58_742_312


def test_constructor_buffers_equal_the_stored_ones(golden):
    model = PoseAnything(PoseAnythingConfig.from_original(golden["config"]["model"]))
    for name, buf in model.named_buffers():
        ref = golden["state_dict"][name]
        assert buf.dtype == ref.dtype, name
        torch.testing.assert_close(buf, ref, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("case", ["demo_query1", "demo_query2", "batch2_predict"])
def test_outputs_match_the_original(small, golden, case):
    out, _, mask = _run(small, golden, case)
    ref = golden["outputs"][case]
    for name in ("output", "initial_proposals", "similarity_map"):
        _assert_close(golden, f"outputs/{case}/predict.{name}", out[name], ref[f"predict.{name}"])
    torch.testing.assert_close(mask[..., None].float(), ref["predict.mask_s"])
    if case != "batch2_predict":  # forward_test: [soft-argmax, layer outputs]; the demo draws the last x 256
        points = torch.cat([out["initial_proposals"], out["output"][:, 0]])
        _assert_close(golden, f"outputs/{case}/forward_test.points", points, ref["forward_test.points"])
        _assert_close(golden, f"outputs/{case}/demo.keypoints_px256", out["output"][-1, 0] * 256,
                      ref["demo.keypoints_px256"])


@pytest.mark.parametrize("case", ["demo_query1", "demo_query2", "batch2_predict"])
def test_intermediates_match_the_original(small, golden, case):
    _, trace, _ = _run(small, golden, case)
    ref = golden["intermediates"][case]
    checked = 0
    # Backbone entries are stored as [query, support].
    ours_backbone = {
        "backbone.patch_embed": [trace["backbone"]["patch_embed"]],
        "backbone.norm": [trace["backbone"]["norm"]],
        "backbone.features": [trace["query_features"], trace["support_features"][0]],
    }
    for name, tensors in ours_backbone.items():
        for i, t in enumerate(tensors):
            if name in ref:
                _assert_close(golden, f"intermediates/{case}/{name}[{i}]", t, ref[name][i])
                checked += 1
    if "backbone.layers" in ref:
        for i, t in enumerate(trace["backbone"]["layers"]):
            _assert_close(golden, f"intermediates/{case}/backbone.layers[{i}][0]", t, ref["backbone.layers"][i][0])
            checked += 1
    pairs = {
        "head.input_proj": trace["input_proj"], "head.pos_embed": trace["pos_embed"],
        "head.support_tokens_in": trace["support_tokens_in"], "head.support_tokens": trace["support_tokens"],
        "encoder.memory": trace["memory"], "encoder.support": trace["support"],
        "proposal.for_loss": trace["soft_argmax"], "proposal.similarity": trace["similarity"],
        "proposal.local_max": trace["local_max"], "decoder.outs_normed": trace["outs_normed"],
        "decoder.gcn_adj": trace["adj"],
    }
    for name, t in pairs.items():
        if name in ref:
            _assert_close(golden, f"intermediates/{case}/{name}", t, ref[name])
            checked += 1
    for name, key in (("decoder.query_points", "query_points"), ("decoder.ref_point_head", "ref_point_head"),
                      ("decoder.layer_out", "layer_out")):
        if name in ref:
            assert len(trace[key]) == len(ref[name])
            for i, t in enumerate(trace[key]):
                _assert_close(golden, f"intermediates/{case}/{name}[{i}]", t, ref[name][i])
                checked += 1
    assert checked >= (3 if case == "batch2_predict" else 20)


def test_support_stage_intermediates_match(small, golden):
    """The support image's backbone stages (stored as the second entry) through our backbone."""
    inp, ref = golden["inputs"]["demo_query1"], golden["intermediates"]["demo_query1"]
    trace = {}
    with torch.no_grad():
        small.backbone(inp["img_s"][0], trace)
    _assert_close(golden, "intermediates/demo_query1/backbone.patch_embed[1]", trace["patch_embed"],
                  ref["backbone.patch_embed"][1])
    for i, t in enumerate(trace["layers"]):
        _assert_close(golden, f"intermediates/demo_query1/backbone.layers[{i}][1]", t, ref["backbone.layers"][i][1])
    _assert_close(golden, "intermediates/demo_query1/backbone.norm[1]", trace["norm"], ref["backbone.norm"][1])


def _raw_rgb(golden, name: str) -> np.ndarray:
    return golden["raw_inputs"]["images"][name].numpy()[..., ::-1].copy()  # stored BGR, as cv2 reads


@pytest.mark.parametrize("name,case,key", [("support", "demo_query1", "img_s"), ("query1", "demo_query1", "img_q"),
                                           ("query2", "demo_query2", "img_q")])
def test_preprocessing_from_raw_images(golden, name, case, key):
    x, geo = prepare_images(_raw_rgb(golden, name)[None], "demo")
    ref = golden["inputs"][case][key]
    ref = ref[0] if isinstance(ref, list) else ref
    assert (x - ref).abs().max().item() <= TOLERANCE_FLOOR
    g = golden["raw_inputs"]["geometry"][name]
    assert (geo.pad_left, geo.pad_top, geo.padded_h, geo.padded_w) == (g["pad_left"], g["pad_top"], g["H_pad"], g["W_pad"])


def test_heatmaps_from_support_keypoints(golden):
    maps, weights = support_heatmaps(golden["raw_inputs"]["support_keypoints_xy_256"].numpy())
    assert (maps[None] - golden["inputs"]["demo_query1"]["target_s"][0]).abs().max().item() <= TOLERANCE_FLOOR
    torch.testing.assert_close(weights, golden["inputs"]["demo_query1"]["target_weight_s"][0].flatten())
    # The clipped point at y = 255 keeps only the rows inside the map: peak exp(-1/2).
    assert maps[6].max().item() == pytest.approx(np.exp(-0.5), rel=1e-6)


def test_heatmap_outside_the_map_gets_zero_weight():
    maps, weights = support_heatmaps(np.array([[300.0, 10.0], [10.0, -40.0], [128.0, 128.0]]), [1, 1, 0])
    assert weights.tolist() == [0.0, 0.0, 0.0]
    assert maps.abs().sum().item() == 0.0


@pytest.mark.parametrize("case,query", [("demo_query1", "query1"), ("demo_query2", "query2")])
def test_end_to_end_from_raw_images(small, golden, case, query):
    """Raw BGR images and the demo's support clicks -> the keypoints the demo draws."""
    img_s, _ = prepare_images(_raw_rgb(golden, "support")[None], "demo")
    img_q, _ = prepare_images(_raw_rgb(golden, query)[None], "demo")
    maps, weights = support_heatmaps(golden["raw_inputs"]["support_keypoints_xy_256"].numpy())
    skeleton = golden["raw_inputs"]["skeleton"]
    with torch.no_grad():
        out = small(img_q, img_s[None], maps[None, None], weights[None] > 0, [skeleton])
    ref = golden["outputs"][case]
    _assert_close(golden, f"outputs/{case}/predict.output", out["output"], ref["predict.output"])
    _assert_close(golden, f"outputs/{case}/demo.keypoints_px256", out["output"][-1, 0] * 256,
                  ref["demo.keypoints_px256"])


def test_geometry_maps_back_to_the_frame():
    geo = Geometry.of(200, 300)  # padded top and bottom by 50
    assert (geo.pad_top, geo.padded_h, geo.padded_w) == (50, 300, 300)
    xy = np.array([[0.0, 0.0], [300.0, 200.0], [150.0, 100.0]])
    np.testing.assert_allclose(geo.from_input(geo.to_input(xy)), xy, atol=1e-9)
    np.testing.assert_allclose(geo.to_input(xy)[1], [256.0, 256.0 * 250 / 300])
    # Model output (0.5, 0.5) is the centre of the 256 frame in model pixels (+0.5 in ours).
    np.testing.assert_allclose(output_to_pixels(np.array([0.5, 0.5]), geo), [150.0 + 0.5 * 300 / 256,
                                                                          100.0 + 0.5 * 300 / 256], rtol=1e-6)


def test_batch_elements_are_independent(small, golden):
    """Batched frames give each element's single-frame result (what the estimator relies on)."""
    out2, _, _ = _run(small, golden, "batch2_predict")
    out1, _, _ = _run(small, golden, "demo_query1")
    torch.testing.assert_close(out2["output"][:, :1], out1["output"], atol=2e-6, rtol=0)


def _as_float64(x):
    if isinstance(x, torch.Tensor):
        return x.double() if x.is_floating_point() else x
    if isinstance(x, list):
        return [_as_float64(v) for v in x]
    if isinstance(x, dict):
        return {k: _as_float64(v) for k, v in x.items()}
    return x


@pytest.mark.parametrize("case", ["demo_query1", "demo_query2", "batch2_predict"])
def test_float64_run_reproduces_the_originals_float64_run(small, golden, case):
    """In float64 our network lands where the original's float64 run does: its distance to the
    float32 golden tensors is the stored fp64 gap itself (to 1e-9), a far tighter check than the
    float32 tolerance, and one that float32 rounding cannot blur."""
    model = PoseAnything(small.config).eval()
    model.load_state_dict(small.state_dict())
    model.double()
    g64 = {**golden, "inputs": {k: _as_float64(v) for k, v in golden["inputs"].items()}}
    out, trace, _ = _run(model, g64, case)
    checked = 0
    for name in ("output", "initial_proposals", "similarity_map"):
        key = f"outputs/{case}/predict.{name}"
        err = (out[name] - golden["outputs"][case][f"predict.{name}"].double()).abs().max().item()
        assert err <= golden["fp64_gap"][key] * (1 + 1e-6) + 1e-9, (key, err, golden["fp64_gap"][key])
        checked += 1
    ref = golden["intermediates"][case]
    for name, t in (("encoder.memory", trace.get("memory")), ("decoder.outs_normed", trace.get("outs_normed")),
                    ("proposal.local_max", trace.get("local_max")), ("head.support_tokens", trace.get("support_tokens"))):
        key = f"intermediates/{case}/{name}"
        if name in ref and key in golden["fp64_gap"]:
            err = (t - ref[name].double()).abs().max().item()
            assert err <= golden["fp64_gap"][key] * (1 + 1e-6) + 1e-9, (key, err, golden["fp64_gap"][key])
            checked += 1
    assert checked >= 3


def test_a_known_mistake_is_caught(small, golden, monkeypatch):
    """The checks can fail: the graph layer written as D^-1 A X (each node averaging its
    neighbours, the usual GCN) instead of the original's column weighting moves the keypoints far
    beyond the tolerance (README: by ~0.16)."""
    from dynapose4d.keypoints.poseanything import model as model_module

    original = model_module.graph_adjacency

    def receiver_normalised(skeletons, mask):
        adj = original(skeletons, mask)
        return torch.stack([adj[:, 0], adj[:, 1].transpose(1, 2)], dim=1)

    monkeypatch.setattr(model_module, "graph_adjacency", receiver_normalised)
    out, _, _ = _run(small, golden, "demo_query1")
    err = (out["output"] - golden["outputs"]["demo_query1"]["predict.output"]).abs().max().item()
    assert err > 100 * _tolerance(golden, "outputs/demo_query1/predict.output")
