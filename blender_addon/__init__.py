"""DynaPose4D for Blender: turn a still image into an animated 3D point cloud with a keypoint rig.

This file only registers; the add-on's parts live in its modules. ``bpy`` is imported inside
``register`` so that the ``format`` modules can be imported (and tested) without Blender.
"""


def _modules():
    from . import operators, preferences, properties, ui

    return (preferences, properties, operators, ui)


def register():
    import bpy

    from . import operators, properties, runtime

    for module in _modules():
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
    properties.register_properties()
    for menu, draw in operators.MENUS:
        getattr(bpy.types, menu).append(draw)
    bpy.app.handlers.load_pre.append(runtime.on_load_pre)


def unregister():
    import bpy

    from . import operators, properties, runtime

    if runtime.on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(runtime.on_load_pre)
    runtime.reset()
    for menu, draw in operators.MENUS:
        getattr(bpy.types, menu).remove(draw)
    properties.unregister_properties()
    for module in reversed(_modules()):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
