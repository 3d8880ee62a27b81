"""Splats (``KHR_gaussian_splatting``) exported by the backend, which writes them; Blender's glTF
exporter cannot. No bpy.

Two ways, by where the result lives:

- a job on a server (a live import): ``GET /v1/jobs/{id}/export?as=splats`` returns the GLB,
  sampled like the scene's import (its fps, frame count and time mode);
- a result imported from a folder (File > Import > DynaPose4D Result): the backend's own command,
  ``python -m dynapose4d export RESULT -o out.glb --as splats``, run with the local backend
  environment's interpreter (the one the add-on starts the server with). A folder is not a job
  the server knows, and the command reads it where it lies.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ..format.sequence import Sampling
from .client import BackendClient

GLB_MAGIC = b"glTF"
EXPORT_TIMEOUT_S = 600.0


class ExportFailed(RuntimeError):
    """The backend could not export; the message says why and what to do."""


def _checked_glb(data: bytes, where: str) -> bytes:
    if data[:4] != GLB_MAGIC:
        raise ExportFailed(f"{where} did not return a GLB file (it starts with {data[:16]!r})")
    return data


def _write(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # never a half-written file under the chosen name
    return path


def splats_from_server(client: BackendClient, job_id: str, sampling: Sampling, path: str | os.PathLike, kind: str = "splats") -> Path:
    """Download the job's latest snapshot as a GLB to ``path``, sampled like ``sampling``."""
    _, _, data = client.request("GET", f"/jobs/{job_id}/export", query={**sampling.query(), "as": kind}, timeout=EXPORT_TIMEOUT_S)
    return _write(path, _checked_glb(data, f"the server's export of job {job_id}"))


def folder_source(sidecar: str | os.PathLike) -> str:
    """What the backend's export reads for a folder import (its ``sequence.json``): the job folder
    when it holds the model (sampled at the scene's frames), else the PLY sequence as it is."""
    sidecar = Path(sidecar)
    job = sidecar.parent.parent
    if sidecar.parent.name == "sequence" and (job / "model.pt").is_file():
        return str(job)
    return str(sidecar)


def export_command(python: str, result: str | os.PathLike, path: str | os.PathLike, *, fps: float, frames: int,
                   mode: str = "clamp", kind: str = "splats") -> list[str]:
    """The backend command that exports ``result`` (a job folder or a sequence.json)."""
    return [python, "-m", "dynapose4d", "export", str(result), "-o", str(path), "--as", kind, "--fps", repr(float(fps)),
            "--frames", str(int(frames)), "--time-mode", mode]


def splats_with_cli(python: str, result: str | os.PathLike, path: str | os.PathLike, *, fps: float, frames: int,
                    mode: str = "clamp", env: dict | None = None) -> dict:
    """Run the backend's export on a result folder; its report (the command's RESULT line)."""
    if not python or not Path(python).is_file():
        raise ExportFailed(f"the backend's Python interpreter {python or '(not set)'} does not exist: exporting splats from "
                           "a result folder runs the local backend's `dynapose4d export`; create the backend environment "
                           "in the add-on's preferences first")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = export_command(python, result, path, fps=fps, frames=frames, mode=mode)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportFailed(f"could not run the backend's export: {exc}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ExportFailed(f"the backend's export failed: {last}")
    _checked_glb(path.read_bytes()[:4], f"the backend's export ({path})")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][7:]) if lines else {}
