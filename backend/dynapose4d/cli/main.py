"""Command line: ``dynapose4d <command>``.

    demo      the built-in job: no downloaded weights, nothing outside the repository
    generate  image -> 4D Gaussians (needs the Zero-1-to-3 and Stable Video Diffusion weights)
    candidates  a generate job's driving-video candidates: list them, or continue from one
    animate   an existing 3DGS PLY + a video -> 4D Gaussians (no weights needed)
    models    list, check or download the model weights
    selftest  check the renderer and the installed models on a built-in sample
    serve     the local job server the Blender add-on talks to (loopback, token-protected)
    batch     many jobs from a manifest (JSON lines or CSV), here or on a server; resumable
    render    render a 3DGS PLY (or the built-in scene) from orbit cameras to PNG / GIF
    eval      score a result with the Consistent4D protocol (PSNR, SSIM, LPIPS, CLIP, FVD)
    info      version, torch, device and which renderer would be used
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import __version__


def _device(name: str):
    from ..devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise SystemExit(f"error: --device {exc}") from None


def turntable(gaussians, out_dir: Path, *, size: int, views: int, elevation: float, radius: float, device, renderer):
    """Render ``views`` orbit views around the object: a GIF plus the input view as PNG."""
    import torch

    from ..cameras import Cameras
    from ..imaging.images import save_gif, to_pil
    from ..render import render

    out_dir.mkdir(parents=True, exist_ok=True)
    azimuths = torch.arange(views, dtype=torch.float32) * (360.0 / views)
    cams = Cameras.orbit(elevation, azimuths, radius, width=size, device=device)
    g = gaussians.to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        frames = torch.cat([render(g, cams[i : i + 8], 1.0, backend=renderer).rgb for i in range(0, views, 8)])
    seconds = time.perf_counter() - t0
    to_pil(frames[:1])[0].save(out_dir / "front.png")
    save_gif(frames, out_dir / "turntable.gif", fps=12)
    return seconds


def cmd_render(args) -> int:
    from ..evaluation.scenes import sphere_scene
    from ..io import read_ply

    g = read_ply(args.ply, up_axis=args.up_axis) if args.ply else sphere_scene(args.gaussians)
    device = _device(args.device)
    out = Path(args.output)
    seconds = turntable(
        g, out, size=args.size, views=args.views, elevation=args.elevation, radius=args.radius, device=device, renderer=args.renderer
    )
    print(f"rendered {args.views} views of {g.num:,} Gaussians at {args.size}^2 in {seconds:.2f} s -> {out}/turntable.gif")
    return 0


def cmd_demo(args) -> int:
    from dataclasses import replace

    import torch

    from ..pipeline.demo import DemoConfig, run_demo
    from ..pipeline.progress import ConsoleProgress

    cfg = DemoConfig(motion=args.motion, seed=args.seed)
    if args.iterations:
        cfg.dynamic = replace(cfg.dynamic, iterations=args.iterations)
    out = Path(args.output)
    print(f"DynaPose4D demo: recovering the '{cfg.motion}' motion ({cfg.frames} frames) on {torch.get_num_threads()} CPU thread(s)")
    model, metrics = run_demo(out, cfg, emit=ConsoleProgress())
    if metrics["status"] != "finished":
        print(f"stopped at iteration {metrics['iterations']}; run the same command again to resume")
        return 3
    rows = [
        ("reference-view PSNR (dB)", "ref_psnr"),
        ("moving-region PSNR (dB)", "moving_psnr"),
        ("novel-view PSNR (dB)", "novel_psnr"),
        ("novel-view SSIM", "novel_ssim"),
        ("3D keypoint error", "kp_err"),
        ("  image-plane part", "kp_err_plane"),
        ("  depth part", "kp_err_depth"),
        ("jitter", "jitter"),
    ]
    print()
    print(f"{'metric':<28}{'DynaPose4D':>12}{'static baseline':>18}")
    for label, key in rows:
        print(f"{label:<28}{metrics[key]:>12.4g}{metrics[key + '_static_baseline']:>18.4g}")
    print(f"\nwrote {out}/model.pt, {out}/sequence/ (PLY per frame + sequence.json), previews and metrics.json")
    result = {k: metrics[k] for k in ("ref_psnr", "novel_psnr", "novel_psnr_static_baseline", "moving_psnr", "kp_err", "jitter", "seconds")}
    result["status"] = metrics["status"]
    print("RESULT " + json.dumps(result))
    return 0


# Shorter spellings users reach for first.
FLAG_ALIASES = {"video_fps": ("--fps",)}


def _add_setting_flags(parser: argparse.ArgumentParser, kind: str, skip: tuple[str, ...] = ()) -> None:
    """One flag per declared setting (pipeline.SETTINGS is the single source of names, types,
    ranges and defaults; values are validated there)."""
    from ..pipeline import SETTINGS

    for s in SETTINGS[kind]:
        if s.name in skip:
            continue
        flags = ("--" + s.name.replace("_", "-"),) + FLAG_ALIASES.get(s.name, ())
        if s.type is bool:
            parser.add_argument(*flags, dest=s.name, action=argparse.BooleanOptionalAction, default=None, help=f"{s.help} (default: {s.default})")
        else:
            parser.add_argument(*flags, dest=s.name, type=s.type, default=None, choices=s.choices, help=f"{s.help} (default: {s.default!r})")


def _run_job_command(args, kind: str, inputs: dict[str, str | None]) -> int:
    """Create (or resume) the job folder ``args.output`` and run it with a console progress."""
    import shutil

    from ..io.job_folder import FRAMES_INPUT
    from ..pipeline import SETTINGS, JobFolder, run_job, validate_settings, write_job
    from ..pipeline.progress import ConsoleProgress

    folder = JobFolder(args.output)
    out = folder.root
    settings = {s.name: getattr(args, s.name) for s in SETTINGS[kind] if getattr(args, s.name, None) is not None}
    files = {}
    for role, path in inputs.items():
        if path is None:
            continue
        src = Path(path)
        if role == "video" and _is_frames(src):
            files[role] = FRAMES_INPUT  # a folder of frames, or a zip of them: a frame folder in inputs/
        elif not src.is_file():
            what = "a video file, a folder of frames or a .zip of frames" if role == "video" else "a file"
            raise ValueError(f"the {role} {src} is not {what}")
        else:
            files[role] = src.name
    resume = folder.job_file.exists() and not args.restart
    if resume:  # run_job checks the job.json it reads
        spec = json.loads(folder.job_file.read_text())
        print(f"resuming the {spec['kind']} job in {out} (use --restart to start over)")
    else:
        settings = validate_settings(kind, settings)  # the CLI's one check, before anything is copied
        if out.exists() and args.restart:
            shutil.rmtree(out)
        folder.inputs.mkdir(parents=True, exist_ok=True)
        for role, path in inputs.items():
            if path is None:
                continue
            if role == "video" and _is_frames(Path(path)):
                from ..video.frame_folder import import_frames

                shutil.rmtree(folder.input(files[role]), ignore_errors=True)  # left by a start that failed
                count = import_frames(path, folder.input(files[role]))
                print(f"{count} frames from {path}")
            else:
                shutil.copyfile(path, folder.input(files[role]))
        write_job(out, kind, settings, files, validated=True)
    summary = run_job(out, ConsoleProgress(), validated=not resume)
    print("RESULT " + json.dumps(summary))
    if summary.get("status") == "finished":
        print(f"results in {out}: model.pt, sequence/ (PLY per frame + sequence.json), previews")
        return 0
    if summary.get("status") == "waiting":
        print(f"the driving-video candidates are ready; choose one: dynapose4d candidates {out} --choose K")
        return 0
    print(f"stopped during the {summary.get('stage', '?')} stage; run the same command again to resume")
    return 3


def _is_frames(src: Path) -> bool:
    from ..formats import FRAME_ARCHIVE_SUFFIXES

    return src.is_dir() or (src.is_file() and src.suffix.lower() in FRAME_ARCHIVE_SUFFIXES)


def cmd_generate(args) -> int:
    return _run_job_command(args, "generate", {"image": args.image, "video": args.video, "keypoints": args.keypoints})


def cmd_animate(args) -> int:
    return _run_job_command(args, "animate", {"ply": args.ply, "video": args.video, "keypoints": args.keypoints})


def cmd_candidates(args) -> int:
    """List a generate job's driving-video candidates; with --choose, drive with one and run on."""
    from ..pipeline import JobFolder, candidates, run_job
    from ..pipeline.progress import ConsoleProgress

    folder = JobFolder(args.job_dir)
    if not folder.job_file.is_file():
        what = "does not exist" if not folder.root.exists() else "is not a job folder (it has no job.json)"
        raise ValueError(f"{folder.root} {what}; give the folder of a generate job (its -o/--out)")
    if args.choose is not None:
        try:
            candidates.choose(folder, args.choose)
        except candidates.CandidateError as exc:
            raise ValueError(f"{folder.root}: {exc}") from None
        print(f"candidate {args.choose} chosen; running the job on from it")
        summary = run_job(folder.root, ConsoleProgress())
        print("RESULT " + json.dumps(summary))
        return 0 if summary.get("status") == "finished" else 3
    listed = candidates.list_candidates(folder)
    if not listed:
        raise ValueError(f"{folder.root} has no video candidates (a generate job without --video makes them)")
    for c in listed:
        score = c.get("score")
        parts = ", ".join(f"{k} {v:.3g}" for k, v in score.items() if k != "total") if score else "not scored"
        total = f"score {score['total']:.3f}" if score else "score -"
        mark = "  <- chosen" if c["chosen"] else ""
        print(f"candidate {c['index']}: seed {c['seed']}, motion bucket {c['motion_bucket']}, {total} ({parts}){mark}")
        print(f"    preview: {folder.candidate_preview(c['index'])}")
    choice = candidates.read_choice(folder)
    if choice is None:
        print(f"waiting for a choice: dynapose4d candidates {folder.root} --choose K")
    else:
        print(f"candidate {choice['chosen']} drives the motion (chosen by {choice['by']}); another: --choose K")
    return 0


def cmd_selftest(args) -> int:
    from .selftest import report, run_selftest, setup_report

    checks = run_selftest(args.zero123, args.svd, args.device, args.steps, quick=args.quick)
    print(json.dumps(setup_report(checks, args.device)) if args.json else report(checks))
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def cmd_info(args) -> int:
    import torch

    from ..render import choose_backend

    device = _device(args.device)
    info = {
        "dynapose4d": __version__,
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "renderer": choose_backend(device),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(info, indent=2))
    return 0


def cmd_models_list(args) -> int:
    from ..weights import list_models

    for status in list_models(cache_dir=args.cache_dir):
        spec = status.spec
        where = f"available: {status.path}" if status.available else "not downloaded"
        print(f"{spec.name:<15} {spec.repo_id:<48} {'gated' if spec.gated else '':<5}  {where}")
        print(f"{'':<15} {spec.description}; licence: {spec.license_name}")
    print(_poseanything_weights().status_line())
    return 0


def cmd_models_check(args) -> int:
    from ..weights import MODELS, check_model, get_spec

    names = args.names or list(MODELS)
    if "poseanything" in names:  # keypoint weights: converted by hand, not in the HF cache
        names = [n for n in names if n != "poseanything"]
        line = _poseanything_weights().status_line()
        print(line)
        if not names:
            return 0 if "not converted" not in line else 1
    for name in names:
        get_spec(name)  # unknown names fail before anything is printed
    ok = True
    for name in names:
        status = check_model(name, cache_dir=args.cache_dir)
        ok &= status.available
        print(f"{name}: {status.summary()}")
        if not status.available:
            print(f"  get it with: dynapose4d models download {name}   (or set {status.spec.env_var}=/path/to/folder)")
    return 0 if ok else 1


def cmd_models_download(args) -> int:
    from ..weights import download_model

    download_model(
        args.name,
        cache_dir=args.cache_dir,
        local_dir=args.local_dir,
        token=args.token,
        full_precision=args.full_precision,
    )
    return 0


def _add_models_parser(subparsers) -> argparse.ArgumentParser:
    """``models list|check|download``."""
    from ..weights import MODELS

    models = subparsers.add_parser("models", help="list, check and download the diffusion models")
    msub = models.add_subparsers(dest="models_command", required=True)

    def cache_option(p):
        p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder (default: HF_HUB_CACHE or ~/.cache)")

    p = msub.add_parser("list", help="every model, its licence and whether it is here")
    cache_option(p)
    p.set_defaults(func=cmd_models_list)

    p = msub.add_parser("check", help="is a model available locally, and where (exit 1 if not)")
    p.add_argument("names", nargs="*", help=f"models to check ({', '.join(MODELS)}); default all")
    cache_option(p)
    p.set_defaults(func=cmd_models_check)

    p = msub.add_parser("download", help="download a model into the Hugging Face cache (shows its licence)")
    p.add_argument("name", choices=list(MODELS))
    cache_option(p)
    p.add_argument("--local-dir", default=None, help="download into this folder instead of the cache")
    p.add_argument("--token", default=None, help="Hugging Face token (default: the logged-in one / HF_TOKEN)")
    p.add_argument("--full-precision", action="store_true", help="SVD: fetch fp32 weights instead of fp16")
    p.set_defaults(func=cmd_models_download)

    p = msub.add_parser("convert-poseanything", help="convert the downloaded PoseAnything checkpoint to safetensors")
    p.add_argument("file", help="the mmcv checkpoint (.pth) from the PoseAnything release")
    p.add_argument("--out", default=None, help="output folder (default: $DYNAPOSE4D_POSEANYTHING or the user cache)")
    p.add_argument("--trust", action="store_true", help="allow a full unpickle if the restricted one refuses the file")
    p.set_defaults(func=lambda args: _poseanything_weights().cli_convert(args))
    return models


def _poseanything_weights():
    """The ``poseanything`` entry (keypoint weights from the PoseAnything release, converted once);
    imported lazily because it needs torch. Its spec, checks and converter live there."""
    from ..keypoints.poseanything import weights

    return weights


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dynapose4d", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"dynapose4d {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="recover a known motion on the CPU (no downloaded weights)")
    demo.add_argument("-o", "--output", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--motion", default="lamp", help="lamp (default), swing or bend")
    demo.add_argument("--iterations", type=int, default=0, help="override the demo's iteration count")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    render = sub.add_parser("render", help="render a 3DGS PLY from orbit cameras")
    render.add_argument("ply", nargs="?", help="3DGS PLY file (default: the built-in scene)")
    render.add_argument("-o", "--output", default="out/render")
    render.add_argument("--up-axis", choices=("y", "z"), default="y", help="z for files from Blender and other +Z-up tools")
    render.add_argument("--size", type=int, default=256)
    render.add_argument("--views", type=int, default=24)
    render.add_argument("--elevation", type=float, default=15.0, help="degrees, positive = camera above")
    render.add_argument("--radius", type=float, default=2.0)
    render.add_argument("--gaussians", type=int, default=20_000, help="size of the built-in scene")
    render.add_argument("--renderer", choices=("auto", "torch", "gsplat"), default="auto")
    render.add_argument("--device", default="auto")
    render.set_defaults(func=cmd_render)

    gen = sub.add_parser("generate", help="image -> 4D Gaussians (Zero-1-to-3 + Stable Video Diffusion + DynaPose4D)")
    gen.add_argument("image", help="the input image (PNG with alpha works best)")
    gen.add_argument("-o", "--output", default="out/generate", help="job folder (run again to resume)")
    gen.add_argument("--video", help="drive with this video (a file, a folder of frames or a .zip of frames) instead of generating one")
    gen.add_argument("--keypoints", help="support keypoints JSON (pixels of the input image)")
    gen.add_argument("--restart", action="store_true", help="discard an existing job folder")
    _add_setting_flags(gen, "generate")
    gen.set_defaults(func=cmd_generate)

    anim = sub.add_parser("animate", help="an existing 3DGS PLY + a video -> 4D Gaussians")
    anim.add_argument("ply", help="a 3DGS PLY file")
    anim.add_argument("--video", required=True, help="the driving video: a file, a folder of frames, or a .zip of frames (see --fps)")
    anim.add_argument("-o", "--output", default="out/animate", help="job folder (run again to resume)")
    anim.add_argument("--keypoints", help="support keypoints JSON (pixels of the PLY's reference-view render, 256x256)")
    anim.add_argument("--restart", action="store_true", help="discard an existing job folder")
    _add_setting_flags(anim, "animate")
    anim.set_defaults(func=cmd_animate)

    cands = sub.add_parser("candidates", help="list a generate job's driving-video candidates, or continue from a chosen one")
    cands.add_argument("job_dir", help="the generate job's folder (its -o)")
    cands.add_argument("--choose", type=int, default=None, metavar="K", help="drive the dynamic stage with candidate K and run on")
    cands.set_defaults(func=cmd_candidates)

    test = sub.add_parser("selftest", help="check the renderer and the installed models on a built-in sample")
    test.add_argument("--zero123", default="zero123-xl", help="Zero-1-to-3 model name, hub id or folder")
    test.add_argument("--svd", default="svd", help="video model name, hub id or folder")
    test.add_argument("--device", default="auto")
    test.add_argument("--steps", type=int, default=None, help="denoising steps (default: 25 on CUDA, 2 on CPU)")
    test.add_argument("--quick", action="store_true", help="load the models without sampling them")
    test.add_argument("--json", action="store_true", help="one JSON object: device, renderer, checks and fixes")
    test.set_defaults(func=cmd_selftest)

    info = sub.add_parser("info", help="show versions, device and renderer")
    info.add_argument("--device", default="auto")
    info.set_defaults(func=cmd_info)

    _add_models_parser(sub)
    from ..server.cli import add_serve_cli

    add_serve_cli(sub)
    from .batch import add_batch_cli

    add_batch_cli(sub)
    from ..evaluation.cli import add_eval_cli

    add_eval_cli(sub)
    from ..pipeline.export import add_export_cli

    add_export_cli(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as exc:
        # Our errors name the problem; a traceback adds nothing for a user.
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
