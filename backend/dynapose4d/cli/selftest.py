"""``dynapose4d selftest``: do the installed pieces work on this machine?

On a built-in sample (the demo object's front view, nothing to download):
- renderer: the compiled CPU rasteriser agrees with the PyTorch one, and on CUDA gsplat agrees
  with the CPU renderer (PSNR above 40 dB);
- Zero-1-to-3: a novel-view sample at zero camera change resembles the input;
- Stable Video Diffusion: frame 0 of a generated video resembles the input.
Models that cannot be found are skipped with the reason; models whose size shows they are test
fixtures, not the real weights, are reported as such (their outputs are noise by design).

``--quick`` loads the models without sampling (what the Blender add-on's Check Setup runs);
``--json`` prints :func:`setup_report`: the device and GPU, the renderer in use and why, every
check, and what to do about each problem (``fix``), for the add-on to show in words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..cameras import Cameras
from ..devices import resolve_device
from ..evaluation.metrics import psnr, ssim

REAL_UNET_PARAMETERS = 100_000_000  # the real UNets have ~0.9-1.5 billion; test fixtures ~1 million


@dataclass
class Check:
    name: str
    status: str  # PASS, FAIL, SKIP, NOT-REAL
    detail: str
    seconds: float = 0.0
    fix: str = ""  # what to do about a problem ("" when there is none)


def _sample(size: int = 256):
    from ..evaluation.articulated import make_articulated
    from ..render import render

    obj = make_articulated("lamp", 3000)
    with torch.no_grad():
        out = render(obj.static, Cameras.orbit(0.0, 0.0, 2.0, width=size), 1.0, backend="torch")
    return obj, out.rgb.clamp(0, 1), out.alpha


def check_renderer(device: torch.device) -> list[Check]:
    from ..render import render

    obj, reference, _ = _sample()
    cam = Cameras.orbit(15.0, 40.0, 2.0, width=256)
    checks = []
    with torch.no_grad():
        base = render(obj.static, cam, 1.0, backend="torch").rgb
        for name, dev in (("numba", torch.device("cpu")), ("gsplat", device)):
            if name == "gsplat" and dev.type != "cuda":
                checks.append(Check("renderer: gsplat (CUDA)", "SKIP", "no CUDA device"))
                continue
            t0 = time.perf_counter()
            try:
                other = render(obj.static.to(dev), cam.to(dev), 1.0, backend=name).rgb.cpu()
            except Exception as exc:  # report, don't crash: that is what a self-test is for
                checks.append(Check(f"renderer: {name}", "FAIL", f"{type(exc).__name__}: {exc}"))
                continue
            value = psnr(other, base)
            status = "PASS" if value > 40 else "FAIL"
            checks.append(Check(f"renderer: {name} vs PyTorch", status, f"PSNR {value:.1f} dB (needs > 40)", time.perf_counter() - t0))
    return checks


def _real(module) -> tuple[bool, int]:
    n = sum(p.numel() for p in module.parameters())
    return n >= REAL_UNET_PARAMETERS, n


def _missing_diffusion_libraries() -> str | None:
    """Why the diffusion models cannot run here (their libraries are an optional extra), or None."""
    import importlib.util

    missing = [name for name in ("diffusers", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed: pip install 'dynapose4d[diffusion]' (or python3 scripts/dev.py setup)"
    return None


def check_zero123(model: str, device: torch.device, steps: int, sample: bool = True) -> Check:
    if (missing := _missing_diffusion_libraries()) is not None:
        return Check(f"Zero-1-to-3 ({model})", "SKIP", missing, fix=NO_DIFFUSION_FIX)
    from ..guidance import OrbitPose
    from ..guidance.zero123 import Zero123Config, Zero123Guidance
    from ..weights import ModelNotFoundError

    t0 = time.perf_counter()
    try:
        guidance = Zero123Guidance(Zero123Config(model=model), device=device)
    except ModelNotFoundError as exc:
        return Check(f"Zero-1-to-3 ({model})", "SKIP", str(exc).splitlines()[0], fix=_download_fix(model))
    real, n = _real(guidance.unet)
    if not sample:
        return _loaded(f"Zero-1-to-3 ({model})", real, n, model, time.perf_counter() - t0)
    _, reference, _ = _sample(256)
    guidance.set_reference(reference[None].to(device))
    image = guidance.sample(OrbitPose.of(0.0, 0.0, 2.0), steps=steps, seed=0)[0].float().cpu()
    score = ssim(image[None], reference[None])
    if not real:
        return Check(f"Zero-1-to-3 ({model})", "NOT-REAL", f"{n:,} UNet parameters: a test fixture, not the real weights (SSIM {score:.2f})", time.perf_counter() - t0)
    status = "PASS" if score > 0.6 else "FAIL"
    return Check(f"Zero-1-to-3 ({model})", status, f"zero camera change: SSIM {score:.2f} to the input (needs > 0.6)", time.perf_counter() - t0)


def check_svd(model: str, device: torch.device, steps: int, sample: bool = True) -> Check:
    if (missing := _missing_diffusion_libraries()) is not None:
        return Check(f"Stable Video Diffusion ({model})", "SKIP", missing, fix=NO_DIFFUSION_FIX)
    from ..guidance.svd import SVDConfig, SVDSource
    from ..weights import ModelNotFoundError

    t0 = time.perf_counter()
    try:
        size = 512 if device.type == "cuda" else 128  # a CPU only checks that the pipeline runs
        source = SVDSource(SVDConfig(model=model, steps=steps, size=size, output_size=256), device)
    except ModelNotFoundError as exc:
        return Check(f"Stable Video Diffusion ({model})", "SKIP", str(exc).splitlines()[0], fix=_download_fix(model))
    if not sample:
        real, n = _real(source.load().unet)
        source.unload()
        return _loaded(f"Stable Video Diffusion ({model})", real, n, model, time.perf_counter() - t0)
    _, reference, mask = _sample(256)
    video = source.generate(reference, mask)
    real, n = _real(source.pipeline.unet) if getattr(source, "pipeline", None) is not None else (False, 0)
    score = ssim(video.frames[:1].float(), reference[None])
    source.unload()
    if not real:
        return Check(f"Stable Video Diffusion ({model})", "NOT-REAL", f"{n:,} UNet parameters: a test fixture, not the real weights (SSIM {score:.2f})", time.perf_counter() - t0)
    status = "PASS" if score > 0.5 else "FAIL"
    return Check(f"Stable Video Diffusion ({model})", status, f"{video.num_frames} frames; frame 0 SSIM {score:.2f} to the input (needs > 0.5)", time.perf_counter() - t0)


def run_selftest(zero123: str = "zero123-xl", svd: str = "svd", device: str = "auto", steps: int | None = None,
                 quick: bool = False) -> list[Check]:
    """Every check; ``quick``: the models are loaded, not sampled."""
    dev = resolve_device(device)
    steps = steps or (25 if dev.type == "cuda" else 2)
    checks = check_renderer(dev)
    checks.append(check_zero123(zero123, dev, steps, sample=not quick))
    checks.append(check_svd(svd, dev, steps, sample=not quick))
    for check in checks:
        check.fix = check.fix or _fix(check, dev)
    return checks


# -- what to do about a problem ---------------------------------------------------------------------

NO_DIFFUSION_FIX = ("The diffusion libraries are missing: tick Diffusion Models and create the backend environment "
                    "again (add-on preferences), or pip install 'dynapose4d[diffusion]'")


def _download_fix(model: str) -> str:
    return (f"Download {model} in the add-on's preferences (Models), or run `dynapose4d models download {model}` "
            "on the backend's machine. The Demo and Animate jobs need no model")


def _loaded(name: str, real: bool, n: int, model: str, seconds: float) -> Check:
    if not real:
        return Check(name, "NOT-REAL", f"{n:,} UNet parameters: a test fixture, not the real weights", seconds,
                     fix=f"These are test weights: download the real {model} (add-on preferences, Models)")
    return Check(name, "PASS", f"loads ({n / 1e9:.2f} billion UNet parameters)", seconds)


def _fix(check: Check, device: torch.device) -> str:
    """What a user can do about ``check`` (its own fix wins; "" for a check without a problem)."""
    if check.status == "PASS":
        return ""
    if check.name.startswith("renderer: gsplat") and check.status == "SKIP":
        return _no_cuda_fix()
    if check.name.startswith("renderer: gsplat"):
        return ("gsplat does not run with this torch and driver: jobs use the slower PyTorch rasteriser. Install the gsplat "
                "wheel built for this torch/CUDA pair (README, GPU setup), or set DYNAPOSE4D_RENDERER=torch to skip it")
    if check.name.startswith("renderer:"):
        return "The CPU rasteriser disagrees with the reference: report this with the output of `dynapose4d selftest`"
    return "See the detail; `dynapose4d selftest` on the backend's machine prints the same check"


def _no_cuda_fix() -> str:
    """Why there is no CUDA device, and what to do: an NVIDIA driver with a CPU build of torch is fixable."""
    import shutil

    if shutil.which("nvidia-smi") and torch.version.cuda is None:
        return (f"This machine has an NVIDIA driver but torch {torch.__version__} is a CPU build: create the backend "
                "environment again with a CUDA Torch Build (add-on preferences)")
    if shutil.which("nvidia-smi"):
        return "nvidia-smi is here but torch sees no GPU: check the driver (run nvidia-smi) and CUDA_VISIBLE_DEVICES"
    return "No NVIDIA GPU here: jobs run on the CPU (the Demo in about a minute; Generate needs a GPU to be practical)"


def renderer_in_use(device: torch.device) -> tuple[str, str]:
    """The rasteriser jobs use on ``device`` (what ``auto`` picks) and why."""
    from ..render import choose_backend

    if device.type == "cuda":
        from ..render.gsplat_backend import gsplat_problem

        problem = gsplat_problem(device.index or 0)
        if problem is None:
            return "gsplat", f"gsplat's CUDA kernels run on {torch.cuda.get_device_name(device)}"
        return "torch", f"the PyTorch rasteriser (slower) because {problem}"
    name = choose_backend(device)
    if name == "numba":
        return "numba", "no CUDA device: the compiled CPU rasteriser"
    return name, "no CUDA device, and the compiled CPU rasteriser does not import: the PyTorch one (slow)"


def setup_report(checks: list[Check], device: str = "auto") -> dict:
    """The checks with the machine's facts, as the add-on's Check Setup shows them (JSON)."""
    from .. import __version__

    dev = resolve_device(device)
    renderer, why = renderer_in_use(dev)
    return {
        "version": __version__,
        "device": dev.type,
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "renderer": {"name": renderer, "why": why},
        "checks": [{"name": c.name, "status": c.status, "detail": c.detail, "seconds": round(c.seconds, 2), "fix": c.fix}
                   for c in checks],
        "failed": sum(c.status == "FAIL" for c in checks),
    }


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.status:<8}  {c.detail}" + (f"  ({c.seconds:.1f} s)" if c.seconds else ""))
        if c.fix:
            lines.append(f"{'':<{width}}  what to do: {c.fix}")
    failed = [c for c in checks if c.status == "FAIL"]
    lines.append("")
    lines.append(f"{len(failed)} check(s) failed" if failed else "no check failed")
    return "\n".join(lines)
