"""PoseAnything weights: the pickle checks before unpickling, the safetensors round trip, the errors."""

import dataclasses
import os
import pickle
import subprocess
import sys

import pytest
import torch

from dynapose4d.keypoints.poseanything import DEMO_B, PoseAnything, PoseAnythingConfig
from dynapose4d.keypoints.poseanything import weights as W

SMALL = PoseAnythingConfig(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), d_model=32, nhead=4,
                           dim_feedforward=96, similarity_proj_dim=32, dynamic_proj_dim=16, num_feats=16)
# The small model's checkpoint is far below the real file's size: a spec sized for it.
SMALL_SPEC = dataclasses.replace(W.POSEANYTHING, min_bytes=100_000, max_bytes=20 * W.MB)


def _mmcv_checkpoint(state, **extra):
    """What mmcv's runner writes: meta, state_dict, optimizer."""
    meta = {"env_info": "sys.platform: linux", "seed": 0, "mmpose_version": "0.29.0", "config": "model = dict()",
            "epoch": 200, "iter": 1, "mmcv_version": "1.6.0", "time": "Mon Jan  1 00:00:00 2024"}
    return {"meta": meta, "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5}]}, **extra}


@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(0)
    return PoseAnything(SMALL).state_dict()


class _Boom:
    """Unpickling this runs code (writes a file): the key check must refuse it without unpickling."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_top_level_keys_are_read_without_unpickling(tmp_path, small_state):
    f = tmp_path / "ok.pth"
    torch.save(_mmcv_checkpoint(small_state), f)
    assert W.inspect_checkpoint(f, SMALL_SPEC) == ["meta", "state_dict", "optimizer"]
    keys = W.pickle_top_level_keys(pickle.dumps({"a": [1, {"x": 2}], "b": "b", "c": (1, 2)}, protocol=2))
    assert keys == ["a", "b", "c"]
    assert W.pickle_top_level_keys(pickle.dumps([{"state_dict": 1}], protocol=2)) is None


def test_unexpected_top_level_keys_are_refused_before_unpickling(tmp_path, small_state):
    marker = tmp_path / "code-ran"
    f = tmp_path / "evil.pth"
    torch.save(_mmcv_checkpoint(small_state, payload=_Boom(str(marker))), f)
    with pytest.raises(W.PoseAnythingWeightsError, match="unexpected: 'payload'"):
        W.convert_checkpoint(f, tmp_path / "out", config=SMALL, spec=SMALL_SPEC)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    g = tmp_path / "nodict.pth"
    torch.save([small_state], g)
    with pytest.raises(W.PoseAnythingWeightsError, match="not a dict"):
        W.inspect_checkpoint(g, SMALL_SPEC)


def test_wrong_size_and_not_a_checkpoint(tmp_path):
    f = tmp_path / "small.pth"
    f.write_bytes(b"\0" * 1000)
    with pytest.raises(W.PoseAnythingWeightsError, match="0.0 MB, outside the 240-1200 MB"):
        W.inspect_checkpoint(f)
    g = tmp_path / "plain.bin"
    g.write_bytes(b"\0" * 200_000)
    with pytest.raises(W.PoseAnythingWeightsError, match="not a PyTorch zip checkpoint"):
        W.inspect_checkpoint(g, SMALL_SPEC)
    with pytest.raises(W.PoseAnythingWeightsError, match="(?s)does not exist.*convert-poseanything"):
        W.inspect_checkpoint(tmp_path / "absent.pth")


def test_round_trip_small(tmp_path, small_state):
    f = tmp_path / "ckpt.pth"
    # mmcv strips a DataParallel "module." prefix; so must we.
    torch.save(_mmcv_checkpoint({"module." + k: v for k, v in small_state.items()}), f)
    log = []
    out = W.convert_checkpoint(f, tmp_path / "conv", config=SMALL, spec=SMALL_SPEC,
                               log=type("L", (), {"write": lambda self, s: log.append(s), "flush": lambda self: 0})())
    assert "WARNING" in "".join(log) and "can run code" in "".join(log)
    model = W.load_model(out)
    assert model.config == SMALL
    for k, v in model.state_dict().items():
        assert torch.equal(v, small_state[k]), k
        assert v.dtype == small_state[k].dtype
    # The file name of the safetensors inside the folder is accepted too.
    assert W.load_model(out / W.WEIGHTS_FILE).config == SMALL


def test_mismatched_layout_names_the_key_and_shape(tmp_path, small_state):
    state = dict(small_state)
    state["keypoint_head.query_proj.weight"] = torch.zeros(32, 65)
    del state["backbone.head.bias"]
    state["keypoint_head.extra"] = torch.zeros(1)
    f = tmp_path / "bad.pth"
    torch.save(_mmcv_checkpoint(state), f)
    with pytest.raises(W.PoseAnythingWeightsError) as e:
        W.convert_checkpoint(f, tmp_path / "out", config=SMALL, spec=SMALL_SPEC)
    msg = str(e.value)
    assert "keypoint_head.query_proj.weight: (32, 65) (expected (32, 64))" in msg
    assert "1 missing keys: backbone.head.bias" in msg and "1 unexpected keys: keypoint_head.extra" in msg
    # The loader checks a safetensors folder the same way.
    bad = W.save_folder(state, SMALL, tmp_path / "badconv")
    with pytest.raises(W.PoseAnythingWeightsError, match="query_proj.weight: \\(32, 65\\)"):
        W.load_model(bad)


def test_missing_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(W.PoseAnythingWeightsError, match="(?s)model.safetensors is missing.*drive.google.com"):
        W.load_model(tmp_path)
    f = tmp_path / "x.pth"
    f.write_bytes(b"x")
    with pytest.raises(W.PoseAnythingWeightsError, match="convert-poseanything"):
        W.load_model(f)
    (tmp_path / W.WEIGHTS_FILE).write_bytes(b"not safetensors")
    (tmp_path / W.CONFIG_FILE).write_text('{"format": "other"}')
    with pytest.raises(W.PoseAnythingWeightsError, match="not a PoseAnything config"):
        W.load_model(tmp_path)


def test_full_size_round_trip_through_the_cli(tmp_path):
    """A full-size random checkpoint in the real layout: size check, CLI conversion, strict load."""
    torch.manual_seed(1)
    state = PoseAnything(DEMO_B).state_dict()
    f = tmp_path / "demo.pth"
    torch.save(_mmcv_checkpoint(state), f)
    del state
    out = tmp_path / "converted"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "dynapose4d", "models", "convert-poseanything", str(f),
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" in proc.stderr and f"wrote {out / W.WEIGHTS_FILE}" in proc.stdout
    model = W.load_model(out)
    ref = torch.load(f, weights_only=True)["state_dict"]
    assert list(model.state_dict()) == list(ref)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    proc = subprocess.run([sys.executable, "-m", "dynapose4d", "models", "check", "poseanything"],
                          capture_output=True, text=True, env=dict(env, DYNAPOSE4D_POSEANYTHING=str(out)), timeout=120)
    assert proc.returncode == 0 and f"converted: {out}" in proc.stdout
