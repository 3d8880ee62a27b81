"""DynaPose4D for Blender: turn a still image into an animated 3D point cloud with a keypoint rig.

This file only registers; the add-on's parts live in its modules. ``bpy`` is imported inside
``register`` so that the ``format`` modules can be imported (and tested) without Blender.
"""


def register():
    pass


def unregister():
    pass
