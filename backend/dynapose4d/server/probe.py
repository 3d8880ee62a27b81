"""``python -m dynapose4d.server.probe``: the device and models, as one JSON line.

Run in its own short-lived process so the server never creates a CUDA context of its own
(that would hold GPU memory the worker needs for the whole life of the server).
"""

from __future__ import annotations

import json
import sys


def probe() -> dict:
    import torch

    from .. import __version__
    from ..weights import list_models

    info: dict = {"version": __version__, "torch": torch.__version__, "device": "cpu", "gpu": None}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info(0)
        info["device"] = "cuda"
        info["gpu"] = {
            "name": torch.cuda.get_device_name(0),
            "memory_total_mb": round(total / 2**20),
            "memory_free_mb": round(free / 2**20),
            "count": torch.cuda.device_count(),
        }
    models = []
    for status in list_models():
        spec = status.spec
        models.append(
            {
                "name": spec.name,
                "title": spec.title,
                "kind": spec.kind,
                "available": status.available,
                "license": spec.license_name,
                "gated": spec.gated,
            }
        )
    info["models"] = models
    return info


if __name__ == "__main__":
    print(json.dumps(probe()))
    sys.exit(0)
