#!/usr/bin/env python3
"""Render the picture in docs/blender.md: a demo job imported by the add-on, rendered with Cycles.

The whole user path without Blender's UI (the bpy module has no event loop): start the real
backend on 127.0.0.1, run a demo job through the add-on's client and job session, import its
final snapshot with the add-on's importer (points with their Geometry Nodes splat display,
keypoint empties, baked armature, reference camera), then render a few frames with Cycles on
the CPU into one strip.

    python scripts/render_blender_preview.py [-o docs/images/blender-import.png] [--iterations 200] [--mesh]

``--mesh`` imports the skinned mesh (the add-on's "Mesh" output: the mesh endpoint, an armature,
vertex colours) instead of the point cloud; its picture is docs/images/blender-mesh.png.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_demo_job(jobs_dir: Path, settings: dict, sampling, mesh: dict | None = None, python: str = sys.executable):
    """The demo job on a fresh local backend; returns the final snapshot as a Sequence."""
    from blender_addon.link.client import BackendClient
    from blender_addon.link.follow import Finished, JobSession, Problem, SequenceReady, Status
    from blender_addon.link.jobs import JobRequest
    from blender_addon.link.launcher import LaunchConfig, LocalBackend

    backend = LocalBackend(LaunchConfig(python=python, address_file=str(jobs_dir / "server.json"),
                                        jobs_dir=str(jobs_dir / "jobs")))
    backend.start()
    try:
        connection = backend.wait(120)
        session = JobSession(lambda: BackendClient(connection.url, connection.token), sampling,
                             request=JobRequest("demo", settings), mesh=mesh).start()
        latest, shown = None, None
        while True:
            for message in session.drain():
                if isinstance(message, SequenceReady):
                    latest = message.sequence
                elif isinstance(message, Problem):
                    print(f"problem: {message.message}", flush=True)
                elif isinstance(message, Status) and message.view.text() != shown:
                    shown = message.view.text()
                    print(f"  {shown}", flush=True)
                elif isinstance(message, Finished):
                    session.join(30)
                    for late in session.drain():
                        if isinstance(late, SequenceReady):
                            latest = late.sequence
                    if message.view.state != "done" or latest is None:
                        raise SystemExit(f"the demo job ended {message.view.state}: {message.view.error}")
                    return latest
            time.sleep(0.1)
    finally:
        backend.stop()


def render_strip(sequence, out: Path, frames: list[int], size: int, samples: int, output: str = "POINTS") -> None:
    import bpy
    import numpy as np

    from blender_addon.scene import importer

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    importer.import_sequence(bpy.context, sequence, "preview", importer.ImportOptions(frame_start=1, output=output))
    if output == "MESH":  # a key light, so the surface's shape reads (the splats are self-lit colours)
        sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
        sun.data.energy = 3.0
        sun.rotation_euler = (0.9, 0.2, -0.6)
        scene.collection.objects.link(sun)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.film_transparent = False
    world = bpy.data.worlds.new("white")
    world.color = (1.0, 1.0, 1.0)  # the backend fits on white
    scene.world = world
    scene.view_settings.view_transform = "Standard"  # the splat colours are sRGB values
    tiles = []
    with tempfile.TemporaryDirectory() as tmp:
        for frame in frames:
            scene.frame_set(frame)
            scene.render.filepath = str(Path(tmp) / f"f{frame:04d}.png")
            bpy.ops.render.render(write_still=True)
            image = bpy.data.images.load(scene.render.filepath)
            pixels = np.empty(size * size * 4, np.float32)
            image.pixels.foreach_get(pixels)
            tiles.append(pixels.reshape(size, size, 4))
            bpy.data.images.remove(image)
    strip = np.concatenate(tiles, axis=1)  # Blender's rows run bottom to top; so do the tiles
    out.parent.mkdir(parents=True, exist_ok=True)
    image = bpy.data.images.new("strip", strip.shape[1], strip.shape[0], alpha=True)
    image.pixels.foreach_set(strip.ravel())
    image.filepath_raw = str(out)
    image.file_format = "PNG"
    image.save()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "blender-import.png"))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--size", type=int, default=320, help="pixels per frame")
    parser.add_argument("--samples", type=int, default=16, help="Cycles samples")
    parser.add_argument("--mesh", action="store_true", help="the skinned-mesh output instead of the point cloud")
    parser.add_argument("--python", default=sys.executable, help="the backend's interpreter (default: this one)")
    args = parser.parse_args(argv)

    from blender_addon.format.sequence import Sampling

    sampling = Sampling.for_duration(24.0, 1.0)  # one second at 24 fps
    with tempfile.TemporaryDirectory(prefix="dp4d-preview-") as tmp:
        print("running the demo job on a local backend ...", flush=True)
        mesh = {"max_bones": 32, "target_faces": 20_000} if args.mesh else None
        sequence = run_demo_job(Path(tmp), {"iterations": args.iterations, "previews": False}, sampling, mesh, args.python)
    print(f"importing {sequence.count} Gaussians x {sequence.frame_count} frames and rendering with Cycles ...", flush=True)
    last = sequence.frame_count
    render_strip(sequence, Path(args.output), [1, last // 2, last], args.size, args.samples, "MESH" if args.mesh else "POINTS")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
