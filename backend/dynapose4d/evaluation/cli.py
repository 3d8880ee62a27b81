"""The ``dynapose4d eval`` command line (no torch import until it runs)."""

from __future__ import annotations

import argparse


def _run(args) -> int:
    from .consistent4d import run

    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return run(args)


def add_eval_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``eval RESULT GROUND_TRUTH`` on the main parser's subparsers."""
    p = subparsers.add_parser(
        "eval",
        help="score a result with the Consistent4D protocol (PSNR, SSIM, LPIPS, CLIP, FVD)",
        description="Render the result at the four Consistent4D views (azimuths -75, 15, 105, 195 around the input view) "
        "and score them against a ground-truth folder (eval_0/ .. eval_3/). Metrics whose network is not on this "
        "machine are reported as not computed, with what to download.",
    )
    p.add_argument("result", help="a job folder (model.pt), a model.pt file, or a PLY sequence (folder with sequence.json)")
    p.add_argument("ground_truth", help="folder with eval_0/ .. eval_3/ frame images (Consistent4D test-set layout)")
    p.add_argument("--size", type=int, default=512, help="render and score at this many pixels square (default: 512, as the papers)")
    p.add_argument("--frames", type=int, default=None, help="score only this many frames, evenly spread (default: all)")
    p.add_argument("--json", default=None, help="write the report here (default: eval.json beside the result)")
    p.add_argument("--lpips", default=None, help="folder with vgg16-397923af.pth and the LPIPS vgg.pth (or $DYNAPOSE4D_LPIPS)")
    p.add_argument("--clip", default=None, help="CLIP folder or hub id in the HF cache (default: openai/clip-vit-base-patch32)")
    p.add_argument("--i3d", default=None, help="the I3D TorchScript file i3d_torchscript.pt (or $DYNAPOSE4D_I3D)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run)
    return p
