#!/usr/bin/env python3
"""Benchmark of the glTF exports of one 4D result: the point cloud as morph targets (one per
frame, STEP weights), the skinned mesh (one mesh, bones with joint animation), and the
``KHR_gaussian_splatting`` splat as rigid parts (one node per part, TRS animation).

The 4D model is real (``dynapose4d.testing.moving.articulated_model``): the control
deformation fitted to the lamp's articulated motion, here with N Gaussians and 512 control
points. Both exports go through the add-on's own scene code and Blender's glTF exporter (real
bpy, no UI), sampled at F frames of 24 fps. Measured in the same run: the skinned-mesh build
(surface + skeleton + weights, the backend side), each export's time and file size, the
skinned mesh's error against the full deformation of its vertices (mean and max over all
frames), the surface's distance to the deformed Gaussians, and the bones used.

The splat GLB goes through ``dynapose4d export`` 's own function (``pipeline.export``, no Blender)
on the saved model: its size, its export time (parts fitted and file written), the parts chosen
and the rigid-part error against the full deformation (mean and max over Gaussians and frames,
in units of the largest motion). Then headless Chromium plays it with three.js 0.187
(``testing.browser``) at frame 0 and at the frame with the most motion, from the reference
camera, and each picture is compared with our renderer's picture of the full deformation (PSNR
on the whole frame and on the object); with ``--emulate``, also with three.js's own rules
applied to the file's Gaussians (``testing.three_rules``: what a correct reading draws). Without
Chromium or three.js the browser numbers are null and the reason is printed.

    python scripts/bench_export.py [--gaussians 100000] [--frames 25] [--bones 48] [--faces 20000] [--emulate]

The last line is ``RESULT {json}`` with ``skinned_mb``, ``morph_mb``, ``skin_err_mean``,
``skin_err_max``, ``mesh_s``, ``splat_mb``, ``splat_browser_psnr_db`` (whole frame at the frame
with the most motion), ``rigid_err_mean``, ``rigid_err_max`` (and the rest of the table).
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


def splat_export(model, times, fps, args) -> dict:
    """The splat GLB through ``dynapose4d export``'s function, then played in headless Chromium."""
    import torch

    from dynapose4d.pipeline.export import ExportOptions, export_result
    from dynapose4d.render import render
    from dynapose4d.testing.browser import browser_problem, psnr, render_glb

    out = Path(args.pictures or tempfile.mkdtemp(prefix="dp4d-bench-splat-"))
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.pt")
    t0 = time.perf_counter()
    rep = export_result(out / "model.pt", out / "splats.glb", ExportOptions(fps=fps, frames=len(times), splat_motion="parts"))
    result = {**rep, "export_s": time.perf_counter() - t0, "pictures": str(out), "browser": None,
              "flipbook_mb": rep["flipbook_mb_estimate"], "browser_problem": browser_problem()}
    if result["browser_problem"]:
        return result
    with torch.no_grad():
        g, _ = model.sample(times)
    motion = (g.means - model.static.means[None]).norm(dim=-1).mean(-1)
    frames = [0, int(motion.argmax())]
    shot = render_glb(out / "splats.glb", [f / fps for f in frames])
    result["browser_s"] = shot["seconds"]
    rows = []
    for image, f in zip(shot["images"], frames):
        with torch.no_grad():
            ours = render(g.map(lambda t: t[f]), model.camera, 1.0).rgb.numpy()
        mask = (image < 0.99).any(-1) | (ours < 0.99).any(-1)
        row = {"frame": f, "whole": psnr(image, ours), "object": psnr(image, ours, mask), "rules_object": None}
        if args.emulate:
            row["rules_object"] = _rules_psnr(model, times, f, image)
        _save(out / f"frame{f}.png", image, ours)
        rows.append(row)
    result["browser"] = rows
    return result


def _rules_psnr(model, times, frame, image) -> float:
    """Object PSNR of the browser's picture against three.js's rules drawn on the file's parts."""
    import torch

    from dynapose4d.io.glb import matrix_to_quat_xyzw
    from dynapose4d.mesh.splat_parts import fit_splat_parts, handles_of_model, quat_wxyz_to_matrix
    from dynapose4d.testing.browser import psnr
    from dynapose4d.testing.three_rules import render_three_rules

    static = model.static
    with torch.no_grad():
        g, _ = model.sample(times)
    parts = fit_splat_parts(static.means.double().numpy(), g.means.double().numpy(), handles_of_model(model, times), static.opacities.numpy())
    moved = parts.moved(static.means.double().numpy())[frame]
    quats = matrix_to_quat_xyzw(parts.rotations[frame, parts.label] @ quat_wxyz_to_matrix(static.rotations.double().numpy()))[:, [3, 0, 1, 2]]
    rules = render_three_rules(moved, quats, static.scales, static.opacities, static.rgb, model.camera, groups=parts.label,
                               origins=parts.node_motion()[0][frame])
    return psnr(image, rules, (image < 0.99).any(-1) | (rules < 0.99).any(-1))


def _save(path, *images):
    import numpy as np
    from PIL import Image

    Image.fromarray((np.concatenate(images, 1) * 255).round().astype(np.uint8)).save(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaussians", type=int, default=100_000)
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--controls", type=int, default=512)
    ap.add_argument("--bones", type=int, default=48)
    ap.add_argument("--faces", type=int, default=20_000)
    ap.add_argument("--fit-steps", type=int, default=300)
    ap.add_argument("--emulate", action="store_true", help="also draw three.js's rules on the CPU (slow above ~20k Gaussians)")
    ap.add_argument("--pictures", default=None, help="folder for the browser / our renderer pictures (default: a temporary one)")
    args = ap.parse_args(argv)
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="dp4d-bench-blender-"))

    import numpy as np
    import torch  # noqa: F401  (loaded before bpy)

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
    splat = splat_export(model, times, fps, args)

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
    print()
    print(f"splat GLB (KHR_gaussian_splatting, {splat['motion']}): {splat['mb']:.2f} MB, export {splat['export_s']:.2f} s "
          f"(parts {splat['parts_s']:.2f} s); {splat['parts']} parts, rigid error mean {splat['rigid_err_mean']:.4f}, "
          f"p99 {splat['rigid_err_p99']:.4f}, max {splat['rigid_err_max']:.4f} of the largest motion ({splat['max_motion']:.3f}); "
          f"a flipbook would be {splat['flipbook_mb']:.1f} MB")
    print("  parts tried: " + ", ".join(f"{t['parts']}: mean {t['err_mean']:.4f} p99 {t['err_p99']:.4f} max {t['err_max']:.4f}" for t in splat["trials"]))
    if splat["browser"] is None:
        print(f"  browser: not measured ({splat['browser_problem']})")
    else:
        print("  | frame | browser vs our renderer, whole (dB) | object (dB) | browser vs three.js's rules, object (dB) |")
        print("  | --- | --- | --- | --- |")
        for row in splat["browser"]:
            rules = "-" if row["rules_object"] is None else f"{row['rules_object']:.2f}"
            print(f"  | {row['frame']} | {row['whole']:.2f} | {row['object']:.2f} | {rules} |")
        print(f"  browser: {splat['browser_s']:.1f} s in headless Chromium (three.js 0.187, WebGPURenderer forceWebGL, SwiftShader); pictures in {splat['pictures']}")
    result = {
        "skinned_mb": round(rows["skinned"]["mb"], 3), "morph_mb": round(rows["morph"]["mb"], 3),
        "skinned_export_s": round(rows["skinned"]["export_s"], 3), "morph_export_s": round(rows["morph"]["export_s"], 3),
        "skin_err_mean": round(err_mean, 6), "skin_err_max": round(err_max, 6), "max_motion": round(motion, 4),
        "surface_err_mean": round(float(np.mean(surface["surface_err_mean"])), 5),
        "bones": report["bones"], "faces": report["faces"], "mesh_s": round(mesh_s, 3),
        "gaussians": args.gaussians, "frames": args.frames,
        "splat_mb": round(splat["mb"], 3), "splat_export_s": round(splat["export_s"], 3), "splat_parts": splat["parts"],
        "rigid_err_mean": splat["rigid_err_mean"], "rigid_err_p99": splat["rigid_err_p99"], "rigid_err_max": splat["rigid_err_max"],
        "splat_browser_psnr_db": None if splat["browser"] is None else round(splat["browser"][-1]["whole"], 2),
        "splat_browser_psnr_object_db": None if splat["browser"] is None else round(splat["browser"][-1]["object"], 2),
        "splat_browser_psnr_static_db": None if splat["browser"] is None else round(splat["browser"][0]["whole"], 2),
    }
    print("RESULT " + json.dumps(result), flush=True)
    sys.stderr.flush()
    os._exit(0)  # bpy can hang at interpreter exit


if __name__ == "__main__":
    sys.exit(main())
