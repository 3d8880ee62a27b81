"""The Animate mode's selected splat and File > Import > DynaPose4D Result in a real Blender 4.3
window (``-m window``): the panel says why the Cube is not a splat and names a PLY import, the
File menu has the importer, and a result folder comes in with its objects. Skips where the
trixie root is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender_addon.format.coords import backend_to_blender
from blender_addon.format.splats import SH_C0, Splats, write_ply
from tests.addon_fixtures import make_sequence
from tests.test_addon_splats import random_splats
from tests.window_fixtures import DRIVERS

pytestmark = pytest.mark.window


def result_folder(folder):
    """A small +Z-up PLY sequence with its sidecar (an animate result's layout)."""
    seq = make_sequence(count=400, frames=4)
    names = []
    for k in range(seq.frame_count):
        frame = Splats(backend_to_blender(seq.positions[k]), seq.rotations, seq.scales[k], np.clip(seq.opacities, 0.05, 0.95),
                       (seq.colors - 0.5) / SH_C0)
        names.append(write_ply(folder / f"frame_{k:04d}.ply", frame))
    sidecar = {"format": "dynapose4d.sequence/1", "fps": 24.0, "frame_count": seq.frame_count, "up": "+z",
               "coordinates": "input-ply", "frames": [p.name for p in names], "times": seq.times.tolist(), "camera": seq.camera,
               "keypoints": {"names": seq.names, "edges": seq.edges, "positions": backend_to_blender(seq.keypoints).tolist()}}
    (folder / "sequence.json").write_text(json.dumps(sidecar))
    return [*names, folder / "sequence.json"]


def test_the_panel_names_the_selected_splat_and_a_folder_imports(window_harness, extension_zip, tmp_path):
    files = [extension_zip, write_ply(tmp_path / "in" / "scan.ply", random_splats(2000, rest=15)), *result_folder(tmp_path / "in")]
    res = window_harness.run(DRIVERS / "animate_selection.py", "window", files=files, out_dir=tmp_path / "out", timeout=240)
    result = res["result"] or {}
    failed = {k: v for k, v in result.get("checks", {}).items() if not v["ok"]}
    assert res["ok"] and not failed, failed or result.get("error") or res["log"][-3000:]
    assert set(result["shots"]) == {"animate-not-a-splat", "animate-selected-splat"}
    assert "Traceback" not in res["log"], res["log"][-4000:]
