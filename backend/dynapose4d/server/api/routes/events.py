"""What a job's worker says: ``/jobs/{job_id}/log`` (its output) and ``/jobs/{job_id}/events``
(server-sent events: status changes and every worker event)."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Header, Query
from fastapi.responses import PlainTextResponse, StreamingResponse

from ...runner.manager import Job, JobManager, read_log_tail
from ...runner.store import FINAL_STATES
from .common import errors

KEEPALIVE_S = 15.0


def events_router(manager: JobManager) -> APIRouter:
    router = APIRouter()

    @router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, responses=errors(404, 422, json_route=False))
    async def job_log(job_id: str, lines: int = Query(200, ge=1, le=10_000)) -> str:
        """The last lines of the worker's output (tracebacks of failed jobs land here)."""
        job = manager.get(job_id)
        return await asyncio.to_thread(read_log_tail, job.folder.worker_log, lines)

    @router.get(
        "/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
            **errors(404, 422, json_route=False),
        },
    )
    async def job_events(
        job_id: str,
        after: int = Query(-1, ge=-1, description="send only events with a larger id (Last-Event-ID works too)"),
        last_event_id: str | None = Header(None),
    ):
        """Server-sent events: ``status`` (the job status, first and whenever the state changes),
        then every worker event (``worker``, ``stage``, ``progress``, ``snapshot``, ``log``) with
        its id; ``end`` when the job has stopped and everything was sent."""
        job = manager.get(job_id)
        if last_event_id and last_event_id.strip().isdigit() and len(last_event_id.strip()) <= 18:  # event ids fit int64
            after = max(after, int(last_event_id))
        return StreamingResponse(
            _event_stream(manager, job, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router


async def _event_stream(manager: JobManager, job: Job, after: int):
    job.watchers += 1
    try:
        job.log.poll()
        cursor, sent_state = after, None
        while True:
            changed = job.changed  # taken before reading, so no change slips between
            if job.deleted:
                yield _sse("status", json.dumps({"id": job.record.id, "state": "deleted"}, allow_nan=False))
                yield _sse("end", "{}")
                return
            status = manager.status(job)
            if (status["state"], status["attempts"]) != sent_state:
                sent_state = (status["state"], status["attempts"])
                yield _sse("status", json.dumps(status, allow_nan=False))
            for event_id, kind, text in job.log.since(cursor):
                yield _sse(kind, text, event_id)
            cursor = max(cursor, len(job.log) - 1)
            if status["state"] in FINAL_STATES and job.proc is None:
                yield _sse("end", "{}")
                return
            try:
                await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield ": keepalive\n\n"
    finally:
        job.watchers -= 1


def _sse(event: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"
