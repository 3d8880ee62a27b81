"""The files every job leaves behind: the 4D model, a PLY sequence with its sidecar, previews."""

from __future__ import annotations

from pathlib import Path

from ..dynamic4d import Dynamic4D
from ..io.job_folder import JobFolder
from ..io.sequence import write_sequence


def write_results(folder: JobFolder, model: Dynamic4D, *, previews: bool = True) -> dict[str, Path]:
    """``model.pt``, ``sequence/`` (one PLY per video frame + sequence.json), preview GIFs."""
    folder.root.mkdir(parents=True, exist_ok=True)
    paths = {"model": model.save(folder.model)}
    paths["sequence"] = write_sequence(folder.sequence, model, fps=model.video_fps, frame_count=model.num_frames)
    if previews:
        from .preview import write_previews

        paths.update(write_previews(model, folder))
    return paths
