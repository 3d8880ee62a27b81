#!/usr/bin/env python3
"""Write tiny random-weight models in the real folder layouts (no download, a few seconds).

    python scripts/make_tiny_models.py OUT [--hf-cache]

OUT/zero123-xl, OUT/stable-zero123 (Zero-1-to-3 diffusers layout) and OUT/svd (Stable Video
Diffusion layout). With --hf-cache, OUT/hf-cache also holds them under their registered hub ids,
as ``snapshot_download`` would, so name-based resolution can be tried offline:

    HF_HUB_CACHE=OUT/hf-cache dynapose4d models check

The outputs are noise: use them to exercise loading and plumbing, never to judge quality.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--hf-cache", action="store_true", help="also write a fake Hugging Face cache under OUT/hf-cache")
    args = ap.parse_args(argv)

    from dynapose4d.weights import MODELS
    from dynapose4d.testing.tiny_models import fake_hf_cache, make_all

    folders = make_all(args.out)
    for name, folder in folders.items():
        print(f"{name:<15} {folder}    ({MODELS[name].env_var}={folder})")
    if args.hf_cache:
        cache = args.out / "hf-cache"
        for name, folder in folders.items():
            fake_hf_cache(cache, MODELS[name].repo_id, folder)
        print(f"fake Hugging Face cache: {cache}    (HF_HUB_CACHE={cache})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
