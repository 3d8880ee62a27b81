"""Who may talk to the server: token, Host header, loopback binding, the address file."""

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from dynapose4d.server.address import read_address_file, remove_address_file, write_address_file
from dynapose4d.server.api.auth import bearer_matches, host_allowed, is_loopback_address

pytest_plugins = ["tests.server_fixtures"]


@pytest.mark.parametrize(
    "host, ok",
    [
        ("127.0.0.1:8765", True),
        ("localhost:8765", True),
        ("LOCALHOST:8765", True),
        ("[::1]:8765", True),
        ("127.0.0.1:8766", False),  # another port: a different service
        ("127.0.0.1", False),  # no port means 80
        ("evil.example:8765", False),
        ("127.0.0.1.nip.io:8765", False),
        ("localhost.:8765", False),
        ("[::1]", False),
        ("[::1]x:8765", False),
        ("127.0.0.1:", False),
        ("127.0.0.1:87a5", False),
        ("", False),
        (None, False),
    ],
)
def test_host_header_names(host, ok):
    assert host_allowed(host, 8765) is ok


def test_extra_hosts_and_port_80():
    assert host_allowed("gpu-box:8765", 8765, ("gpu-box",))
    assert not host_allowed("gpu-box:8765", 8765)
    assert host_allowed("localhost", 80)


def test_bearer_header_parsing():
    token = "abc123"
    assert bearer_matches("Bearer abc123", token)
    assert bearer_matches("bearer abc123", token)  # the scheme is case-insensitive (RFC 7235)
    assert not bearer_matches("Bearer abc124", token)
    assert not bearer_matches("Bearer abc12", token)
    assert not bearer_matches("Basic abc123", token)
    assert not bearer_matches("abc123", token)
    assert not bearer_matches(None, token)
    assert not bearer_matches("Bearer ünïcode", token)


def test_loopback_addresses():
    assert all(map(is_loopback_address, ["127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback_address, ["0.0.0.0", "::", "192.168.1.2", "example.com"]))


def test_address_file_is_private_and_atomic(tmp_path):
    path = tmp_path / "state" / "server.json"
    write_address_file(path, {"url": "http://127.0.0.1:1", "token": "t1"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_address_file(path)["token"] == "t1"
    write_address_file(path, {"url": "http://127.0.0.1:2", "token": "t2"})  # replaces
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    remove_address_file(path, "t1")  # not ours any more: kept
    assert path.exists()
    remove_address_file(path, "t2")
    assert not path.exists()
    assert list(path.parent.iterdir()) == []  # no temporary files left


def test_refuses_a_non_loopback_address_unless_asked(tmp_path):
    cmd = [sys.executable, "-m", "dynapose4d", "serve", "--host", "0.0.0.0", "--jobs-dir", str(tmp_path / "j"), "--address-file", str(tmp_path / "a.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0" in done.stderr and "ssh -N -L" in done.stderr
    assert not (tmp_path / "a.json").exists()


# -- against the running server -------------------------------------------------------------------


def test_address_file_of_a_running_server(upload_server):
    info = json.loads(upload_server.address_file.read_text())
    assert stat.S_IMODE(os.stat(upload_server.address_file).st_mode) == 0o600
    assert info["url"] == f"http://127.0.0.1:{info['port']}" and len(info["token"]) >= 40
    assert info["pid"] == upload_server.proc.pid
    assert "listening on http://127.0.0.1:" in upload_server.log_text()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
def test_requests_without_the_token_are_refused(upload_server, headers):
    for path in ("/v1/health", "/v1/jobs", "/v1/openapi.json", "/v1/jobs/" + "0" * 32, "/nowhere"):
        reply = upload_server.get(path, headers=headers, auth=False)
        assert reply.status == 401, (path, reply.body)
        assert reply.headers.get("www-authenticate", "").startswith("Bearer")
        assert "token" in reply.detail


def test_token_is_accepted_only_in_the_header(upload_server):
    reply = upload_server.get(f"/v1/health?token={upload_server.token}&access_token={upload_server.token}", auth=False)
    assert reply.status == 401
    assert upload_server.get("/v1/health", headers={"Authorization": f"bearer {upload_server.token}"}, auth=False).status == 200


def test_creating_a_job_needs_the_token(upload_server):
    before = len(upload_server.get("/v1/jobs").json()["jobs"])
    from tests.server_fixtures import multipart

    body, content_type = multipart({"kind": "demo"}, {})
    reply = upload_server.post("/v1/jobs", body=body, headers={"Content-Type": content_type}, auth=False)
    assert reply.status == 401
    assert len(upload_server.get("/v1/jobs").json()["jobs"]) == before


@pytest.mark.parametrize(
    "host_header, ok",
    [
        ("127.0.0.1:{port}", True),
        ("localhost:{port}", True),
        ("[::1]:{port}", True),
        ("evil.example:{port}", False),
        ("evil.example", False),
        ("127.0.0.1:{other}", False),
        ("localhost.evil.example:{port}", False),
    ],
)
def test_host_header_guard(upload_server, host_header, ok):
    host = host_header.format(port=upload_server.port, other=upload_server.port + 1)
    reply = upload_server.get("/v1/health", headers={"Host": host})  # with the right token
    if ok:
        assert reply.status == 200
    else:
        assert reply.status == 403
        assert "DNS-rebinding" in reply.detail


def test_a_request_without_host_header_is_refused(upload_server):
    with socket.create_connection(("127.0.0.1", upload_server.port), timeout=10) as sock:
        sock.sendall(f"GET /v1/health HTTP/1.0\r\nAuthorization: Bearer {upload_server.token}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.split(b"\r\n", 1)[0].split(b" ")[1] in (b"400", b"403")
