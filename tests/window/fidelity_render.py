"""Driver: renders of add-on imports for ``scripts/bench_blender_fidelity.py``, in any bpy.

Runs under the bpy module of the host's venvs (4.2-5.2: the ellipsoid display; the add-on
imported from the repository, ``DP4D_PACKAGE=blender_addon``) and, through
``scripts/blender_window.py bpy``, under bpy 5.3 (native splats; the add-on installed from the
extension zip in ``$DP4D_FILES``). ``$DP4D_FILES/fidelity.json`` lists the scenes: for each, a
``.npz`` of the sequence as the add-on decoded it (``Sequence`` fields), the frames and the
extra views (4x4 OpenGL camera-to-world, backend frame) to render, beside the imported
reference camera. Each scene is imported through the add-on's ``import_sequence`` into an empty
file, then rendered with every engine asked for at the reference view's size on a black world;
each render goes to ``$DP4D_OUT`` as a float32 ``.npy`` (linear RGBA, top row first) that the
host converts with the 'Standard' view transform (sRGB) the import sets.
"""

import glob
import importlib
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpy  # noqa: E402
import windowkit as kit  # noqa: E402
from cycles_still import point_sampled_cycles, render_to_array  # noqa: E402
from windowkit import check, mark  # noqa: E402

ENGINES = {"cycles": ("CYCLES",), "eevee": ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE")}  # 4.2-4.5 / 5.0+ names


def addon(module: str):
    return importlib.import_module(f"{kit.PACKAGE}.{module}")


def load_sequence(seq_mod, path: str, meta: dict):
    data = np.load(path)
    optional = {k: data[k] for k in ("frame_rotations", "sh_rest") if k in data.files}
    return seq_mod.Sequence(
        positions=data["positions"], scales=data["scales"], rotations=data["rotations"], opacities=data["opacities"],
        colors=data["colors"], keypoints=data["keypoints"], names=list(meta["names"]), edges=[tuple(e) for e in meta["edges"]],
        valid=data["valid"], camera=meta["camera"], sampling=seq_mod.Sampling(float(meta["fps"]), int(data["positions"].shape[0])),
        times=data["times"], **optional)


def set_engine(scene, name: str) -> None:
    for engine in ENGINES[name]:  # the engine list is dynamic (Cycles is an add-on): try each name
        try:
            scene.render.engine = engine
            return
        except TypeError:
            continue
    raise RuntimeError(f"no {name} engine in this Blender")


def set_up_render(scene, engine: str, samples: int, threads: int) -> None:
    """Point-sampled pixels as the backend's rasteriser takes them (a box filter 0.01 px
    wide), no denoising, a black world, transparent film for the silhouette."""
    set_engine(scene, engine)
    scene.world = None
    scene.render.film_transparent = True
    scene.render.threads_mode, scene.render.threads = "FIXED", threads
    if engine == "cycles":
        point_sampled_cycles(scene, samples)
        scene.cycles.device = "CPU"
        scene.cycles.use_adaptive_sampling = False
    else:
        scene.eevee.taa_render_samples = samples
        scene.render.filter_size = 0.0


def add_camera(name: str, view: dict, coords):
    """A camera at a backend-frame OpenGL camera-to-world matrix (as the importer places the reference one)."""
    from mathutils import Matrix

    data = bpy.data.cameras.new(name)
    data.sensor_fit, data.angle_y = "VERTICAL", math.radians(float(view["fovy_deg"]))
    data.clip_start, data.clip_end = 0.01, 100.0
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    obj.matrix_world = Matrix(coords.backend_to_blender_matrix(np.asarray(view["c2w"], np.float64).reshape(4, 4)).tolist())
    return obj


def render_scene(spec: dict, scene_spec: dict, modules) -> dict:
    importer, seq_mod, coords = modules
    bpy.ops.wm.read_factory_settings(use_empty=True)
    seq = load_sequence(seq_mod, kit.file(scene_spec["npz"]), scene_spec)
    t0 = time.perf_counter()
    importer.import_sequence(bpy.context, seq, scene_spec["name"], importer.ImportOptions(frame_start=1, place=False, rig=False))
    timings = {"import_s": round(time.perf_counter() - t0, 3)}
    scene = bpy.context.scene
    cameras = {"reference": scene.camera}
    check(f"{scene_spec['name']}: the import made its reference camera", scene.camera is not None)
    for name, view in scene_spec["views"].items():
        cameras[name] = add_camera(name, view, coords)
    scene.render.resolution_x, scene.render.resolution_y = scene_spec["camera"]["width"], scene_spec["camera"]["height"]
    scene.render.resolution_percentage = 100
    for engine in spec["engines"]:
        set_up_render(scene, engine, spec["samples"][engine], spec["threads"])
        for frame in scene_spec["frames"]:
            scene.frame_set(1 + frame)
            for view, cam in cameras.items():
                scene.camera = cam
                t0 = time.perf_counter()
                name = f"{scene_spec['name']}_{engine}_f{frame}_{view}"
                image = render_to_array(scene, os.path.join(kit.OUT, name + ".exr"))
                np.save(os.path.join(kit.OUT, name + ".npy"), image)
                timings[name] = round(time.perf_counter() - t0, 2)
                kit.log(f"rendered {name} in {timings[name]} s")
    return timings


def steps():
    spec = json.load(open(kit.file("fidelity.json")))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    zips = sorted(glob.glob(os.path.join(kit.FILES, "*.zip")))
    if zips:
        check("extension installed and enabled", kit.install_extension(zips[0]), kit.PACKAGE)
    modules = addon("scene.importer"), addon("format.sequence"), addon("format.coords")
    display = addon("scene.display")
    kit.RESULT["native"] = bool(display.supports_native_splats())
    kit.RESULT["renders"] = {}
    for scene_spec in spec["scenes"]:
        kit.RESULT["renders"][scene_spec["name"]] = render_scene(spec, scene_spec, modules)
        mark(scene_spec["name"])
        yield 0


kit.run_steps(steps())
