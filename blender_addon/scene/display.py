"""How the Gaussians look in Blender: a Geometry Nodes modifier on the shape-key mesh.

Where Blender draws Gaussian splats itself (5.3+: ``'GAUSSIAN_SPLAT'`` among the point cloud
types; the feature is detected, not the version), the modifier is Mesh to Points -> Set Point
Cloud Type: native splats in the viewport, EEVEE and Cycles, reading the mesh's ``scale``,
``rotation``, ``radiance:base`` and ``radiance:sh_k`` (``scene.points``).

Elsewhere (4.2-5.2) each Gaussian is instanced as a low-poly ellipsoid (an icosahedron)
oriented by its rotation and stretched by its three scales; its material evaluates, per ray,
the Gaussian's largest value along the ray (its distance to the centre in the Gaussian's own
units) and so draws the same soft footprint a splatting renderer draws. ``radius_scale`` sets
how far the ellipsoid reaches, in units of 2 sigma (1.5: 3 sigma, where the Gaussian is 1 % of
its peak); the falloff is always the Gaussian's own. Gaussians below ``min_opacity`` are hidden.

In both, the rotation and scale of the frame on screen are picked by the node tree from the
mesh's per-frame attributes (``rot_f{k}``, ``scale_f{k}``) by the scene frame: no Python runs
on frame change, so playback, scrubbing and command-line renders all see them.

Display only: the modifier is not applied on export (the glTF holds the vertices, their
colours and the morph targets).
"""

from __future__ import annotations

import bpy

GROUP = "DynaPose4D Splats"
NATIVE_GROUP = "DynaPose4D Native Splats"
# Bumped when the node trees change: a file saved with an older tree gets it rebuilt.
TREE_REVISION = 4
# Cycles does not read FLOAT_COLOR attributes of point clouds (they render black): the display
# stores the colour again as a vector attribute, which every render engine reads.
RENDER_COLOR = "splat_rgb"
EXTENT = "splat_extent"  # the ellipsoid's reach in sigmas, for the material
MATERIAL = "DynaPose4D Splat"
MODIFIER = "DynaPose4D display"
RADIUS_SCALE = 1.5
ROTATION_OF_FRAME, SCALE_OF_FRAME = "rot_f#", "scale_f#"  # '#': the frame index (scene.points)
# The variance (world units^2) each Gaussian's three axes gain on screen: the backend's
# rasteriser widens every projected Gaussian by 0.3 px^2, and the result was fitted so; the
# import turns that into world units at each Gaussian's depth from the reference camera.
DILATION = "splat_dilation"
# An icosahedron's faces lie 0.795 of its radius from the centre: this radius keeps the
# ellipsoid inside it.
ICOSAHEDRON_RADIUS = 1.0 / 0.7947


def supports_native_splats() -> bool:
    """Whether this Blender draws Gaussian splats itself (point clouds of type GAUSSIAN_SPLAT)."""
    prop = bpy.types.PointCloud.bl_rna.properties.get("type")
    return prop is not None and any(item.identifier == "GAUSSIAN_SPLAT" for item in prop.enum_items)


TRANSPARENT_BOUNCES = 128


def prepare_scene(scene) -> None:
    """Splats are unlit radiance fitted to sRGB images: the 'Standard' view transform shows them
    as a 3DGS viewer does (Filmic and AgX remap their colours). Cycles stops a ray after
    ``transparent_max_bounces`` transparent surfaces (8 by default in some versions): the soft
    ellipsoids of a dense splat need many more, or the inside shows through."""
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    cycles = getattr(scene, "cycles", None)
    if cycles is not None and cycles.transparent_max_bounces < TRANSPARENT_BOUNCES:
        cycles.transparent_max_bounces = TRANSPARENT_BOUNCES


# -- the material of the 4.2-5.2 ellipsoids ---------------------------------------------------------


def splat_material():
    mat = bpy.data.materials.get(MATERIAL)
    if mat is not None and mat.node_tree is not None and mat.get("dynapose4d_display") == TREE_REVISION:
        return mat
    mat = mat or bpy.data.materials.new(MATERIAL)
    if mat.node_tree is None:  # 5.x materials always have nodes; older ones need asking
        mat.use_nodes = True
    mat["dynapose4d_display"] = TREE_REVISION
    mat.node_tree.nodes.clear()
    tree = _Tree(mat.node_tree)
    node, links, math = tree.node, tree.links, tree.math

    def instancer(name, kind, y):
        return node("ShaderNodeAttribute", -1400, y, attribute_type="INSTANCER", attribute_name=name).outputs[kind]

    # The hit point and the ray in the ellipsoid's own space, where the Gaussian is round and
    # the unit sphere is ``extent`` sigmas: the ray passes d from the centre, the Gaussian's
    # largest value on it is exp(-(extent d)^2 / 2) (what a splatting renderer draws there).
    point = node("ShaderNodeTexCoord", -1400, 0).outputs["Object"]
    geometry = node("ShaderNodeNewGeometry", -1400, -250)
    ray = node("ShaderNodeVectorTransform", -1200, -250, vector_type="VECTOR", convert_from="WORLD", convert_to="OBJECT")
    links.new(geometry.outputs["Incoming"], ray.inputs[0])
    direction = math("NORMALIZE", ray.outputs[0], None, -1000, -250, vector=True)
    along = math("DOT_PRODUCT", point, direction, -800, -150, vector=True)
    squared = math("DOT_PRODUCT", point, point, -800, 50, vector=True)
    distance2 = math("SUBTRACT", squared, math("MULTIPLY", along, along, -600, -150), -400, 0)
    extent = instancer(EXTENT, "Fac", 250)
    sigma2 = math("MULTIPLY", distance2, math("MULTIPLY", extent, extent, -600, 250), -200, 100)
    falloff = math("EXPONENT", math("MULTIPLY", sigma2, -0.5, 0, 100), None, 200, 100)
    front = math("SUBTRACT", 1.0, geometry.outputs["Backfacing"], 200, -100)  # one face per ray
    alpha = math("MULTIPLY", math("MULTIPLY", falloff, instancer("opacity", "Fac", 450), 400, 200), front, 600, 100)
    emission = node("ShaderNodeEmission", 600, -150)
    links.new(instancer(RENDER_COLOR, "Vector", -500), emission.inputs["Color"])
    transparent = node("ShaderNodeBsdfTransparent", 600, 300)
    mix = node("ShaderNodeMixShader", 850, 100)
    out = node("ShaderNodeOutputMaterial", 1050, 100)
    links.new(alpha, mix.inputs["Fac"])
    links.new(transparent.outputs[0], mix.inputs[1])
    links.new(emission.outputs[0], mix.inputs[2])
    links.new(mix.outputs[0], out.inputs["Surface"])
    if hasattr(mat, "surface_render_method"):  # EEVEE (4.2+): sorted blending of the soft edges
        mat.surface_render_method = "BLENDED"
    mat.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return mat


# -- the node trees ------------------------------------------------------------------------------


class _Tree:
    """A node tree being built (a Geometry Nodes group, a material's shaders): nodes placed left
    to right, links by socket."""

    def __init__(self, group):
        self.group, self.nodes, self.links = group, group.nodes, group.links

    def node(self, kind, x, y, inputs=None, **props):
        n = self.nodes.new(kind)
        n.location = (x, y)
        for key, value in props.items():
            setattr(n, key, value)
        for key, value in (inputs or {}).items():
            if value is None:
                continue
            if isinstance(value, bpy.types.NodeSocket):
                self.links.new(value, n.inputs[key])
            else:
                n.inputs[key].default_value = value
        return n

    def attribute(self, name, data_type, x, y):
        return self.node("GeometryNodeInputNamedAttribute", x, y, {"Name": name}, data_type=data_type).outputs["Attribute"]

    def math(self, op, a, b, x, y, vector=False):
        n = self.node("ShaderNodeVectorMath" if vector else "ShaderNodeMath", x, y, {0: a, 1: b}, operation=op)
        return n.outputs["Value" if vector and op in ("DOT_PRODUCT", "LENGTH") else 0]


def _new_group(name: str):
    group = bpy.data.node_groups.get(name)
    if group is not None and group.bl_idname == "GeometryNodeTree" and group.get("dynapose4d_display") == TREE_REVISION:
        return group, False
    if group is None or group.bl_idname != "GeometryNodeTree":
        group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group.nodes.clear()  # an older tree of this name: rebuilt in place, its users keep it
    group.interface.clear()
    group["dynapose4d_display"] = TREE_REVISION
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    for label, kind, default, lo, hi in (
        ("Radius Scale", "NodeSocketFloat", RADIUS_SCALE, 0.0, 100.0),
        ("Min Opacity", "NodeSocketFloat", 0.05, 0.0, 1.0),
        ("Frame Start", "NodeSocketInt", 1, -1_000_000, 1_000_000),
        ("Frame Count", "NodeSocketInt", 1, 1, 1_000_000),
    ):
        socket = iface.new_socket(label, in_out="INPUT", socket_type=kind)
        socket.default_value, socket.min_value, socket.max_value = default, lo, hi
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    return group, True


def _frame_attributes(tree: _Tree, gin):
    """The rotation and scale of the frame on screen: attributes ``rot_f{k}``/``scale_f{k}`` with
    k = the scene frame - Frame Start, clamped to the sequence (the shape keys hold alike)."""
    frame = tree.node("GeometryNodeInputSceneTime", -1600, -600).outputs["Frame"]
    k = tree.math("FLOOR", tree.math("SUBTRACT", frame, gin.outputs["Frame Start"], -1400, -600), None, -1250, -600)
    last = tree.math("SUBTRACT", gin.outputs["Frame Count"], 1.0, -1250, -750)
    k = tree.math("MAXIMUM", tree.math("MINIMUM", k, last, -1100, -600), 0.0, -950, -600)
    index = tree.node("FunctionNodeValueToString", -800, -600, {"Value": k}).outputs["String"]
    out = []
    for pattern, data_type, y in ((ROTATION_OF_FRAME, "QUATERNION", -500), (SCALE_OF_FRAME, "FLOAT_VECTOR", -700)):
        name = tree.node("FunctionNodeReplaceString", -600, y, {"String": pattern, "Find": "#", "Replace": index})
        out.append(tree.attribute(name.outputs["String"], data_type, -400, y))
    # sqrt(scale^2 + dilation) per axis: the Gaussian as the backend's renderer drew it.
    dilation = tree.attribute(DILATION, "FLOAT", -400, -850)
    variance = tree.node("ShaderNodeVectorMath", -300, -750, {0: out[1], 1: out[1], 2: dilation}, operation="MULTIPLY_ADD")
    # (Per axis: Blender 4.2-4.4's Vector Math has no POWER or SQRT.)
    axes = tree.node("ShaderNodeSeparateXYZ", -200, -750, {0: variance.outputs["Vector"]})
    roots = [tree.math("SQRT", axes.outputs[i], None, -100, -700 - 60 * i) for i in range(3)]
    out[1] = tree.node("ShaderNodeCombineXYZ", 0, -750, dict(enumerate(roots))).outputs["Vector"]
    return out


def _visible_points(tree: _Tree, gin):
    opacity = tree.attribute("opacity", "FLOAT", -1000, -250)
    visible = tree.math("GREATER_THAN", opacity, gin.outputs["Min Opacity"], -800, -250)
    return tree.node("GeometryNodeMeshToPoints", -600, 0, {"Mesh": gin.outputs["Geometry"], "Selection": visible})


def _group_start(name: str):
    """The display group ``name`` and what both displays begin with (the frame's rotation and
    scale, the visible points); ``(group, None)`` when the group is already current."""
    group, new = _new_group(name)
    if not new:
        return group, None
    tree = _Tree(group)
    gin = tree.node("NodeGroupInput", -1800, 0)
    rotation, scale = _frame_attributes(tree, gin)
    return group, (tree, gin, rotation, scale, _visible_points(tree, gin))


def splat_node_group():
    """4.2-5.2: every Gaussian an ellipsoid instance with the per-ray falloff material."""
    group, start = _group_start(GROUP)
    if start is None:
        return group
    tree, gin, rotation, scale, points = start
    color = tree.attribute("color", "FLOAT_COLOR", -400, -150)
    store_color = tree.node("GeometryNodeStoreNamedAttribute", -200, 0, {"Geometry": points.outputs["Points"],
                            "Name": RENDER_COLOR, "Value": color}, data_type="FLOAT_VECTOR", domain="POINT")
    extent = tree.math("MULTIPLY", gin.outputs["Radius Scale"], 2.0, -400, 200)
    store_extent = tree.node("GeometryNodeStoreNamedAttribute", 0, 0, {"Geometry": store_color.outputs["Geometry"],
                             "Name": EXTENT, "Value": extent}, data_type="FLOAT", domain="POINT")
    ico = tree.node("GeometryNodeMeshIcoSphere", -200, 300, {"Radius": ICOSAHEDRON_RADIUS, "Subdivisions": 1})
    ico = tree.node("GeometryNodeSetMaterial", 0, 300, {"Geometry": ico.outputs["Mesh"], "Material": splat_material()})
    size = tree.node("ShaderNodeVectorMath", -200, -700, {0: scale, "Scale": extent}, operation="SCALE").outputs["Vector"]
    instances = tree.node("GeometryNodeInstanceOnPoints", 250, 0, {"Points": store_extent.outputs["Geometry"],
                          "Instance": ico.outputs["Geometry"], "Rotation": rotation, "Scale": size})
    gout = tree.node("NodeGroupOutput", 500, 0)
    tree.links.new(instances.outputs["Instances"], gout.inputs["Geometry"])
    return group


def native_node_group():
    """5.3+: the points become Blender's own Gaussian splats, turned and sized per frame."""
    group, start = _group_start(NATIVE_GROUP)
    if start is None:
        return group
    tree, gin, rotation, scale, points = start
    turn = tree.node("GeometryNodeStoreNamedAttribute", -200, 0, {"Geometry": points.outputs["Points"], "Name": "rotation",
                     "Value": rotation}, data_type="QUATERNION", domain="POINT")
    size = tree.node("GeometryNodeStoreNamedAttribute", 0, 0, {"Geometry": turn.outputs["Geometry"], "Name": "scale",
                     "Value": scale}, data_type="FLOAT_VECTOR", domain="POINT")
    splats = tree.node("GeometryNodePointsSetType", 200, 0, {"Points": size.outputs["Geometry"]})
    splats.inputs["Type"].default_value = "3D Gaussian Splat"
    gout = tree.node("NodeGroupOutput", 450, 0)
    tree.links.new(splats.outputs["Points"], gout.inputs["Geometry"])
    return group


def ensure_display(obj, radius_scale: float | None = None, frame_start: int | None = None, frame_count: int | None = None):
    """Give ``obj`` the splat display modifier (native splats where Blender has them); returns it."""
    group = native_node_group() if supports_native_splats() else splat_node_group()
    mod = obj.modifiers.get(MODIFIER)
    if mod is None:
        mod = obj.modifiers.new(MODIFIER, "NODES")
    if mod.node_group is not group:
        mod.node_group = group
    for name, value in (("Radius Scale", radius_scale), ("Frame Start", frame_start), ("Frame Count", frame_count)):
        if value is not None:
            set_input(mod, name, value)
    if not obj.material_slots or obj.material_slots[0].material is None:
        # The same material on the mesh: what exports to glTF (points with COLOR_0).
        if not obj.data.materials:
            obj.data.materials.append(splat_material())
    obj.update_tag()
    return mod


def set_input(mod, name: str, value) -> None:
    """Set a Geometry Nodes modifier's input by its label: an ID property up to 5.2, an RNA
    property in ``mod.properties.inputs`` from 5.3 (which refuses ID properties there)."""
    identifier, rna = _input(mod, name)
    if rna is not None:
        rna.value = value
    else:
        mod[identifier] = value


def get_input(mod, name: str):
    identifier, rna = _input(mod, name)
    return mod[identifier] if rna is None else rna.value


def _input(mod, name: str):
    """A modifier input's identifier, and its 5.3+ RNA property (None before 5.3)."""
    identifier = _socket_id(mod.node_group, name)
    inputs = getattr(getattr(mod, "properties", None), "inputs", None)
    return identifier, getattr(inputs, identifier) if inputs is not None and hasattr(inputs, identifier) else None


def _socket_id(group, name: str) -> str:
    for item in group.interface.items_tree:
        if getattr(item, "in_out", None) == "INPUT" and item.name == name:
            return item.identifier
    raise KeyError(name)
