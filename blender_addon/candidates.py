"""The driving-video candidates of a generate job, in the panel: each candidate's preview strip
as a Blender image preview, its scores, and the user's pick.

The backend makes K driving videos and scores them (``dynapose4d/pipeline/candidates.py``);
with Choose Video = Let Me Pick the job waits (state ``waiting``) until one is chosen here.
:func:`refresh` and :func:`choose` are the operators' plain twins (tests call them); the
previews live in one ``bpy.utils.previews`` collection per shelf, released with it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Candidate:
    index: int
    seed: int
    motion_bucket: int
    chosen: bool
    score: dict | None  # total (higher is better) and its parts; None: not scored (the only one)
    preview_path: str = ""
    icon_id: int = 0

    def label(self) -> str:
        total = f"score {self.score['total']:.2f}" if self.score else "not scored"
        return f"#{self.index}: seed {self.seed}, motion {self.motion_bucket}, {total}"


@dataclass
class CandidateShelf:
    """What the panel shows for one job's candidates."""

    job_id: str
    waiting: bool
    chosen: int | None
    chosen_by: str | None
    items: list[Candidate] = field(default_factory=list)
    _previews: object = None

    def release(self) -> None:
        """Free the preview images (on a new shelf, a new job, unregister)."""
        if self._previews is not None:
            import bpy.utils.previews

            bpy.utils.previews.remove(self._previews)
            self._previews = None
            for item in self.items:
                item.icon_id = 0


def refresh(client, job_id: str, folder: str) -> CandidateShelf:
    """The job's candidates from the backend, their preview PNGs written into ``folder`` and
    loaded as image previews (a job without candidates gives an empty shelf)."""
    import bpy.utils.previews

    listing = client.candidates(job_id)
    shelf = CandidateShelf(job_id, bool(listing.get("waiting")), listing.get("chosen"), listing.get("chosen_by"))
    shelf._previews = bpy.utils.previews.new()
    os.makedirs(folder, exist_ok=True)
    for c in listing.get("candidates", []):
        item = Candidate(int(c["index"]), int(c["seed"]), int(c["motion_bucket"]), bool(c["chosen"]), c.get("score"))
        item.preview_path = os.path.join(folder, f"candidate-{job_id}-{item.index}.png")
        with open(item.preview_path, "wb") as fh:
            fh.write(client.candidate_preview(job_id, item.index))
        preview = shelf._previews.load(f"{job_id}:{item.index}", item.preview_path, "IMAGE")
        item.icon_id = preview.icon_id
        shelf.items.append(item)
    return shelf


def choose(client, job_id: str, index: int) -> dict:
    """Drive the job with candidate ``index``; the backend queues it again. Its status."""
    return client.choose_candidate(job_id, index)


def draw(layout, shelf: CandidateShelf | None, job_waiting: bool) -> None:
    """The candidates box of the main panel (the previews large, a Use button under each)."""
    box = layout.box()
    row = box.row(align=True)
    if shelf is None or not shelf.items:
        row.label(text="Pick a driving video" if job_waiting else "Driving-video candidates", icon="SEQUENCE")
        row.operator("dynapose4d.show_candidates", text="Show" if job_waiting else "", icon="FILE_REFRESH")
        return
    title = "Pick the driving video" if shelf.waiting else (
        f"Candidate {shelf.chosen} drives the motion ({shelf.chosen_by})" if shelf.chosen is not None else "Candidates")
    row.label(text=title, icon="SEQUENCE")
    row.operator("dynapose4d.show_candidates", text="", icon="FILE_REFRESH")
    for item in shelf.items:
        col = box.column(align=True)
        if item.icon_id:
            col.template_icon(icon_value=item.icon_id, scale=4.0)
        sub = col.row(align=True)
        sub.label(text=item.label(), icon="CHECKMARK" if item.chosen else "BLANK1")
        op = sub.operator("dynapose4d.choose_candidate", text="Use" if not item.chosen else "Re-run")
        op.index = item.index
