"""Driving-video candidates for ``generate``: K SVD videos, each scored, the best (or the user's
pick) drives the dynamic stage.

SVD often pans or zooms instead of moving the object, or barely moves it; DreamGaussian4D's
authors chose among seeds by hand. So ``generate`` makes ``video_candidates`` videos (candidate
k: seed + k, the motion bucket scaled by :data:`BUCKET_FACTORS` [k]; candidate 0 is exactly the
job's settings, so K = 1 is the plain pipeline), scores each with
:func:`dynapose4d.video.score.score_video`, keeps all of them, and records which one was chosen::

    video/candidates/<k>/   frames, masks, video.json (a DrivingVideo, framed like the reference)
                      preview.png   a strip of a few frames
                      score.json    seed, motion bucket, scores (written last: the step's marker)
    video/candidates/choice.json    {"chosen": k, "by": "auto" | "user", "totals": {k: total score}}

With ``choose_video = "ask"`` the job stops after the candidates with status ``waiting`` until
:func:`choose` records a pick (the CLI's ``candidates --choose``, the server's POST). Choosing
again later re-runs everything downstream of the video (:func:`reset_downstream`), reusing the
static model and every candidate.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..events import EventSink, LogEvent, StageEvent
from ..io.job_folder import JobFolder

if TYPE_CHECKING:
    from ..guidance.svd import SVDConfig
    from ..video.clip import DrivingVideo

__all__ = ["BUCKET_FACTORS", "CandidatePlan", "CandidateSpec", "candidate_specs", "run_candidates", "list_candidates", "choose", "reset_downstream",
           "CandidateError", "WAITING"]

# Motion-bucket multipliers per candidate: the job's value first, then less and more motion.
BUCKET_FACTORS = (1.0, 0.6, 1.4, 0.8, 1.2, 0.4, 1.7, 1.0)
WAITING = "waiting"  # a job's summary status while it waits for a choice
PREVIEW_FRAMES = 5
PREVIEW_SIZE = 96

Scorer = Callable[..., object]  # score_video(video, reference_rgb, reference_mask) -> VideoScore


class CandidateError(ValueError):
    """A candidate that does not exist or cannot be chosen now; the message says which exist."""


@dataclass(frozen=True)
class CandidatePlan:
    """What a job asks of its candidates: the SVD settings of candidate 0, how many, and whether
    the best is used (``auto``) or the job waits for a pick (``ask``)."""

    svd: SVDConfig
    count: int = 1
    choose_video: str = "auto"


@dataclass(frozen=True)
class CandidateSpec:
    index: int
    seed: int
    motion_bucket: int


def candidate_specs(svd: SVDConfig, count: int) -> list[CandidateSpec]:
    """Seeds and motion buckets of ``count`` candidates (candidate 0: the job's own)."""
    if not 1 <= count <= len(BUCKET_FACTORS):
        raise CandidateError(f"video_candidates must be 1..{len(BUCKET_FACTORS)}, got {count}")
    return [
        CandidateSpec(k, (svd.seed + k) % 2**31, int(np.clip(round(svd.motion_bucket_id * BUCKET_FACTORS[k]), 1, 255)))
        for k in range(count)
    ]


def _default_scorer() -> Scorer:
    from ..video.score import score_video

    return score_video


def run_candidates(
    folder: JobFolder,
    plan: CandidatePlan,
    reference: tuple[np.ndarray, np.ndarray],
    emit: EventSink,
    should_stop: Callable[[], bool],
    *,
    make_source: Callable[[SVDConfig], object],
) -> int | str:
    """Make, score and keep the candidates that are missing; returns the chosen index, or
    ``"stopped"`` / :data:`WAITING`. ``reference``: the input image ``[S, S, 3]`` and its mask
    ``[S, S]`` in the reference layout.

    ``make_source(config)`` builds the video source (``SVDSource``); it is called once, only when
    a candidate is missing, and its ``config`` is swapped per candidate (the weights stay loaded).
    Candidates are scored by :func:`dynapose4d.video.score.score_video`; one candidate is not
    scored (there is nothing to choose between).
    """
    from dataclasses import replace

    from ..video.clip import DrivingVideo, align_video

    svd, count = plan.svd, plan.count
    reference_image, reference_mask = reference
    specs = candidate_specs(svd, count)
    emit(StageEvent("candidates", "started"))
    source = None
    for spec in specs:
        done = folder.candidate_score(spec.index)
        if done.exists():
            continue
        if should_stop():
            emit(StageEvent("candidates", "stopped"))
            return "stopped"
        # 1. Generate, framed like the reference (SVD regenerates frame 0: bring it onto it).
        config = replace(svd, seed=spec.seed, motion_bucket_id=spec.motion_bucket)
        if source is None:
            source = make_source(config)
        source.config = config
        video = source.generate(reference_image, reference_mask)
        if "framing" not in video.meta:
            video, _ = align_video(video, reference_image, reference_mask)
        video.meta.update(candidate=spec.index)
        # 2. Keep it, read back as the dynamic stage will see it (8-bit), and score that.
        out = folder.candidate(spec.index)
        if out.exists():
            shutil.rmtree(out)  # a candidate interrupted before its score: made again
        video.save(out)
        video = DrivingVideo.load(out)
        scores = None
        if count > 1:
            scores = _default_scorer()(video, reference_image, reference_mask).to_dict()
        write_preview(video, folder.candidate_preview(spec.index))
        record = {"index": spec.index, "seed": spec.seed, "motion_bucket": spec.motion_bucket, "source": video.source,
                  "num_frames": video.num_frames, "fps": video.fps, "score": scores}
        _write_json(done, record)
        total = f"score {scores['total']:.3f}" if scores else "not scored (the only one)"
        emit(LogEvent(f"candidate {spec.index}: seed {spec.seed}, motion bucket {spec.motion_bucket}: {total}"))
    if source is not None:
        source.unload()  # the video model is not needed again in this job
    # 3. The choice: the user's when recorded, else the best one (or wait for one).
    choice = read_choice(folder)
    if choice is None:
        if plan.choose_video == "ask":
            emit(StageEvent("candidates", "finished", f"{count} candidates; waiting for a choice"))
            return WAITING
        best = best_candidate(list_candidates(folder)[:count])
        choice = _write_choice(folder, best, "auto")
    listed = list_candidates(folder)
    if not 0 <= choice["chosen"] < len(listed):
        raise CandidateError(f"{folder.candidate_choice} chooses candidate {choice['chosen']}, but there are {len(listed)}")
    emit(StageEvent("candidates", "finished", f"candidate {choice['chosen']} of {count} drives the motion (chosen by {choice['by']})"))
    return int(choice["chosen"])


def best_candidate(listed: list[dict]) -> int:
    """The index with the highest ``score.total`` (the first when none is scored)."""
    scored = [c for c in listed if c.get("score")]
    if not scored:
        return listed[0]["index"]
    return max(scored, key=lambda c: c["score"]["total"])["index"]


def chosen_video(folder: JobFolder, index: int) -> DrivingVideo:
    """The chosen candidate as the job's driving video (its meta says which it was)."""
    from ..video.clip import DrivingVideo

    video = DrivingVideo.load(folder.candidate(index))
    video.meta.update(candidate=index, candidate_choice=read_choice(folder))
    return video


def list_candidates(folder: JobFolder) -> list[dict]:
    """Every finished candidate's record (index, seed, motion_bucket, score, chosen), by index."""
    out = []
    k = 0
    while folder.candidate_score(k).exists():
        out.append(json.loads(folder.candidate_score(k).read_text()))
        k += 1
    choice = read_choice(folder)
    for c in out:
        c["chosen"] = choice is not None and choice["chosen"] == c["index"]
    return out


def read_choice(folder: JobFolder) -> dict | None:
    path = folder.candidate_choice
    return json.loads(path.read_text()) if path.exists() else None


def choose(folder: JobFolder, index: int) -> dict:
    """Record the user's pick ``index`` and clear what was made from another video, so the job
    run again drives the dynamic stage with it. Returns the choice record."""
    listed = list_candidates(folder)
    if not listed:
        raise CandidateError("this job has no video candidates: only a generate job without a video of its own makes them")
    if not 0 <= index < len(listed):
        raise CandidateError(f"there is no candidate {index}; this job has candidates 0..{len(listed) - 1}")
    previous = read_choice(folder)
    choice = _write_choice(folder, index, "user")
    if previous is None or previous["chosen"] != index:
        reset_downstream(folder)
    return choice


def reset_downstream(folder: JobFolder) -> None:
    """Remove every product made from the driving video (the job's video, framing, keypoint
    tracks, the dynamic checkpoint and the results); the static model, the candidates and the
    multi-view keypoints (which depend on the reference image only) stay."""
    if folder.video.is_dir():
        for path in folder.video.iterdir():
            if path.is_file():  # the job's video; candidates/ is a folder and stays
                path.unlink()
    for path in (folder.framing, folder.support_keypoints, folder.track, folder.checkpoint("dynamic"), folder.model,
                 folder.metrics, folder.keypoints_gif, folder.snapshot):
        path.unlink(missing_ok=True)
    for gif in folder.root.glob("preview_*.gif"):
        gif.unlink()
    shutil.rmtree(folder.sequence, ignore_errors=True)


def write_preview(video: DrivingVideo, path: Path) -> Path:
    """A strip of :data:`PREVIEW_FRAMES` frames spread over the clip, each ``PREVIEW_SIZE`` px."""
    import cv2
    from PIL import Image

    from ..imaging.pixels import to_uint8

    frames = video.frames.numpy()
    idx = np.unique(np.round(np.linspace(0, len(frames) - 1, min(PREVIEW_FRAMES, len(frames)))).astype(int))
    tiles = [cv2.resize(frames[i], (PREVIEW_SIZE, PREVIEW_SIZE), interpolation=cv2.INTER_AREA) for i in idx]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(np.concatenate(tiles, axis=1)), "RGB").save(path)
    return path


def _write_choice(folder: JobFolder, index: int, by: str) -> dict:
    """``choice.json``: the pick, who made it, and every candidate's total score beside it."""
    totals = {str(c["index"]): (c["score"] or {}).get("total") for c in list_candidates(folder)}
    choice = {"chosen": int(index), "by": by, "at": time.time(), "totals": totals}
    _write_json(folder.candidate_choice, choice)
    return choice


def _write_json(path: Path, data: dict) -> None:
    """Atomically: the file is a step's marker, so it exists only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # the server clears stray *.tmp (diskspace.py)
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
