"""Driver (bpy 5.3 module, no window): install the extension, import a finished demo job from the
backend on the host through the add-on's own operator, and check what Blender 5.3 offers for it.

Environment: DP4D_BACKEND_URL, DP4D_BACKEND_TOKEN, DP4D_JOB_ID (a finished demo job). The
extension zip is in $DP4D_FILES. The bpy module has no event loop: the watch timer's work
(the add-on's ``tick``) is called here.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpy  # noqa: E402
import windowkit as kit  # noqa: E402
from windowkit import check, mark  # noqa: E402


def steps():
    R = kit.RESULT
    # 1. Blender 5.3's native splats: the point cloud type (a feature, not a version number).
    types = [item.identifier for item in bpy.types.PointCloud.bl_rna.properties["type"].enum_items]
    R["pointcloud_types"] = types
    check("GAUSSIAN_SPLAT point cloud type", "GAUSSIAN_SPLAT" in types, types)
    check("Set Point Cloud Type node", hasattr(bpy.types, "GeometryNodePointsSetType"))
    # 2. The extension, as in Blender: installed from the zip and enabled.
    bpy.ops.wm.read_factory_settings(use_empty=True)
    check("extension installed and enabled", kit.install_extension(kit.file("*.zip")), kit.PACKAGE)
    mark("installed")
    kit.connect_remote(os.environ["DP4D_BACKEND_URL"], os.environ["DP4D_BACKEND_TOKEN"])
    job_id = os.environ["DP4D_JOB_ID"]
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.dynapose4d.duration = float(os.environ.get("DP4D_DURATION", "1.0"))
    final = (kit.backend(f"/jobs/{job_id}").get("snapshot") or {}).get("version")
    # 3. Import Job (the panel's button) and the watch timer's work until the snapshot is in.
    check("import operator", bpy.ops.dynapose4d.import_job(job_id=job_id) == {"FINISHED"})
    state = kit.addon_state()
    check("add-on state found", state is not None)

    def imported():
        state.tick(bpy.context)
        coll = kit.job_collection(job_id)
        return coll if coll is not None and coll.get("dynapose4d_snapshot") == final else None

    coll = yield from kit.wait_until(imported, 120, f"snapshot {final} of job {job_id}", every=0.1)
    mark("imported")
    gaussians = kit.role(coll, "gaussians")
    count = int(coll["dynapose4d_gaussians"])
    frames = int(coll["dynapose4d_frame_count"])
    keys = gaussians.data.shape_keys.key_blocks if gaussians is not None and gaussians.data.shape_keys else []
    R["scene"] = {"gaussians": count, "frames": frames, "shape_keys": len(keys), "objects": len(coll.all_objects)}
    check("gaussians imported", gaussians is not None and len(gaussians.data.vertices) == count > 0, count)
    check("frames as shape keys", len(keys) == frames + 1 and frames > 1, [frames, len(keys)])
    # 4. What the display makes of it in 5.3 (the native-splat display is reported, not required here).
    scene.frame_set(scene.frame_start + frames // 2)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = gaussians.evaluated_get(depsgraph)
    display = {"modifiers": [m.type for m in gaussians.modifiers]}
    geometry = getattr(evaluated, "evaluated_geometry", None)
    if geometry is not None:
        geo = geometry()
        cloud = getattr(geo, "pointcloud", None)
        display["pointcloud"] = None if cloud is None else {"points": len(cloud.points), "type": getattr(cloud, "type", None)}
    R["display"] = display
    t0 = time.perf_counter()
    for k in range(frames):
        scene.frame_set(scene.frame_start + k)
    R["timings"]["frame_set_ms"] = round((time.perf_counter() - t0) / max(frames, 1) * 1000, 2)
    yield 0


kit.run_steps(steps())
