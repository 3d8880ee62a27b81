#!/usr/bin/env python3
"""Benchmark of the add-on's file paths (real bpy, no UI, no server): what a user waits for when
Animate sends the selected splat, and when File > Import > DynaPose4D Result reads a folder.

1. **Selected splat -> PLY**: a mesh with the 3DGS PLY attributes (what Blender's PLY importer
   and KIRI 3DGS Render leave; degree-3 SH) under a turned, uniformly scaled transform, and
   again with a non-uniform scale (the exact covariance path): read the attributes, move them
   into world space (SH turned too), write the 3DGS PLY.
2. **Folder import**: a PLY sequence written like the backend's (``sequence/`` + sidecar), read
   into a Sequence (``format.result_folder``) and imported (``scene.importer``); the ratio is the
   whole folder import over the same Sequence's import alone (what reading the files adds).

    python scripts/bench_addon_io.py [--gaussians 100000] [--frames 25]

The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaussians", type=int, default=100_000)
    ap.add_argument("--frames", type=int, default=25)
    args = ap.parse_args()

    import bpy
    import numpy as np
    from mathutils import Matrix

    from blender_addon.format.coords import backend_to_blender
    from blender_addon.format.result_folder import read_result
    from blender_addon.format.sequence import rotations_to_blender
    from blender_addon.format.splats import SH_C0, Splats, write_ply
    from blender_addon.scene import importer
    from blender_addon.scene.attributes import set_attribute
    from blender_addon.scene.result_import import import_result_folder
    from blender_addon.scene.selected_splat import write_selected_ply
    from tests.addon_fixtures import make_sequence
    from tests.test_addon_splats import layouts_of, random_splats

    n, frames = args.gaussians, args.frames
    bpy.ops.wm.read_factory_settings(use_empty=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dp4d-bench-io-") as tmp:
        tmp = Path(tmp)
        # 1. The selected splat.
        splats = random_splats(n, rest=15)
        mesh = bpy.data.meshes.new("scan")
        mesh.vertices.add(n)
        mesh.attributes["position"].data.foreach_set("vector", splats.positions.ravel())
        for name, values in layouts_of(splats)["3dgs-ply"].items():
            set_attribute(mesh, name, values, "FLOAT")
        obj = bpy.data.objects.new("scan", mesh)
        bpy.context.scene.collection.objects.link(obj)
        for label, scale in (("turned, uniform scale", (1.5, 1.5, 1.5)), ("non-uniform scale", (1.0, 2.0, 0.5))):
            obj.matrix_world = Matrix.Translation((1, 2, 3)) @ Matrix.Rotation(0.7, 4, "Z") @ Matrix.Diagonal((*scale, 1.0))
            bpy.context.view_layer.update()
            _, seconds = timed(write_selected_ply, obj, str(tmp))
            rows.append((f"selected splat -> PLY ({label})", f"{n:,}", seconds))
        # 2. A folder as the backend writes it (+Z up: an animated Blender export).
        seq = make_sequence(count=n, frames=frames)
        folder = tmp / "job" / "sequence"
        names = []
        for k in range(frames):
            frame = Splats(backend_to_blender(seq.positions[k]), rotations_to_blender(seq.rotations), seq.scales[k],
                           np.clip(seq.opacities, 0.01, 0.99), (seq.colors - 0.5) / SH_C0)
            names.append(write_ply(folder / f"frame_{k:04d}.ply", frame).name)
        sidecar = {"format": "dynapose4d.sequence/1", "fps": 24.0, "frame_count": frames, "up": "+z", "coordinates": "input-ply",
                   "frames": names, "times": seq.times.tolist(), "camera": seq.camera,
                   "keypoints": {"names": seq.names, "edges": seq.edges, "positions": backend_to_blender(seq.keypoints).tolist()}}
        (folder / "sequence.json").write_text(json.dumps(sidecar))
        result, read_s = timed(read_result, tmp / "job")
        _, folder_s = timed(import_result_folder, bpy.context, str(tmp / "job"), use_result_fps=False)
        _, sequence_s = timed(importer.import_sequence, bpy.context, result.sequence, "alone", importer.ImportOptions())
        rows += [(f"read a folder ({frames} PLYs)", f"{n:,} x {frames}", read_s),
                 ("File > Import > DynaPose4D Result", f"{n:,} x {frames}", folder_s),
                 ("the same Sequence imported alone", f"{n:,} x {frames}", sequence_s)]
    print(f"{'step':45s} {'size':>16s} {'seconds':>9s}")
    for name, size, seconds in rows:
        print(f"{name:45s} {size:>16s} {seconds:9.3f}")
    ratio = folder_s / sequence_s
    print(f"folder import / Sequence import alone: {ratio:.2f}x")
    print("RESULT " + json.dumps({
        "gaussians": n, "frames": frames, "selected_to_ply_s": round(rows[0][2], 3), "selected_to_ply_nonuniform_s": round(rows[1][2], 3),
        "folder_read_s": round(read_s, 3), "folder_import_s": round(folder_s, 3), "sequence_import_s": round(sequence_s, 3),
        "folder_over_sequence": round(ratio, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
