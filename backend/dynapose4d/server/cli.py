"""``dynapose4d serve``: run the job server (registered on the main parser by ``add_serve_cli``)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

from .address import default_address_file, default_jobs_dir
from .api.auth import is_loopback_address, new_token
from .config import MIB, ServerConfig, UploadLimits
from .runner.executors import EXECUTORS

RAY_MAX_JOBS = 32  # jobs handed to a Ray cluster at once; Ray holds them until resources are free
REMOTE_HELP = """\
Remote use: keep the server on 127.0.0.1 and tunnel to it with SSH, using the same port on both
ends (the server checks the Host header against its own port), e.g. on your workstation:
    ssh -N -L 8765:127.0.0.1:8765 gpu-box      # and on gpu-box: dynapose4d serve --port 8765
then copy the address file from gpu-box (it holds the token). The token is sent with every
request, so it must never cross a network in clear text: --allow-remote exists for networks you
trust (or behind a TLS proxy), not for the internet."""


def add_serve_cli(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="run the local job server (HTTP API for the Blender add-on)",
        description="Run the local job server. " + REMOTE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; others need --allow-remote)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed and written to the address file)")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host (read the remote-use note first)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME", help="extra Host header name to accept (with --allow-remote)")
    p.add_argument("--address-file", default=None, help=f"where to write address and token (default {default_address_file()})")
    p.add_argument("--jobs-dir", default=None, help=f"job folders (default {default_jobs_dir()})")
    p.add_argument("--max-jobs", type=int, default=None,
                   help=f"jobs running at once (default 1 with the local executor: one GPU job; {RAY_MAX_JOBS} with Ray, which "
                        "queues those no node has room for yet); 0 queues without running")
    p.add_argument("--max-upload-mb", type=float, default=2048, help="largest request body in MiB (default 2048)")
    p.add_argument("--max-image-pixels", type=int, default=UploadLimits.max_image_pixels,
                   help=f"largest uploaded image in pixels (default {UploadLimits.max_image_pixels:,}; the pipeline works at 256-1024 px)")
    p.add_argument("--max-request-memory-mb", type=float, default=ServerConfig.work_memory_bytes / MIB,
                   help="memory one frames, keypoints or mesh request may use, in MiB (estimated before the work; more is refused with 413)")
    p.add_argument("--cancel-grace", type=float, default=1.5, help="seconds a worker gets to stop before it is killed")
    p.add_argument("--no-auto-resume", dest="auto_resume", action="store_false",
                   help="leave jobs interrupted by a server stop or crash for a manual resume (default: resume them on start)")
    p.add_argument("--header-timeout", type=float, default=ServerConfig.header_timeout_s,
                   help=f"seconds a connection may take to send a request's headers (default {ServerConfig.header_timeout_s:g})")
    p.add_argument("--body-timeout", type=float, default=ServerConfig.body_timeout_s,
                   help=f"seconds a request body may stall before the request is dropped (default {ServerConfig.body_timeout_s:g})")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where jobs run: local worker processes (default), or tasks on a Ray cluster (needs dynapose4d[cluster]; docs/cluster.md)")
    p.add_argument("--ray-address", default="auto", metavar="ADDRESS",
                   help="with --executor ray: the cluster to join: auto (a cluster started on this machine with `ray start`), "
                        "ray://HEAD:10001, HOST:PORT of a head's GCS, or local (start a one-machine cluster) (default auto)")
    p.add_argument("--print-openapi", action="store_true", help="print the OpenAPI spec and exit")
    p.set_defaults(func=cmd_serve)
    return p


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name != "nt":  # on Windows this option lets a second server steal the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def _limits(args) -> UploadLimits:
    limits = UploadLimits(max_request_bytes=int(args.max_upload_mb * MIB), max_image_pixels=args.max_image_pixels)
    if min(args.header_timeout, args.body_timeout) <= 0:
        raise ValueError("--header-timeout and --body-timeout must be > 0")
    if limits.max_request_bytes < 1024:
        raise ValueError("--max-upload-mb is too small to hold any upload")
    return limits


def cmd_serve(args) -> int:
    from .api.app import build_api
    from .runner.instance import JobsFolderBusy, ServerLock

    _executor_defaults(args)
    jobs_dir = Path(args.jobs_dir) if args.jobs_dir else default_jobs_dir()
    if args.print_openapi:
        api = build_api(ServerConfig(jobs_dir=jobs_dir, token="-", limits=_limits(args)))
        print(json.dumps(api.openapi(), indent=1))
        return 0
    # 1. Where to listen: loopback unless explicitly asked.
    refusal = _listen_refusal(args)
    if refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    # 2. One server per jobs folder; everything it writes is the user's alone.
    os.umask(0o077)
    try:
        lock = ServerLock(jobs_dir).acquire()
    except JobsFolderBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if lock.previous.get("pid"):
        print(f"taking over the jobs folder {jobs_dir} from a server that stopped without cleaning up (PID {lock.previous['pid']})", flush=True)
    try:
        sock = _bind(args.host, args.port)
    except OSError:
        lock.release()
        raise
    config = _server_config(args, jobs_dir, port=sock.getsockname()[1])
    lock.describe({"pid": os.getpid(), "url": _url(config), "started_at": time.time()})
    # 3. A cluster is joined before the server answers, so a wrong address is an error here, not
    # a traceback inside the web server's start-up.
    try:
        executor = _start_executor(config)
    except BaseException:
        sock.close()
        lock.release()
        raise
    # 4. Serve until stopped; the address file tells clients where while it runs.
    address_file = Path(args.address_file) if args.address_file else default_address_file()
    try:
        _serve(config, sock, executor, address_file)
    finally:
        lock.release()
    return 0


def _executor_defaults(args) -> None:
    """Check the executor can run (Ray installed) and fill in ``--max-jobs`` for it."""
    if args.executor == "ray":
        from .runner.ray_executor import require_ray

        require_ray()  # a clear message before anything else when Ray is not installed
    if args.max_jobs is None:
        args.max_jobs = RAY_MAX_JOBS if args.executor == "ray" else 1
    if args.max_jobs < 0:
        raise ValueError("--max-jobs must be >= 0")


def _listen_refusal(args) -> str | None:
    """Why the server must not listen where it was asked to (None: it may)."""
    if not is_loopback_address(args.host) and not args.allow_remote:
        return (f"refusing to listen on {args.host}: this server is for this machine only.\n{REMOTE_HELP}\n"
                "(Pass --allow-remote to listen there anyway.)")
    if args.allowed_host and not args.allow_remote:
        return "--allowed-host needs --allow-remote"
    return None


def _url_host(host: str) -> str:
    """``host`` as it appears in a URL and a Host header (IPv6 in brackets)."""
    return host if ":" not in host else f"[{host.strip('[]')}]"


def _url(config: ServerConfig) -> str:
    return f"http://{_url_host(config.host)}:{config.port}"


def _server_config(args, jobs_dir: Path, port: int) -> ServerConfig:
    host = _url_host(args.host)
    extra = tuple(args.allowed_host) + ((host,) if args.allow_remote and not is_loopback_address(args.host) else ())
    return ServerConfig(
        jobs_dir=jobs_dir,
        token=new_token(),
        host=args.host,
        port=port,
        max_jobs=args.max_jobs,
        cancel_grace_s=args.cancel_grace,
        extra_hosts=extra,
        limits=_limits(args),
        auto_resume=args.auto_resume,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        work_memory_bytes=int(args.max_request_memory_mb * MIB),
        executor=args.executor,
        ray_address=args.ray_address if args.executor == "ray" else None,
    )


def _start_executor(config: ServerConfig):
    from .runner.executors import make_executor

    executor = make_executor(config, say=_say)
    executor.start()
    return executor


def _say(line: str) -> None:
    print(line, flush=True)


def _serve(config: ServerConfig, sock: socket.socket, executor, address_file: Path) -> None:
    """Run the web server on ``sock``. The address file appears when the server is ready and
    goes when it stops."""
    import uvicorn

    from .address import describe_stale_address_file, remove_address_file, write_address_file
    from .api.app import create_app
    from .api.slowclients import header_timeout_protocol

    stale = describe_stale_address_file(address_file)
    if stale:
        print(f"{stale}; this server replaces it", flush=True)
    url = _url(config)

    def ready():
        info = {
            "url": url,
            "host": _url_host(config.host),
            "port": config.port,
            "token": config.token,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),  # a PID means something on this machine only
            "version": _version(),
            "api": "/v1",
            "jobs_dir": str(config.jobs_dir.resolve()),
            "started_at": time.time(),
        }
        write_address_file(address_file, info)
        print(f"dynapose4d server listening on {url} (jobs in {config.jobs_dir}; address and token in {address_file})", flush=True)

    def stopped():
        remove_address_file(address_file, config.token)

    app = create_app(config, on_ready=ready, on_shutdown=stopped, say=_say, executor=executor)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=1, server_header=False,
                       http=header_timeout_protocol(config.header_timeout_s))
    )
    try:
        server.run(sockets=[sock])
    finally:
        stopped()


def _version() -> str:
    from .. import __version__

    return __version__
