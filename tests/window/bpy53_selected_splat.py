"""Driver (bpy 5.3 module, no window): a 3DGS PLY imported by Blender 5.3 is a native Gaussian-splat
point cloud; the installed add-on's Animate mode takes it as the selected splat and writes the
world-space PLY it would send. The host compares that file with the input moved by the object's
transform (scale linear, rotation w x y z, radiance:base, radiance:sh_k as Blender 5.3 stores them).

The PLY to import is in $DP4D_FILES; the written PLY and the object's matrix come back.
"""

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpy  # noqa: E402
import windowkit as kit  # noqa: E402
from mathutils import Matrix  # noqa: E402
from windowkit import check  # noqa: E402


def steps():
    R = kit.RESULT
    bpy.ops.wm.read_factory_settings(use_empty=True)
    check("extension installed and enabled", kit.install_extension(kit.file("*.zip")), kit.PACKAGE)
    bpy.ops.wm.ply_import(filepath=kit.file("*.ply"))
    obj = bpy.context.selected_objects[0] if bpy.context.selected_objects else None
    kind = None if obj is None else (obj.type, getattr(obj.data, "type", None))
    R["object"] = {"kind": kind, "attributes": [] if obj is None else [(a.name, a.data_type, a.domain) for a in obj.data.attributes]}
    check("a Gaussian-splat point cloud", kind == ("POINTCLOUD", "GAUSSIAN_SPLAT"), kind)
    obj.matrix_world = Matrix.Translation((0.4, -1.0, 0.25)) @ Matrix.Rotation(0.7, 4, (0.3, -0.2, 1.0)) @ Matrix.Scale(1.3, 4)
    bpy.context.view_layer.update()
    bpy.context.view_layer.objects.active = obj
    R["matrix"] = [list(row) for row in obj.matrix_world]
    selected = importlib.import_module(kit.PACKAGE + ".scene.selected_splat")
    selection = selected.describe(obj)
    R["panel"] = selection.text
    check("the panel names it", selection.ok and obj.name in selection.text and "Gaussian splats" in selection.text, selection.text)
    # The Animate job's input, as the Generate operator builds it.
    scene = bpy.context.scene
    scene.dynapose4d.kind, scene.dynapose4d.animate_input = "animate", "SELECTED"
    properties = importlib.import_module(kit.PACKAGE + ".properties")
    options = properties.job_options(bpy.context, None, kit.OUT)
    R["job"] = {"ply": os.path.basename(options.ply_path), "up_axis": options.settings.get("up_axis")}
    check("sent +Z up", options.settings.get("up_axis") == "z", options.settings)
    check("the PLY is written", os.path.isfile(options.ply_path), options.ply_path)
    yield 0


kit.run_steps(steps())
