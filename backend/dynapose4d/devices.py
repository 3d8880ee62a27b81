"""Where work runs: the one place that decides what "auto" means."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA when this torch build sees a GPU, else the CPU.

    An explicit CUDA device on a machine (or torch build) without one is a ValueError that says
    what to do, rather than a failure deep inside the first kernel."""
    if name is None or (isinstance(name, str) and name == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this torch build sees no CUDA device (install a CUDA build of torch; see the README's GPU setup)")
    return device
