#!/usr/bin/env python3
"""Benchmark of the two glTF exports of one 4D result: the point cloud as morph targets (one
per frame, STEP weights) and the skinned mesh (one mesh, bones with joint animation).

The 4D model is real (``dynapose4d.testing.moving.articulated_model``): the control
deformation fitted to the lamp's articulated motion, here with N Gaussians and 512 control
points. Both exports go through the add-on's own scene code and Blender's glTF exporter (real
bpy, no UI), sampled at F frames of 24 fps. Measured in the same run: the skinned-mesh build
(surface + skeleton + weights, the backend side), each export's time and file size, the
skinned mesh's error against the full deformation of its vertices (mean and max over all
frames), the surface's distance to the deformed Gaussians, and the bones used.

    python scripts/bench_export.py [--gaussians 100000] [--frames 25] [--bones 48] [--faces 20000]

The last line is ``RESULT {json}`` with ``skinned_mb``, ``morph_mb``, ``skin_err_mean``,
``skin_err_max``, ``mesh_s`` (and the rest of the table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "backend"))


def point_sequence(model, times, fps):
    """The add-on's Sequence of the model at ``times`` (what the frames endpoint would stream)."""
    import numpy as np
    import torch

    from blender_addon.format.sequence import Sampling, Sequence

    with torch.no_grad():
        g, kp = model.sample(times)
    cam = model.camera
    return Sequence(
        positions=g.means.numpy().astype(np.float32), scales=g.scales.numpy().astype(np.float32),
        rotations=g.rotations[0].numpy().astype(np.float32), opacities=g.opacities[0].numpy().astype(np.float32),
        colors=g.rgb[0].clamp(0, 1).numpy().astype(np.float32), keypoints=kp.numpy().astype(np.float32),
        names=list(model.keypoints.names), edges=[tuple(e) for e in model.keypoints.edges.tolist()],
        valid=model.keypoints.anchors.valid.numpy(),
        camera={"c2w": cam.c2w.tolist(), "fovy_deg": float(np.degrees(float(cam.fovy))), "width": cam.width, "height": cam.height},
        sampling=Sampling(fps, len(times)), times=times.numpy(), snapshot={"version": 1},
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaussians", type=int, default=100_000)
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--controls", type=int, default=512)
    ap.add_argument("--bones", type=int, default=48)
    ap.add_argument("--faces", type=int, default=20_000)
    ap.add_argument("--fit-steps", type=int, default=300)
    args = ap.parse_args(argv)
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="dp4d-bench-blender-"))

    import numpy as np
    import torch

    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.mesh import SkeletonConfig, SurfaceConfig, build_skinned_mesh
    from dynapose4d.testing.moving import articulated_model

    fps = 24.0
    # 1. The 4D model.
    t0 = time.perf_counter()
    model, _ = articulated_model(make_articulated("lamp", args.gaussians), controls=args.controls, frames=14, steps=args.fit_steps)
    fit_s = time.perf_counter() - t0
    times = model.times(args.frames, fps)
    # 2. The skinned mesh (backend).
    t0 = time.perf_counter()
    skinned = build_skinned_mesh(model, times, fps, SurfaceConfig(target_faces=args.faces), SkeletonConfig(max_bones=args.bones), surface_error=False)
    mesh_s = time.perf_counter() - t0
    from dynapose4d.mesh.skinned import _surface_error

    surface = _surface_error(model, times, skinned.deformed, SurfaceConfig().min_opacity)
    report = skinned.report
    payload = skinned.to_bytes()
    seq = point_sequence(model, times, fps)

    # 3. Both exports through the add-on's scene code and Blender's exporter.
    import bpy

    from blender_addon.format.skinned import decode_skinned
    from blender_addon.scene import export, importer

    out = Path(tempfile.mkdtemp(prefix="dp4d-bench-export-"))
    rows = {}
    for label, output in (("morph", "POINTS"), ("skinned", "MESH")):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        seq.skinned = decode_skinned(payload) if output == "MESH" else None
        t0 = time.perf_counter()
        coll = importer.import_sequence(bpy.context, seq, f"bench-{label}", importer.ImportOptions(output=output, rig=False))
        import_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        path = export.export_gltf(bpy.context, coll, str(out / f"{label}.glb"))
        rows[label] = {"import_s": import_s, "export_s": time.perf_counter() - t0, "mb": path.stat().st_size / 1e6}

    err_mean = float(np.mean(report["skin_err_mean"]))
    err_max = float(np.max(report["skin_err_max"]))
    motion = float(np.linalg.norm(skinned.deformed - skinned.vertices[None], axis=-1).max())
    print(f"{args.gaussians} Gaussians x {args.frames} frames at {fps:g} fps; {args.controls} control points; model fit {fit_s:.1f} s (not an export cost)")
    print(f"skinned mesh: {report['vertices']} vertices, {report['faces']} faces, {report['bones']} bones; "
          f"build {mesh_s:.2f} s (surface {report['surface_s']:.2f} s, skeleton {report['skeleton_s']:.2f} s)")
    print()
    print("| export | import into Blender (s) | glTF export (s) | file (MB) |")
    print("| --- | --- | --- | --- |")
    for label in ("morph", "skinned"):
        r = rows[label]
        print(f"| {label} | {r['import_s']:.2f} | {r['export_s']:.2f} | {r['mb']:.2f} |")
    print()
    print(f"size ratio morph / skinned: {rows['morph']['mb'] / rows['skinned']['mb']:.1f}x; "
          f"export time ratio: {rows['morph']['export_s'] / rows['skinned']['export_s']:.1f}x")
    print(f"skin error vs the full deformation: mean {err_mean:.5f}, max {err_max:.5f} (largest vertex motion {motion:.3f})")
    print(f"surface to the deformed Gaussians' centres: mean {np.mean(surface['surface_err_mean']):.4f}, "
          f"max {np.max(surface['surface_err_max']):.4f}")
    result = {
        "skinned_mb": round(rows["skinned"]["mb"], 3), "morph_mb": round(rows["morph"]["mb"], 3),
        "skinned_export_s": round(rows["skinned"]["export_s"], 3), "morph_export_s": round(rows["morph"]["export_s"], 3),
        "skin_err_mean": round(err_mean, 6), "skin_err_max": round(err_max, 6), "max_motion": round(motion, 4),
        "surface_err_mean": round(float(np.mean(surface["surface_err_mean"])), 5),
        "bones": report["bones"], "faces": report["faces"], "mesh_s": round(mesh_s, 3),
        "gaussians": args.gaussians, "frames": args.frames,
    }
    print("RESULT " + json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)  # bpy can hang at interpreter exit


if __name__ == "__main__":
    sys.exit(main())
