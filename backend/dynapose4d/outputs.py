"""The files every job leaves behind: the 4D model, a PLY sequence with its sidecar, previews."""

from __future__ import annotations

from pathlib import Path

from .io.sequence import write_sequence
from .model4d import Dynamic4D


def write_results(out: Path, model: Dynamic4D, *, previews: bool = True) -> dict[str, Path]:
    """``model.pt``, ``sequence/`` (one PLY per video frame + sequence.json), preview GIFs."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"model": model.save(out / "model.pt")}
    paths["sequence"] = write_sequence(out / "sequence", model, fps=model.video_fps, frame_count=model.num_frames)
    if previews:
        from .preview import write_previews

        paths.update(write_previews(model, out))
    return paths
