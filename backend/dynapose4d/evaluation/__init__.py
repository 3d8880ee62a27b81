"""Evaluation: metrics, ground truth and the scenes we score on.

- :mod:`.metrics`: PSNR, SSIM, masked PSNR, 3D keypoint error, jitter (no weights needed);
- :mod:`.ground_truth`: a 4D model against known frames and trajectories, beside the static baseline;
- :mod:`.articulated`: procedural articulated objects with known motion (the demo's and the ablation's truth);
- :mod:`.scenes`: the built-in sphere scene (renderer benchmark and fallbacks);
- :mod:`.consistent4d`: ``dynapose4d eval``, the Consistent4D protocol on a result folder;
- :mod:`.perceptual`: LPIPS (VGG), CLIP (ViT-B/32) and FVD (I3D), from local weights only.

Submodules are imported where used, so ``import dynapose4d.evaluation`` stays light.
"""
