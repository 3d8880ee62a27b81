"""A generate job's driving-video candidates (pipeline/candidates.py): ``/jobs/{job_id}/candidates``,
a candidate's ``preview`` and ``choose``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from ....pipeline import candidates as video_candidates
from ...runner.manager import JobManager
from ..schemas import CandidateList, JobStatus
from .common import errors

_LAST = len(video_candidates.BUCKET_FACTORS) - 1  # the largest candidate index


def candidates_router(manager: JobManager) -> APIRouter:
    router = APIRouter()

    @router.get("/jobs/{job_id}/candidates", response_model=CandidateList, responses=errors(404))
    async def list_candidates(job_id: str) -> dict:
        """The job's driving-video candidates with their scores, which one drives the motion, and
        whether the job waits for a choice (state ``waiting``, setting ``choose_video=ask``)."""
        job = manager.get(job_id)
        listed = await asyncio.to_thread(video_candidates.list_candidates, job.folder)
        choice = await asyncio.to_thread(video_candidates.read_choice, job.folder)
        return {
            "candidates": [{k: c.get(k) for k in ("index", "seed", "motion_bucket", "chosen", "num_frames", "fps", "source", "score")}
                           for c in listed],
            "waiting": job.record.state == "waiting",
            "chosen": choice["chosen"] if choice else None,
            "chosen_by": choice["by"] if choice else None,
        }

    @router.get(
        "/jobs/{job_id}/candidates/{index}/preview",
        response_class=FileResponse,
        responses={200: {"content": {"image/png": {}}, "description": "a strip of frames of the candidate"},
                   **errors(404, 422, json_route=False)},
    )
    async def candidate_preview(job_id: str, index: int = PathParam(..., ge=0, le=_LAST)):
        """A PNG strip of a few frames of candidate ``index``."""
        job = manager.get(job_id)
        path = job.folder.candidate_preview(index)
        if not job.folder.candidate_score(index).exists():
            raise video_candidates.CandidateError(f"job {job_id} has no video candidate {index} (yet)")
        return FileResponse(path, media_type="image/png")

    @router.post("/jobs/{job_id}/candidates/{index}/choose", response_model=JobStatus, responses=errors(404, 409, 422))
    async def choose_candidate(job_id: str, index: int = PathParam(..., ge=0, le=_LAST)) -> dict:
        """Drive the motion with candidate ``index`` and queue the job: a waiting job goes on, a
        stopped or finished one re-runs its dynamic stage from that video (409 while it runs)."""
        job = manager.get(job_id)
        await manager.choose_candidate(job, index)
        return manager.status(job)

    return router
