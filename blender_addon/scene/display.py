"""How the Gaussians look in Blender: a Geometry Nodes modifier turns the vertices into points
(spheres) sized by each Gaussian's scale, with a material that reads its colour and opacity.

Display only: the modifier is not applied on export (the glTF holds the vertices, their
colours and the morph targets). A Gaussian with standard deviation s looks about 2 s wide,
so the point radius is ``radius_scale * mean(scale)`` with ``radius_scale`` 1.5 by default.
Gaussians below ``min_opacity`` are hidden. The colours are the Gaussians' view-independent
(degree-0) colours shown as emission: a splat has radiance, not a surface to light.
"""

from __future__ import annotations

import bpy

GROUP = "DynaPose4D Splats"
# Cycles does not read FLOAT_COLOR attributes of point clouds (they render black): the display
# stores the colour again as a vector attribute, which every render engine reads.
RENDER_COLOR = "splat_rgb"
MATERIAL = "DynaPose4D Splat"
MODIFIER = "DynaPose4D display"
RADIUS_SCALE = 1.5


def splat_material():
    mat = bpy.data.materials.get(MATERIAL)
    if mat is not None and mat.node_tree is not None:
        return mat
    mat = mat or bpy.data.materials.new(MATERIAL)
    if mat.node_tree is None:  # 5.x materials always have nodes; older ones need asking
        mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    color = nodes.new("ShaderNodeAttribute")
    color.attribute_type, color.attribute_name, color.location = "GEOMETRY", RENDER_COLOR, (-600, 100)
    opacity = nodes.new("ShaderNodeAttribute")
    opacity.attribute_type, opacity.attribute_name, opacity.location = "GEOMETRY", "opacity", (-600, 350)
    emission = nodes.new("ShaderNodeEmission")
    emission.location = (-300, 50)
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    transparent.location = (-300, 200)
    mix = nodes.new("ShaderNodeMixShader")
    mix.location = (-50, 150)
    out = nodes.new("ShaderNodeOutputMaterial")
    out.location = (200, 150)
    links.new(color.outputs["Color"], emission.inputs["Color"])
    links.new(opacity.outputs["Fac"], mix.inputs["Fac"])
    links.new(transparent.outputs[0], mix.inputs[1])
    links.new(emission.outputs[0], mix.inputs[2])
    links.new(mix.outputs[0], out.inputs["Surface"])
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat


def splat_node_group():
    group = bpy.data.node_groups.get(GROUP)
    if group is not None and group.bl_idname == "GeometryNodeTree":
        return group
    group = bpy.data.node_groups.new(GROUP, "GeometryNodeTree")
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    radius = iface.new_socket("Radius Scale", in_out="INPUT", socket_type="NodeSocketFloat")
    radius.default_value, radius.min_value, radius.max_value = RADIUS_SCALE, 0.0, 100.0
    cutoff = iface.new_socket("Min Opacity", in_out="INPUT", socket_type="NodeSocketFloat")
    cutoff.default_value, cutoff.min_value, cutoff.max_value = 0.05, 0.0, 1.0
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    gin = nodes.new("NodeGroupInput")
    gin.location = (-800, 0)
    scale = nodes.new("GeometryNodeInputNamedAttribute")
    scale.data_type, scale.location = "FLOAT_VECTOR", (-800, -250)
    scale.inputs["Name"].default_value = "scale"
    opacity = nodes.new("GeometryNodeInputNamedAttribute")
    opacity.data_type, opacity.location = "FLOAT", (-800, -450)
    opacity.inputs["Name"].default_value = "opacity"
    mean = nodes.new("ShaderNodeVectorMath")
    mean.operation, mean.location = "DOT_PRODUCT", (-550, -250)
    mean.inputs[1].default_value = (1 / 3, 1 / 3, 1 / 3)
    radius_mul = nodes.new("ShaderNodeMath")
    radius_mul.operation, radius_mul.location = "MULTIPLY", (-350, -250)
    visible = nodes.new("ShaderNodeMath")
    visible.operation, visible.location = "GREATER_THAN", (-550, -450)
    to_points = nodes.new("GeometryNodeMeshToPoints")
    to_points.location = (-150, 0)
    color = nodes.new("GeometryNodeInputNamedAttribute")
    color.data_type, color.location = "FLOAT_COLOR", (-150, -250)
    color.inputs["Name"].default_value = "color"
    store_color = nodes.new("GeometryNodeStoreNamedAttribute")
    store_color.data_type, store_color.domain, store_color.location = "FLOAT_VECTOR", "POINT", (-150, 0)
    store_color.inputs["Name"].default_value = RENDER_COLOR
    to_points.location = (-350, 0)
    set_mat = nodes.new("GeometryNodeSetMaterial")
    set_mat.location = (100, 0)
    set_mat.inputs["Material"].default_value = splat_material()
    gout = nodes.new("NodeGroupOutput")
    gout.location = (300, 0)
    links.new(gin.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(scale.outputs["Attribute"], mean.inputs[0])
    links.new(mean.outputs["Value"], radius_mul.inputs[0])
    links.new(gin.outputs["Radius Scale"], radius_mul.inputs[1])
    links.new(radius_mul.outputs[0], to_points.inputs["Radius"])
    links.new(opacity.outputs["Attribute"], visible.inputs[0])
    links.new(gin.outputs["Min Opacity"], visible.inputs[1])
    links.new(visible.outputs[0], to_points.inputs["Selection"])
    links.new(to_points.outputs["Points"], store_color.inputs["Geometry"])
    links.new(color.outputs["Attribute"], store_color.inputs["Value"])
    links.new(store_color.outputs["Geometry"], set_mat.inputs["Geometry"])
    links.new(set_mat.outputs["Geometry"], gout.inputs["Geometry"])
    return group


def ensure_display(obj, radius_scale: float | None = None):
    """Give ``obj`` the splat display modifier (once); returns the modifier."""
    mod = obj.modifiers.get(MODIFIER)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER, "NODES")
        mod.node_group = splat_node_group()
    elif mod.node_group is None:
        mod.node_group = splat_node_group()
    if radius_scale is not None:
        mod[_socket_id(mod.node_group, "Radius Scale")] = float(radius_scale)
    if not obj.material_slots or obj.material_slots[0].material is None:
        # The same material on the mesh: what exports to glTF (points with COLOR_0).
        if not obj.data.materials:
            obj.data.materials.append(splat_material())
    return mod


def _socket_id(group, name: str) -> str:
    for item in group.interface.items_tree:
        if getattr(item, "in_out", None) == "INPUT" and item.name == name:
            return item.identifier
    raise KeyError(name)
