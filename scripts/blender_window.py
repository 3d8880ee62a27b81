#!/usr/bin/env python3
"""A real Blender window for the tests: Debian trixie's Blender 4.3 under Xvfb, and bpy 5.3.

Debian 12's Blender (3.4) is too old for extensions and the ``bpy`` module has no window (its
timers never fire, its panels never draw). This makes a Debian trixie root file system with
debootstrap, cached outside the repository, and runs in it, chrooted:

- ``window``: Blender 4.3 (Debian's package) with a real window on an Xvfb screen, software
  OpenGL (Mesa llvmpipe), a fresh user profile, and a driver script (``--python``);
- ``bpy``: a driver script under the Python 3.13 of the root, in a venv with ``bpy==5.3.0``
  (Blender 5.3: native Gaussian splats), without a window.

A driver writes a JSON result (``tests/window/windowkit.py`` has the helpers: timers as steps,
X11 screenshots, the result file) and whatever files it makes under ``$DP4D_OUT``; this script
copies them back and returns the result. The root shares the host's network (a backend on the
host's 127.0.0.1 is reachable) but nothing else: each run happens in its own mount namespace, so
its bind mounts (/proc, /sys, /dev) disappear with it, and runs can go side by side.

    python3 scripts/blender_window.py status            # ready, or what is missing (exit 3)
    python3 scripts/blender_window.py setup [--no-bpy]  # make or update the root (idempotent)
    python3 scripts/blender_window.py window DRIVER.py [--file F]... [--env K=V]... [--out DIR] [--timeout S]
    python3 scripts/blender_window.py bpy DRIVER.py [same options]
    python3 scripts/blender_window.py shell [CMD...]    # a shell in the root (debugging)

Environment: ``DP4D_TRIXIE_ROOT`` (default /var/cache/dynapose4d/trixie-root), ``DP4D_TRIXIE_MIRROR``
(default: the first Debian mirror in the host's apt sources), ``DP4D_WINDOW_KEEP=1`` keeps a run's
folder in the root. Needs root (debootstrap, chroot, mounts), Linux, ~2.5 GB of disk, and a Debian
package registry (plus PyPI for bpy 5.3). Standard library only: it runs before any environment.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = Path("/var/cache/dynapose4d/trixie-root")
SUITE = "trixie"
# What the root gets beside debootstrap's minimal system. Debian's Blender uses the system
# Python and does not pull numpy in (without it the extension fails to register); libegl1 is
# for EEVEE in the bpy module; python3-venv makes the bpy 5.3 environment.
PACKAGES = (
    "blender", "xvfb", "xdotool", "imagemagick", "libgl1-mesa-dri", "libegl-mesa0", "libglx-mesa0", "libegl1",
    "python3-numpy", "python3-venv", "ca-certificates",
)
BPY_VENV = "/opt/bpy53"  # inside the root
BPY_REQUIREMENTS = ("bpy==5.3.0", "numpy")
RUNS = "/tmp/dp4d-runs"  # inside the root: one folder per run
# The drivers' helpers, copied beside each driver: windowkit (steps, checks, the result) and
# cycles_still (how the tests render with Cycles).
KIT = tuple(REPO / "tests" / "window" / name for name in ("windowkit.py", "cycles_still.py"))
SCREEN = "1280x800x24"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STAMPS = ".dp4d"  # inside the root: one file per finished stage, holding its fingerprint


class Unavailable(RuntimeError):
    """The root cannot be made or used here; the message says what is missing."""


def root_dir() -> Path:
    return Path(os.environ.get("DP4D_TRIXIE_ROOT") or DEFAULT_ROOT)


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


STAGES = {
    "base": _fingerprint(SUITE, "minbase"),
    "packages": _fingerprint(PACKAGES),
    "bpy": _fingerprint(BPY_REQUIREMENTS),
}


def _stamp(root: Path, stage: str) -> Path:
    return root / STAMPS / stage


def stage_done(root: Path, stage: str) -> bool:
    path = _stamp(root, stage)
    return path.is_file() and path.read_text().split("\n")[0] == STAGES[stage]


def _mark(root: Path, stage: str, note: str = "") -> None:
    path = _stamp(root, stage)
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"{STAGES[stage]}\n{note}\n")


def _failure_file(root: Path) -> Path:
    return root.with_name(root.name + ".failed")


# -- what is missing ------------------------------------------------------------------------------

def host_mirror(apt: Path = Path("/etc/apt")) -> str | None:
    """The first Debian archive URI in the host's apt sources (deb822 or one-line format)."""
    if os.environ.get("DP4D_TRIXIE_MIRROR"):
        return os.environ["DP4D_TRIXIE_MIRROR"]
    uris: list[str] = []
    for path in sorted(apt.glob("sources.list.d/*.sources")):
        uris += re.findall(r"^URIs:\s*(\S+)", path.read_text(errors="replace"), re.M)
    for path in [apt / "sources.list", *sorted(apt.glob("sources.list.d/*.list"))]:
        if path.is_file():
            uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", path.read_text(errors="replace"), re.M)
    return next((u for u in uris if re.search(r"/debian/?$", u)), None)


def prerequisites(euid: int | None = None, platform: str | None = None) -> list[str]:
    """What this host lacks to make or use the root (empty: nothing)."""
    euid = os.geteuid() if euid is None else euid
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return [f"a Linux host (this is {platform})"]
    missing = []
    if euid != 0:
        missing.append("root (debootstrap, chroot and bind mounts need it; this is uid %d)" % euid)
    for tool in ("chroot", "unshare", "mount"):
        if shutil.which(tool) is None:
            missing.append(f"the '{tool}' command")
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        missing.append("debootstrap (and apt-get to install it)")
    return missing


def status(need_bpy: bool = False, root: Path | None = None) -> tuple[bool, str]:
    """``(ready, reason)``: whether runs can start now, and if not, what is missing."""
    root = root or root_dir()
    missing = prerequisites()
    if missing:
        return False, "missing " + "; ".join(missing)
    stages = ["base", "packages"] + (["bpy"] if need_bpy else [])
    todo = [s for s in stages if not stage_done(root, s)]
    if todo:
        failed = _failure_file(root)
        last = f"; the last setup failed: {failed.read_text().strip()}" if failed.is_file() else ""
        what = {"base": "the trixie root", "packages": "Blender 4.3, Xvfb and the tools in it",
                "bpy": f"the bpy 5.3 venv ({BPY_VENV} in it)"}
        return False, (f"{', '.join(what[s] for s in todo)} not made yet at {root}: run "
                       f"`python3 scripts/blender_window.py setup`{last}")
    return True, f"ready: {root}"


# -- running in the root --------------------------------------------------------------------------

def _mount_script(root: Path) -> str:
    r = str(root)
    return (f"set -e; for d in proc sys dev; do mount --rbind /$d '{r}'/$d; mount --make-rslave '{r}'/$d; done; "
            f"exec chroot '{r}' \"$@\"")


def in_root_cmd(root: Path, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    """The command line that runs ``argv`` chrooted in ``root``, in a private mount namespace,
    with a clean environment (``env`` added)."""
    base = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    base.update(env or {})
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _mount_script(root), "in-root",
            "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in base.items()], *argv]


def _refresh_network_files(root: Path) -> None:
    for name in ("resolv.conf", "hosts"):
        src = Path("/etc") / name
        if src.is_file():
            dst = root / "etc" / name
            if dst.is_symlink():
                dst.unlink()
            shutil.copyfile(src, dst)


def _host_ca_bundle() -> Path | None:
    for cand in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


def _run_logged(cmd: list[str], log, what: str, timeout: float) -> None:
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    try:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what} took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        log.flush()
        tail = " | ".join(Path(log.name).read_text(errors="replace").strip().splitlines()[-4:])
        raise Unavailable(f"{what} failed (exit {proc.returncode}): {tail}")


@contextmanager
def _lock(root: Path, exclusive: bool):
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- setup ----------------------------------------------------------------------------------------

def setup(with_bpy: bool = True, root: Path | None = None, say=print) -> dict:
    """Make or update the root, skipping the stages already done. Returns the seconds each took.
    Raises :class:`Unavailable` with what is missing or what failed."""
    root = root or root_dir()
    missing = prerequisites()
    if missing:
        raise Unavailable("missing " + "; ".join(missing))
    times: dict[str, float] = {}
    with _lock(root, exclusive=True):
        log_path = root.with_name(root.name + ".setup.log")
        with open(log_path, "a") as log:
            try:
                _setup_stages(root, with_bpy, log, times, say)
            except Unavailable as exc:
                _failure_file(root).write_text(f"{exc} (log: {log_path})\n")
                raise
            _failure_file(root).unlink(missing_ok=True)
    return times


def _setup_stages(root: Path, with_bpy: bool, log, times: dict, say) -> None:
    t0 = time.monotonic()
    # 1. debootstrap on the host (only that package; the host's sources are left as they are).
    if shutil.which("debootstrap") is None:
        say("[window] installing debootstrap on the host")
        _run_logged(["apt-get", "update", "-q"], log, "apt-get update on the host", 600)
        _run_logged(["apt-get", "install", "-y", "-q", "debootstrap"], log, "apt-get install debootstrap", 600)
        times["host debootstrap"] = time.monotonic() - t0
    # 2. The base system, made in a side folder and renamed: a half-made root never looks ready.
    if not stage_done(root, "base"):
        t0 = time.monotonic()
        mirror = host_mirror()
        if not mirror:
            raise Unavailable("no Debian mirror in the host's apt sources (/etc/apt); set DP4D_TRIXIE_MIRROR")
        partial = root.with_name(root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if root.exists():
            if not (root / STAMPS).is_dir() and any(root.iterdir()):
                raise Unavailable(f"{root} exists and was not made by this script: remove it or set DP4D_TRIXIE_ROOT")
            shutil.rmtree(root)  # an older base: everything is made again
        say(f"[window] debootstrap {SUITE} from {mirror} into {root} (about a minute)")
        # In a mount namespace of its own: the mounts debootstrap makes in the new root go with it,
        # even if it is stopped half-way (nothing of the host's stays mounted under a folder removed later).
        _run_logged(["unshare", "--mount", "--propagation", "private", "--",
                     "debootstrap", "--variant=minbase", SUITE, str(partial), mirror], log,
                    f"debootstrap {SUITE} from {mirror} (is that Debian package registry reachable? "
                    "DP4D_TRIXIE_MIRROR sets another)", 1800)
        (partial / "etc" / "mtab").unlink(missing_ok=True)
        (partial / "etc" / "mtab").symlink_to("../proc/self/mounts")  # Blender lists file systems from it
        _mark(partial, "base", mirror)
        partial.rename(root)
        times["debootstrap"] = time.monotonic() - t0
    # 3. Blender, Xvfb, the X tools and Mesa.
    if not stage_done(root, "packages"):
        t0 = time.monotonic()
        say(f"[window] installing {', '.join(PACKAGES)} in the root (about a minute)")
        _refresh_network_files(root)
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        # An install that was interrupted is finished first.
        _run_logged(in_root_cmd(root, ["dpkg", "--configure", "-a"], env), log, "dpkg --configure -a in the root", 900)
        _run_logged(in_root_cmd(root, ["apt-get", "update", "-q"], env), log, "apt-get update in the root", 900)
        _run_logged(in_root_cmd(root, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], env), log,
                    "apt-get install in the root", 1800)
        _run_logged(in_root_cmd(root, ["apt-get", "clean"]), log, "apt-get clean", 300)
        version = subprocess.run(in_root_cmd(root, ["blender", "--version"], {"HOME": "/tmp"}), capture_output=True,
                                 text=True, timeout=120).stdout.strip().splitlines()
        _mark(root, "packages", version[0] if version else "")
        times["packages"] = time.monotonic() - t0
    # 4. bpy 5.3 in a venv of the root's Python 3.13.
    if with_bpy and not stage_done(root, "bpy"):
        t0 = time.monotonic()
        say(f"[window] making the bpy 5.3 venv in the root ({' '.join(BPY_REQUIREMENTS)}, a ~430 MB download)")
        _refresh_network_files(root)
        env = _pip_env(root)
        venv = BPY_VENV
        _run_logged(in_root_cmd(root, ["python3", "-m", "venv", "--clear", venv]), log, "python3 -m venv in the root", 300)
        _run_logged(in_root_cmd(root, [f"{venv}/bin/pip", "install", "-q", "--disable-pip-version-check", *BPY_REQUIREMENTS],
                                env), log, f"pip install {' '.join(BPY_REQUIREMENTS)} in the root", 1800)
        frozen = subprocess.run(in_root_cmd(root, [f"{venv}/bin/pip", "freeze"]), capture_output=True, text=True, timeout=120)
        _mark(root, "bpy", " ".join(frozen.stdout.split()))
        times["bpy venv"] = time.monotonic() - t0


def _pip_env(root: Path) -> dict[str, str]:
    """pip inside the root: the host's CA bundle (a registry behind a TLS-inspecting proxy needs
    it) and the host's registry settings, if any."""
    env = {"PIP_DEFAULT_TIMEOUT": "180", "PIP_NO_CACHE_DIR": "1"}
    bundle = _host_ca_bundle()
    if bundle is not None:
        dst = root / "etc" / "ssl" / "host-ca-bundle.crt"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle, dst)
        env["PIP_CERT"] = env["SSL_CERT_FILE"] = "/etc/ssl/host-ca-bundle.crt"
    for name in ("PIP_INDEX_URL", "PIP_TRUSTED_HOST", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


# -- runs -----------------------------------------------------------------------------------------

RUN_SH = r"""#!/bin/sh
# Made by scripts/blender_window.py: one run inside the root.
W="$1"; MODE="$2"; TIMEOUT="$3"; DRIVER="$4"
cd "$W"
XPID=""
if [ "$MODE" = window ] || [ -n "$DP4D_XVFB" ]; then
  # -displayfd: Xvfb picks a free display (the host's network namespace, and so its abstract
  # X sockets, are shared with other runs) and writes its number.
  Xvfb -displayfd 3 -screen 0 "$DP4D_SCREEN" -nolisten tcp 3>"$W/display" >"$W/xvfb.log" 2>&1 &
  XPID=$!
  i=0; while [ ! -s "$W/display" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  [ -s "$W/display" ] || { echo "Xvfb did not start:"; cat "$W/xvfb.log"; exit 90; }
  export DISPLAY=":$(cat "$W/display")"
fi
if [ "$MODE" = window ]; then
  if [ -z "$DP4D_SPLASH" ]; then
    # A fresh profile opens on the splash's Quick Setup, over the window: start from factory
    # preferences saved with the splash off (the only thing in the profile before the driver
    # runs). Made once (a Blender start) and kept in the root.
    if [ ! -d /opt/dp4d/profile/.config ]; then
      mkdir -p /opt/dp4d; T=$(mktemp -d /opt/dp4d/profile.XXXXXX)
      HOME="$T" blender --background --factory-startup --python-expr \
        "import bpy; bpy.context.preferences.view.show_splash = False; bpy.ops.wm.save_userpref()" >"$W/userpref.log" 2>&1
      mv -T "$T" /opt/dp4d/profile 2>/dev/null || rm -rf "$T"
    fi
    cp -r /opt/dp4d/profile/.config "$HOME/"
  fi
  timeout -k 5 "$TIMEOUT" blender --python-exit-code 17 --python "$DRIVER"
else
  timeout -k 5 "$TIMEOUT" %(bpy_python)s "$DRIVER"
fi
RC=$?
[ -n "$XPID" ] && kill "$XPID" 2>/dev/null
exit $RC
""" % {"bpy_python": f"{BPY_VENV}/bin/python"}


def _remove_old_runs(root: Path, age_s: float = 6 * 3600) -> None:
    """Folders of runs that were killed (a finished run removes its own)."""
    runs = root / RUNS.lstrip("/")
    for path in runs.glob("*") if runs.is_dir() else ():
        try:
            if time.time() - path.stat().st_mtime > age_s:
                shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:
            pass


def run(driver: str | os.PathLike, mode: str = "window", *, files=(), env: dict | None = None,
        out_dir: str | os.PathLike | None = None, timeout: float = 240, screen: str = SCREEN, root: Path | None = None) -> dict:
    """Run ``driver`` (a Python file) in the root: in Blender 4.3 with a window (``mode="window"``)
    or under the bpy 5.3 venv's Python (``mode="bpy"``). ``tests/window/windowkit.py`` is
    copied beside the driver (drivers import it), ``files`` go to ``$DP4D_FILES``.

    Returns ``{"ok", "rc", "result", "seconds", "files", "log", "log_path"}``: ``result`` is the
    driver's JSON (None if it wrote none), ``files`` the paths of what it left in ``$DP4D_OUT``,
    copied to ``out_dir``. ``ok`` only when Blender exited 0 and the result says ``"ok": true``."""
    if mode not in ("window", "bpy"):
        raise ValueError(f"mode is 'window' or 'bpy', not {mode!r}")
    root = root or root_dir()
    ready, reason = status(need_bpy=mode == "bpy", root=root)
    if not ready:
        raise Unavailable(reason)
    driver = Path(driver).resolve()
    out_dir = Path(out_dir) if out_dir else Path.cwd() / "out" / "window"
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_old_runs(root)
    run_id = f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}"
    inner = f"{RUNS}/{run_id}"
    work = root / inner.lstrip("/")
    (work / "home").mkdir(parents=True)
    (work / "out").mkdir()
    (work / "files").mkdir()
    for path in {*KIT, driver}:  # the driver imports its helpers from its own folder
        shutil.copy2(path, work / path.name)
    for path in files:
        shutil.copy2(path, work / "files" / Path(path).name)
    (work / "run.sh").write_text(RUN_SH)
    _refresh_network_files(root)
    run_env = {
        "HOME": f"{inner}/home", "XDG_CONFIG_HOME": f"{inner}/home/.config", "XDG_CACHE_HOME": f"{inner}/home/.cache",
        "LIBGL_ALWAYS_SOFTWARE": "1",
        # Mesa compiles each shader with LLVM (seconds of a Blender start): keep its cache across
        # runs, whose homes are fresh.
        "MESA_SHADER_CACHE_DIR": "/var/cache/mesa-shader-cache", "MESA_SHADER_CACHE_MAX_SIZE": "1G",
        "DP4D_OUT": f"{inner}/out", "DP4D_RESULT": f"{inner}/out/result.json",
        "DP4D_FILES": f"{inner}/files", "DP4D_MODE": mode, "DP4D_SCREEN": screen, "PYTHONUNBUFFERED": "1",
    }
    run_env.update({k: str(v) for k, v in (env or {}).items()})
    cmd = in_root_cmd(root, ["/bin/sh", f"{inner}/run.sh", inner, mode, str(int(timeout)), f"{inner}/{driver.name}"], run_env)
    log_path = out_dir / f"{driver.stem}.log"
    t0 = time.monotonic()
    with _lock(root, exclusive=False), open(log_path, "w") as log:
        # A session of its own: on a timeout the whole group (Xvfb, Blender) goes.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    seconds = time.monotonic() - t0
    copied = []
    for path in sorted((work / "out").rglob("*")):
        if path.is_file():
            dst = out_dir / path.relative_to(work / "out")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst)
            copied.append(str(dst))
    result_file = work / "out" / "result.json"
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    if not os.environ.get("DP4D_WINDOW_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    log_text = log_path.read_text(errors="replace")
    ok = rc == 0 and bool(result) and bool(result.get("ok"))
    return {"ok": ok, "rc": rc, "result": result, "seconds": round(seconds, 1), "files": copied, "log": log_text,
            "log_path": str(log_path)}


# -- command line ---------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="say whether runs can start, or what is missing (exit 3)")
    st.add_argument("--bpy", action="store_true", help="the bpy 5.3 venv too")
    su = sub.add_parser("setup", help="make or update the root (idempotent); exit 3 with what is missing")
    su.add_argument("--no-bpy", action="store_true", help="skip the bpy 5.3 venv")
    for mode in ("window", "bpy"):
        p = sub.add_parser(mode, help=f"run a driver script ({'Blender 4.3 in a window' if mode == 'window' else 'bpy 5.3'})")
        p.add_argument("driver")
        p.add_argument("--file", action="append", default=[], help="a file the driver gets in $DP4D_FILES")
        p.add_argument("--env", action="append", default=[], metavar="K=V")
        p.add_argument("--out", default=None, help="where screenshots, files and the log go (default out/window)")
        p.add_argument("--timeout", type=float, default=240)
    sh = sub.add_parser("shell", help="a command (default a shell) in the root")
    sh.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.command == "status":
        ready, reason = status(need_bpy=args.bpy)
        print(reason)
        return 0 if ready else 3
    if args.command == "setup":
        t0 = time.monotonic()
        try:
            times = setup(with_bpy=not args.no_bpy)
        except Unavailable as exc:
            print(f"[window] the Blender window root cannot be made: {exc}", file=sys.stderr)
            return 3
        detail = ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) or "nothing to do"
        print(f"[window] root ready at {root_dir()} ({detail}; {time.monotonic() - t0:.1f} s)")
        return 0
    if args.command == "shell":
        root = root_dir()
        if not stage_done(root, "base"):
            print(status()[1], file=sys.stderr)
            return 3
        return subprocess.call(in_root_cmd(root, args.cmd or ["/bin/bash"], {"TERM": os.environ.get("TERM", "xterm")}))
    env = dict(item.split("=", 1) for item in args.env)
    try:
        res = run(args.driver, args.command, files=args.file, env=env, out_dir=args.out, timeout=args.timeout)
    except Unavailable as exc:
        print(f"[window] cannot run: {exc}", file=sys.stderr)
        return 3
    print(res["log"][-4000:], file=sys.stderr)
    print(json.dumps({k: v for k, v in res.items() if k != "log"}, indent=1))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
