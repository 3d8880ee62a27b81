"""F-curves through one door, for Blender 4.2 to 5.x.

Blender 4.4 introduced slotted actions (an action holds channels for several data-blocks, each
in the channelbag of a slot) and 5.0 removed the old ``Action.fcurves``. :func:`fcurves`
returns the F-curve collection of a data-block's assigned action, slot and channelbag
(``bpy_extras.anim_utils.action_get_channelbag_for_slot`` on 4.4+), or ``Action.fcurves``
before 4.4; everything else here works on that collection.
"""

from __future__ import annotations

import bpy
import numpy as np

from .attributes import foreach_set

INTERPOLATION = {"CONSTANT": 0, "LINEAR": 1, "BEZIER": 2}


def slotted(action) -> bool:
    return hasattr(action, "slots")


def fcurves(id_data, action_name: str | None = None, create: bool = True):
    """The F-curves of ``id_data``'s action (created, with its slot, when missing and ``create``).

    Returns None when there is no action and ``create`` is false."""
    adt = id_data.animation_data
    if adt is None or adt.action is None:
        if not create:
            return None
        adt = adt or id_data.animation_data_create()
        adt.action = bpy.data.actions.new(action_name or f"{id_data.name}Action")
    action = adt.action
    if not slotted(action):
        return action.fcurves
    from bpy_extras import anim_utils

    if adt.action_slot is None:
        if not create:
            return None
        adt.action_slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
    channelbag = anim_utils.action_get_channelbag_for_slot(action, adt.action_slot)
    if channelbag is None:
        if not create:
            return None
        channelbag = _ensure_channelbag(action, adt.action_slot)
    return channelbag.fcurves


def _ensure_channelbag(action, slot):
    from bpy_extras import anim_utils

    ensure = getattr(anim_utils, "action_ensure_channelbag_for_slot", None)  # public from 5.0
    if ensure is not None:
        return ensure(action, slot)
    layer = action.layers[0] if action.layers else action.layers.new("Layer")
    strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True)


def set_keys(curves, data_path: str, index: int, frames, values, interpolation: str = "LINEAR"):
    """Make the F-curve ``data_path[index]`` hold exactly the keys ``(frames[k], values[k])``.

    An existing curve with the same number of keys is rewritten in place (live updates);
    otherwise it is replaced."""
    frames = np.asarray(frames, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    curve = curves.find(data_path, index=index)
    if curve is not None and len(curve.keyframe_points) != len(frames):
        curves.remove(curve)
        curve = None
    if curve is None:
        curve = curves.new(data_path, index=index)
        curve.keyframe_points.add(len(frames))
    points = curve.keyframe_points
    foreach_set(points, "co", np.column_stack([frames, values]))
    foreach_set(points, "interpolation", np.full(len(frames), INTERPOLATION[interpolation]), np.int32)
    curve.update()
    return curve


def shift_keys(curves, offset: float) -> None:
    """Move every key (and its handles) of ``curves`` by ``offset`` frames."""
    for curve in curves:
        points = curve.keyframe_points
        n = len(points)
        for prop in ("co", "handle_left", "handle_right"):
            values = np.empty(2 * n, dtype=np.float32)
            points.foreach_get(prop, values)
            values[0::2] += offset
            points.foreach_set(prop, values)
        curve.update()


def evaluate(curves, data_path: str, index: int, frames) -> np.ndarray:
    curve = curves.find(data_path, index=index)
    if curve is None:
        raise KeyError(f"no F-curve {data_path}[{index}]")
    return np.array([curve.evaluate(float(f)) for f in frames], dtype=np.float64)


def remove_animation(id_data) -> None:
    """Drop the action of ``id_data`` (and the action itself when nothing else uses it)."""
    adt = id_data.animation_data
    if adt is None or adt.action is None:
        return
    action = adt.action
    adt.action = None
    if action.users == 0:
        bpy.data.actions.remove(action)
