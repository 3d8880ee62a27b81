"""The job folder: every path of a job, named once.

::

    <job>/job.json              kind, settings, inputs (write_job)
          inputs/<file>         the job's input files; a video given as frames (a folder or a
                                zip) is the folder inputs/video_frames/ (FRAMES_INPUT)
          reference/            generate: the input image in the reference layout
          static.ply            generate: the static Gaussians
          registration.json     animate: how the PLY was brought into the backend frame
          framing.json          how the video was framed onto the reference view, and what is left
          video/                the driving video (frames, masks, video.json)
          video/candidates/<k>/ generate with SVD: candidate k (a driving video, preview.png,
                                score.json); video/candidates/choice.json: which drives (candidates.py)
          keypoints/            support.json (support keypoints), track.npz (their tracks),
                                views.npz (generate with CAPE: keypoints in Zero-1-to-3 views)
          checkpoints/<stage>.pt   resume points of the static and dynamic stages
          model.pt              the 4D result (Dynamic4D.save)
          sequence/             one PLY per frame + sequence.json
          preview_*.gif, keypoints.gif, metrics.json
          state.json, events.jsonl, worker.log, worker.lock, snapshots/latest.pt, result.zip
                                the server's record, event log, worker output and lock, latest
                                snapshot and download cache (when a server runs the job)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FRAMES_INPUT = "video_frames"  # inputs/ name of a video given as frames (never the user's name)


def _at(*parts: str) -> property:
    """A path of the job folder, ``root / parts...``."""
    return property(lambda self: self.root.joinpath(*parts), doc="/".join(parts))


@dataclass(frozen=True)
class JobFolder:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    # What the job is.
    job_file = _at("job.json")
    inputs = _at("inputs")

    def input(self, name: str) -> Path:
        """An input file by its name in ``inputs/`` (as job.json lists it)."""
        return self.inputs / name

    # Products of the steps, each the resume marker of its step.
    reference = _at("reference")
    static = _at("static.ply")
    registration = _at("registration.json")
    framing = _at("framing.json")
    video = _at("video")
    video_file = _at("video", "video.json")
    candidates = _at("video", "candidates")
    candidate_choice = _at("video", "candidates", "choice.json")

    def candidate(self, index: int) -> Path:
        return self.candidates / str(int(index))

    def candidate_score(self, index: int) -> Path:
        return self.candidate(index) / "score.json"

    def candidate_preview(self, index: int) -> Path:
        return self.candidate(index) / "preview.png"

    keypoints = _at("keypoints")
    support_keypoints = _at("keypoints", "support.json")
    track = _at("keypoints", "track.npz")
    keypoint_views = _at("keypoints", "views.npz")

    def checkpoint(self, stage: str) -> Path:
        return self.root / "checkpoints" / f"{stage}.pt"

    # Results.
    model = _at("model.pt")
    sequence = _at("sequence")
    sequence_file = _at("sequence", "sequence.json")
    metrics = _at("metrics.json")
    keypoints_gif = _at("keypoints.gif")

    def preview(self, name: str) -> Path:
        return self.root / f"preview_{name}.gif"

    # The server's files.
    state = _at("state.json")
    events = _at("events.jsonl")
    worker_log = _at("worker.log")
    worker_lock = _at("worker.lock")
    snapshot = _at("snapshots", "latest.pt")
    result_zip = _at("result.zip")
