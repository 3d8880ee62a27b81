"""The models on the backend's machine: ``/models`` (each with its licence, what of it is on disk
and its download), ``/models/{name}/download`` (start it: the licence must have been accepted)
and its ``cancel``, and ``/models/poseanything/convert`` (the keypoint weights, fetched by hand).

Downloads run in child processes (:mod:`dynapose4d.weights.downloads`), so a remote backend
downloads on its own machine. A Hugging Face token comes in the request body and goes into that
child's environment only: never into a state, a log line or an answer (a body that cannot be
read is refused without quoting it).
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, HTTPException, Request

from ....weights import MODELS, NO_MODEL_KINDS, format_bytes, get_spec, model_on_disk
from ....weights.download import cache_folder, licence_text
from ....weights.downloads import DownloadConflict, ModelDownloads
from ..schemas import ModelEntry, ModelList
from .common import errors

POSEANYTHING = "poseanything"
POSEANYTHING_PAGE = "https://github.com/orhir/PoseAnything"
POSEANYTHING_USE = "Generate and Animate with the keypoint estimator PoseAnything or CAPE + tracker (the default tracker needs none)"
MAX_BODY = 16_384


def models_router(downloads: ModelDownloads) -> APIRouter:
    router = APIRouter()

    @router.get("/models", response_model=ModelList, responses=errors())
    async def list_models() -> dict:
        """Every model: licence, state on disk (present, partial, missing), sizes, download."""
        rows = await asyncio.to_thread(lambda: [model_entry(name, downloads) for name in MODELS] + [poseanything_entry()])
        return {"models": rows, "no_model_kinds": NO_MODEL_KINDS, "cache": str(downloads.cache_dir or _cache())}

    @router.get("/models/{name}", response_model=ModelEntry, responses=errors(404))
    async def one_model(name: str) -> dict:
        """One model, as in the list."""
        return await asyncio.to_thread(_entry, name, downloads)

    @router.post("/models/{name}/download", status_code=202, response_model=ModelEntry, responses=errors(400, 404, 409, 422),
                 openapi_extra=_download_openapi())
    async def start_download(name: str, request: Request) -> dict:
        """Download the model on the backend's machine (into its Hugging Face cache). The body must
        say ``accept_license: true`` (show the licence first); ``token``: a Hugging Face token for a
        gated model (used by this download only). Follow it with ``GET /models/{name}``."""
        body = await _read_body(request)
        spec = _spec(name)
        if body.get("accept_license") is not True:
            raise HTTPException(422, f"accept the licence of {spec.title} first (send accept_license: true once the user "
                                     f"has read it):\n{licence_text(spec)}")
        token = body.get("token")
        if token is not None and not isinstance(token, str):
            raise HTTPException(400, "token must be a string (a Hugging Face access token) or null")
        full = body.get("full_precision", False)
        if not isinstance(full, bool):
            raise HTTPException(400, "full_precision must be true or false")
        try:
            await asyncio.to_thread(downloads.start, name, token=token or None, full_precision=full)
        except DownloadConflict as exc:
            raise HTTPException(409, str(exc)) from None
        return await asyncio.to_thread(_entry, name, downloads)

    @router.post("/models/{name}/download/cancel", response_model=ModelEntry, responses=errors(404, 409))
    async def cancel_download(name: str) -> dict:
        """Stop the model's download. Its complete files stay: the next download goes on from there."""
        _spec(name)
        try:
            await asyncio.to_thread(downloads.cancel, name)
        except DownloadConflict as exc:
            raise HTTPException(409, str(exc)) from None
        return await asyncio.to_thread(_entry, name, downloads)

    @router.post("/models/poseanything/convert", response_model=ModelEntry, responses=errors(400, 422))
    async def convert_poseanything(request: Request) -> dict:
        """Convert the PoseAnything checkpoint at ``file`` (a path on the backend's machine, downloaded
        by hand from the model's page) into the safetensors folder the estimator loads."""
        body = await _read_body(request)
        path = body.get("file")
        if not isinstance(path, str) or not path.strip():
            raise HTTPException(400, "give the checkpoint's path on the backend's machine as file")
        from ....keypoints.poseanything import weights

        try:
            await asyncio.to_thread(weights.convert_checkpoint, path.strip())
        except (weights.PoseAnythingWeightsError, OSError) as exc:
            raise HTTPException(422, str(exc)) from None
        return await asyncio.to_thread(poseanything_entry)

    return router


def model_entry(name: str, downloads: ModelDownloads) -> dict:
    """A registered model as :class:`~..schemas.ModelEntry` (reads the disk: call off the loop)."""
    spec = get_spec(name)
    disk = model_on_disk(name, cache_dir=downloads.cache_dir)
    download = downloads.state(name)
    exact = download is not None and download.total_bytes is not None
    return {
        "name": spec.name, "title": spec.title, "kind": spec.kind, "repo_id": spec.repo_id, "license": spec.license_name,
        "license_note": spec.license_note, "page_url": spec.page_url, "gated": spec.gated, "used_by": spec.used_by,
        "description": spec.description, "state": disk.state, "bytes_on_disk": disk.bytes, "source": disk.source,
        "path": str(disk.path) if disk.path else None,
        "download_bytes": download.total_bytes if exact else spec.approx_bytes, "download_bytes_exact": exact,
        "downloadable": True,
        "how_to_get": f"Download it here (about {format_bytes(spec.approx_bytes)}), or point {spec.env_var} to a folder "
                      "in the diffusers layout on the backend's machine",
        "download": download.to_dict() if download is not None else None,
    }


def poseanything_entry() -> dict:
    """The CAPE keypoint weights: from the PoseAnything release by hand, then converted here."""
    from ....keypoints.poseanything import weights

    folder = weights.default_folder()
    present = (folder / weights.WEIGHTS_FILE).is_file() and (folder / weights.CONFIG_FILE).is_file()
    on_disk = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
    return {
        "name": POSEANYTHING, "title": "PoseAnything (CAPE keypoints)", "kind": "keypoints", "repo_id": None,
        "license": weights.POSEANYTHING.license_name, "license_note": "code and weights under Apache-2.0.",
        "page_url": POSEANYTHING_PAGE, "gated": False, "used_by": POSEANYTHING_USE,
        "description": weights.POSEANYTHING.title, "state": "present" if present else ("partial" if on_disk else "missing"),
        "bytes_on_disk": on_disk, "source": "folder" if present else None, "path": str(folder),
        "download_bytes": None, "download_bytes_exact": False, "downloadable": False,
        "how_to_get": f"Download the checkpoint (.pth) from {weights.POSEANYTHING.url}, then convert it here (or run "
                      "`dynapose4d models convert-poseanything FILE` on the backend's machine)",
        "download": None,
    }


def _entry(name: str, downloads: ModelDownloads) -> dict:
    return poseanything_entry() if name == POSEANYTHING else model_entry(_spec(name).name, downloads)


def _spec(name: str):
    if name == POSEANYTHING:
        raise HTTPException(409, "PoseAnything's weights are not on the Hugging Face Hub: download the checkpoint by hand "
                                 "and convert it (POST /models/poseanything/convert)")
    try:
        return get_spec(name)
    except ValueError as exc:
        raise HTTPException(404, str(exc)) from None


def _cache() -> str:
    try:
        return str(cache_folder())
    except Exception:  # noqa: BLE001 - huggingface_hub missing: the downloads say so themselves
        return "(huggingface_hub is not installed)"


async def _read_body(request: Request) -> dict:
    """The JSON object of a small body. Never quoted back: it may hold a token."""
    data = await request.body()
    if len(data) > MAX_BODY:
        raise HTTPException(400, f"the request body is over {MAX_BODY} bytes")
    if not data.strip():
        return {}
    try:
        body = json.loads(data)
    except ValueError:
        raise HTTPException(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the request body must be a JSON object")
    return body


def _download_openapi() -> dict:
    schema = {
        "type": "object",
        "properties": {
            "accept_license": {"type": "boolean", "description": "true once the user has read and accepted the licence"},
            "token": {"type": ["string", "null"], "description": "Hugging Face token for a gated model (this download only)"},
            "full_precision": {"type": "boolean", "description": "SVD: fp32 weights instead of fp16"},
        },
        "required": ["accept_license"],
    }
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
