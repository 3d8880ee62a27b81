"""The splat the user has selected, as a 3DGS PLY in world space: what the Animate mode sends.

Reads the object's point attributes with ``foreach_get`` and leaves the conversion to
``format.splats`` (which layouts are splats, how each stores its values, the world transform).
A mesh whose splats are faces (KIRI 3DGS Render's "faces" mode keeps one quad per Gaussian
with the attributes on the faces) is read at its faces' centres.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..format.splats import (
    MISSING_HINT,
    NotASplat,
    Splats,
    from_attributes,
    layout_of,
    needed_attributes,
    to_world,
    write_ply,
)
from .attributes import foreach_get

# attribute data type -> (the per-element property foreach_get reads, its width)
_READ = {
    "FLOAT": ("value", 1), "INT": ("value", 1), "FLOAT2": ("vector", 2), "FLOAT_VECTOR": ("vector", 3),
    "QUATERNION": ("value", 4), "FLOAT4": ("vector", 4), "FLOAT_COLOR": ("color", 4), "BYTE_COLOR": ("color", 4),
}
LAYOUT_TEXT = {
    "blender-splat": "Gaussian splats",
    "3dgs-ply": "3DGS PLY attributes",
    "reshot": "ReshotAI splat attributes",
    "dynapose4d": "a DynaPose4D result",
}


SHORT_HINT = "Select a Blender 5.3 splat, a 3DGS PLY import (KIRI 3DGS Render), a ReshotAI splat or a DynaPose4D result"


@dataclass
class Selection:
    """What the panel says about the active object: ``ok`` when it can be animated; ``text`` the
    whole sentence (the button's tooltip when it cannot run), ``lines`` what fits the sidebar."""

    ok: bool
    text: str
    name: str = ""
    lines: tuple = ()


def _attributes(obj):
    data = getattr(obj, "data", None)
    return None if obj is None or obj.type not in ("MESH", "POINTCLOUD") else data.attributes


def describe(obj) -> Selection:
    """Whether ``obj`` is a splat the Animate mode can take, cheaply (names only, for the panel)."""
    import textwrap

    if obj is None:
        return Selection(False, "Select a splat object (or choose a PLY file)", lines=("Select a splat object", "(or choose PLY File)"))
    attributes = _attributes(obj)
    layout = layout_of(a.name for a in attributes) if attributes is not None else None
    if layout is None:
        return Selection(False, f"{obj.name} is not a splat: select {MISSING_HINT}", obj.name,
                         (f"{obj.name} is not a splat", *textwrap.wrap(SHORT_HINT, 32)))
    count = len(attributes[needed_attributes(layout, [a.name for a in attributes])[0]].data)
    return Selection(True, f"{obj.name}: {count:,} splats ({LAYOUT_TEXT[layout]})", obj.name,
                     (f"{obj.name}: {count:,} splats", LAYOUT_TEXT[layout]))


def read_splats(obj, world: bool = True) -> tuple[str, Splats]:
    """The layout and the splats of ``obj`` (in world space: its ``matrix_world`` applied to
    positions, rotations, scales and view-dependent colour). Raises :class:`NotASplat`."""
    attributes = _attributes(obj)
    if attributes is None:
        raise NotASplat(f"{getattr(obj, 'name', obj)!r} is not a mesh or point cloud")
    names = [a.name for a in attributes]
    layout = layout_of(names)
    if layout is None:
        raise NotASplat(f"{obj.name} is not a splat: select {MISSING_HINT}")
    values = {name: _read(attributes[name]) for name in needed_attributes(layout, names)}
    domain = attributes[needed_attributes(layout, names)[0]].domain
    if domain == "FACE":
        positions = foreach_get(obj.data.polygons, "center", (len(obj.data.polygons), 3))
    elif domain == "POINT":
        positions = _read(attributes["position"])
    else:
        raise NotASplat(f"{obj.name}: its splat attributes are on the {domain.lower()} domain (expected points or faces)")
    _, splats = from_attributes(positions, values)
    if world:
        splats = to_world(splats, np.array(obj.matrix_world, dtype=np.float64))
    return layout, splats


def _read(attribute) -> np.ndarray:
    field, width = _READ.get(attribute.data_type, (None, 0))
    if field is None:
        raise NotASplat(f"attribute {attribute.name!r} is of type {attribute.data_type}, not a float attribute")
    out = foreach_get(attribute.data, field, (len(attribute.data), width))
    return out[:, 0] if width == 1 else out


def write_selected_ply(obj, folder: str) -> str:
    """``obj``'s splats in world space as a 3DGS PLY in ``folder``; its path. The file is +Z up
    (Blender's world), so the job is sent with ``up_axis = "z"``."""
    _, splats = read_splats(obj, world=True)
    if splats.count == 0:
        raise NotASplat(f"{obj.name} has no splats")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in obj.name) or "splat"
    return str(write_ply(os.path.join(folder, f"{safe}.ply"), splats))
