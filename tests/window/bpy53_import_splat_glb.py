"""Driver (bpy 5.3 module, no window): Blender 5.3's glTF importer reads our KHR_gaussian_splatting
file with its keypoint skeleton. Reports the objects it made (type, point-cloud type, bones).

The GLB is in $DP4D_FILES.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpy  # noqa: E402
import windowkit as kit  # noqa: E402
from windowkit import check  # noqa: E402


def steps():
    R = kit.RESULT
    bpy.ops.wm.read_factory_settings(use_empty=True)
    check("glTF import", bpy.ops.import_scene.gltf(filepath=kit.file("*.glb")) == {"FINISHED"})
    objects = []
    for obj in bpy.data.objects:
        entry = {"name": obj.name, "type": obj.type}
        if obj.type == "POINTCLOUD":
            entry["pointcloud"] = getattr(obj.data, "type", None)
            entry["points"] = len(obj.data.points)
        if obj.type == "ARMATURE":
            entry["bones"] = sorted(b.name for b in obj.data.bones)
        objects.append(entry)
    R["objects"] = objects
    yield 0


kit.run_steps(steps())
