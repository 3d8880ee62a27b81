"""The job folder: every path of a job, named once.

::

    <job>/job.json              kind, settings, inputs (write_job)
          inputs/<file>         the job's input files
          reference/            generate: the input image in the reference layout
          static.ply            generate: the static Gaussians
          registration.json     animate: how the PLY was brought into the backend frame
          video/                the driving video (frames, masks, video.json)
          keypoints/            support.json (support keypoints), track.npz (their tracks)
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


@dataclass(frozen=True)
class JobFolder:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    # -- what the job is -------------------------------------------------------------------------
    @property
    def job_file(self) -> Path:
        return self.root / "job.json"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    def input(self, name: str) -> Path:
        """An input file by its name in ``inputs/`` (as job.json lists it)."""
        return self.inputs / name

    # -- products of the steps, each the resume marker of its step ------------------------------
    @property
    def reference(self) -> Path:
        return self.root / "reference"

    @property
    def static(self) -> Path:
        return self.root / "static.ply"

    @property
    def registration(self) -> Path:
        return self.root / "registration.json"

    @property
    def video(self) -> Path:
        return self.root / "video"

    @property
    def keypoints(self) -> Path:
        return self.root / "keypoints"

    @property
    def support_keypoints(self) -> Path:
        return self.keypoints / "support.json"

    @property
    def track(self) -> Path:
        return self.keypoints / "track.npz"

    def checkpoint(self, stage: str) -> Path:
        return self.root / "checkpoints" / f"{stage}.pt"

    # -- results ---------------------------------------------------------------------------------
    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def sequence(self) -> Path:
        return self.root / "sequence"

    @property
    def sequence_file(self) -> Path:
        return self.sequence / "sequence.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def keypoints_gif(self) -> Path:
        return self.root / "keypoints.gif"

    def preview(self, name: str) -> Path:
        return self.root / f"preview_{name}.gif"

    # -- the server's files ----------------------------------------------------------------------
    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def worker_log(self) -> Path:
        return self.root / "worker.log"

    @property
    def worker_lock(self) -> Path:
        return self.root / "worker.lock"

    @property
    def snapshot(self) -> Path:
        return self.root / "snapshots" / "latest.pt"

    @property
    def result_zip(self) -> Path:
        return self.root / "result.zip"
