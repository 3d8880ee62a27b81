"""Driver (Blender 4.3, a real window): the Animate mode's input is the selected splat. The panel
says why the default Cube is not one, names a 3DGS PLY imported by Blender's own importer once it
is selected, and File > Import > DynaPose4D Result brings in a result folder; screenshots of the
panel both ways and of the imported folder.

The extension zip, a 3DGS PLY and a result folder's files (``frame_*.ply`` + ``sequence.json``)
are in $DP4D_FILES.
"""

import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpy  # noqa: E402
import windowkit as kit  # noqa: E402
from windowkit import check, mark  # noqa: E402


def sidebar_crop():
    win, area, sidebar, main = kit.view3d()
    return {"sidebar": kit.region_box(sidebar, win)}


def panel_lines() -> list[str]:
    """What the panel's Animate rows say, as the add-on computes it for the active object."""
    selected = __import__(kit.PACKAGE + ".scene.selected_splat", fromlist=["describe"])
    return [selected.describe(bpy.context.view_layer.objects.active).text]


def steps():
    R = kit.RESULT
    prefs = bpy.context.preferences
    prefs.use_preferences_save = False
    prefs.view.show_splash = False
    yield 0.5
    check("extension installed and enabled", kit.install_extension(kit.file("*.zip")), kit.PACKAGE)
    mark("installed")
    import_menu = [getattr(f, "__name__", "") for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    check("File > Import lists DynaPose4D Result", "menu_import" in import_menu, import_menu)
    yield from kit.open_sidebar_tab()
    s = bpy.context.scene.dynapose4d
    s.kind, s.animate_input = "animate", "SELECTED"
    cube = bpy.data.objects.get("Cube")
    bpy.context.view_layer.objects.active = cube
    kit.redraw()
    yield 1.0
    R["panel_cube"] = panel_lines()
    check("the Cube is not a splat", R["panel_cube"][0].startswith("Cube is not a splat"), R["panel_cube"])
    yield from kit.screenshot_when_still("animate-not-a-splat", sidebar_crop(), "sidebar", every=1.0, timeout=20)
    # Blender's own PLY importer: a mesh with the PLY's properties as attributes.
    with kit.override():
        bpy.ops.wm.ply_import(filepath=kit.file("scan.ply"))
    scan = bpy.context.view_layer.objects.active
    bpy.data.objects.remove(cube)
    scan.location = (0.0, 0.0, 1.0)
    kit.redraw()
    yield 1.0
    R["panel_scan"] = panel_lines()
    check("the PLY import is a splat", "splats (3DGS PLY attributes)" in R["panel_scan"][0], R["panel_scan"])
    check("Animate can run", bpy.ops.dynapose4d.generate.poll(), R["panel_scan"])
    yield from kit.screenshot_when_still("animate-selected-splat", sidebar_crop(), "sidebar", every=1.0, timeout=20)
    # A result folder, from the File menu's operator.
    sidecar = glob.glob(os.path.join(kit.FILES, "sequence.json"))[0]
    with kit.override():
        result = bpy.ops.dynapose4d.import_result(filepath=sidecar)
    check("import_result operator", result == {"FINISHED"}, result)
    coll = next((c for c in bpy.data.collections if "dynapose4d_source" in c), None)
    check("the folder's collection", coll is not None and coll.get("dynapose4d_gaussians", 0) > 0,
          None if coll is None else dict(coll.items()).get("dynapose4d_gaussians"))
    roles = sorted({o.get("dynapose4d_role") for o in coll.all_objects}) if coll else []
    R["folder_roles"] = roles
    check("the folder's objects", {"gaussians", "keypoint", "armature", "camera", "root"} <= set(roles), roles)
    yield 0


kit.run_steps(steps())
