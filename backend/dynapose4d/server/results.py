"""A finished job's results as one zip: the PLY sequence with its sidecar, plus the job's
settings and metrics. Built once, on first request, and kept beside the job."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..io.job_folder import JobFolder


class NoResults(LookupError):
    pass


def result_zip(job_dir: Path) -> Path:
    folder = JobFolder(job_dir)
    sequence, sidecar = folder.sequence, folder.sequence_file
    if not sidecar.is_file():
        raise NoResults("this job has no results: it has not finished (resume it if it stopped)")
    target = folder.result_zip
    if target.exists() and target.stat().st_mtime_ns >= sidecar.stat().st_mtime_ns:
        return target
    tmp = target.with_name(target.name + ".tmp")
    # Stored, not deflated: PLY floats barely compress and a large sequence would take long.
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(sequence.iterdir()):
            if path.is_file():
                zf.write(path, f"sequence/{path.name}")
        for path in (folder.job_file, folder.metrics):
            if path.is_file():
                zf.write(path, path.name)
    os.replace(tmp, target)
    return target
