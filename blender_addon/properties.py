"""The panel's settings: one property group, ``Scene.dynapose4d``, saved with the .blend file.
Its job settings are made from the add-on's one table of them (``link/job_settings.py``).

Operators copy these into plain objects (:func:`job_options`, :func:`sampling`,
:func:`import_options`) and hand those to functions that know nothing about bpy properties.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .link import job_settings
from .link.job_settings import JobSetting

# Nothing here is animatable: a job setting keyed over time means nothing to the backend, and
# Blender draws a keyframe dot beside every animatable property.
STILL: set = set()

KIND_ITEMS = (
    ("generate", "Generate", "Image to 4D: static Gaussians, a generated driving video, the dynamic stage (needs the diffusion weights)"),
    ("demo", "Demo", "The built-in procedural scene: runs without any model weights, to try the add-on"),
    ("animate", "Animate", "Animate an existing Gaussian PLY with a video"),
)
ANIMATE_INPUT_ITEMS = (
    ("SELECTED", "Selected Splat", "The active object, a splat in the scene (Blender 5.3 splats, a 3DGS PLY import, KIRI 3DGS "
     "Render, the ReshotAI add-on or a DynaPose4D result): sent in world space, the result lands on it"),
    ("FILE", "PLY File", "A 3DGS PLY file"),
)
TIME_MODE_ITEMS = (
    ("clamp", "Hold", "Hold the last pose past the end of the clip"),
    ("loop", "Loop", "Start the clip again"),
    ("pingpong", "Ping-pong", "Play the clip backwards, then forwards again"),
)
OUTPUT_ITEMS = (
    ("POINTS", "Point Cloud", "The Gaussians as points, one shape key per frame: exact, heavy"),
    ("MESH", "Mesh", "One mesh skinned to a keyframed armature: light, editable, plays in engines"),
    ("BOTH", "Both", "The point cloud and the skinned mesh"),
)


def job_property(setting: JobSetting):
    """The bpy property of one row of the job-settings table."""
    common = {"name": setting.label, "description": setting.tooltip, "options": STILL}
    if setting.choices:
        return EnumProperty(items=setting.choices, default=setting.default, **common)
    if setting.type is bool:
        return BoolProperty(default=setting.default, **common)
    if setting.type is int:
        return IntProperty(default=setting.default, min=int(setting.minimum), max=int(setting.maximum), **common)
    if setting.type is float:
        return FloatProperty(default=setting.default, min=setting.minimum, max=setting.maximum, **common)
    return StringProperty(default=setting.default, subtype=setting.path or "NONE", **common)


def job_properties(places: tuple[str, ...]) -> dict:
    """Annotations for the table's rows drawn in ``places``: one property per row, and an
    Override checkbox beside each number the preset decides."""
    out = {}
    for setting in job_settings.rows(places=places):
        out[setting.name] = job_property(setting)
        if setting.overridable:
            auto = "the preset's, or the backend's default" if setting.auto == job_settings.PRESET else setting.auto
            out[job_settings.override_name(setting.name)] = BoolProperty(
                name="Override", default=False, options=STILL, description=f"Set {setting.label} yourself (off: Auto, {auto})")
    return out


class DynaPose4DRetargetPair(bpy.types.PropertyGroup):
    """One bone of the retarget target and the keypoints that drive it."""

    bone: StringProperty(name="Bone", description="Bone of the target armature", options=STILL)
    head: StringProperty(name="Head", description="Keypoint the bone's head follows (empty: none)", options=STILL)
    aim: StringProperty(name="Aim", description="Keypoint the bone points at (empty: none)", options=STILL)


def _is_armature(_self, obj) -> bool:
    return obj.type == "ARMATURE"


class DynaPose4DSettings(bpy.types.PropertyGroup):
    """The panel's own values; the job settings are added from the table below the class."""

    kind: EnumProperty(name="Job", items=KIND_ITEMS, default="generate", options=STILL)
    # inputs
    image: PointerProperty(name="Image", type=bpy.types.Image, description="The still image to animate")
    image_path: StringProperty(name="File", subtype="FILE_PATH", options=STILL,
                               description="The still image to animate, as a file (used when no image data-block is chosen)")
    video_path: StringProperty(name="Video", subtype="FILE_PATH", options=STILL,
                               description="Driving video: a video file or a folder of frames, sent as a zip. Animate needs "
                                           "one; for Generate it is optional and replaces the generated video")
    animate_input: EnumProperty(name="Animate", items=ANIMATE_INPUT_ITEMS, default="SELECTED", options=STILL,
                                description="What the Animate job animates")
    ply_path: StringProperty(name="PLY File", subtype="FILE_PATH", options=STILL,
                             description="3D Gaussians to animate (3DGS PLY layout)")
    # import
    duration: FloatProperty(name="Duration", default=2.0, min=0.04, max=600.0, unit="TIME_ABSOLUTE", options=STILL,
                            description="Length of the imported animation, sampled at the scene's frame rate")
    length_from_video: BoolProperty(name="Video Length", default=False, options=STILL,
                                    description="Import the driving video's own length (its real duration) at the scene's "
                                                "frame rate; off: the Duration below")
    time_mode: EnumProperty(name="After the Clip", items=TIME_MODE_ITEMS, default="clamp", options=STILL)
    set_frame_range: BoolProperty(name="Set Frame Range", default=True, options=STILL,
                                  description="Make the scene's frame range cover the animation")
    output: EnumProperty(name="Output", items=OUTPUT_ITEMS, default="POINTS", options=STILL,
                         description="What the job becomes in the scene")
    max_bones: IntProperty(name="Bones", default=48, min=1, max=256, options=STILL,
                           description="At most this many bones in the mesh's skeleton")
    mesh_faces: IntProperty(name="Faces", default=20_000, min=100, max=1_000_000, options=STILL,
                            description="Faces of the mesh after decimation")
    radius_scale: FloatProperty(name="Splat Size", default=1.5, min=0.0, max=20.0, options=STILL,
                                description="How far each Gaussian's ellipsoid reaches on Blender 4.2-5.2, in units of 2 sigma "
                                "(1.5: 3 sigma, where its falloff has faded); Blender 5.3's own splats ignore it")
    job_id: StringProperty(name="Job", options=STILL,
                           description="The backend job shown in this scene (pick one from the server's list in the panel)")
    # retargeting
    retarget_target: PointerProperty(name="Target", type=bpy.types.Object, poll=_is_armature,
                                     description="Your armature, to receive the keypoint motion")
    retarget_pairs: CollectionProperty(name="Bones", type=DynaPose4DRetargetPair)
    retarget_preset: StringProperty(name="Preset", subtype="FILE_PATH", options=STILL,
                                    description="A keypoint-to-bone mapping file (.json)")


SCENE_PLACES = (job_settings.MAIN, job_settings.SETTINGS, job_settings.ADVANCED)
DynaPose4DSettings.__annotations__.update(job_properties(SCENE_PLACES))


def settings(context) -> DynaPose4DSettings:
    return context.scene.dynapose4d


def image_file(image, folder: str) -> str:
    """A file the backend can read for an image data-block: its own file, or a PNG of its
    pixels (packed, generated, painted or otherwise unsaved images)."""
    import os

    import numpy as np

    from .format.sequence import linear_to_srgb

    path = bpy.path.abspath(image.filepath, library=image.library) if image.filepath else ""
    if image.source == "FILE" and image.packed_file is None and not image.is_dirty and path and os.path.isfile(path):
        return path
    # Through a new image: a copy of a generated image regenerates it and drops what was painted.
    width, height = image.size
    if width == 0 or height == 0:
        raise ValueError(f"image {image.name!r} has no pixels (is its file missing?)")
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    if image.is_float and image.colorspace_settings.name != "Non-Color":
        pixels = pixels.reshape(-1, 4)
        pixels[:, :3] = linear_to_srgb(pixels[:, :3])  # float buffers are linear; PNG is sRGB
    target = os.path.join(folder, bpy.path.clean_name(image.name) + ".png")
    out = bpy.data.images.new("dynapose4d-upload", width, height, alpha=True)
    try:
        out.pixels.foreach_set(pixels.ravel())
        out.filepath_raw = target
        out.file_format = "PNG"
        out.save()
    finally:
        bpy.data.images.remove(out)
    return target


def job_options(context, prefs, temp_folder: str):
    """The panel's values as a plain :class:`~.link.jobs.JobOptions`: every job setting of the
    chosen kind (from the scene, or from the preferences for theirs), AUTO where not overridden."""
    from .link.jobs import JobOptions

    s = settings(context)
    values = {}
    for setting in job_settings.rows(s.kind, SCENE_PLACES + (job_settings.PREFERENCES,)):
        source = prefs if setting.place == job_settings.PREFERENCES else s
        value = getattr(source, setting.name, setting.default)  # prefs is None where the add-on is not enabled
        if setting.overridable and not getattr(s, job_settings.override_name(setting.name)):
            value = job_settings.AUTO
        elif setting.path and value:
            value = backend_path(value, prefs)
        elif setting.type is float:
            # Blender keeps floats in 32 bits: send the decimal the user typed (0.02, not 0.0199999995).
            value = float(f"{value:.7g}")
        values[setting.name] = value
    image_path = image_file(s.image, temp_folder) if s.kind == "generate" and s.image is not None else bpy.path.abspath(s.image_path)
    ply_path = bpy.path.abspath(s.ply_path) if s.ply_path else ""
    if animates_selection(s):
        from .scene.selected_splat import write_selected_ply

        if context.active_object is None:
            raise ValueError("Animate takes the selected splat: select one (or choose PLY File)")
        ply_path = write_selected_ply(context.active_object, temp_folder)
        values["up_axis"] = "z"  # written in Blender's world, +Z up
    return JobOptions(kind=s.kind, settings=values, image_path=image_path,
                      video_path=bpy.path.abspath(s.video_path) if s.video_path else "", ply_path=ply_path)


def animates_selection(s) -> bool:
    """An Animate job of the selected splat (not of a PLY file)."""
    return s.kind == "animate" and s.animate_input == "SELECTED"


def backend_path(path: str, prefs) -> str:
    """A path the backend reads on its own machine: a remote backend's is not ours to resolve;
    a local one may be Blender-relative (//)."""
    return bpy.path.abspath(path) if getattr(prefs, "backend_mode", "LOCAL") == "LOCAL" else path


def panel_values(s) -> dict:
    """What the panel's show-when rules read: the scene's job settings, the kind, and whether a
    video of the user's is chosen."""
    values = {setting.name: getattr(s, setting.name) for setting in job_settings.rows(places=SCENE_PLACES)}
    return dict(values, kind=s.kind, has_video=bool(s.video_path), animate_input=s.animate_input)


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def sampling(context, prefs=None):
    """Frames at the scene's own frame rate over the chosen duration."""
    from .format.sequence import Sampling

    s = settings(context)
    return Sampling.for_duration(scene_fps(context.scene), s.duration, mode=s.time_mode, dtype=getattr(prefs, "transfer_dtype", "float32"))


def import_options(context):
    from .scene.importer import ImportOptions

    s = settings(context)
    return ImportOptions(frame_start=context.scene.frame_start, set_frame_range=s.set_frame_range, radius_scale=s.radius_scale,
                         output=s.output)


def mesh_request(context) -> dict | None:
    """What to ask the server's mesh endpoint for (None: the point cloud only)."""
    s = settings(context)
    return None if s.output == "POINTS" else {"max_bones": s.max_bones, "target_faces": s.mesh_faces}


CLASSES = (DynaPose4DRetargetPair, DynaPose4DSettings)


# Window-manager properties live for the Blender session only: neither a .blend file nor the
# saved preferences hold them (a token typed here never lands on disk).
SESSION_PROPERTIES = {
    "dynapose4d_hf_token": lambda: StringProperty(
        name="Hugging Face Token", subtype="PASSWORD", options=STILL,
        description="A read token (huggingface.co/settings/tokens) of an account that accepted a gated model's licence "
                    "(Stable Video Diffusion). Sent to the backend for that download only; kept for this session, never saved"),
    "dynapose4d_error_details": lambda: BoolProperty(name="Details", default=False, options=STILL,
                                                     description="Show the whole error message"),
}


def register_properties() -> None:
    bpy.types.Scene.dynapose4d = PointerProperty(type=DynaPose4DSettings)
    for name, make in SESSION_PROPERTIES.items():
        setattr(bpy.types.WindowManager, name, make())


def unregister_properties() -> None:
    for name in SESSION_PROPERTIES:
        delattr(bpy.types.WindowManager, name)
    del bpy.types.Scene.dynapose4d
