#!/usr/bin/env python3
"""Benchmark: how close Blender's picture of an imported result is to the backend's own render.

A result goes the user's way into Blender: sampled by the server's code (``SnapshotFrames``),
encoded on the wire, decoded and assembled by the add-on, imported by ``import_sequence``, then
rendered by Blender from the imported reference camera and from a novel view (60 degrees round,
20 up), at frame 0 and at the frame that moved most. The backend renders the same Gaussians at
the same time from the same cameras. Both on black; Blender's linear render goes through the
'Standard' view transform the import sets (sRGB). Compared: PSNR, masked PSNR (pixels the
backend's render covers, alpha > 0.5), SSIM, and the silhouettes' IoU.

Scenes: the demo result, and a dense captured-like splat (``benchmark-dev/<scene>/static_gt.ply``,
30k flat Gaussians, animated by ``dynapose4d animate`` with small settings; without benchmark-dev
a procedural scene of flat anisotropic splats turning on a turntable). Blenders: every ``--bpy``
Python (the bpy module; 4.2-5.2 draw the ellipsoid display) and bpy 5.3 through
``scripts/blender_window.py bpy`` where its root is ready (native splats); Cycles and EEVEE.

The backend blends sRGB values; Blender blends linear light. The same Gaussians blended
linearly by the backend's renderer (colours linearised, the result encoded back to sRGB) show
what that difference alone costs: the "ceiling" rows, and the "vs linear" columns (Blender
against that linear-blended render).

    python scripts/bench_blender_fidelity.py [--quick] [--bpy PYTHON]... [--native auto|on|off]

The headline (``psnr_db_*``, ``masked_psnr_db_*``): the captured-like scene at the frame with
motion, reference view, Cycles; the worst over the Blenders of each kind. Goals (issue 25):
native >= 35 dB, the 4.2-5.2 display >= 32 dB. ``import_s_100k_25`` and ``update_s`` come from
``scripts/bench_import.py`` (run as is). Last line: ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "backend")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

GOAL_NATIVE_DB, GOAL_LEGACY_DB = 35.0, 32.0
DRIVER = ROOT / "tests" / "window" / "fidelity_render.py"
# Worktrees sit one level deeper than the main checkout: look beside both.
DEV_DIRS = [ROOT.parent / "shared" / "benchmark-dev", ROOT.parent.parent / "shared" / "benchmark-dev"]
NOVEL_VIEW = (60.0, 20.0)  # degrees round (about +Y) and up from the reference view
MASK_ALPHA = 0.5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the results ----------------------------------------------------------------------------------

def backend_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "backend"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def dynapose4d(*argv) -> None:
    cmd = [sys.executable, "-m", "dynapose4d", *map(str, argv)]
    proc = subprocess.run(cmd, env=backend_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def demo_result(cache: Path, quick: bool) -> Path:
    """The demo job (its default scene; tiny with --quick), made once per setting."""
    from dataclasses import replace

    from dynapose4d.pipeline.demo import DemoConfig, run_demo

    cfg = DemoConfig(gaussians=600, frames=5, previews=False) if quick else DemoConfig(previews=False)
    cfg.dynamic = replace(cfg.dynamic, iterations=10 if quick else 30)
    folder = cache / f"demo_{cfg.gaussians}_{cfg.frames}_{cfg.dynamic.iterations}"
    if not (folder / "model.pt").is_file():
        log(f"making the demo result in {folder}")
        run_demo(folder, cfg)
    return folder


def procedural_splat(path: Path, count: int = 20000, seed: int = 0) -> None:
    """A captured-like splat without benchmark-dev: flat anisotropic Gaussians lying in a
    bumpy, striped surface of revolution (a vase), +Y up."""
    from dynapose4d.gaussians import Gaussians
    from dynapose4d.io.ply import write_ply

    g = torch.Generator().manual_seed(seed)
    u, v = torch.rand(count, generator=g) * 2 * math.pi, torch.rand(count, generator=g)
    radius = 0.25 + 0.1 * torch.sin(3 * math.pi * v) + 0.02 * torch.sin(7 * u)
    means = torch.stack([radius * torch.cos(u), v - 0.5, radius * torch.sin(u)], -1)
    rgb = torch.stack([0.5 + 0.4 * torch.sin(6 * u), 0.3 + 0.6 * v, 0.5 + 0.4 * torch.cos(9 * v)], -1).clamp(0, 1)
    flat = Gaussians.from_points(means, rgb, scale=0.012, opacity=0.98)
    # In the surface: the normal points out from the axis; the Gaussian is thin along it.
    normal = torch.nn.functional.normalize(means * torch.tensor([1.0, 0.0, 1.0]), dim=-1)
    half = torch.nn.functional.normalize(torch.tensor([1.0, 0.0, 0.0]).expand_as(normal) + normal, dim=-1)
    # The rotation taking +X (the thin axis) to the normal: (x.h, x cross h), h halfway between them.
    quats = torch.nn.functional.normalize(torch.cat([half[:, :1], torch.zeros(count, 1), -half[:, 2:3], half[:, 1:2]], -1), dim=-1)
    log_scales = torch.log(torch.tensor([0.0015, 0.012, 0.02])).expand(count, 3).clone()
    write_ply(path, Gaussians(flat.means, quats, log_scales, flat.opacity_logits, flat.sh_dc))


def captured_result(cache: Path, dev_dir: Path | None, scene: str, frames: int, iterations: int) -> tuple[Path, str]:
    """A dense captured-like splat animated by ``dynapose4d animate`` (made once per setting)."""
    source = dev_dir / scene if dev_dir is not None else None
    name = f"{scene if source is not None else 'procedural'}_{frames}_{iterations}"
    folder = cache / name
    if (folder / "model.pt").is_file():
        return folder, name
    if source is not None and (source / "static_gt.ply").is_file():
        ply, video, up = source / "static_gt.ply", source / "input", "z"
    else:  # the procedural vase turning 5 degrees a frame, rendered by the backend as the video
        ply, video, up = cache / "procedural.ply", cache / "procedural_video", "y"
        procedural_splat(ply)
        dynapose4d("render", ply, "-o", video, "--views", 72, "--size", 256)
    log(f"animating {ply.name} into {folder}")
    dynapose4d("animate", ply, "--video", video, "--video-fps", 24, "--up-axis", up, "--frames", frames,
               "--iterations", iterations, "--no-previews", "--device", "cpu", "-o", folder, "--restart")
    return folder, name


def sample(job: Path) -> tuple[object, object]:
    """The result as the add-on receives it (server sampling, the wire, the add-on's decoder)
    and the same Gaussians in the backend, every frame: ``(sequence, gaussians [F, N])``."""
    from blender_addon.format.sequence import Sampling, assemble
    from blender_addon.format.wire import decode_frame
    from dynapose4d.server.frames import SnapshotFrames
    from dynapose4d.userframe import to_user

    served = Path(tempfile.mkdtemp(prefix="fidelity-job-"))
    (served / "snapshots").mkdir()
    (served / "snapshots" / "latest.pt").symlink_to((job / "model.pt").resolve())
    frames = SnapshotFrames()
    tracks = frames.keypoints("bench", served)
    count, fps = tracks["frame_count"], tracks["fps"]
    blobs = [frames.frame("bench", served, i, fps=fps, frame_count=count)[0] for i in range(count)]
    sequence = assemble([decode_frame(b) for b in blobs], tracks, Sampling(fps, count))
    model = frames.load("bench", served).model
    with torch.no_grad():
        gaussians, _ = to_user(model, *model.sample(model.times(count, fps, "clamp")), up="y")
    return sequence, gaussians


def write_scene(folder: Path, name: str, sequence, frames: list[int], views: dict) -> dict:
    """The driver's input for one scene: the sequence's fields (.npz) and what to render."""
    fields = ("positions", "scales", "rotations", "opacities", "colors", "keypoints", "valid", "times",
              "frame_rotations", "sh_rest")
    arrays = {k: getattr(sequence, k) for k in fields if getattr(sequence, k) is not None}
    np.savez(folder / f"{name}.npz", **arrays)
    return {"name": name, "npz": f"{name}.npz", "names": sequence.names, "edges": sequence.edges, "camera": sequence.camera,
            "fps": sequence.sampling.fps, "frames": frames,
            "views": {k: {"c2w": v.tolist(), "fovy_deg": sequence.camera["fovy_deg"]} for k, v in views.items()}}


# -- the backend's renders --------------------------------------------------------------------------

def novel_view(c2w: np.ndarray, round_deg: float, up_deg: float) -> np.ndarray:
    """The reference camera turned about the world origin: ``up_deg`` about its right axis, then
    ``round_deg`` about +Y."""
    def about(axis, deg):
        axis = np.asarray(axis, float) / np.linalg.norm(axis)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        turn = np.eye(4)
        turn[:3, :3] = np.eye(3) + math.sin(math.radians(deg)) * k + (1 - math.cos(math.radians(deg))) * k @ k
        return turn

    return about((0, 1, 0), round_deg) @ about(-c2w[:3, 0], up_deg) @ c2w


def srgb_decode(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp_min(0.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def srgb_encode(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


def backend_render(gaussians, c2w: np.ndarray, camera: dict, linear: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(srgb [H, W, 3], alpha [H, W])`` of one frame's Gaussians on black. ``linear``: blended in
    linear light as Blender blends (each Gaussian's colour for this camera linearised, the
    composite encoded back to sRGB)."""
    from dynapose4d.cameras import Cameras
    from dynapose4d.gaussians import Gaussians, rgb_to_sh_dc
    from dynapose4d.render import render
    from dynapose4d.sh import eval_sh

    cam = Cameras(torch.as_tensor(c2w, dtype=torch.float32), torch.tensor(math.radians(camera["fovy_deg"])),
                  int(camera["width"]), int(camera["height"]))
    if linear:
        dirs = gaussians.means - cam.positions
        rgb = eval_sh(gaussians.sh_coeffs, None if gaussians.sh_rest is None else dirs)
        gaussians = Gaussians(gaussians.means, gaussians.quats, gaussians.log_scales, gaussians.opacity_logits,
                              rgb_to_sh_dc(srgb_decode(rgb)))
    with torch.no_grad():
        out = render(gaussians, cam, 0.0)
    rgb = out.rgb.numpy()
    return (srgb_encode(rgb) if linear else np.clip(rgb, 0.0, 1.0)), out.alpha.numpy()


# -- Blender's renders ------------------------------------------------------------------------------

def run_driver_in(python: str, files: Path, out: Path, timeout: float) -> dict:
    """The driver under a bpy module (4.2-5.2), the add-on imported from the repository."""
    env = backend_env()
    env.update({"PYTHONPATH": str(ROOT), "DP4D_MODE": "bpy", "DP4D_OUT": str(out), "DP4D_FILES": str(files),
                "DP4D_RESULT": str(out / "result.json"), "DP4D_PACKAGE": "blender_addon"})
    proc = subprocess.run([python, str(DRIVER)], env=env, capture_output=True, text=True, timeout=timeout)
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").is_file() else None
    if not result or not result.get("ok"):
        raise RuntimeError(f"{python} {DRIVER.name} failed: {(result or {}).get('error')}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return result


def run_driver_native(files: Path, out: Path, timeout: float) -> dict:
    """The driver under bpy 5.3 in the trixie root, the add-on installed from its zip."""
    import build

    harness = load_window_harness()
    zip_path = build.build(Path(tempfile.mkdtemp(prefix="fidelity-dist-")))
    res = harness.run(DRIVER, "bpy", files=[zip_path, *sorted(files.iterdir())], out_dir=out, timeout=timeout)
    if not res["ok"]:
        raise RuntimeError(f"bpy 5.3 {DRIVER.name} failed: {(res['result'] or {}).get('error')}\n{res['log'][-3000:]}")
    return res["result"]


def load_window_harness():
    import importlib.util

    spec = importlib.util.spec_from_file_location("blender_window", ROOT / "scripts" / "blender_window.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bpy_version(python: str) -> str | None:
    proc = subprocess.run([python, "-c", "import bpy; print('BPY', bpy.app.version_string)"], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BPY ")]
    return lines[0].split(" ", 1)[1] if lines else None


# -- comparing ------------------------------------------------------------------------------------

def compare(blender_rgba: np.ndarray, reference: tuple, linear_reference: np.ndarray) -> dict:
    from dynapose4d.evaluation.metrics import psnr, ssim

    rgb, alpha = reference
    got = torch.as_tensor(srgb_encode(blender_rgba[..., :3]), dtype=torch.float32)
    want, want_linear = torch.as_tensor(rgb, dtype=torch.float32), torch.as_tensor(linear_reference, dtype=torch.float32)
    mask = torch.as_tensor(alpha > MASK_ALPHA)
    mine = blender_rgba[..., 3] > MASK_ALPHA
    union = np.logical_or(mine, alpha > MASK_ALPHA).sum()
    return {"psnr": psnr(got, want), "masked": psnr(got, want, mask), "ssim": ssim(got, want),
            "iou": float(np.logical_and(mine, alpha > MASK_ALPHA).sum() / max(1, union)),
            "psnr_lin": psnr(got, want_linear), "masked_lin": psnr(got, want_linear, mask)}


def ceiling(reference: tuple, linear_reference: np.ndarray) -> dict:
    """What blending in linear light instead of sRGB alone changes: the backend against itself."""
    from dynapose4d.evaluation.metrics import psnr, ssim

    rgb, alpha = (torch.as_tensor(x, dtype=torch.float32) for x in reference)
    lin = torch.as_tensor(linear_reference, dtype=torch.float32)
    return {"psnr": psnr(lin, rgb), "masked": psnr(lin, rgb, alpha > MASK_ALPHA), "ssim": ssim(lin, rgb)}


def import_timings(quick: bool) -> dict:
    """``scripts/bench_import.py`` as it is, in its own process: its RESULT line."""
    argv = [sys.executable, str(ROOT / "scripts" / "bench_import.py"), "--sizes", "100000x25", "--updates", "1" if quick else "3"]
    proc = subprocess.run(argv, env=backend_env(), capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench_import.py failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# -- the run --------------------------------------------------------------------------------------

def prepare_scenes(args, work: Path) -> tuple[list[dict], dict]:
    """Make (or reuse) the results, write the driver's inputs, render the backend's references.
    Returns the scene specs and ``{scene: {(frame, view): (reference, linear reference)}}``."""
    dev_dir = next((d for d in ([Path(args.dev_dir)] if args.dev_dir else DEV_DIRS) if (d / args.scene).is_dir()), None)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [("demo", demo_result(cache, args.quick))]
    if not args.quick:
        folder, name = captured_result(cache, dev_dir, args.scene, args.frames, args.iterations)
        jobs.append((f"captured:{name}", folder))
    specs, references = [], {}
    for label, job in jobs:
        sequence, gaussians = sample(job)
        moved = np.abs(sequence.positions - sequence.positions[:1]).mean(axis=(1, 2))
        frames = [0, int(moved.argmax())]
        c2w = np.asarray(sequence.camera["c2w"], np.float64).reshape(4, 4)
        views = {"reference": c2w, "novel": novel_view(c2w, *NOVEL_VIEW)}
        name = label.split(":")[0]
        spec = write_scene(work, name, sequence, frames, {"novel": views["novel"]})
        spec.update(label=label, count=sequence.count, frame_count=sequence.frame_count, motion=float(moved.max()))
        specs.append(spec)
        at = {k: gaussians.map(lambda t, k=k: t[k]) for k in frames}
        references[name] = {(k, v): (backend_render(at[k], m, sequence.camera), backend_render(at[k], m, sequence.camera, linear=True)[0])
                            for k in frames for v, m in views.items()}
        log(f"{label}: {sequence.count} Gaussians x {sequence.frame_count} frames, motion frame {frames[1]} "
            f"(mean displacement {moved.max():.4f})")
    return specs, references


def blender_runs(args, work: Path, out_root: Path) -> list[tuple[str, bool, Path, dict]]:
    """Every Blender asked for: ``(label, native, out folder, driver result)``."""
    runs = []
    for i, python in enumerate(args.bpy or [sys.executable]):
        version = bpy_version(python)
        if version is None:
            log(f"skipped {python}: no bpy module there")
            continue
        out = out_root / f"bpy{i}"
        out.mkdir()
        t0 = time.perf_counter()
        result = run_driver_in(python, work, out, args.timeout)
        log(f"bpy {version}: rendered in {time.perf_counter() - t0:.0f} s {json.dumps(result['renders'])}")
        runs.append((f"bpy {version}", bool(result["native"]), out, result))
    if args.native != "off":
        ready, reason = load_window_harness().status(need_bpy=True)
        if ready:
            out = out_root / "bpy53"
            t0 = time.perf_counter()
            result = run_driver_native(work, out, args.timeout)
            log(f"bpy {result['blender']} (root): rendered in {time.perf_counter() - t0:.0f} s")
            runs.append((f"bpy {result['blender']}", bool(result["native"]), out, result))
        elif args.native == "on":
            raise RuntimeError(f"bpy 5.3 is not available: {reason}")
        else:
            log(f"no bpy 5.3 run: {reason}")
    return runs


def save_pictures(folder: Path, name: str, blender_rgba: np.ndarray, reference: np.ndarray) -> None:
    """Blender | backend | 4x their difference, side by side (PNG)."""
    from PIL import Image

    got = srgb_encode(blender_rgba[..., :3])
    strip = np.concatenate([got, reference, np.clip(4 * np.abs(got - reference), 0, 1)], axis=1)
    Image.fromarray((strip * 255 + 0.5).astype(np.uint8)).save(folder / f"{name}.png")


def score(specs, references, runs, engines, pictures: Path | None = None) -> list[dict]:
    rows = []
    for label, native, out, _ in runs:
        for spec in specs:
            refs = references[spec["name"]]
            for engine in engines:
                for (frame, view), (reference, linear_reference) in refs.items():
                    image = np.load(out / f"{spec['name']}_{engine}_f{frame}_{view}.npy")
                    row = compare(image, reference, linear_reference)
                    if pictures is not None:
                        save_pictures(pictures, f"{label.split()[1]}_{spec['name']}_{engine}_f{frame}_{view}", image, reference[0])
                    row.update(blender=label, native=native, scene=spec["name"], engine=engine, frame=frame, view=view,
                               moving=frame != 0)
                    rows.append(row)
    return rows


def headline(rows, native: bool, scene: str, key: str):
    picked = [r[key] for r in rows if r["native"] == native and r["scene"] == scene and r["moving"]
              and r["view"] == "reference" and r["engine"] == "cycles"]
    return round(min(picked), 2) if picked else None


def print_tables(specs, references, rows) -> None:
    print("Blender vs the backend's render (black background; masked: backend alpha > 0.5; "
          "'lin': against the backend blending in linear light)")
    print(f"{'blender':<12} {'kind':<7} {'scene':<9} {'engine':<7} {'frame':>5} {'view':<10} {'PSNR':>6} {'masked':>7} "
          f"{'SSIM':>6} {'IoU':>5} {'PSNRlin':>8} {'mask-lin':>8}")
    for r in rows:
        print(f"{r['blender']:<12} {'native' if r['native'] else 'display':<7} {r['scene']:<9} {r['engine']:<7} {r['frame']:>5} "
              f"{r['view']:<10} {r['psnr']:>6.2f} {r['masked']:>7.2f} {r['ssim']:>6.3f} {r['iou']:>5.3f} "
              f"{r['psnr_lin']:>8.2f} {r['masked_lin']:>8.2f}")
    print("Ceiling: the backend's render blended in linear light vs in sRGB (the same Gaussians)")
    print(f"{'scene':<9} {'frame':>5} {'view':<10} {'PSNR':>6} {'masked':>7} {'SSIM':>6}")
    for spec in specs:
        for (frame, view), (reference, linear_reference) in references[spec["name"]].items():
            c = ceiling(reference, linear_reference)
            print(f"{spec['name']:<9} {frame:>5} {view:<10} {c['psnr']:>6.2f} {c['masked']:>7.2f} {c['ssim']:>6.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny demo only, few samples (a smoke run)")
    parser.add_argument("--bpy", action="append", help="a Python with the bpy module (repeatable; default: this one)")
    parser.add_argument("--native", choices=("auto", "on", "off"), default="auto", help="bpy 5.3 through scripts/blender_window.py")
    parser.add_argument("--engines", default="cycles", help="cycles,eevee: EEVEE too (about a minute a render on software OpenGL)")
    parser.add_argument("--dev-dir", default=None, help="benchmark-dev (default: ../shared/benchmark-dev where it is)")
    parser.add_argument("--scene", default="crane", help="the benchmark-dev scene of the captured-like splat")
    parser.add_argument("--frames", type=int, default=6, help="video frames the captured-like splat is animated over")
    parser.add_argument("--iterations", type=int, default=20, help="animate iterations (the motion, not its quality, matters)")
    parser.add_argument("--samples", type=int, default=None, help="render samples (default 32; 4 with --quick)")
    parser.add_argument("--cache", default=str(ROOT / "out" / "bench_fidelity"), help="where the results are kept between runs")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per Blender run")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp:
        work, out_root = Path(tmp) / "files", Path(tmp) / "out"
        work.mkdir()
        out_root.mkdir()
        specs, references = prepare_scenes(args, work)
        samples = args.samples or (4 if args.quick else 32)
        spec = {"scenes": specs, "engines": engines, "samples": {e: samples for e in engines}, "threads": 2}
        (work / "fidelity.json").write_text(json.dumps(spec))
        runs = blender_runs(args, work, out_root)
        pictures = Path(args.cache) / "pictures"
        pictures.mkdir(exist_ok=True)
        rows = score(specs, references, runs, engines, pictures)
    print_tables(specs, references, rows)
    timings = import_timings(args.quick)
    scene = specs[-1]["name"]  # the captured-like splat (the demo with --quick)
    result = {"psnr_db_legacy": headline(rows, False, scene, "psnr"), "psnr_db_native": headline(rows, True, scene, "psnr"),
              "masked_psnr_db_legacy": headline(rows, False, scene, "masked"),
              "masked_psnr_db_native": headline(rows, True, scene, "masked"),
              "import_s_100k_25": timings["import_s_100k_25"], "update_s": timings["update_s"]}
    for kind, goal in (("legacy", GOAL_LEGACY_DB), ("native", GOAL_NATIVE_DB)):
        value = result[f"psnr_db_{kind}"]
        print(f"{scene}, frame with motion, reference view, Cycles, {kind}: "
              + ("not measured" if value is None else f"{value:.2f} dB, {value / goal:.2f}x of the {goal:g} dB goal "
                 f"(masked {result[f'masked_psnr_db_{kind}']:.2f} dB)"))
    print(f"total {time.perf_counter() - t0:.0f} s")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
