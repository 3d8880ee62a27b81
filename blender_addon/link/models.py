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
    thread only, which is what this class does). Each action runs on a thread of its own; one
    poller keeps the list fresh while anything downloads."""

    def __init__(self, connect: Callable[[], BackendClient], interval_s: float = 0.5):
        self.connect = connect
        self.interval_s = interval_s
        self.view = ModelsView()
        self.queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._poller: threading.Thread | None = None
        self._again = False  # an action happened while the poller ran: poll at least once more
        self._actions = 0
        self._closed = False
        self._started: set[str] = set()  # downloads started here whose end is still to report

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._actions > 0 or self._poller is not None

    def snapshot(self) -> ModelsView:
        return self.view  # replaced whole, never changed in place

    def drain(self) -> list[Finished]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out

    def refresh(self) -> None:
        """Ask for the list now (and keep asking while something downloads)."""
        self._act(lambda client: None)

    def download(self, name: str, *, accept_license: bool, token: str | None = None) -> None:
        def start(client):
            client.start_download(name, accept_license=accept_license, token=token)
            self._started.add(name)

        self._act(start)

    def cancel(self, name: str) -> None:
        self._act(lambda client: client.cancel_download(name))

    def convert_poseanything(self, file: str) -> None:
        self._act(lambda client: client.convert_poseanything(file))

    def close(self) -> None:
        self._closed = True

    # -- the threads ------------------------------------------------------------------------------
    def _failed(self, message: str) -> None:
        self.view = ModelsView(self.view.rows, self.view.no_model_kinds, self.view.cache, message, time.time())

    def _act(self, action: Callable[[BackendClient], object]) -> None:
        def run():
            try:
                action(self.connect())
                self._poll_soon()
            except BackendError as exc:
                self._failed(str(exc))
            except Exception as exc:  # a bug must reach the user, not die silently in a thread
                self._failed(f"{type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._actions -= 1

        with self._lock:
            self._actions += 1
        threading.Thread(target=run, name="dynapose4d-models", daemon=True).start()

    def _poll_soon(self) -> None:
        with self._lock:
            if self._poller is not None:
                self._again = True
                return
            self._poller = threading.Thread(target=self._poll, name="dynapose4d-models-poll", daemon=True)
            self._poller.start()

    def _poll(self) -> None:
        try:
            client = self.connect()
            while not self._closed:
                self._read(client.models())
                with self._lock:  # the end is decided where _poll_soon looks: no poke is lost
                    if not self.view.downloading and not self._again:
                        self._poller = None
                        return
                    self._again = False
                time.sleep(self.interval_s)
        except BackendError as exc:
            self._failed(str(exc))
        except Exception as exc:  # as in _act
            self._failed(f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._poller = None

    def _read(self, body: dict) -> None:
        before = {r.name: r for r in self.view.rows}
        rows = [ModelRow.from_json(m) for m in body.get("models", [])]
        self.view = ModelsView(rows, body.get("no_model_kinds", ""), body.get("cache", ""), None, time.time())
        for row in rows:
            old = before.get(row.name)
            ended = row.name in self._started or (old is not None and old.downloading)
            if ended and not row.downloading and row.download:
                self._started.discard(row.name)
                self.queue.put(Finished(row.name, row.title, row.download.get("state"), row.failure))
