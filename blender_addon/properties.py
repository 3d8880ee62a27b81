"""The panel's settings: one property group, ``Scene.dynapose4d``, saved with the .blend file.

Operators copy these into plain objects (:func:`job_options`, :func:`sampling`,
:func:`import_options`) and hand those to functions that know nothing about bpy properties.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

KIND_ITEMS = (
    ("generate", "Generate", "Image to 4D: static Gaussians, a generated driving video, the dynamic stage (needs the diffusion weights)"),
    ("demo", "Demo", "The built-in procedural scene: runs without any model weights, to try the add-on"),
    ("animate", "Animate", "Animate an existing Gaussian PLY with a video"),
)
PRESET_ITEMS = (
    ("fast", "Fast", "Fewer steps: a first look in minutes"),
    ("standard", "Standard", "The paper's settings"),
    ("high", "High", "More steps and views"),
    ("low-vram", "Low VRAM", "Smaller batches for GPUs with little memory"),
)
MOTION_ITEMS = (("lamp", "Lamp", ""), ("swing", "Swing", ""), ("bend", "Bend", ""))
TIME_MODE_ITEMS = (
    ("clamp", "Hold", "Hold the last pose past the end of the clip"),
    ("loop", "Loop", "Start the clip again"),
    ("pingpong", "Ping-pong", "Play the clip backwards, then forwards again"),
)
CHOOSE_VIDEO_ITEMS = (
    ("auto", "Automatic", "Drive the motion with the best-scored candidate video"),
    ("ask", "Let Me Pick", "Wait after the candidate videos until one is picked in the panel"),
)
UP_AXIS_ITEMS = (("z", "Z up", "A PLY exported from Blender"), ("y", "Y up", "A PLY from 3DGS tools"))


OUTPUT_ITEMS = [
    ("POINTS", "Point Cloud", "The Gaussians as points, one shape key per frame: exact, heavy"),
    ("MESH", "Mesh", "One mesh skinned to a keyframed armature: light, editable, plays in engines"),
    ("BOTH", "Both", "The point cloud and the skinned mesh"),
]


class DynaPose4DRetargetPair(bpy.types.PropertyGroup):
    """One bone of the retarget target and the keypoints that drive it."""

    bone: StringProperty(name="Bone", description="Bone of the target armature")
    head: StringProperty(name="Head", description="Keypoint the bone's head follows (empty: none)")
    aim: StringProperty(name="Aim", description="Keypoint the bone points at (empty: none)")


def _is_armature(_self, obj) -> bool:
    return obj.type == "ARMATURE"


class DynaPose4DSettings(bpy.types.PropertyGroup):
    kind: EnumProperty(name="Job", items=KIND_ITEMS, default="generate")
    # inputs
    image: PointerProperty(name="Image", type=bpy.types.Image, description="The still image to animate")
    image_path: StringProperty(name="Image File", subtype="FILE_PATH", description="Used when no image data-block is chosen")
    video_path: StringProperty(name="Video", subtype="FILE_PATH",
                               description="Driving video: a video file or a folder of frames, sent as a zip "
                                           "(Animate; optional for Generate, instead of a generated one)")
    video_fps: FloatProperty(name="Video FPS", default=0.0, min=0.0, max=1000.0,
                             description="Frame rate of a folder of frames (0: a video file's own; 7 for frames)")
    video_candidates: IntProperty(name="Video Candidates", default=0, min=0, max=8,
                                  description="Driving videos generated and scored; the best drives the motion (0: the preset's)")
    choose_video: EnumProperty(name="Choose Video", items=CHOOSE_VIDEO_ITEMS, default="auto")
    ply_path: StringProperty(name="Gaussians PLY", subtype="FILE_PATH", description="3D Gaussians to animate (3DGS PLY layout)")
    ply_up_axis: EnumProperty(name="PLY Up Axis", items=UP_AXIS_ITEMS, default="z")
    # settings
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default="standard")
    motion: EnumProperty(name="Motion", items=MOTION_ITEMS, default="lamp", description="The demo's built-in motion")
    frames: IntProperty(name="Video Frames", default=0, min=0, max=64,
                        description="Driving-video frames the optimisation fits (0: the preset's)")
    iterations: IntProperty(name="Iterations", default=0, min=0, max=100_000, description="Dynamic-stage steps (0: the preset's)")
    static_iterations: IntProperty(name="Static Iterations", default=0, min=0, max=100_000,
                                   description="Static-stage steps (0: the preset's)")
    gaussians: IntProperty(name="Gaussians", default=0, min=0, max=200_000,
                           description="Gaussians in the demo object (0: the backend's default)")
    num_keypoints: IntProperty(name="Keypoints", default=14, min=1, max=100, description="Automatic support keypoints")
    lambda_kml: FloatProperty(name="KML Weight", default=20000.0, min=0.0, max=1e9, description="Keypoint Match Loss weight")
    lambda_scl: FloatProperty(name="SCL Weight", default=100.0, min=0.0, max=1e9,
                              description="Spatio-temporal Consistency Loss weight")
    seed: IntProperty(name="Seed", default=0, min=0)
    # import
    duration: FloatProperty(name="Duration", default=2.0, min=0.04, max=600.0, unit="TIME_ABSOLUTE",
                            description="Length of the imported animation, sampled at the scene's frame rate")
    length_from_video: BoolProperty(name="Length of the Video", default=False,
                                    description="Import the driving video's own length (its real duration) at the scene's frame "
                                                "rate; off: the Duration below")
    time_mode: EnumProperty(name="After the Clip", items=TIME_MODE_ITEMS, default="clamp")
    set_frame_range: BoolProperty(name="Set Frame Range", default=True, description="Make the scene's frame range cover the animation")
    output: EnumProperty(name="Output", items=OUTPUT_ITEMS, default="POINTS",
                         description="What the job becomes in the scene")
    max_bones: IntProperty(name="Bones", default=48, min=1, max=256, description="At most this many bones in the mesh's skeleton")
    mesh_faces: IntProperty(name="Faces", default=20_000, min=100, max=1_000_000, description="Faces of the mesh after decimation")
    radius_scale: FloatProperty(name="Splat Size", default=1.5, min=0.0, max=20.0,
                                description="Point radius in standard deviations of each Gaussian")
    job_id: StringProperty(name="Job", description="The backend job shown in this scene")
    # retargeting
    retarget_target: PointerProperty(name="Target", type=bpy.types.Object, poll=_is_armature,
                                     description="Your armature, to receive the keypoint motion")
    retarget_pairs: CollectionProperty(name="Bones", type=DynaPose4DRetargetPair)
    retarget_preset: StringProperty(name="Preset", subtype="FILE_PATH", description="A keypoint-to-bone mapping file (.json)")


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
    from .link.jobs import JobOptions

    s = settings(context)
    image_path = image_file(s.image, temp_folder) if s.kind == "generate" and s.image is not None else bpy.path.abspath(s.image_path)
    return JobOptions(
        kind=s.kind,
        preset=s.preset,
        motion=s.motion,
        static_iterations=s.static_iterations,
        iterations=s.iterations,
        frames=s.frames,
        gaussians=s.gaussians,
        num_keypoints=s.num_keypoints,
        lambda_kml=s.lambda_kml,
        lambda_scl=s.lambda_scl,
        seed=s.seed,
        device=getattr(prefs, "device", "auto"),
        estimator=getattr(prefs, "estimator", "tracker"),
        keypoint_weights=_weights_path(prefs),
        up_axis=s.ply_up_axis,
        image_path=image_path,
        video_path=bpy.path.abspath(s.video_path) if s.video_path else "",
        ply_path=bpy.path.abspath(s.ply_path) if s.ply_path else "",
        video_fps=s.video_fps,
        video_candidates=s.video_candidates,
        choose_video=s.choose_video,
    )


def _weights_path(prefs) -> str:
    path = getattr(prefs, "poseanything_weights", "")
    if not path:
        return ""
    # A remote backend's path is not ours to resolve; a local one may be Blender-relative (//).
    return bpy.path.abspath(path) if getattr(prefs, "backend_mode", "LOCAL") == "LOCAL" else path


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


def register_properties() -> None:
    bpy.types.Scene.dynapose4d = PointerProperty(type=DynaPose4DSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.dynapose4d
