"""``dynapose4d batch MANIFEST --out FOLDER``: many jobs from one manifest, on a server or here.

The manifest has one job a line, as JSON lines (``.jsonl``, ``.ndjson``, ``.json``)::

    {"name": "lamp", "kind": "generate", "inputs": {"image": "art/lamp.png"}, "settings": {"preset": "fast"}}

or as CSV (``.csv``) with the columns ``kind``, optionally ``name`` and ``settings`` (a JSON
object), and one column per input role (``image``, ``video``, ``ply``, ``keypoints``)::

    name,kind,image,settings
    lamp,generate,art/lamp.png,"{""preset"": ""fast""}"

Input paths are relative to the manifest's folder. Blank lines and lines starting with ``#`` are
skipped. A line that cannot become a job (unknown kind, a bad setting, a missing file, a name
used twice) is reported with its line number and skipped; the other lines run.

Where the jobs run: with ``--server ADDRESS_FILE`` (or ``--server default``, the address file a
running ``dynapose4d serve`` writes) they are submitted to that server, which runs them with its
executor (local worker processes or a Ray cluster, docs/cluster.md) and keeps them in its jobs
folder; without it they run here, one after the other, each in ``FOLDER/<name>/``.

Resumable: ``FOLDER/batch-state.json`` remembers each job (its server job id or folder, status,
time). Running the same batch again skips the finished jobs, resumes the others from their last
checkpoint, and starts the ones that never ran. At the end a table and ``FOLDER/summary.json``
give each job's status, time and output folder. A job's name (given, or derived from its kind,
inputs and settings) is its identity across runs: an edited line is a new job.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import http.client
import json
import os
import stat
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..server.runner.store import (
    FINAL_STATES as SERVER_FINAL,  # "waiting" too: it waits for a person, not for the batch
)

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
CSV_SUFFIXES = (".csv",)
STATE_FILE = "batch-state.json"
SUMMARY_FILE = "summary.json"
FINISHED = "done"
POLL_S = 0.5


# -- the manifest -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchJob:
    line: int
    name: str
    kind: str
    inputs: dict  # role -> absolute Path
    settings: dict  # as written (its identity; what a server is sent)
    checked: dict  # the settings through validate_settings, defaults filled in (what a job here writes)


@dataclass(frozen=True)
class BadLine:
    line: int
    error: str


MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_LINE_BYTES = 64 * 1024  # a line, and its settings: the server's limit on a form field (UploadLimits.field_bytes)
MAX_NAME_CHARS = 128
MAX_PATH_CHARS = 4096


def read_manifest(path: Path) -> tuple[list[BatchJob], list[BadLine]]:
    """The jobs of a manifest and the lines that cannot be jobs (with why). Each line is parsed
    on its own, with the server's JSON limits (``io.jsontext``), so a bad line never stops the
    others."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in JSON_SUFFIXES + CSV_SUFFIXES:
        raise ValueError(f"the manifest {path} should be JSON lines ({', '.join(JSON_SUFFIXES)}) or CSV (.csv)")
    text = _read_manifest_text(path)
    rows = _json_rows(text) if suffix in JSON_SUFFIXES else _csv_rows(text)
    jobs, bad, names = [], [], {}
    for line, row in rows:
        try:
            if isinstance(row, Exception):
                raise row
            job = _job_from_row(line, row, path.parent)
            if job.name in names:
                raise ValueError(f"the job name {job.name!r} is already used on line {names[job.name]}")
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            bad.append(BadLine(line, str(exc)[:500]))
            continue
        names[job.name] = line
        jobs.append(job)
    return jobs, bad


def _read_manifest_text(path: Path) -> str:
    """The manifest's text, read as a regular file of at most MAX_MANIFEST_BYTES: a link to a
    device (/dev/zero) or a pipe (which would block for ever) is refused before any read."""
    try:  # O_NONBLOCK: opening a FIFO does not wait for a writer; it is refused just below
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ValueError(f"cannot read the manifest {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"the manifest {path} is not a regular file (a device, a pipe or a folder); give a .jsonl or .csv file")
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"the manifest {path} is larger than {MAX_MANIFEST_BYTES // 2**20} MiB; split it into several batches")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the manifest {path} is not UTF-8 text (byte {exc.start})") from None


def _lines(text: str):
    """``(number, line)`` of the lines that are not blank or comments; a line longer than the
    limit is a ValueError in its place."""
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if len(raw.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
            yield number, ValueError(f"the line is longer than {MAX_LINE_BYTES // 1024} KiB")
            continue
        yield number, raw


def _json_rows(text: str):
    from ..io.jsontext import load_json

    for number, raw in _lines(text):
        if isinstance(raw, Exception):
            yield number, raw
            continue
        try:
            row = load_json(raw, "the line", max_bytes=MAX_LINE_BYTES)
        except ValueError as exc:
            yield number, ValueError(f"not a JSON object: {exc}")
            continue
        yield number, row if isinstance(row, dict) else ValueError("not a JSON object")


def _csv_rows(text: str):
    from ..io.jsontext import load_json

    header = None
    for number, raw in _lines(text):
        try:
            if isinstance(raw, Exception):
                raise raw
            values = next(csv.reader([raw]))
        except (ValueError, csv.Error) as exc:
            if header is None:
                raise ValueError(f"line {number}: the CSV header cannot be read ({exc})") from None
            yield number, ValueError(f"not a CSV row: {exc}")
            continue
        if header is None:
            header = [h.strip() for h in values]
            if "kind" not in header:
                yield number, ValueError(f"the CSV header needs a 'kind' column (it has: {', '.join(header)[:200]})")
                return
            continue
        if len(values) != len(header):
            yield number, ValueError(f"{len(values)} fields where the header has {len(header)}")
            continue
        cells = {h: v.strip() for h, v in zip(header, values)}
        row = {"kind": cells.pop("kind"), "inputs": {}}
        if cells.get("name"):
            row["name"] = cells["name"]
        cells.pop("name", None)
        settings = cells.pop("settings", "")
        if settings:
            try:
                row["settings"] = load_json(settings, "the settings column", max_bytes=MAX_LINE_BYTES)
            except ValueError as exc:
                yield number, ValueError(f"the settings column is not JSON: {exc}")
                continue
        row["inputs"] = {role: value for role, value in cells.items() if value}
        yield number, row


def _shown(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _job_from_row(line: int, row: dict, base: Path) -> BatchJob:
    from ..pipeline import INPUTS, SETTINGS, validate_settings

    unknown = set(row) - {"name", "kind", "inputs", "settings"}
    if unknown:
        fields = ", ".join(sorted(map(str, unknown)))
        raise ValueError(f"unknown field(s) {fields if len(fields) <= 80 else fields[:80] + '...'}; a line has name, kind, inputs and settings")
    kind = row.get("kind")
    if not isinstance(kind, str) or kind not in SETTINGS:
        raise ValueError(f"unknown job kind {_shown(kind)}; choose one of {', '.join(SETTINGS)}")
    settings = row.get("settings") or {}
    inputs = row.get("inputs") or {}
    if not isinstance(settings, dict) or not isinstance(inputs, dict):
        raise ValueError("'settings' and 'inputs' must be JSON objects")
    checked = validate_settings(kind, settings)  # the batch's one check; JobError is a ValueError that names the setting
    paths = {role: _input_path(kind, role, value, base) for role, value in inputs.items()}
    for role, (required, _) in INPUTS[kind].items():
        if required and role not in paths:
            raise ValueError(f"a {kind} job needs an {role!r} input")
    name = row.get("name") or _derived_name(kind, paths, settings)
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".") or not name.isprintable():
        raise ValueError(f"the job name {_shown(name)} cannot be a folder name")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"the job name {_shown(name, 40)} has {len(name):,} characters; at most {MAX_NAME_CHARS} are allowed")
    return BatchJob(line, name, kind, paths, settings, checked)


def _input_path(kind: str, role: str, value, base: Path) -> Path:
    """An input file of a line: a regular file with the role's suffix; a link must stay inside
    the manifest's folder (``x.png -> /etc/shadow`` would upload a file the line does not name)."""
    from ..pipeline import INPUTS

    roles = INPUTS[kind]
    if role not in roles:
        raise ValueError(f"a {kind} job takes no {role!r} input; it takes: {', '.join(roles) or 'none'}")
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS:
        raise ValueError(f"input {role!r} must be a file path (text of at most {MAX_PATH_CHARS} characters), got {_shown(value)}")
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise ValueError(f"input {role!r}: {p} is not a file")
    real = p.resolve()
    if real != Path(os.path.normpath(p.absolute())) and not real.is_relative_to(base.resolve()):
        raise ValueError(f"input {role!r}: {p.name} is a link to a file outside the manifest's folder; copy the file in instead")
    for name in (p.name, real.name):
        if Path(name).suffix.lower() not in roles[role][1]:
            raise ValueError(f"input {role!r}: {name} should be one of {', '.join(roles[role][1])}")
    return real


def _derived_name(kind: str, inputs: dict, settings: dict) -> str:
    what = json.dumps({"kind": kind, "inputs": {r: str(p) for r, p in sorted(inputs.items())}, "settings": settings}, sort_keys=True)
    return f"{kind}-{hashlib.sha256(what.encode()).hexdigest()[:10]}"


# -- state across runs --------------------------------------------------------------------------
@dataclass
class JobState:
    name: str
    line: int
    kind: str
    status: str = "pending"  # pending | queued | running | done | failed | cancelled | interrupted
    seconds: float | None = None
    folder: str | None = None
    server_job: str | None = None
    error: str | None = None
    stage: str | None = None
    progress: float | None = None
    eta_s: float | None = None
    skipped: bool = field(default=False)  # finished by an earlier run of this batch


class BatchState:
    """``batch-state.json``: what earlier runs of this batch did, saved after every change. A file
    that is not a batch state (not JSON, not ``{"jobs": {...}}``, too large) is set aside as
    ``batch-state.json.bad-<time>`` and the batch starts over; ``warning`` says so."""

    MAX_BYTES = 64 * 1024 * 1024

    def __init__(self, out: Path):
        self.path = out / STATE_FILE
        self.jobs: dict[str, dict] = {}
        self.warning: str | None = None
        if self.path.exists() or self.path.is_symlink():
            try:
                self.jobs = self._read()
            except (OSError, ValueError) as exc:
                aside = self.path.with_name(f"{STATE_FILE}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
                os.replace(self.path, aside)
                self.warning = f"{self.path} is not a batch state ({str(exc)[:200]}); it was set aside as {aside.name} and the batch starts over"

    def _read(self) -> dict[str, dict]:
        from ..io.jsontext import load_json

        if not self.path.is_file():
            raise ValueError("not a regular file")
        with open(self.path, "rb") as fh:
            data = load_json(fh.read(self.MAX_BYTES + 1), "it", max_bytes=self.MAX_BYTES)
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(jobs, dict):
            raise ValueError('it should be a JSON object {"jobs": {...}}')
        return {name: _state_entry(entry) for name, entry in jobs.items() if isinstance(entry, dict)}

    def save(self, states: list[JobState]) -> None:
        for s in states:
            self.jobs[s.name] = {k: v for k, v in asdict(s).items() if k not in ("stage", "progress", "eta_s", "skipped")}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"jobs": self.jobs}, indent=1))
        os.replace(tmp, self.path)


def _state_entry(entry: dict) -> dict:
    """The fields of an earlier run's record that have the right type (a server job id must be
    one: it becomes part of a URL)."""
    from ..server.runner.store import UnknownJob, check_job_id

    out = {}
    for key in ("status", "folder", "error", "server_job"):
        if isinstance(entry.get(key), str) and len(entry[key]) <= MAX_PATH_CHARS:
            out[key] = entry[key]
    if isinstance(entry.get("seconds"), (int, float)) and not isinstance(entry["seconds"], bool):
        out["seconds"] = float(entry["seconds"])
    if out.get("status") not in (*SERVER_FINAL, "pending", "queued", "running", None):
        out.pop("status")
    try:
        if "server_job" in out:
            check_job_id(out["server_job"])
    except UnknownJob:
        out.pop("server_job")
    return out


# -- the progress display -----------------------------------------------------------------------
class BatchProgress:
    """Per-job stage, progress and ETA and the batch's done/failed counts (rich, on stderr; plain
    lines for each finished job too, so a log keeps them)."""

    def __init__(self, states: list[JobState], console=None):
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import BarColumn, Progress, TextColumn

        self.console = console or Console(stderr=True)
        self.states = states
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=False,
        )
        self.overall = self.progress.add_task("batch", total=len(states) or 1, info="")
        self.tasks = {s.name: self.progress.add_task(f"  {escape(s.name)}", total=1.0, info=s.status) for s in states}
        self._reported: set[str] = {s.name for s in states if s.skipped}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.update()
        self.progress.stop()

    def update(self) -> None:
        for s in self.states:
            eta = f", eta {_duration(s.eta_s)}" if s.eta_s is not None and s.status == "running" else ""
            stage = f" {s.stage}" if s.stage and s.status == "running" else ""
            info = ("done (earlier run)" if s.skipped else s.status) + stage + eta
            done = 1.0 if s.status == FINISHED else (s.progress or 0.0)
            self.progress.update(self.tasks[s.name], completed=done, info=info)
            if s.status in SERVER_FINAL and s.name not in self._reported:
                self._reported.add(s.name)
                took = f" in {s.seconds:.1f} s" if s.seconds is not None else ""
                why = f": {s.error.splitlines()[0]}" if s.error else ""
                self.progress.console.print(f"{s.name} (line {s.line}): {s.status}{took}{why}", markup=False, highlight=False)
        counts = _counts(self.states)
        self.progress.update(self.overall, completed=counts["done"] + counts["failed"],
                             info=f"{counts['done']} done, {counts['failed']} failed, {counts['active']} to go")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _counts(states: list[JobState]) -> dict:
    done = sum(s.status == FINISHED for s in states)
    failed = sum(s.status in ("failed", "cancelled", "interrupted") for s in states)
    return {"done": done, "failed": failed, "active": len(states) - done - failed}


# -- running here -------------------------------------------------------------------------------
def run_here(jobs: list[BatchJob], states: list[JobState], out: Path, save, display) -> None:
    """Each job in ``out/<name>/``, one after the other, in this process (a job folder that
    exists is resumed from its checkpoints)."""
    import shutil

    from ..events import ProgressEvent, StageEvent
    from ..pipeline import JobFolder, run_job, write_job

    for job, state in zip(jobs, states):
        if state.status == FINISHED:
            continue
        folder = JobFolder(out / job.name)
        state.folder, state.status, state.error = str(folder.root), "running", None
        save()

        def follow(event, state=state):
            if isinstance(event, ProgressEvent):
                state.stage, state.progress, state.eta_s = event.stage, event.iteration / max(1, event.total), event.eta_s
                display()
            elif isinstance(event, StageEvent):
                state.stage = event.stage
                display()

        t0 = time.monotonic()
        try:
            written = not folder.job_file.exists()
            if written:
                folder.inputs.mkdir(parents=True, exist_ok=True)
                for role, src in job.inputs.items():
                    shutil.copyfile(src, folder.input(src.name))
                write_job(folder.root, job.kind, job.checked, {role: src.name for role, src in job.inputs.items()}, validated=True)
            summary = run_job(folder.root, emit=follow, validated=written)  # a job.json from an earlier run is checked
            state.status = FINISHED if summary.get("status") == "finished" else "interrupted"
        except KeyboardInterrupt:
            state.status, state.error = "interrupted", "interrupted by the user; run the batch again to resume"
            raise
        except Exception as exc:  # noqa: BLE001 - one job's failure is reported; the batch goes on
            state.status, state.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            state.seconds = (state.seconds or 0.0) + time.monotonic() - t0  # over every run of the batch
            save()
            display()


# -- running on a server ------------------------------------------------------------------------
class ServerClient:
    """The few calls the batch makes, with the standard library (the add-on's client lives in the
    add-on, which the backend does not import)."""

    def __init__(self, address_file: Path):
        from ..server.address import read_address_file

        try:
            info = read_address_file(address_file)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the server's address file {address_file} ({exc}); is `dynapose4d serve` running?") from None
        self.host, self.port, self.token = info["host"], info["port"], info["token"]
        self.jobs_dir = Path(info["jobs_dir"]) if info.get("jobs_dir") else None

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            conn.request(method, "/v1" + path, body=body, headers={"Authorization": f"Bearer {self.token}", **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
        except OSError as exc:
            raise ValueError(f"the server at {self.host}:{self.port} does not answer ({exc})") from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(data) if data else {}
        except ValueError:
            return resp.status, {"detail": data.decode(errors="replace")}

    def create(self, job: BatchJob) -> tuple[int, dict]:
        boundary = "----dp4d-batch" + uuid.uuid4().hex
        out = bytearray()
        for key, value in (("kind", job.kind), ("settings", json.dumps(job.settings))):
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for role, path in job.inputs.items():
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{role}"; filename="{path.name}"\r\n'.encode()
            out += b"Content-Type: application/octet-stream\r\n\r\n" + path.read_bytes() + b"\r\n"
        out += f"--{boundary}--\r\n".encode()
        return self.call("POST", "/jobs", bytes(out), {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def run_on_server(jobs: list[BatchJob], states: list[JobState], client: ServerClient, save, display) -> None:
    """Submit every unfinished job (or resume it, when the server still has it), then follow them
    all until each has ended."""
    followed = []
    for job, state in zip(jobs, states):
        if state.status == FINISHED:
            continue
        code, body = client.call("GET", f"/jobs/{state.server_job}") if state.server_job else (404, {})
        if code == 200 and body["state"] == "done":
            _take_status(state, body, client)
            continue
        if code == 200 and body.get("resumable"):
            code, body = client.call("POST", f"/jobs/{state.server_job}/resume")
        elif code != 200:  # never submitted, or the server no longer has it
            code, body = client.create(job)
        if code not in (200, 201):
            state.status, state.error = "failed", f"the server refused the job ({code}): {body.get('detail', body)}"
            save()
            continue
        state.server_job = body["id"]
        _take_status(state, body, client)
        followed.append(state)
        save()
    display()
    while any(s.status not in SERVER_FINAL for s in followed):
        time.sleep(POLL_S)
        for state in followed:
            if state.status in SERVER_FINAL:
                continue
            code, body = client.call("GET", f"/jobs/{state.server_job}")
            if code != 200:
                state.status, state.error = "failed", f"the server lost the job ({code}): {body.get('detail', body)}"
            else:
                _take_status(state, body, client)
            if state.status in SERVER_FINAL:
                save()
        display()


def _take_status(state: JobState, status: dict, client: ServerClient) -> None:
    state.status = status["state"]
    state.stage, state.progress, state.eta_s, state.error = status.get("stage"), status.get("progress"), status.get("eta_s"), status.get("error")
    if status.get("finished_at") and status.get("started_at"):
        state.seconds = round(status["finished_at"] - status["started_at"], 3)
    if client.jobs_dir is not None:
        state.folder = str(client.jobs_dir / status["id"])


# -- the command --------------------------------------------------------------------------------
def run_batch(manifest: Path, out: Path, server: Path | None = None, console=None) -> dict:
    """Run (or continue) a batch; returns the summary that is also written to ``summary.json``."""
    from rich.markup import escape  # manifest text is shown as text, never as rich markup
    jobs, bad = read_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    state_file = BatchState(out)
    states = []
    for job in jobs:
        known = state_file.jobs.get(job.name, {})
        state = JobState(name=job.name, line=job.line, kind=job.kind)
        for key in ("status", "seconds", "folder", "server_job", "error"):
            if key in known:
                setattr(state, key, known[key])
        state.skipped = state.status == FINISHED
        states.append(state)
    client = ServerClient(server) if server is not None else None

    with BatchProgress(states, console) as display:
        if state_file.warning:
            display.console.print(f"[bold yellow]warning[/]: {escape(state_file.warning)}", highlight=False)
        for b in bad:
            display.console.print(f"[bold red]line {b.line}[/] of {escape(manifest.name)}: {escape(b.error)} (skipped)", highlight=False)

        def save():
            state_file.save(states)

        if client is not None:
            run_on_server(jobs, states, client, save, display.update)
        else:
            try:
                run_here(jobs, states, out, save, display.update)
            finally:
                save()
    summary = {
        "manifest": str(Path(manifest).resolve()),
        "where": f"server {client.host}:{client.port}" if client else "here",
        "counts": {**_counts(states), "skipped": sum(s.skipped for s in states), "bad_lines": len(bad)},
        "jobs": [
            {"line": s.line, "name": s.name, "kind": s.kind, "status": s.status, "seconds": s.seconds, "folder": s.folder,
             "server_job": s.server_job, "error": s.error, "skipped": s.skipped}
            for s in states
        ],
        "bad_lines": [asdict(b) for b in bad],
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    if console is None:
        from rich.console import Console

        console = Console()  # the table on stdout, the progress on stderr
    _print_summary(summary, console)
    return summary


def _print_summary(summary: dict, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"batch: {summary['counts']['done']} done, {summary['counts']['failed']} failed, "
                        f"{summary['counts']['bad_lines']} bad line(s)")
    for column in ("line", "job", "kind", "status", "time", "output"):
        table.add_column(column)
    for j in summary["jobs"]:
        status = j["status"] + (" (earlier run)" if j["skipped"] else "")
        took = f"{j['seconds']:.1f} s" if j["seconds"] is not None else "-"
        table.add_row(str(j["line"]), escape(j["name"]), j["kind"], status, took, escape(j["folder"] or "-"))
    for b in summary["bad_lines"]:
        table.add_row(str(b["line"]), "-", "-", "bad line", "-", escape(b["error"]))
    console.print(table)


def add_batch_cli(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "batch",
        help="run many jobs from a manifest (JSON lines or CSV), here or on a server",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("manifest", help="the manifest: .jsonl/.ndjson/.json (JSON lines) or .csv")
    p.add_argument("--out", required=True, help="the batch folder: batch-state.json, summary.json (and the job folders when run here)")
    p.add_argument("--server", default=None, metavar="ADDRESS_FILE",
                   help="submit the jobs to a running server, found by its address file ('default': the default address file)")
    p.set_defaults(func=cmd_batch)
    return p


def cmd_batch(args) -> int:
    server = None
    if args.server is not None:
        from ..server.address import default_address_file

        server = default_address_file() if args.server == "default" else Path(args.server)
    summary = run_batch(Path(args.manifest), Path(args.out), server)
    print(f"summary: {Path(args.out) / SUMMARY_FILE}")
    counts = summary["counts"]
    return 0 if counts["failed"] == 0 and counts["active"] == 0 and counts["bad_lines"] == 0 else 1
