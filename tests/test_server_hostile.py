"""Hostile input on the real server (issue 13): every bad keypoints file, settings text, PLY header
or frame parameter is a 4xx naming the problem, never a 5xx; large images cost bounded time and
memory while /health keeps answering; slow clients are dropped; job files are private."""

import asyncio
import io
import json
import socket
import stat
import threading
import time

import numpy as np
import pytest
from PIL import Image

pytest.register_assert_rewrite("tests.server_fixtures")
from dynapose4d.io.ply import property_names  # noqa: E402
from tests.server_fixtures import UPLOAD_KIND, start_server  # noqa: E402

pytest_plugins = ["tests.server_fixtures"]


def _png(width=64, height=64, seed=0, noise=True) -> bytes:
    if noise:
        pixels = np.random.default_rng(seed).uniform(0, 255, (height, width, 3)).astype(np.uint8)
        img = Image.fromarray(pixels)
    else:
        img = Image.new("RGB", (width, height), (200, 40, 90))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _video() -> bytes:
    import cv2

    path = "/tmp/dp4d-hostile-test.mp4"
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 8, (64, 64))
    for i in range(6):
        writer.write(np.full((64, 64, 3), 30 * i, np.uint8))
    writer.release()
    with open(path, "rb") as fh:
        return fh.read()


def _ply_header(count, *, fmt="binary_little_endian", extra_lines=()) -> bytes:
    lines = ["ply", f"format {fmt} 1.0", f"element vertex {count}", *extra_lines]
    lines += [f"property float {name}" for name in property_names(0)]
    return ("\n".join(lines + ["end_header"]) + "\n").encode()


DIGITS_400 = "9" * 400
KEYPOINTS = [
    ("400-digit coordinate", '{"keypoints": [{"xy": [%s, 2]}]}' % DIGITS_400, "400 characters"),
    ("400-digit image_size", '{"keypoints": [{"xy": [1, 2]}], "image_size": [%s, 64]}' % DIGITS_400, "400 characters"),
    ("edge index 10**30", '{"keypoints": [{"xy": [1, 2]}, {"xy": [3, 4]}], "edges": [[0, %d]]}' % 10**30, "not a keypoint index"),
    ("non-UTF-8", b'{"keypoints": [{"xy": [1, 2], "name": "\xff\xfe"}]}', "not UTF-8"),
    ("50,000 nested [", "[" * 50_000, "levels deep"),
    ("NaN", '{"keypoints": [{"xy": [NaN, 2]}]}', "not standard JSON"),
    ("1e400", '{"keypoints": [{"xy": [1e400, 2]}]}', "too large"),
    ("image_size 0", '{"keypoints": [{"xy": [1, 2]}], "image_size": [0, 0]}', "image_size"),
    ("20,000 edges", '{"keypoints": [{"xy": [1, 2]}], "edges": [%s]}' % ",".join(["[0, 0]"] * 20_000), "edges"),
]


@pytest.mark.parametrize("text, message", [c[1:] for c in KEYPOINTS], ids=[c[0] for c in KEYPOINTS])
def test_hostile_keypoints_json_is_a_422(upload_server, text, message):
    data = text.encode() if isinstance(text, str) else text
    reply = upload_server.create_job(UPLOAD_KIND, {}, {"image": ("a.png", _png()), "keypoints": ("k.json", data)})
    assert reply.status == 422, reply.body[:300]
    assert message in reply.detail, reply.detail


SETTINGS = [
    ("5,000-digit integer", '{"iterations": %s}' % ("1" * 5000), "5,000 characters"),
    ("30,000 nested brackets", '{"iterations": ' + "[" * 30_000 + "]" * 30_000 + "}", "levels deep"),
    ("Infinity", '{"lambda_kml": Infinity}', "not standard JSON"),
    ("huge float", '{"lambda_kml": 1e999}', "too large"),
]


@pytest.mark.parametrize("text, message", [c[1:] for c in SETTINGS], ids=[c[0] for c in SETTINGS])
def test_hostile_settings_json_is_a_422(upload_server, text, message):
    reply = upload_server.create_job("demo", text)
    assert reply.status == 422, reply.body[:300]
    assert message in reply.detail, reply.detail


PLYS = [
    ("vertex count 10**17", _ply_header(99999999999999999) + b"\0" * 64, "truncated PLY"),
    ("bare property line", b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty\nend_header\n", "malformed property line"),
    ("ascii, not numbers", _ply_header(2, fmt="ascii") + b"a b c d e f g h i j k l m n o p q\n" * 2, "must be numbers"),
    ("0 vertices", _ply_header(0), "holds no Gaussians"),
    # issue 27: a valid PLY of 1 Gaussian got 201, then failed with "could not find the object in the first video frame"
    ("1 Gaussian", _ply_header(1) + np.eye(1, 17, 13, dtype="<f4").tobytes(), "holds only 1 Gaussian; an animate job needs a 3D Gaussian splat"),
    ("20-digit count", _ply_header(10**20), "malformed element line"),
]


@pytest.mark.parametrize("data, message", [c[1:] for c in PLYS], ids=[c[0] for c in PLYS])
def test_hostile_ply_is_a_422(upload_server, data, message):
    files = {"ply": ("splat.ply", data), "video": ("drive.mp4", _video())}
    reply = upload_server.create_job("animate", {}, files)
    assert reply.status == 422, reply.body[:300]
    assert message in reply.detail, reply.detail
    assert "/.incoming/" not in reply.detail and str(upload_server.jobs_dir) not in reply.detail  # no server paths


def test_frame_parameters_that_would_make_infinity_are_a_422(upload_server):
    job = upload_server.create_job(UPLOAD_KIND, {}, {"image": ("a.png", _png())}).json()
    for query in ("fps=5e-324", "fps=0.001", "fps=1e309", "fps=nan", "fps=inf"):
        for route in ("frames/1", "keypoints"):
            reply = upload_server.get(f"/v1/jobs/{job['id']}/{route}?{query}")
            assert reply.status == 422, (route, query, reply.body)


def test_a_huge_last_event_id_is_ignored(upload_server):
    job = upload_server.create_job(UPLOAD_KIND, {}, {"image": ("a.png", _png())}).json()
    with socket.create_connection(("127.0.0.1", upload_server.port), timeout=10) as sock:
        sock.sendall((f"GET /v1/jobs/{job['id']}/events HTTP/1.1\r\nHost: 127.0.0.1:{upload_server.port}\r\n"
                      f"Authorization: Bearer {upload_server.token}\r\nLast-Event-ID: {'9' * 5000}\r\n\r\n").encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 200")  # not a 500 from Python's int-digit limit


def test_the_wire_header_is_standard_json():
    from dynapose4d.server.wire import encode_frame

    arrays = {"positions": np.zeros((1, 3)), "rotations": np.zeros((1, 4)), "scales": np.zeros((1, 3)),
              "opacities": np.zeros(1), "colors": np.zeros((1, 3))}
    with pytest.raises(ValueError):
        encode_frame(arrays, meta={"seconds": float("inf")})


def test_an_unexpected_exception_is_json_with_a_request_id(tmp_path):
    """An exception no handler knows still answers JSON (with a request id the log repeats)."""
    from dynapose4d.server.api.app import create_app
    from dynapose4d.server.config import ServerConfig

    logged = []
    config = ServerConfig(jobs_dir=tmp_path / "jobs", token="t", port=80)
    app = create_app(config, say=logged.append)
    api = app.app.app.app  # RequestIds -> AccessGuard -> BodyTimeout -> FastAPI

    @api.get("/v1/boom")
    async def boom():
        raise RuntimeError("a bug")

    sent = []

    async def call():
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/v1/boom", "raw_path": b"/v1/boom", "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer t")], "scheme": "http",
                 "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 5000), "http_version": "1.1", "root_path": ""}
        await app(scope, receive, send)

    asyncio.run(call())
    assert sent[0]["status"] == 500
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert "internal error (RuntimeError)" in body["detail"] and body["request_id"] in body["detail"]
    assert any(body["request_id"] in line and "RuntimeError: a bug" in line for line in logged), logged


def test_large_images_are_bounded_and_health_keeps_answering(upload_server):
    # Over the pixel limit: refused from the header alone, at once.
    too_big = _png(7000, 7000, noise=False)
    t0 = time.monotonic()
    reply = upload_server.create_job(UPLOAD_KIND, {}, {"image": ("big.png", too_big)})
    assert reply.status == 422 and "above the limit" in reply.detail, reply.body
    assert time.monotonic() - t0 < 2.0
    # Just under it, three at once: accepted, /health answers quickly, memory stays bounded.
    big = _png(4900, 4900, noise=False)  # 24 Mpx, a few tens of kB

    def rss_peak_mb() -> float:
        text = open(f"/proc/{upload_server.proc.pid}/status").read()
        return int(next(line.split()[1] for line in text.splitlines() if line.startswith("VmHWM"))) / 1024

    assert upload_server.get("/v1/health").status == 200  # the first answer waits for the device probe
    before = rss_peak_mb()
    replies, latencies = [], []
    threads = [threading.Thread(target=lambda: replies.append(upload_server.create_job(UPLOAD_KIND, {}, {"image": ("b.png", big)})))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        t = time.monotonic()
        assert upload_server.get("/v1/health").status == 200
        latencies.append(time.monotonic() - t)
        time.sleep(0.02)
    assert [r.status for r in replies] == [201, 201, 201], [r.body for r in replies]
    assert latencies and max(latencies) < 0.5, latencies  # the target is 0.1 s; a shared CI core is slower
    assert rss_peak_mb() - before < 600, (before, rss_peak_mb())


def test_slow_clients_are_dropped(tmp_path):
    server = start_server(tmp_path, "--max-jobs", "0", "--header-timeout", "1", "--body-timeout", "1")
    try:
        # Headers that never finish: the connection is closed.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            t0 = time.monotonic()
            assert sock.recv(1024) == b""
            assert time.monotonic() - t0 < 4
        # A body that stalls: 408, then closed.
        head = (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.token}\r\n"
                "Content-Type: multipart/form-data; boundary=xx\r\nContent-Length: 100000\r\n\r\n--xx\r\n")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head.encode())
            t0 = time.monotonic()
            answer = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"stalled" in answer and time.monotonic() - t0 < 4
        assert server.get("/v1/health").status == 200
        assert not list((server.jobs_dir / ".incoming").glob("*"))  # the half upload is gone
    finally:
        server.stop()


def test_job_files_are_private(upload_server):
    job = upload_server.create_job(UPLOAD_KIND, {}, {"image": ("a.png", _png())}).json()
    folder = upload_server.jobs_dir / job["id"]
    assert stat.S_IMODE(upload_server.jobs_dir.stat().st_mode) == 0o700
    for path in [folder, folder / "inputs", *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
