"""Helpers for driver scripts that scripts/blender_window.py runs inside the trixie root: in
Blender 4.3 with a window (``DP4D_MODE=window``) or under bpy 5.3 (``DP4D_MODE=bpy``).

A driver is a generator of steps: each ``yield`` gives Blender the number of seconds to run
(draw, handle events, fire the add-on's timers) before the next step. In a window the steps run
from ``bpy.app.timers``; under the bpy module, which has no event loop, they run in a plain loop
(``run_steps`` picks). ``check(name, ok, detail)`` records an assertion (the test on the host
asserts on them); an exception ends the run with its traceback in the result. The result goes
to ``$DP4D_RESULT`` as JSON, screenshots and files to ``$DP4D_OUT``.

Drivers talk to the add-on through its operator ids (``bpy.ops.dynapose4d.*``) and scene data,
not its module paths, so that they outlive the add-on's refactors.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import traceback
import urllib.request

import bpy

OUT = os.environ.get("DP4D_OUT", os.getcwd())
FILES = os.environ.get("DP4D_FILES", os.getcwd())
MODE = os.environ.get("DP4D_MODE", "bpy" if bpy.app.background else "window")
PACKAGE = os.environ.get("DP4D_PACKAGE", "bl_ext.user_default.dynapose4d")
CATEGORY = "DynaPose4D"
RESULT: dict = {"ok": None, "checks": {}, "shots": {}, "timings": {}, "blender": bpy.app.version_string, "mode": MODE}
_T0 = time.monotonic()
_finished = False


def log(message: str) -> None:
    print(f"[driver {time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def check(name: str, ok: bool, detail=None) -> bool:
    """Record a named check; the host's test asserts on every one of them."""
    RESULT["checks"][name] = {"ok": bool(ok), "detail": detail}
    log(f"check {name}: {'ok' if ok else 'FAILED'} {'' if detail is None else detail}")
    return bool(ok)


def mark(name: str) -> None:
    RESULT["timings"][name] = round(time.monotonic() - _T0, 2)


def file(pattern: str) -> str:
    found = sorted(glob.glob(os.path.join(FILES, pattern)))
    if not found:
        raise FileNotFoundError(f"no {pattern} in {FILES}")
    return found[0]


def finish(error: str | None = None) -> None:
    global _finished
    if _finished:
        return
    _finished = True
    if error:
        RESULT["error"] = error
        log(error)
    if RESULT["ok"] is None:
        RESULT["ok"] = error is None and all(c["ok"] for c in RESULT["checks"].values())
    RESULT["seconds"] = round(time.monotonic() - _T0, 1)
    path = os.environ.get("DP4D_RESULT", os.path.join(OUT, "result.json"))
    with open(path, "w") as fh:
        json.dump(RESULT, fh, indent=1, default=str)
    log(f"result written: ok={RESULT['ok']}")
    if MODE == "window":
        bpy.ops.wm.quit_blender()
    else:  # the bpy module can hang at exit once an add-on was registered (tests/bpy_exit.py)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


# -- running steps ------------------------------------------------------------------------------

def run_steps(steps, first_interval: float = 1.0) -> None:
    """Run the generator ``steps`` (yields seconds to wait) to its end, then :func:`finish`."""
    if MODE != "window":
        try:
            for delay in steps:
                time.sleep(float(delay or 0))
        except Exception:
            finish(traceback.format_exc())
        else:
            finish()
        return

    def tick():
        try:
            delay = next(steps)
        except StopIteration:
            finish()
            return None
        except Exception:
            finish(traceback.format_exc())
            return None
        return max(0.01, float(delay or 0.01))

    bpy.app.timers.register(tick, first_interval=first_interval, persistent=True)


def wait_until(predicate, timeout: float, what: str, every: float = 0.25):
    """Steps until ``predicate()`` is true (its value is returned); TimeoutError after ``timeout``."""
    t0 = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not after {timeout:.0f} s")
        yield every


# -- the window -----------------------------------------------------------------------------------

def view3d():
    """``(window, area, sidebar region, main region)`` of the first 3D viewport."""
    win = bpy.context.window_manager.windows[0]
    area = next(a for a in win.screen.areas if a.type == "VIEW_3D")
    sidebar = next(r for r in area.regions if r.type == "UI")
    main = next(r for r in area.regions if r.type == "WINDOW")
    return win, area, sidebar, main


def override(region: str = "WINDOW"):
    """A context override of the 3D viewport for operators called from a timer."""
    win, area, sidebar, main = view3d()
    return bpy.context.temp_override(window=win, screen=win.screen, area=area, region=sidebar if region == "UI" else main)


def redraw() -> None:
    for win in bpy.context.window_manager.windows:
        for area in win.screen.areas:
            area.tag_redraw()


def open_sidebar_tab(category: str = CATEGORY):
    """Open the viewport's sidebar on ``category``: the tab can be chosen only once the sidebar
    has drawn (so this retries), and one more redraw shows it."""
    win, area, sidebar, main = view3d()
    area.spaces.active.show_region_ui = True
    area.tag_redraw()

    def choose():
        try:
            view3d()[2].active_panel_category = category
        except Exception:  # the sidebar knows its tabs only after drawing once
            redraw()
            return False
        return True

    yield from wait_until(choose, 20, f"the sidebar tab {category!r}", every=0.5)
    area.tag_redraw()
    yield 0.5


def region_box(region, win) -> tuple[int, int, int, int]:
    """``(x, y from the top, width, height)`` of a region in screen pixels (Blender counts y from the bottom)."""
    return region.x, win.height - (region.y + region.height), region.width, region.height


def screenshot(name: str, crops: dict | None = None) -> dict:
    """Grab the X screen (Blender's own screen.screenshot reads black under Xvfb + llvmpipe) into
    ``OUT/name.png``; ``crops``: ``{suffix: (x, y, w, h)}`` also cut those boxes out."""
    full = os.path.join(OUT, f"{name}.png")
    subprocess.run(["import", "-window", "root", full], check=True)
    shots = {"full": full}
    for suffix, (x, y, w, h) in (crops or {}).items():
        path = os.path.join(OUT, f"{name}-{suffix}.png")
        subprocess.run(["convert", full, "-crop", f"{w}x{h}+{x}+{y}", "+repage", path], check=True)
        shots[suffix] = path
    RESULT["shots"][name] = {k: os.path.basename(v) for k, v in shots.items()}
    log(f"screenshot {name}: {', '.join(os.path.basename(v) for v in shots.values())}")
    return shots


def image_change(a: str, b: str) -> float | None:
    """Mean absolute difference of two same-sized images, 0..1 (ImageMagick: loading them into
    Blender would add data-blocks, and a rendered viewport starts its render again on that)."""
    done = subprocess.run(["compare", "-metric", "MAE", a, b, "null:"], capture_output=True, text=True)
    found = re.search(r"\(([0-9.eE+-]+)\)", done.stderr)
    return float(found.group(1)) if found else None


def screenshot_when_still(name: str, crops: dict, key: str, every: float = 2.0, timeout: float = 90.0, tolerance: float = 0.002,
                          still_shots: int = 1):
    """Steps: screenshots ``every`` seconds until the ``key`` crop has changed by less than
    ``tolerance`` (mean absolute difference, 0..1) ``still_shots`` times in a row: a viewport
    still rendering or compiling shaders keeps changing (a slow render's sample can outlast one
    interval: ask for more still shots there). Returns the last shots."""
    t0 = time.monotonic()
    previous, still = None, 0
    while True:
        shots = screenshot(name, crops)
        change = None if previous is None else image_change(previous, shots[key])
        still = still + 1 if change is not None and change < tolerance else 0
        log(f"{name}: change since the last shot {change}")
        if still >= still_shots or time.monotonic() - t0 > timeout:
            RESULT["shots"][name].update(still_after_s=round(time.monotonic() - t0, 1), last_change=change,
                                         still=still >= still_shots)
            return shots
        previous = os.path.join(os.path.dirname(OUT), f"{name}-previous.png")  # beside OUT: not copied back
        shutil.copyfile(shots[key], previous)
        yield every


# -- the add-on and the backend -----------------------------------------------------------------

def install_extension(zip_path: str) -> bool:
    """Install and enable the extension zip into this (fresh) profile, as Preferences > Install from Disk does."""
    result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    return result == {"FINISHED"} and PACKAGE in bpy.context.preferences.addons


def addon_preferences():
    return bpy.context.preferences.addons[PACKAGE].preferences


def connect_remote(url: str, token: str) -> None:
    """The add-on's preferences: use the running backend at ``url`` with ``token``."""
    prefs = addon_preferences()
    prefs.backend_mode = "REMOTE"
    prefs.url = url
    prefs.token = token


def addon_state():
    """The add-on's runtime state object (the one with ``tick``), wherever its module now lives;
    None if there is none. For facts the scene does not hold (health, progress) and to drive the
    watch timer's work under the bpy module, which has no timers."""
    for name, module in list(sys.modules.items()):
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            state = getattr(module, "STATE", None)
            if state is not None and callable(getattr(state, "tick", None)):
                return state
    return None


def backend(path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """A call to the backend on the host (``DP4D_BACKEND_URL``, ``DP4D_BACKEND_TOKEN``); JSON back."""
    url = os.environ["DP4D_BACKEND_URL"].rstrip("/") + "/v1" + path
    all_headers = {"Authorization": f"Bearer {os.environ['DP4D_BACKEND_TOKEN']}"}
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=body, method=method, headers=all_headers)
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


def job_collection(job_id: str | None = None):
    """The scene's DynaPose4D job collection (``dynapose4d_job``), the given job's or the newest."""
    found = [c for c in bpy.context.scene.collection.children_recursive if "dynapose4d_snapshot" in c]
    if job_id:
        found = [c for c in found if job_id in c.name or c.get("dynapose4d_job") == job_id]
    return found[-1] if found else None


def role(collection, name: str):
    return next((o for o in collection.all_objects if o.get("dynapose4d_role") == name), None)


def glb_summary(path: str) -> dict:
    """What a GLB holds, from its JSON chunk: header checks, meshes, morph targets, animations."""
    with open(path, "rb") as fh:
        data = fh.read()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    chunk_len, chunk_type = struct.unpack_from("<I4s", data, 12)
    gltf = json.loads(data[20:20 + chunk_len])
    prims = [p for m in gltf.get("meshes", []) for p in m.get("primitives", [])]
    accessors = gltf.get("accessors", [])
    return {
        "magic": magic.decode(errors="replace"), "version": version, "length_ok": length == len(data),
        "json_chunk": chunk_type.decode(),
        "bytes": len(data), "nodes": [n.get("name") for n in gltf.get("nodes", [])],
        "primitives": [{"mode": p.get("mode", 4), "count": accessors[p["attributes"]["POSITION"]]["count"],
                        "targets": len(p.get("targets", []))} for p in prims if "POSITION" in p.get("attributes", {})],
        "animations": [{"name": a.get("name"), "channels": sorted({c["target"].get("path") for c in a.get("channels", [])})}
                       for a in gltf.get("animations", [])],
    }
