"""Driver (Blender 4.3, a real window): a new user's first run. Install the extension in a fresh
profile; in the preferences, Check Setup and download a model (from the hub the backend on the
host is pointed at); open the sidebar panel, run the demo job in Blender's default scene (its
Cube stays), follow it live, check the result is on screen (beside the Cube, framed, selected),
play it, export glTF. Screenshots of the preferences after Check Setup and the download, the
panel idle, the job running, the first result as it lands, the result rendered.

Environment: DP4D_BACKEND_URL, DP4D_BACKEND_TOKEN (the server's address file), DP4D_DEMO (JSON:
the demo settings, e.g. {"gaussians": 1500, "frames": 8, "iterations": 60, "duration": 1.0}),
DP4D_DOWNLOAD (the model to download; none when empty). The extension zip is in $DP4D_FILES.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpy  # noqa: E402
import windowkit as kit  # noqa: E402
from windowkit import check, log, mark  # noqa: E402

DEMO = {"gaussians": 1500, "frames": 8, "iterations": 60, "duration": 1.0}
DEMO.update(json.loads(os.environ.get("DP4D_DEMO", "{}")))
SHADING = os.environ.get("DP4D_SHADING", "RENDERED")  # the result's shot: SOLID draws the splats grey
DOWNLOAD = os.environ.get("DP4D_DOWNLOAD", "")


def sidebar_crop():
    win, area, sidebar, main = kit.view3d()
    return {"sidebar": kit.region_box(sidebar, win)}


def newest_job(known: set):
    jobs = kit.backend("/jobs")["jobs"]
    new = [j for j in jobs if j["id"] not in known]
    return max(new, key=lambda j: j["created_at"]) if new else None


def window_crop():
    win = bpy.context.window_manager.windows[0]
    return {"window": (0, 0, win.width, win.height)}


def scroll_preferences(area, steps: int) -> None:
    """Scroll the Preferences editor's main region down by ``steps`` wheel steps (negative: up)."""
    win = bpy.context.window_manager.windows[0]
    region = next(r for r in area.regions if r.type == "WINDOW")
    with bpy.context.temp_override(window=win, screen=win.screen, area=area, region=region):
        for _ in range(abs(steps)):
            (bpy.ops.view2d.scroll_down if steps > 0 else bpy.ops.view2d.scroll_up)()


def in_window():
    """A context of the main window (its 3D viewport is the Preferences editor meanwhile)."""
    win = bpy.context.window_manager.windows[0]
    return bpy.context.temp_override(window=win, screen=win.screen)


def preferences_steps(state):
    """The add-on's preferences, drawn where the 3D viewport was (the whole window, so the shot
    holds them whole): Check Setup, then the model download, licence accepted."""
    win, area, sidebar, main = kit.view3d()
    import addon_utils

    bpy.context.preferences.active_section = "ADDONS"
    bpy.context.window_manager.addon_search = "DynaPose4D"
    for mod in addon_utils.modules(refresh=False):  # the list the Add-ons section draws from
        if mod.__name__ == kit.PACKAGE:
            addon_utils.module_bl_info(mod)["show_expanded"] = True
    area.ui_type = "PREFERENCES"
    win.cursor_warp(4, 4)  # the pointer off the buttons: no tooltip in the shots
    yield 1.0
    with in_window():
        check("check setup operator", bpy.ops.dynapose4d.check_setup() == {"FINISHED"})
    done = yield from kit.wait_until(lambda: state.setup is not None and state.setup.snapshot().state != "running" and
                                     state.setup.snapshot(), 240, "the setup check", every=0.5)
    lines = [line.text for line in done.lines]
    R = kit.RESULT
    R["setup_check"] = {"state": done.state, "lines": lines, "error": done.error}
    check("setup check done on the backend's machine", done.state == "done" and any(t.startswith("Renderer:") for t in lines),
          R["setup_check"])
    kit.redraw()
    yield from kit.screenshot_when_still("preferences-setup", window_crop(), "window", every=1.0, timeout=15)
    if DOWNLOAD:
        yield from download_steps(state, area)
    area.ui_type = "VIEW_3D"
    yield 1.0


def download_steps(state, area):
    with in_window():
        bpy.ops.dynapose4d.refresh_models()
    row = yield from kit.wait_until(lambda: state.models.snapshot().row(DOWNLOAD), 60, "the models list", every=0.5)
    kit.redraw()
    yield 0.5  # drawn once with the list, so the editor knows how far it can scroll
    scroll_preferences(area, 22)  # the Models box's first model at the top
    check("model missing before its download", row.state == "missing", row.status_text())
    with in_window():
        check("download operator", bpy.ops.dynapose4d.download_model("EXEC_DEFAULT", name=DOWNLOAD, accept=True) == {"FINISHED"})
    moving = yield from kit.wait_until(lambda: (lambda r: r if r is not None and r.progress() and r.progress()[0] > 0 else None)(
        state.models.snapshot().row(DOWNLOAD)), 60, "the download's progress", every=0.2)
    kit.redraw()
    yield 0.6
    kit.screenshot("preferences-downloading", window_crop())
    check("download progress in the preferences", moving.downloading, moving.progress())
    row = yield from kit.wait_until(lambda: (lambda r: r if r is not None and not r.downloading and r.download else None)(
        state.models.snapshot().row(DOWNLOAD)), 180, "the download's end", every=0.5)
    kit.RESULT["download"] = {"state": row.state, "status": row.status_text(), "download": row.download}
    check("model present after its download", row.state == "present", kit.RESULT["download"])
    kit.redraw()
    yield from kit.screenshot_when_still("preferences-models", window_crop(), "window", every=1.0, timeout=15)


def on_screen(obj, cube):
    """Where the first result landed: apart from the Cube, inside the viewport's picture, selected."""
    from bpy_extras.view3d_utils import location_3d_to_region_2d
    from mathutils import Vector

    win, area, sidebar, main = kit.view3d()
    corners = [obj.matrix_world @ Vector(c) for c in obj.bound_box]
    pixels = [location_3d_to_region_2d(main, area.spaces.active.region_3d, c) for c in corners]
    inside = all(p is not None and 0 <= p.x <= main.width - sidebar.width and 0 <= p.y <= main.height for p in pixels)
    low = [min(c[i] for c in corners) for i in range(3)]
    high = [max(c[i] for c in corners) for i in range(3)]
    apart = True
    if cube is not None:
        box = [cube.matrix_world @ Vector(c) for c in cube.bound_box]
        c_low, c_high = [min(c[i] for c in box) for i in range(3)], [max(c[i] for c in box) for i in range(3)]
        apart = any(high[i] < c_low[i] or low[i] > c_high[i] for i in range(3))
    return {"inside_view": inside, "apart_from_cube": apart, "selected": obj.select_get(),
            "active": bpy.context.view_layer.objects.active == obj,
            "pixels": [[round(p.x), round(p.y)] if p is not None else None for p in pixels[:2]]}


def steps():
    R = kit.RESULT
    prefs = bpy.context.preferences
    prefs.use_preferences_save = False  # nothing done here outlives the run
    prefs.view.show_splash = False
    win, area, sidebar, main = kit.view3d()
    R["screen"] = {"window": [win.width, win.height]}
    mark("window up")  # the first timer fires once the window has drawn
    yield 0.5
    # 1. Install and enable the zip in this fresh profile.
    ok = kit.install_extension(kit.file("*.zip"))
    check("extension installed and enabled", ok, kit.PACKAGE)
    check("panel registered", hasattr(bpy.types, "DYNAPOSE4D_PT_main"))
    check("operators registered", all(hasattr(bpy.ops.dynapose4d, n) for n in ("connect", "generate", "export_gltf")))
    mark("installed")
    kit.connect_remote(os.environ["DP4D_BACKEND_URL"], os.environ["DP4D_BACKEND_TOKEN"])
    cube = bpy.data.objects.get("Cube")  # Blender's default scene stays as a new user has it
    state = kit.addon_state()
    if state is not None:
        yield from preferences_steps(state)
        mark("preferences")
    s = bpy.context.scene.dynapose4d
    s.kind = "demo"
    s.gaussians, s.frames, s.iterations, s.duration = DEMO["gaussians"], DEMO["frames"], DEMO["iterations"], DEMO["duration"]
    # Numbers the preset decides are sent only once overridden (the panel's Override box).
    for name in ("frames", "iterations"):
        if hasattr(s, f"override_{name}"):
            setattr(s, f"override_{name}", True)
    # 2. The sidebar on the add-on's tab; connect.
    yield from kit.open_sidebar_tab()
    check("sidebar tab", kit.view3d()[2].active_panel_category == kit.CATEGORY, kit.view3d()[2].active_panel_category)
    with kit.override():
        check("connect operator", bpy.ops.dynapose4d.connect() == {"FINISHED"})
    if state is not None:  # the panel's status line comes from here
        yield from kit.wait_until(lambda: state.health.info or state.health.error, 60, "the backend's health answer")
        check("connected", state.health.info is not None, state.health.summary())
    else:
        log("the add-on's runtime state was not found: waiting instead of checking the status line")
        yield 3.0
    kit.redraw()
    yield 1.0
    mark("connected")
    # Panels slide into place when one above them grows (the models list): shoot once settled.
    yield from kit.screenshot_when_still("panel-idle", sidebar_crop(), "sidebar", every=1.0, timeout=20)
    # 3. Run the demo from the panel and catch it while it runs, with progress in the bar.
    known = {j["id"] for j in kit.backend("/jobs")["jobs"]}
    with kit.override():
        check("generate operator", bpy.ops.dynapose4d.generate() == {"FINISHED"})
    mark("generate pressed")
    job = yield from kit.wait_until(lambda: newest_job(known), 30, "the new job on the backend")
    job_id = job["id"]
    R["job_id"] = job_id
    R["job_settings"] = job["settings"]

    def progressing():
        st = kit.backend(f"/jobs/{job_id}")
        if st["state"] in ("done", "failed", "cancelled"):
            raise RuntimeError(f"the job ended ({st['state']}) before it showed progress: {st.get('error')}")
        return st if st["state"] == "running" and (st.get("progress") or 0) >= 0.1 else None

    before = yield from kit.wait_until(progressing, 240, "the job's progress", every=0.2)
    kit.redraw()
    yield 0.5  # two ticks of the add-on's watch timer and a redraw
    kit.screenshot("job-running", sidebar_crop())
    after = kit.backend(f"/jobs/{job_id}")
    R["running_shot"] = {"before": {k: before.get(k) for k in ("state", "stage", "progress", "iteration", "total")},
                         "after": {k: after.get(k) for k in ("state", "stage", "progress", "iteration", "total")}}
    check("job running at its screenshot", before["state"] == "running" and after["state"] == "running",
          R["running_shot"])
    if state is not None:
        view = state.view
        check("panel's progress bar fed", view is not None and view.state == "running" and (view.progress or 0) > 0,
              view and view.text())
    mark("running shot")
    # 4. The job ends; the final snapshot is imported live (the watch timer, in this window).
    done = yield from kit.wait_until(lambda: (lambda st: st if st["state"] in ("done", "failed", "cancelled") else None)(
        kit.backend(f"/jobs/{job_id}")), 240, "the job's end", every=0.5)
    R["job"] = {k: done.get(k) for k in ("state", "error", "elapsed_s", "snapshot")}
    check("job done", done["state"] == "done", done.get("error"))
    final = (done.get("snapshot") or {}).get("version")

    def imported():
        if state is not None and state.error:  # the add-on's own error, not a silent timeout
            raise RuntimeError(f"the add-on reports: {state.error}")
        coll = kit.job_collection(job_id)
        return coll if coll is not None and coll.get("dynapose4d_snapshot") == final else None

    coll = yield from kit.wait_until(imported, 90, f"snapshot {final} in the scene")
    mark("final snapshot imported")
    scene = bpy.context.scene
    gaussians = kit.role(coll, "gaussians")
    kit.redraw()
    yield 1.0
    R["first_result"] = on_screen(gaussians, cube)
    check("the first result is on screen, beside the Cube, selected",
          all(R["first_result"][k] for k in ("inside_view", "apart_from_cube", "selected", "active")), R["first_result"])
    yield from kit.screenshot_when_still("first-result", {"window": (0, 0, win.width, win.height)}, "window", every=1.0, timeout=20)
    frames = int(coll["dynapose4d_frame_count"])
    keys = gaussians.data.shape_keys.key_blocks if gaussians is not None and gaussians.data.shape_keys else []
    expected_frames = max(1, round(DEMO["duration"] * scene.render.fps / scene.render.fps_base))
    R["scene"] = {"collection": coll.name, "snapshot": coll["dynapose4d_snapshot"], "frames": frames,
                  "gaussians": int(coll["dynapose4d_gaussians"]), "vertices": len(gaussians.data.vertices) if gaussians else 0,
                  "shape_keys": len(keys), "frame_range": [scene.frame_start, scene.frame_end],
                  "keypoints": sum(1 for o in coll.all_objects if o.get("dynapose4d_role") == "keypoint"),
                  "scene_job_id": scene.dynapose4d.job_id, "objects": sorted(o.name for o in coll.all_objects)[:40]}
    check("scene follows the job", scene.dynapose4d.job_id == job_id, scene.dynapose4d.job_id)
    check("gaussians imported", gaussians is not None and len(gaussians.data.vertices) == int(coll["dynapose4d_gaussians"]) > 0,
          R["scene"]["vertices"])
    check("frames as shape keys", frames == expected_frames and len(keys) == frames + 1, [frames, expected_frames, len(keys)])
    check("frame range set", scene.frame_end - scene.frame_start + 1 == frames, R["scene"]["frame_range"])
    check("keypoint empties", R["scene"]["keypoints"] > 0, R["scene"]["keypoints"])
    # 5. Play: the timeline runs in the window and each frame shows its own shape key.
    scene.frame_set(scene.frame_start)
    with kit.override():
        bpy.ops.screen.animation_play()
    t_play = time.monotonic()
    yield from kit.wait_until(lambda: scene.frame_current >= scene.frame_start + min(3, frames - 1), 30, "playback", every=0.1)
    playing = kit.view3d()[0].screen.is_animation_playing
    R["playback"] = {"frames_advanced": scene.frame_current - scene.frame_start, "seconds": round(time.monotonic() - t_play, 2),
                     "is_playing": playing}
    with kit.override():
        bpy.ops.screen.animation_cancel(restore_frame=False)
    check("playback advances frames", R["playback"]["frames_advanced"] >= min(3, frames - 1), R["playback"])
    shown = []
    for k in range(frames):
        scene.frame_set(scene.frame_start + k)
        on = [kb.name for kb in keys[1:] if kb.value > 0.5]
        shown.append(on)
    check("one shape key per frame, in order", shown == [[kb.name] for kb in list(keys)[1:]], shown[:4])
    import numpy as np

    first = np.empty(len(gaussians.data.vertices) * 3, dtype=np.float32)
    last = np.empty_like(first)
    keys[1].data.foreach_get("co", first)
    keys[frames].data.foreach_get("co", last)
    motion = float(np.abs(last - first).max())
    R["playback"]["max_motion"] = motion
    check("the result moves between its first and last frame", motion > 1e-3, motion)
    mark("played")
    # 6. The result in the viewport: selected, framed, coloured by its attribute, mid-clip.
    scene.frame_set(scene.frame_start + frames // 2)
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj == gaussians)
    bpy.context.view_layer.objects.active = gaussians
    win, area, sidebar, main = kit.view3d()
    shading = area.spaces.active.shading
    if SHADING == "RENDERED":  # Cycles on the CPU, few samples: the splats' emission colours, without EEVEE's
        scene.render.engine = "CYCLES"  # shader compilation (minutes on llvmpipe, blocking the window)
        scene.cycles.device = "CPU"
        scene.cycles.preview_samples = int(os.environ.get("DP4D_CYCLES_SAMPLES", "4"))
        scene.cycles.use_preview_denoising = False
        scene.render.dither_intensity = 0.0  # no fresh noise on every redraw
    shading.type = SHADING
    with kit.override():
        bpy.ops.view3d.view_selected()
    gaussians.select_set(False)  # the selection outline of every ellipsoid would hide the splats
    kit.redraw()
    yield 4.0 if SHADING == "RENDERED" else 1.0
    yield from kit.screenshot_when_still("result-viewport", {"viewport": kit.region_box(main, win),
                                                             "sidebar": kit.region_box(sidebar, win)}, "viewport",
                                         # Cycles: still = no sample left (its samples change little each)
                                         every=3.0, **({"tolerance": 1e-5, "still_shots": 2} if SHADING == "RENDERED" else {}))
    mark("result shot")
    # 7. Export glTF from the panel's operator and look inside the file.
    path = os.path.join(kit.OUT, "demo.glb")
    with kit.override():
        result = bpy.ops.dynapose4d.export_gltf(filepath=path)
    check("export operator", result == {"FINISHED"}, result)
    summary = kit.glb_summary(path) if os.path.isfile(path) else None
    R["glb"] = summary
    points = [p for p in (summary or {}).get("primitives", []) if p["mode"] == 0]
    check("glb holds the points", bool(points) and points[0]["count"] == R["scene"]["vertices"], points)
    check("glb morph targets per frame", bool(points) and points[0]["targets"] == frames, points and points[0]["targets"])
    animations = (summary or {}).get("animations", [])
    check("glb animation", any("weights" in a["channels"] for a in animations), animations)
    mark("exported")
    if state is not None:
        R["addon_error"] = state.error
        check("no error in the panel", not state.error, state.error)


kit.run_steps(steps())
