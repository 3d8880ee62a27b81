"""The skinned mesh: one mesh object with an Armature modifier bound to a keyframed armature.

The armature (``skeleton``) has one bone per backend bone (``format.skinned``), parented as the
backend's spanning tree; each bone's location and rotation are keyed on every frame (LINEAR),
so the mesh plays natively, edits with Blender's tools, and exports as a glTF skin with joint
animation. The mesh (``mesh``) has one vertex group per bone (at most 4 weights per vertex),
the colour attribute ``color`` (linear RGB; glTF's COLOR_0), its copy ``mesh_rgb`` (a vector,
which Cycles renders) and a material that shows it. A new snapshot
replaces the mesh and the bones in place: the same two objects, new data.
"""

from __future__ import annotations

import bpy
import numpy as np

from ..format.coords import backend_to_blender, backend_to_blender_motion
from ..format.rig import matrix_to_quaternion
from ..format.sequence import srgb_to_linear
from ..format.skinned import Skinned, bone_tails, pose_basis
from . import animation
from .attributes import foreach_set, set_attribute
from .rig import ROLE, editing_bones, find_role

MATERIAL = "DynaPose4D vertex colour"
RENDER_COLOR = "mesh_rgb"


def write_skinned(context, collection, skinned: Skinned, frame_start: int):
    """Create or replace the collection's skinned mesh and its armature; returns (mesh, armature)."""
    arm = find_role(collection, "skeleton")
    if arm is None:
        arm = bpy.data.objects.new("skeleton", bpy.data.armatures.new("DynaPose4D skeleton"))
        arm[ROLE] = "skeleton"
        collection.objects.link(arm)
    obj = find_role(collection, "mesh")
    if obj is None:
        obj = bpy.data.objects.new("mesh", bpy.data.meshes.new("DynaPose4D mesh"))
        obj[ROLE] = "mesh"
        collection.objects.link(obj)
    _write_bones(context, arm, skinned)
    _write_mesh(obj, arm, skinned)
    _write_motion(arm, skinned, frame_start)
    return obj, arm


def _swap_data(obj, new):
    old = obj.data
    obj.data = new
    if old is not None and old.users == 0:
        name = old.name
        (bpy.data.armatures if isinstance(old, bpy.types.Armature) else bpy.data.meshes).remove(old)
        new.name = name


def _write_bones(context, arm, skinned: Skinned) -> None:
    heads = backend_to_blender(skinned.heads)
    tails = bone_tails(heads, skinned.parents)
    _swap_data(arm, bpy.data.armatures.new("DynaPose4D skeleton"))
    with editing_bones(context, arm) as edit_bones:
        bones = []
        for b, name in enumerate(skinned.names):
            bone = edit_bones.new(name)
            bone.head, bone.tail, bone.roll = heads[b].tolist(), tails[b].tolist(), 0.0
            bones.append(bone)
        for b, p in enumerate(skinned.parents):
            if p >= 0:
                bones[b].parent = bones[int(p)]
    for pose_bone in arm.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"
    arm.data.display_type = "STICK"
    arm.show_in_front = True


def _write_mesh(obj, arm, skinned: Skinned) -> None:
    mesh = bpy.data.meshes.new("DynaPose4D mesh")
    verts = backend_to_blender(skinned.vertices).astype(np.float32)
    faces = skinned.faces
    mesh.vertices.add(len(verts))
    foreach_set(mesh.vertices, "co", verts)
    mesh.loops.add(faces.size)
    foreach_set(mesh.loops, "vertex_index", faces.ravel(), np.int32)
    mesh.polygons.add(len(faces))
    foreach_set(mesh.polygons, "loop_start", np.arange(0, faces.size, 3), np.int32)
    mesh.update()
    mesh.validate()
    rgb = srgb_to_linear(skinned.colors)
    set_attribute(mesh, "color", np.column_stack([rgb, np.ones(len(rgb), np.float32)]), "FLOAT_COLOR")
    mesh.color_attributes.active_color = mesh.color_attributes["color"]  # COLOR_0 in glTF
    # Cycles (seen in the bpy module) renders FLOAT_COLOR attributes black, as the splat display
    # found: the material reads the same colours from a vector attribute.
    set_attribute(mesh, RENDER_COLOR, rgb, "FLOAT_VECTOR")
    mesh.materials.append(_material())
    _swap_data(obj, mesh)
    # Skin: one vertex group per bone; Blender's API adds one weight value at a time, so group
    # the vertices by (bone, weight) pairs instead of one call per vertex.
    obj.vertex_groups.clear()
    groups = [obj.vertex_groups.new(name=name) for name in skinned.names]
    for k in range(skinned.joints.shape[1]):
        w = skinned.weights[:, k]
        for b in np.unique(skinned.joints[w > 0, k]):
            sel = np.flatnonzero((skinned.joints[:, k] == b) & (w > 0))
            for value in np.unique(w[sel]):
                groups[int(b)].add(sel[w[sel] == value].tolist(), float(value), "ADD")
    mod = obj.modifiers.get("Armature") or obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    mod.use_vertex_groups = True
    obj.parent = arm
    obj.matrix_parent_inverse.identity()


def _material():
    mat = bpy.data.materials.get(MATERIAL)
    if mat is not None:
        return mat
    mat = bpy.data.materials.new(MATERIAL)
    mat.use_nodes = True
    nodes = mat.node_tree.nodes
    shader = nodes.get("Principled BSDF")
    attr = nodes.new("ShaderNodeAttribute")
    attr.attribute_type, attr.attribute_name = "GEOMETRY", RENDER_COLOR
    mat.node_tree.links.new(attr.outputs["Color"], shader.inputs["Base Color"])
    shader.inputs["Roughness"].default_value = 0.8
    return mat


def _write_motion(arm, skinned: Skinned, frame_start: int) -> None:
    rest = np.array([np.array(arm.data.bones[name].matrix_local) for name in skinned.names])
    motion = backend_to_blender_motion(skinned.motion)
    basis = pose_basis(motion, skinned.parents, rest)  # [F, B, 4, 4]
    quats = matrix_to_quaternion(basis[..., :3, :3])  # [F, B, 4]
    # Neighbouring keys on the same side of the quaternion sphere, or the interpolation spins.
    for f in range(1, len(quats)):
        flip = (quats[f] * quats[f - 1]).sum(-1) < 0
        quats[f, flip] *= -1
    location = basis[..., :3, 3]
    animation.remove_animation(arm)
    curves = animation.fcurves(arm, action_name=f"{arm.name}Action")
    frames = frame_start + np.arange(skinned.frame_count)
    for b, name in enumerate(skinned.names):
        path = f'pose.bones["{name}"]'
        for axis in range(3):
            animation.set_keys(curves, f"{path}.location", axis, frames, location[:, b, axis])
        for axis in range(4):
            animation.set_keys(curves, f"{path}.rotation_quaternion", axis, frames, quats[:, b, axis])
