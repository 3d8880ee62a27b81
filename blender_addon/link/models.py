"""The backend's models as the preferences show them, and their downloads. No bpy here.

:class:`ModelWatch` asks the backend for ``GET /v1/models`` on a thread, and keeps asking every
``interval_s`` while a download runs (progress in bytes and ETA, then done or failed); it starts
and cancels downloads there too. Blender's main thread reads :meth:`ModelWatch.snapshot` and
:meth:`ModelWatch.drain` (what finished, for a report). A Hugging Face token given to
:meth:`ModelWatch.download` is sent in that one request's body and is not kept.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .client import BackendClient, BackendError
from .follow import format_duration

ACTIVE = ("starting", "checking", "downloading")


def format_bytes(count: float | None) -> str:
    if count is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


@dataclass
class ModelRow:
    """One entry of ``GET /v1/models`` (the server's ``ModelEntry``)."""

    name: str
    title: str
    kind: str = ""  # zero123, svd, keypoints
    license: str = ""
    license_note: str = ""
    page_url: str = ""
    gated: bool = False
    used_by: str = ""
    state: str = "missing"  # present, partial, missing
    bytes_on_disk: int = 0
    download_bytes: int | None = None
    download_bytes_exact: bool = False
    downloadable: bool = True
    how_to_get: str = ""
    download: dict | None = None

    @classmethod
    def from_json(cls, data: dict) -> "ModelRow":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def downloading(self) -> bool:
        return self.download is not None and self.download.get("state") in ACTIVE

    @property
    def failure(self) -> str | None:
        """Why the last download failed (None: it did not)."""
        if self.download is not None and self.download.get("state") == "failed":
            return self.download.get("error") or "the download failed"
        return None

    def status_text(self) -> str:
        """``present · 4.9 GB on disk`` / ``missing · about 5.0 GB to download`` / ``partial · ...``."""
        size = format_bytes(self.download_bytes)
        if self.state == "present":
            return f"present · {format_bytes(self.bytes_on_disk)} on disk"
        if not self.downloadable:
            return "missing · fetched by hand" if self.state == "missing" else f"{self.state} · {format_bytes(self.bytes_on_disk)}"
        about = "" if self.download_bytes_exact else "about "
        if self.state == "partial":
            return f"partial · {format_bytes(self.bytes_on_disk)} of {about}{size} on disk"
        return f"missing · {about}{size} to download"

    def progress(self) -> tuple[float, str] | None:
        """While downloading: the bar's fraction and text (bytes, speed, ETA); else None."""
        if not self.downloading:
            return None
        d = self.download
        if d.get("state") != "downloading" or not d.get("total_bytes"):
            return 0.0, "checking the files on the hub..." if d.get("state") == "checking" else "starting..."
        done, total = d.get("done_bytes") or 0, d["total_bytes"]
        text = f"{format_bytes(done)} of {format_bytes(total)}"
        if d.get("speed"):
            text += f" · {format_bytes(d['speed'])}/s"
        if d.get("eta_s") is not None:
            text += f" · {format_duration(d['eta_s'])} left"
        return min(1.0, done / total), text


@dataclass
class ModelsView:
    rows: list[ModelRow] = field(default_factory=list)
    no_model_kinds: str = ""
    cache: str = ""
    error: str | None = None  # the last request that failed
    at: float = 0.0

    @property
    def downloading(self) -> bool:
        return any(r.downloading for r in self.rows)

    def row(self, name: str) -> ModelRow | None:
        return next((r for r in self.rows if r.name == name), None)


@dataclass
class Finished:
    """A download that ended since the last :meth:`ModelWatch.drain`."""

    name: str
    title: str
    state: str  # done, failed, cancelled
    error: str | None = None


class ModelWatch:
    """``connect`` returns a :class:`BackendClient` (it may start the local backend: call it on a
    thread only, which is what this class does)."""

    def __init__(self, connect: Callable[[], BackendClient], interval_s: float = 0.5):
        self.connect = connect
        self.interval_s = interval_s
        self.view = ModelsView()
        self.queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._started: set[str] = set()  # downloads started here whose end is still to report

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> ModelsView:
        return self.view  # replaced whole, never changed in place

    def drain(self) -> list[Finished]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    def refresh(self) -> None:
        """Ask for the list now (and keep asking while something downloads)."""
        self._run(lambda client: None)

    def download(self, name: str, *, accept_license: bool, token: str | None = None) -> None:
        def start(client):
            client.start_download(name, accept_license=accept_license, token=token)
            self._started.add(name)

        self._run(start)

    def cancel(self, name: str) -> None:
        self._run(lambda client: client.cancel_download(name))

    def convert_poseanything(self, file: str) -> None:
        self._run(lambda client: client.convert_poseanything(file))

    def close(self) -> None:
        self._closed = True

    # -- the thread -------------------------------------------------------------------------------
    def _run(self, action: Callable[[BackendClient], object]) -> None:
        def run():
            try:
                client = self.connect()
                action(client)
                self._poll(client)
            except BackendError as exc:
                self.view = ModelsView(self.view.rows, self.view.no_model_kinds, self.view.cache, str(exc), time.time())
            except Exception as exc:  # a bug must reach the user, not die silently in a thread
                self.view = ModelsView(self.view.rows, self.view.no_model_kinds, self.view.cache,
                                       f"{type(exc).__name__}: {exc}", time.time())

        with self._lock:
            previous = self._thread
            self._thread = threading.Thread(target=lambda: (previous.join() if previous else None, run()),
                                            name="dynapose4d-models", daemon=True)
            self._thread.start()

    def _poll(self, client: BackendClient) -> None:
        while not self._closed:
            body = client.models()
            before = {r.name: r for r in self.view.rows}
            rows = [ModelRow.from_json(m) for m in body.get("models", [])]
            self.view = ModelsView(rows, body.get("no_model_kinds", ""), body.get("cache", ""), None, time.time())
            for row in rows:
                old = before.get(row.name)
                ended = row.name in self._started or (old is not None and old.downloading)
                if ended and not row.downloading and row.download:
                    self._started.discard(row.name)
                    self.queue.put(Finished(row.name, row.title, row.download.get("state"), row.failure))
            if not self.view.downloading:
                return
            time.sleep(self.interval_s)
