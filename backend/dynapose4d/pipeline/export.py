"""``dynapose4d export RESULT -o out.glb --as splats|mesh|points``: a result as glTF, without Blender.

RESULT is a job folder (its ``model.pt``, else its ``sequence/``), a ``model.pt``, a PLY sequence
(its folder or its ``sequence.json``) or one 3DGS PLY (a static splat). What each form holds:

- ``splats``: ``KHR_gaussian_splatting`` (web viewers: three.js, Babylon.js, PlayCanvas, Cesium,
  the Khronos sample viewer; Blender 5.3 imports it). A 4D result moves as rigid parts (one
  node per part with TRS animation) or as a flipbook (one splat per frame, shown in turn):
  ``--splat-motion auto`` (the default) takes the parts when their error is within the tolerance
  (5% of the largest motion for the 99th percentile of the Gaussians), else the flipbook when it fits in
  ``--max-mb``, else the parts anyway (and says so). Parts keep the file near the static
  splat's size and play smoothly at any frame rate; a flipbook is exact (every Gaussian's own
  position, rotation and scale per frame) but holds every frame.
- ``mesh``: the skinned mesh (engines: Unity, Unreal, Godot, three.js); needs the 4D model.
- ``points``: the Gaussians' centres with one morph target per frame (what the add-on's glTF
  export gives; any viewer, drawn as 1-pixel points).

Sampling: a model is sampled at ``--fps`` (24) for ``--frames`` (default: the clip once); a PLY
sequence keeps its own frames and fps. The files are +Y up in the user's frame (the input
PLY's place and size for an ``animate`` job).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..dynamic4d import Dynamic4D
    from ..gaussians import Gaussians
    from ..io.gltf_scene import SceneInfo
    from ..mesh.splat_parts import HandleMotion

KINDS = ("splats", "mesh", "points")
SPLAT_MOTIONS = ("auto", "parts", "flipbook")


class ExportError(ValueError):
    """A RESULT the export cannot read, or a form it cannot make from it."""


@dataclass
class ExportOptions:
    kind: str = "splats"
    fps: float = 24.0
    frames: int = 0  # 0: the clip once at fps
    time_mode: str = "clamp"
    splat_motion: str = "auto"
    parts: int = 0  # 0: chosen from the error
    max_err: float = 0.05
    max_mb: float = 50.0
    bones: int = 48
    faces: int = 20_000
    up_axis: str = "y"  # a static PLY's up axis

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ExportError(f"--as must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.splat_motion not in SPLAT_MOTIONS:
            raise ExportError(f"--splat-motion must be one of {', '.join(SPLAT_MOTIONS)}, got {self.splat_motion!r}")
        if not self.fps > 0 or self.frames < 0:
            raise ExportError(f"--fps must be positive and --frames at least 0 (0: the clip once), got {self.fps} and {self.frames}")


# -- what RESULT is --------------------------------------------------------------------------------

@dataclass
class Source:
    kind: str  # "model", "sequence" or "ply"
    path: Path


def resolve_source(result: str | Path) -> Source:
    """Which of the accepted RESULT forms ``result`` is; an :class:`ExportError` naming what
    was expected otherwise."""
    from . import JobFolder

    path = Path(result)
    if path.is_dir():
        folder = JobFolder(path)
        if folder.model.is_file():
            return Source("model", folder.model)
        for sidecar in (folder.sequence / "sequence.json", path / "sequence.json"):
            if sidecar.is_file():
                return Source("sequence", sidecar)
        raise ExportError(f"{path} is a folder without model.pt, sequence/sequence.json or sequence.json: "
                          "give a finished job folder, a model.pt, a PLY sequence or a 3DGS PLY")
    if not path.is_file():
        raise ExportError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return Source("model", path)
    if suffix == ".json":
        return Source("sequence", path)
    if suffix == ".ply":
        return Source("ply", path)
    raise ExportError(f"{path}: not a result (expected a job folder, model.pt, sequence.json or a .ply)")


# -- the export ------------------------------------------------------------------------------------

def export_result(result: str | Path, out: str | Path, options: ExportOptions = ExportOptions()) -> dict:
    """Write ``result`` as a GLB at ``out``; returns a report (path, size, timings, choices)."""
    t0 = time.perf_counter()
    out = Path(out)
    if out.suffix.lower() != ".glb":
        raise ExportError(f"{out}: the output must be a .glb file (binary glTF)")
    source = resolve_source(result)
    if source.kind == "sequence" and options.kind == "mesh":
        raise ExportError("a PLY sequence has no deformation to skin a mesh with: export the job folder or its model.pt with --as mesh")
    if source.kind == "ply":
        report = _export_ply(source.path, out, options)
    else:
        frames = _load_frames(source, options)
        report = _export_frames(frames, out, options)
    return _reported(report, source.kind, out, t0)


@dataclass
class Frames:
    """A 4D result sampled at F frames, backend coordinates (or the file's, turned +Y up).

    ``rest``: the Gaussians the parts hold (a model's static Gaussians; a sequence's frame 0);
    ``gaussians``: per-frame Gaussians (batch ``[F]``); ``handles``: the deformation's handles
    and bindings; ``info``: the scene's fps, user frame, camera and keypoints; ``model``: the
    Dynamic4D when there is one (the skinned mesh needs it), with ``times``."""

    rest: Gaussians
    gaussians: Gaussians
    handles: HandleMotion | None
    info: SceneInfo
    model: Dynamic4D | None = None
    times: object = None  # the model's normalised times [F] (a tensor)


def _load_frames(source: Source, options: ExportOptions) -> Frames:
    return _load_model(source.path, options) if source.kind == "model" else _load_sequence(source.path, options)


def export_model(model, out: str | Path, options: ExportOptions = ExportOptions()) -> dict:
    """Write a :class:`~..dynamic4d.Dynamic4D` already in memory as a GLB at ``out`` (the server's
    snapshot); returns the same report as :func:`export_result`."""
    t0 = time.perf_counter()
    out = Path(out)
    report = _export_frames(_model_frames(model, options), out, options)
    return _reported(report, "model", out, t0)


def _reported(report: dict, source: str, out: Path, t0: float) -> dict:
    report.update(source=source, path=str(out), mb=round(out.stat().st_size / 1e6, 4), seconds=round(time.perf_counter() - t0, 3))
    return report


def _load_model(path: Path, options: ExportOptions) -> Frames:
    """A model.pt sampled at the options' fps and frames."""
    import pickle

    from ..dynamic4d import Dynamic4D

    try:
        model = Dynamic4D.load(path)
    except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as exc:  # torch's unpickler errors on a foreign file
        raise ExportError(f"{path}: not a DynaPose4D model file ({exc})") from None
    return _model_frames(model, options)


def _model_frames(model, options: ExportOptions) -> Frames:
    """``model`` sampled at the options' fps and frames; backend coordinates, the user's frame
    for the root node."""
    from ..dynamic4d import default_frame_count
    from ..io.gltf_scene import SceneInfo
    from ..mesh.splat_parts import handles_of_model
    from ..userframe import user_frame_of

    count = options.frames or default_frame_count(model, options.fps)
    times = model.times(count, options.fps, options.time_mode)
    handles = handles_of_model(model, times) if options.kind == "splats" else None
    gaussians, keypoints = model.sample(times)
    frame = user_frame_of(model)
    cam = model.camera
    info = SceneInfo(
        fps=options.fps, frame_count=count,
        user_frame=None if frame.is_identity else (np.asarray(frame.rotation), frame.scale, np.asarray(frame.translation)),
        camera={"c2w": cam.c2w.numpy(), "fovy_deg": float(np.degrees(float(cam.fovy))), "width": cam.width, "height": cam.height},
        names=list(model.keypoints.names), valid=model.keypoints.anchors.valid.numpy(),
        edges=model.keypoints.edges.numpy(), positions=keypoints.double().numpy(),
    )
    return Frames(model.static, gaussians, handles, info, model, times)


def _load_sequence(path: Path, options: ExportOptions) -> Frames:
    """A PLY sequence as it is (its frames and fps), turned +Y up when the files are +Z up."""
    from ..gaussians import Z_UP_TO_Y_UP, Gaussians
    from ..io.gltf_scene import SceneInfo
    from ..io.ply import read_ply
    from ..io.sequence import read_sequence
    from ..mesh.splat_parts import handles_of_frames

    try:
        seq = read_sequence(path)
    except (ValueError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: not a DynaPose4D sequence sidecar ({exc})") from None
    up = "z" if seq.get("up") == "+z" else "y"
    missing = [str(p) for p in seq["paths"] if not p.is_file()]
    if missing:
        raise ExportError(f"{path}: {len(missing)} frame file(s) are missing, e.g. {missing[0]}")
    frames = [read_ply(p, up_axis=up) for p in seq["paths"]]
    if len({g.num for g in frames}) != 1:
        raise ExportError(f"{path}: the frames hold different numbers of Gaussians; a sequence must keep one set")
    gaussians = Gaussians.cat_batch([g.map(lambda t: t[None]) for g in frames])
    turn = Z_UP_TO_Y_UP.double().numpy() if up == "z" else np.eye(3)
    cam = seq.get("camera")
    camera = None
    if cam:
        c2w = np.asarray(cam["c2w"], np.float64)
        c2w[:3] = turn @ c2w[:3]
        camera = {**cam, "c2w": c2w}
    kp = seq.get("keypoints") or {}
    positions = np.asarray(kp.get("positions") or np.zeros((len(frames), 0, 3)), np.float64).reshape(len(frames), -1, 3) @ turn.T
    info = SceneInfo(fps=float(seq["fps"]), frame_count=len(frames), camera=camera, names=list(kp.get("names", [])),
                     valid=np.asarray(kp.get("valid", [True] * positions.shape[1]), bool), edges=np.asarray(kp.get("edges", []), np.int64).reshape(-1, 2),
                     positions=positions)
    handles = None
    if options.kind == "splats":
        handles = handles_of_frames(gaussians.means.double().numpy(), gaussians.quats.double().numpy(), frames[0].opacities.numpy())
    return Frames(frames[0], gaussians, handles, info)


def _export_frames(frames: Frames, out: Path, options: ExportOptions) -> dict:
    from ..io.gltf_scene import write_morph_points, write_skinned_mesh

    info = frames.info
    g = frames.gaussians
    if options.kind == "points":
        write_morph_points(out, g.means.numpy(), g.rgb[0].clamp(0, 1).numpy(), info)
        return {"kind": "points", "frames": info.frame_count, "gaussians": int(g.num)}
    if options.kind == "mesh":
        from ..mesh import SkeletonConfig, SurfaceConfig, build_skinned_mesh

        sk = build_skinned_mesh(frames.model, frames.times, info.fps, SurfaceConfig(target_faces=options.faces), SkeletonConfig(max_bones=options.bones), surface_error=False)
        s = sk.skeleton
        info.report = {k: v for k, v in sk.report.items() if k in ("vertices", "faces", "bones")}
        write_skinned_mesh(out, sk.vertices, sk.faces, sk.colors, sk.joints, sk.weights, s.heads, s.parents, s.rotations, s.translations, s.names, info)
        return {"kind": "mesh", "frames": info.frame_count, **info.report,
                "skin_err_mean": round(float(np.mean(sk.report["skin_err_mean"])), 6), "skin_err_max": round(float(np.max(sk.report["skin_err_max"])), 6)}
    return _export_splats(frames, out, options)


def _export_splats(frames: Frames, out: Path, options: ExportOptions) -> dict:
    from ..io.gltf_scene import write_splat_flipbook, write_splat_parts
    from ..mesh.splat_parts import SplatPartsConfig, fit_splat_parts
    info = frames.info
    rest_g, g = frames.rest, frames.gaussians
    rest = _attributes(rest_g)
    t0 = time.perf_counter()
    parts = fit_splat_parts(rest_g.means.double().numpy(), g.means.double().numpy(), frames.handles, rest.opacities,
                            SplatPartsConfig(parts=options.parts, max_err=options.max_err))
    fit_s = time.perf_counter() - t0
    report = {"kind": "splats", "frames": info.frame_count, "gaussians": rest.count, "sh_degree": rest.degree,
              **{k: v for k, v in parts.report().items() if not k.endswith("per_frame")}, "parts_s": round(fit_s, 3)}
    flipbook_mb = info.frame_count * _splat_bytes(rest) / 1e6
    report["flipbook_mb_estimate"] = round(flipbook_mb, 3)
    motion = options.splat_motion
    if motion == "auto":
        within = float(parts.err_p99.max()) <= options.max_err
        if within or info.frame_count == 1:
            motion, why = "parts", f"rigid parts within {options.max_err:g} of the largest motion"
        elif flipbook_mb <= options.max_mb:
            motion, why = "flipbook", f"rigid parts off by {parts.err_p99.max():.3f} of the largest motion; the flipbook fits in {options.max_mb:g} MB"
        else:
            motion, why = "parts", (f"rigid parts off by {parts.err_p99.max():.3f} of the largest motion, but a flipbook would be "
                                    f"{flipbook_mb:.0f} MB (over --max-mb {options.max_mb:g}): parts anyway")
        report["why"] = why
    report["motion"] = motion
    info.report = {k: v for k, v in report.items() if k != "trials"}
    if motion == "parts":
        write_splat_parts(out, rest, parts.label, parts.pivots, parts.rotations, parts.translations, info)
    else:
        write_splat_flipbook(out, [_attributes(g.map(lambda t, i=i: t[i])) for i in range(info.frame_count)], info)
    return report


def _attributes(g):
    from ..io.gltf_splats import SplatAttributes

    g = g.detach()
    return SplatAttributes.from_backend(g.means.numpy(), g.quats.numpy(), g.log_scales.numpy(), g.opacity_logits.numpy(), g.sh_dc.numpy(),
                                        None if g.sh_rest is None else g.sh_rest.numpy())


def _splat_bytes(splats) -> int:
    """Bytes per frame of a splat primitive: position 12, rotation 16, scale 12, opacity 4, colour 4, 12 per SH coefficient."""
    return splats.count * (48 + 12 * splats.sh.shape[1])


def _export_ply(path: Path, out: Path, options: ExportOptions) -> dict:
    from ..io.glb import GlbBuilder
    from ..io.gltf_scene import SceneInfo, write_morph_points
    from ..io.gltf_splats import add_splat_mesh
    from ..io.ply import read_ply

    g = read_ply(path, up_axis=options.up_axis)
    if options.kind == "mesh":
        raise ExportError(f"{path} is a static splat: --as mesh needs a 4D result (a job folder or model.pt); use --as splats or points")
    if options.kind == "points":
        write_morph_points(out, g.means.numpy()[None], g.rgb.clamp(0, 1).numpy(), SceneInfo(fps=options.fps, frame_count=1))
        return {"kind": "points", "frames": 1, "gaussians": int(g.num)}
    splats = _attributes(g)
    builder = GlbBuilder()
    builder.add_node(path.stem, mesh=add_splat_mesh(builder, splats, path.stem))
    builder.write(out)
    return {"kind": "splats", "frames": 1, "gaussians": splats.count, "sh_degree": splats.degree, "motion": "static"}


# -- the command -----------------------------------------------------------------------------------

def cmd_export(args) -> int:
    options = ExportOptions(
        kind=args.kind, fps=args.fps, frames=args.frames, time_mode=args.time_mode, splat_motion=args.splat_motion,
        parts=args.parts, max_err=args.max_err, max_mb=args.max_mb, bones=args.bones, faces=args.faces, up_axis=args.up_axis,
    )
    report = export_result(args.result, args.output, options)
    line = f"wrote {report['path']} ({report['mb']:.2f} MB, {report['kind']}"
    if report["kind"] == "splats" and report.get("motion") not in (None, "static"):
        line += f", {report['motion']}: {report['parts']} part(s), rigid error mean {report['rigid_err_mean']:.4f} max {report['rigid_err_max']:.4f} of the largest motion"
        if "why" in report:
            line += f"; {report['why']}"
    print(line + f") in {report['seconds']:.1f} s")
    print("RESULT " + json.dumps({k: v for k, v in report.items() if k != "trials"}))
    return 0


def add_export_cli(subparsers) -> argparse.ArgumentParser:
    """``export``: register the command on the CLI's subparsers."""
    p = subparsers.add_parser("export", help="a result as glTF (GLB): KHR_gaussian_splatting splats, the skinned mesh or points",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result", help="a job folder, a model.pt, a PLY sequence (folder or sequence.json) or a 3DGS PLY")
    p.add_argument("-o", "--output", required=True, help="the .glb file to write")
    p.add_argument("--as", dest="kind", choices=KINDS, default="splats", help="splats (web viewers, default), mesh (engines) or points")
    p.add_argument("--fps", type=float, default=24.0, help="frames per second a model is sampled at (default 24)")
    p.add_argument("--frames", type=int, default=0, help="frames to sample a model at (default: the clip once)")
    p.add_argument("--time-mode", choices=("clamp", "loop", "pingpong"), default="clamp", help="past the clip's end (with --frames)")
    p.add_argument("--splat-motion", choices=SPLAT_MOTIONS, default="auto", help="how splats move: rigid parts, a flipbook, or auto (default)")
    p.add_argument("--parts", type=int, default=0, help="rigid parts (default 0: the fewest within --max-err)")
    p.add_argument("--max-err", type=float, default=0.05, help="rigid-part error allowed (99th percentile), in units of the largest motion (default 0.05)")
    p.add_argument("--max-mb", type=float, default=50.0, help="largest flipbook auto may write, in MB (default 50)")
    p.add_argument("--bones", type=int, default=48, help="--as mesh: at most this many bones (default 48)")
    p.add_argument("--faces", type=int, default=20_000, help="--as mesh: faces after decimation (default 20000)")
    p.add_argument("--up-axis", choices=("y", "z"), default="y", help="a static PLY's up axis (z for files from Blender)")
    p.set_defaults(func=cmd_export)
    return p
