"""numpy arrays in and out of Blender data with ``foreach_set``/``foreach_get``: the one helper
every scene module uses (no per-element Python loops over Gaussians)."""

from __future__ import annotations

import numpy as np

# attribute data type -> the per-element property foreach_set writes
_FIELD = {
    "FLOAT": "value",
    "INT": "value",
    "BOOLEAN": "value",
    "QUATERNION": "value",
    "FLOAT_VECTOR": "vector",
    "FLOAT2": "vector",
    "FLOAT4": "vector",  # Blender 5.3's radiance:base
    "FLOAT_COLOR": "color",
    "BYTE_COLOR": "color",
}


def foreach_set(collection, name: str, values, dtype=np.float32) -> None:
    """``collection.foreach_set(name, values)`` from any array, flattened and contiguous."""
    collection.foreach_set(name, np.ascontiguousarray(values, dtype=dtype).ravel())


def foreach_get(collection, name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
    out = np.empty(int(np.prod(shape)), dtype=dtype)
    collection.foreach_get(name, out)
    return out.reshape(shape)


def set_attribute(mesh, name: str, values, data_type: str = "FLOAT", domain: str = "POINT"):
    """Create or overwrite the attribute ``name`` of ``mesh`` with ``values [count, ...]``.

    Colour attributes (``FLOAT_COLOR``) go through ``color_attributes`` so that they are the
    mesh's colour attributes for the UI and the glTF exporter."""
    attr = mesh.attributes.get(name)
    if attr is not None and (attr.data_type != data_type or attr.domain != domain):
        mesh.attributes.remove(attr)
        attr = None
    if attr is None:
        if data_type in ("FLOAT_COLOR", "BYTE_COLOR"):
            attr = mesh.color_attributes.new(name, data_type, domain)
        else:
            attr = mesh.attributes.new(name, data_type, domain)
    foreach_set(attr.data, _FIELD[data_type], values, np.int32 if data_type in ("INT", "BOOLEAN") else np.float32)
    return attr


def get_attribute(mesh, name: str) -> np.ndarray:
    attr = mesh.attributes[name]
    width = {"FLOAT": 1, "INT": 1, "BOOLEAN": 1, "FLOAT2": 2, "FLOAT_VECTOR": 3, "QUATERNION": 4, "FLOAT4": 4, "FLOAT_COLOR": 4, "BYTE_COLOR": 4}
    n = width[attr.data_type]
    dtype = np.int32 if attr.data_type in ("INT",) else bool if attr.data_type == "BOOLEAN" else np.float32
    out = foreach_get(attr.data, _FIELD[attr.data_type], (len(attr.data), n), dtype)
    return out[:, 0] if n == 1 else out


def vertex_positions(mesh) -> np.ndarray:
    return foreach_get(mesh.vertices, "co", (len(mesh.vertices), 3))
