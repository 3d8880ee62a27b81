"""``dynapose4d selftest``: do the installed pieces work on this machine?

On a built-in sample (the demo object's front view, nothing to download):
- renderer: the compiled CPU rasteriser agrees with the PyTorch one, and on CUDA gsplat agrees
  with the CPU renderer (PSNR above 40 dB);
- Zero-1-to-3: a novel-view sample at zero camera change resembles the input;
- Stable Video Diffusion: frame 0 of a generated video resembles the input.
Models that cannot be found are skipped with the reason; models whose size shows they are test
fixtures, not the real weights, are reported as such (their outputs are noise by design).
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


def check_zero123(model: str, device: torch.device, steps: int) -> Check:
    if (missing := _missing_diffusion_libraries()) is not None:
        return Check(f"Zero-1-to-3 ({model})", "SKIP", missing)
    from ..guidance import OrbitPose
    from ..guidance.zero123 import Zero123Config, Zero123Guidance
    from ..weights import ModelNotFoundError

    t0 = time.perf_counter()
    try:
        guidance = Zero123Guidance(Zero123Config(model=model), device=device)
    except ModelNotFoundError as exc:
        return Check(f"Zero-1-to-3 ({model})", "SKIP", str(exc).splitlines()[0])
    real, n = _real(guidance.unet)
    _, reference, _ = _sample(256)
    guidance.set_reference(reference[None].to(device))
    image = guidance.sample(OrbitPose.of(0.0, 0.0, 2.0), steps=steps, seed=0)[0].float().cpu()
    score = ssim(image[None], reference[None])
    if not real:
        return Check(f"Zero-1-to-3 ({model})", "NOT-REAL", f"{n:,} UNet parameters: a test fixture, not the real weights (SSIM {score:.2f})", time.perf_counter() - t0)
    status = "PASS" if score > 0.6 else "FAIL"
    return Check(f"Zero-1-to-3 ({model})", status, f"zero camera change: SSIM {score:.2f} to the input (needs > 0.6)", time.perf_counter() - t0)


def check_svd(model: str, device: torch.device, steps: int) -> Check:
    if (missing := _missing_diffusion_libraries()) is not None:
        return Check(f"Stable Video Diffusion ({model})", "SKIP", missing)
    from ..guidance.svd import SVDConfig, SVDSource
    from ..weights import ModelNotFoundError

    t0 = time.perf_counter()
    try:
        size = 512 if device.type == "cuda" else 128  # a CPU only checks that the pipeline runs
        source = SVDSource(SVDConfig(model=model, steps=steps, size=size, output_size=256), device)
    except ModelNotFoundError as exc:
        return Check(f"Stable Video Diffusion ({model})", "SKIP", str(exc).splitlines()[0])
    _, reference, mask = _sample(256)
    video = source.generate(reference, mask)
    real, n = _real(source.pipeline.unet) if getattr(source, "pipeline", None) is not None else (False, 0)
    score = ssim(video.frames[:1].float(), reference[None])
    source.unload()
    if not real:
        return Check(f"Stable Video Diffusion ({model})", "NOT-REAL", f"{n:,} UNet parameters: a test fixture, not the real weights (SSIM {score:.2f})", time.perf_counter() - t0)
    status = "PASS" if score > 0.5 else "FAIL"
    return Check(f"Stable Video Diffusion ({model})", status, f"{video.num_frames} frames; frame 0 SSIM {score:.2f} to the input (needs > 0.5)", time.perf_counter() - t0)


def run_selftest(zero123: str = "zero123-xl", svd: str = "svd", device: str = "auto", steps: int | None = None) -> list[Check]:
    dev = resolve_device(device)
    steps = steps or (25 if dev.type == "cuda" else 2)
    checks = check_renderer(dev)
    checks.append(check_zero123(zero123, dev, steps))
    checks.append(check_svd(svd, dev, steps))
    return checks


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{c.name:<{width}}  {c.status:<8}  {c.detail}" + (f"  ({c.seconds:.1f} s)" if c.seconds else "") for c in checks]
    failed = [c for c in checks if c.status == "FAIL"]
    lines.append("")
    lines.append(f"{len(failed)} check(s) failed" if failed else "no check failed")
    return "\n".join(lines)
