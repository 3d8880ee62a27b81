"""``python -m dynapose4d.weights.fetch NAME``: one model download as a program of its own.

The server runs it (:mod:`.downloads`) so that a cancel can end it at once and a remote backend
downloads on its own machine. A Hugging Face token reaches it only through its environment
(``HF_TOKEN``, set for this process alone; huggingface_hub reads it there), never as an argument.
It writes one JSON object a line on stdout:

    {"event": "checking"}
    {"event": "plan", "total": bytes, "cached": bytes, "files": n}
    {"event": "progress", "done": bytes, "total": bytes, "speed": bytes/s or null, "eta_s": s or null}
    {"event": "done", "path": "...", "total": bytes}
    {"event": "error", "kind": "gated" | "disk" | "network" | "missing" | "other", "message": "..."}

Exit status 0 after ``done``, 1 after ``error``. Ended by SIGTERM (a cancel), it first removes the
partial file it was writing (huggingface_hub would not resume it) and exits with 143.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from .download import DownloadRefused, fetch, free_space_problem, plan_download
from .registry import MODELS, ModelDownloadError

_LOCK = threading.Lock()


def emit(event: str, **fields) -> None:
    with _LOCK:  # the progress thread and the main thread both write
        print(json.dumps({"event": event, **fields}), flush=True)


def _remove_own_parts_on_sigterm(plan, started: float) -> None:
    """On SIGTERM: remove the partial files this process wrote (``blobs/*.incomplete``), then exit."""

    def handler(signum, frame):
        for part in (plan.storage / "blobs").glob("*.incomplete"):
            try:
                if part.stat().st_mtime >= started:
                    part.unlink()
            except OSError:
                pass
        os._exit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def run(name: str, *, cache_dir: str | None = None, full_precision: bool = False, endpoint: str | None = None,
        free_bytes: int | None = None) -> int:
    """Plan, check the free space, fetch; every step reported on stdout. ``endpoint`` (default
    HF_ENDPOINT's) and ``free_bytes`` (default: measured) are for tests."""
    try:
        emit("checking")
        plan = plan_download(name, cache_dir=cache_dir, full_precision=full_precision, endpoint=endpoint)
        emit("plan", total=plan.total_bytes, cached=plan.cached_bytes, files=len(plan.files))
        problem = free_space_problem(plan, free_bytes)
        if problem:
            raise DownloadRefused(problem, "disk")
        if __name__ == "__main__":  # the program, not a test calling run()
            _remove_own_parts_on_sigterm(plan, time.time() - 1.0)
        path = fetch(plan, cache_dir=cache_dir, endpoint=endpoint, on_progress=lambda p: emit(
            "progress", done=p.done, total=p.total, speed=p.speed, eta_s=p.eta_s))
    except DownloadRefused as exc:
        emit("error", kind=exc.kind, message=str(exc))
        return 1
    except (ModelDownloadError, OSError, ValueError) as exc:
        emit("error", kind="other", message=str(exc))
        return 1
    emit("done", path=str(path), total=plan.total_bytes)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynapose4d.weights.fetch", description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=list(MODELS))
    ap.add_argument("--cache-dir", default=None, help="Hugging Face cache folder (default: HF_HUB_CACHE / HF_HOME's)")
    ap.add_argument("--full-precision", action="store_true", help="SVD: fp32 weights instead of fp16")
    args = ap.parse_args(argv)
    return run(args.name, cache_dir=args.cache_dir, full_precision=args.full_precision)


if __name__ == "__main__":
    sys.exit(main())
