"""Job uploads: a multipart body parsed as it streams in, with limits, then checked per file.

The form (``multipart/form-data``) holds text fields ``kind`` and ``settings`` (a JSON object)
and one file per input role of the job kind (``pipeline.INPUTS``: ``image``, ``video``, ...).
Parts may come in any order, so a file is stored under its role and its name's suffix while it
streams, and matched against the kind's roles once the body is complete.

Limits are enforced while bytes arrive, never after: a declared Content-Length above the request
limit is refused before reading (and one that would not leave ``RESERVE_BYTES`` free on the disk,
with 507); a file or field that grows past its limit stops the upload with 413 at that moment.
Files are written straight into the job's staging folder under a name we choose
(``<role><suffix>``); the client's file name only contributes its checked suffix.

The per-file checks then open each file as the pipeline will, with bounded work: images are
checked against a pixel limit from their header before any pixel is decoded, JPEGs decode at a
reduced scale, pixels stay 8-bit, and at most ``max_file_checks`` uploads are checked at once.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ...io.jsontext import JsonTextError, load_json
from ...pipeline import INPUTS, SETTINGS, JobFolder, validate_settings
from ..config import UploadLimits
from ..runner.diskspace import RESERVE_BYTES, DiskFull, disk_full_message, free_bytes

_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")
TEXT_FIELDS = ("kind", "settings")


class UploadError(Exception):
    """A refused upload: ``status`` is the HTTP status, the message says what to change."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class StoredFile:
    role: str
    path: Path
    filename: str  # as the client named it (for messages only)
    suffix: str
    size: int = 0


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)


@dataclass
class JobSpec:
    """A checked upload: what :meth:`JobManager.create` turns into a job."""

    kind: str
    settings: dict
    files: dict[str, StoredFile]


async def receive_job(request, staging: Path, limits: UploadLimits, file_checks: asyncio.Semaphore) -> JobSpec:
    """Receive a job-creation form into ``staging`` and check it; raises :class:`UploadError`."""
    # 1. The form, within the limits.
    roles = {role for spec in INPUTS.values() for role in spec}
    form = await receive_form(
        request.headers.get("content-type"), request.headers.get("content-length"), request.stream(), staging, roles, limits
    )
    # 2. Kind and settings.
    kind = form.fields.get("kind", "").strip()
    if kind not in SETTINGS:
        raise UploadError(422, f"form field 'kind' must be one of {', '.join(SETTINGS)}; got {kind[:100]!r}")
    settings = validate_settings(kind, parse_settings(form.fields.get("settings")))
    # 3. Inputs: the right roles, then each file opened the way the pipeline will open it, off
    # the event loop and a few uploads at a time (decoding takes memory and time).
    match_roles(kind, form.files, INPUTS.get(kind, {}))
    async with file_checks:
        await asyncio.to_thread(check_files, form.files, limits)
    return JobSpec(kind, settings, form.files)


def suffix_class(suffix: str) -> str:
    """``image``, ``video``, ``frames`` (a zip), ``json``, ``ply`` or ``other``: decides the size
    limit and the check."""
    from ...formats import FRAME_ARCHIVE_SUFFIXES, IMAGE_SUFFIXES, VIDEO_SUFFIXES

    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in FRAME_ARCHIVE_SUFFIXES:
        return "frames"
    if suffix in (".json", ".ply"):
        return suffix[1:]
    return "other"


def file_limit(suffix: str, limits: UploadLimits) -> int:
    per_class = {
        "image": limits.image_bytes,
        "video": limits.video_bytes,
        "frames": limits.video_bytes,
        "json": limits.json_bytes,
        "ply": limits.ply_bytes,
    }.get(suffix_class(suffix), limits.max_request_bytes)
    return min(per_class, limits.max_request_bytes)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.4g} MiB"


class _FormSink:
    """Multipart callbacks: route each part's bytes to a text field or a file, with limits."""

    def __init__(self, staging: Path, roles: set[str], limits: UploadLimits):
        self.staging = staging
        self.roles = roles
        self.limits = limits
        self.form = ReceivedForm()
        self.parts = 0
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._text: bytearray | None = None
        self._name = ""
        self._file: StoredFile | None = None
        self._fh = None
        self._limit = 0
        self.ended = False  # the closing boundary was seen

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda d, s, e: self._add_header_bytes("field", d[s:e]),
            "on_header_value": lambda d, s, e: self._add_header_bytes("value", d[s:e]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def _add_header_bytes(self, which: str, data: bytes) -> None:
        if which == "field":
            self._header_field += data
        else:
            self._header_value += data

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise UploadError(413, f"too many parts in the form (more than {self.limits.max_parts})")
        self._headers = {}

    def header_end(self) -> None:
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field = self._header_value = b""

    def headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        kind, params = parse_options_header(disposition)
        if kind.lower() != b"form-data" or b"name" not in params:
            raise UploadError(400, "every part of the form needs 'Content-Disposition: form-data; name=...'")
        name = params[b"name"].decode("utf-8", "replace")
        filename = params.get(b"filename")
        if name in self.form.fields or name in self.form.files:
            raise UploadError(422, f"form field {name!r} is given twice")
        self._name = name
        if name in TEXT_FIELDS:
            self._text = bytearray()
            return
        if name not in self.roles:
            expected = ", ".join(TEXT_FIELDS + tuple(sorted(self.roles)))
            raise UploadError(422, f"unknown form field {name!r}; expected: {expected}")
        if filename is None:
            raise UploadError(422, f"input {name!r} must be sent as a file (a part with a filename)")
        client_name = filename.decode("utf-8", "replace")
        suffix = Path(client_name.replace("\\", "/")).suffix.lower()
        if not _SUFFIX.fullmatch(suffix):
            raise UploadError(415, f"input {name!r}: file name {client_name!r} has no usable suffix (e.g. .png); it tells the file's type")
        self._file = StoredFile(name, JobFolder(self.staging).input(f"{name}{suffix}"), client_name, suffix)
        self._file.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self._file.path, "wb")
        self._limit = file_limit(suffix, self.limits)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._text is not None:
            self._text += chunk
            if len(self._text) > self.limits.field_bytes:
                raise UploadError(413, f"form field {self._name!r} is longer than {self.limits.field_bytes} bytes")
            return
        if self._fh is None:
            return
        self._file.size += len(chunk)
        if self._file.size > self._limit:
            raise UploadError(
                413, f"input {self._name!r} ({self._file.filename!r}) is larger than the limit of {_mib(self._limit)} for {self._file.suffix} files"
            )
        self._fh.write(chunk)

    def part_end(self) -> None:
        if self._text is not None:
            try:
                self.form.fields[self._name] = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(422, f"form field {self._name!r} is not UTF-8 text") from None
            self._text = None
        elif self._fh is not None:
            self._fh.close()
            self._fh = None
            self.form.files[self._name] = self._file
            self._file = None

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


async def receive_form(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    staging: Path,
    roles: set[str],
    limits: UploadLimits,
) -> ReceivedForm:
    """Stream a multipart body into ``staging``; raises :class:`UploadError` the moment a limit
    is passed or the body is malformed (after reading and discarding what is left of a body of
    bounded size, :func:`_drain`)."""
    declared = int(content_length) if content_length is not None and content_length.strip().isdigit() else None
    received = [0]
    try:
        return await _receive_form(content_type, content_length, body, staging, roles, limits, received)
    except (UploadError, DiskFull):
        # A client that declared a small enough length sends it all before reading: drain it. A
        # chunked one streams and reads as it goes: it gets the answer at once.
        if declared is not None and declared - received[0] <= DRAIN_BYTES:
            await _drain(body, DRAIN_BYTES, DRAIN_S)
        raise


DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_S = 10.0


async def _drain(body: AsyncIterator[bytes], max_bytes: int, seconds: float) -> None:
    """Read and discard the rest of a refused request body, up to ``max_bytes`` within
    ``seconds``. A client that sends its whole body before it reads the answer (Python's
    http.client, requests) otherwise meets a closed connection (a reset) instead of our 413 or
    507; a body larger than the bound still gets the reset, as sending it would cost more."""

    async def discard() -> None:
        drained = 0
        async for chunk in body:
            drained += len(chunk)
            if drained > max_bytes:
                return

    try:
        await asyncio.wait_for(discard(), seconds)  # a client that stalls gets the answer after `seconds`
    except Exception:  # noqa: BLE001 - a stalled or vanished client: nothing more to read
        return


def _sizes(size: int, limit: int) -> tuple[str, str]:
    """A size and a limit as MiB, in bytes where rounding would show them equal."""
    if _mib(size) == _mib(limit):
        return f"{size:,} bytes", f"{_mib(limit)} ({limit:,} bytes)"
    return _mib(size), _mib(limit)


async def _receive_form(content_type, content_length, body, staging, roles, limits, received: list[int]) -> ReceivedForm:
    # 1. Headers: the content type, and a declared length we can refuse without reading.
    kind, params = parse_options_header(content_type or "")
    if kind.lower() != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(415, "a job is created with a multipart/form-data body (fields kind, settings and the input files)")
    if content_length is not None:
        if not content_length.strip().isdigit():
            raise UploadError(400, f"bad Content-Length {content_length[:40]!r}")
        if int(content_length) > limits.max_request_bytes:
            size, limit = _sizes(int(content_length), limits.max_request_bytes)
            raise UploadError(413, f"the upload ({size}) is larger than the limit of {limit}")
        if int(content_length) + RESERVE_BYTES > free_bytes(staging):
            raise DiskFull(disk_full_message(staging.parents[1]))
    # 2. The body, chunk by chunk.
    sink = _FormSink(staging, roles, limits)
    parser = MultipartParser(params[b"boundary"], sink.callbacks())
    try:
        async for chunk in body:
            received[0] += len(chunk)
            if received[0] > limits.max_request_bytes:
                raise UploadError(413, f"the upload is larger than the limit of {_sizes(received[0], limits.max_request_bytes)[1]}")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise UploadError(400, f"the multipart body is malformed: {exc}") from None
    finally:
        sink.close()
    if not sink.ended:
        raise UploadError(400, "the multipart body ended before its closing boundary (an incomplete upload?)")
    return sink.form


def parse_settings(text: str | None) -> dict:
    if text is None or not text.strip():
        return {}
    try:
        value = load_json(text, "the settings")
    except JsonTextError as exc:
        raise UploadError(422, f"settings must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise UploadError(422, f"settings must be a JSON object like {{\"iterations\": 200}}; got {type(value).__name__}")
    return value


def match_roles(kind: str, files: dict[str, StoredFile], inputs_spec: dict[str, tuple[bool, tuple[str, ...]]]) -> None:
    """The files against the kind's declared inputs: known roles, required ones present, suffixes."""
    for role, stored in files.items():
        if role not in inputs_spec:
            raise UploadError(422, f"a {kind} job takes no {role!r} input; it takes: {', '.join(inputs_spec) or 'none'}")
        suffixes = inputs_spec[role][1]
        if suffixes and stored.suffix not in suffixes:
            raise UploadError(415, f"input {role!r}: {stored.filename!r} is not one of {', '.join(suffixes)}")
    for role, (required, suffixes) in inputs_spec.items():
        if required and role not in files:
            raise UploadError(422, f"a {kind} job needs an {role!r} input ({', '.join(suffixes)})")


# -------------------------------------------------------------------------------------------------
# content checks (run in a worker thread: decoding an image takes a moment)


def check_files(files: dict[str, StoredFile], limits: UploadLimits) -> None:
    """Open every uploaded file the way the pipeline will; raise UploadError(422) naming the
    first one that cannot be used."""
    image_size = None
    for stored in files.values():
        if stored.size == 0:
            raise UploadError(422, f"input {stored.role!r} ({stored.filename!r}) is empty (0 bytes)")
        cls = suffix_class(stored.suffix)
        if cls == "image":
            size = _check_image(stored, limits.max_image_pixels)
            image_size = image_size or size
        elif cls == "video":
            _check_video(stored, limits.max_image_pixels)
        elif cls == "frames":
            _extract_frames(stored, limits)
        elif cls == "ply":
            _check_ply(stored)
    for stored in files.values():
        if suffix_class(stored.suffix) == "json":
            _check_json(stored, image_size)


def _named(stored: StoredFile, message: str) -> str:
    """A library's message with our staging path replaced by what the client sent."""
    return message.replace(str(stored.path), f"input {stored.role!r} ({stored.filename!r})")


def _check_image(stored: StoredFile, max_pixels: int) -> tuple[int, int]:
    """Decode the image once, cheaply, as the pipeline will load it (``images.check_image``):
    its (width, height)."""
    from ...imaging.images import ImageLoadError, check_image

    try:
        return check_image(stored.path, f"input {stored.role!r} ({stored.filename!r})", max_pixels=max_pixels)
    except ImageLoadError as exc:
        raise UploadError(422, _named(stored, str(exc))) from None


def _check_video(stored: StoredFile, max_pixels: int) -> None:
    import cv2

    cap = cv2.VideoCapture(str(stored.path))
    try:
        if not cap.isOpened():
            raise UploadError(
                422, f"input {stored.role!r} ({stored.filename!r}) cannot be opened as a video; convert it to MP4 (H.264), "
                "or upload its frames (PNG or JPEG) as a .zip with the setting video_fps"
            )
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w * h > max_pixels:
            raise UploadError(422, f"input {stored.role!r}: frames of {w}x{h} are above the limit of {max_pixels:,} pixels")
        ok, _ = cap.read()
        if not ok:
            raise UploadError(422, f"input {stored.role!r} ({stored.filename!r}) has no decodable frames")
    finally:
        cap.release()


def _extract_frames(stored: StoredFile, limits: UploadLimits) -> None:
    """A zip of frames becomes the job's frame folder (video/frame_folder.py refuses links, paths
    out of the folder, non-images, bombs, unreadable members and frames the pipeline could not
    use, each by the member's name: the same checks as the CLI's). ``stored.path`` is the folder
    afterwards."""
    from dataclasses import replace

    from ...io.job_folder import FRAMES_INPUT
    from ...video.frame_folder import FrameZipError, extract_frames_zip

    name = f"input {stored.role!r} ({stored.filename!r})"
    folder = stored.path.with_name(FRAMES_INPUT)
    try:
        extract_frames_zip(stored.path, folder, replace(limits.frame_zip, max_pixels=limits.max_image_pixels), name=name)
    except FrameZipError as exc:
        if exc.no_space:
            raise DiskFull(str(exc)) from None
        raise UploadError(413 if exc.too_large else 422, str(exc)) from None
    stored.path.unlink()
    stored.path = folder


def _check_ply(stored: StoredFile) -> None:
    from ...io.ply import PlyError, read_ply

    try:
        gaussians = read_ply(stored.path)
    except PlyError as exc:
        raise UploadError(422, _named(stored, str(exc))) from None
    from ...pipeline.static_sources import check_ply_size

    try:
        check_ply_size(gaussians.num, f"input {stored.role!r} ({stored.filename!r})")
    except ValueError as exc:
        raise UploadError(422, str(exc)) from None


def _check_json(stored: StoredFile, image_size: tuple[int, int] | None) -> None:
    text = stored.path.read_bytes()
    if "keypoint" in stored.role:
        from ...keypoints.base import KeypointError, parse_keypoints_json

        try:
            parse_keypoints_json(text, image_size=image_size)
        except KeypointError as exc:
            raise UploadError(422, f"input {stored.role!r}: {exc}") from None
        return
    try:
        load_json(text, f"input {stored.role!r} ({stored.filename!r})")
    except JsonTextError as exc:
        raise UploadError(422, str(exc)) from None
