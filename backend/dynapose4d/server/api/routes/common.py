"""What every router shares: the API prefix, the documented error responses, and the warm-up of
the heavy imports."""

from __future__ import annotations

from ..schemas import ErrorBody

API = "/v1"

_ERRORS = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "malformed request",
        401: "missing or wrong token",
        403: "Host header refused",
        404: "no such job, or nothing to show yet",
        408: "the request body stalled (slow client)",
        409: "the job is in the wrong state for this",
        413: "upload too large, or a result request over the server's memory limit per request",
        415: "wrong content or file type",
        422: "invalid settings, inputs or parameters",
        503: "the self-test could not run on the server's machine",
        507: "not enough disk space",
    }.items()
}


def errors(*codes: int, json_route: bool = True) -> dict:
    """Documented error responses. Routes whose success is not JSON (frames, zip, text, SSE)
    still answer errors in JSON, so say so explicitly (FastAPI would use the route's type)."""
    out = {code: _ERRORS[code] for code in (401, 403, *codes)}
    if not json_route:
        ref = {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        out = {code: {"description": r["description"], "content": {"application/json": ref}} for code, r in out.items()}
    return out


def warm_imports() -> None:
    """Import the heavy modules (and load the compiled skinning kernel) once at start-up, not
    inside the first upload or frame request."""
    from .... import dynamic4d  # noqa: F401
    from ....deform import skinning_numba
    from ....imaging import images  # noqa: F401
    from ....video import clip  # noqa: F401

    skinning_numba.warm_up()
