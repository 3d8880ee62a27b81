"""Play a GLB in a real browser: headless Chromium, three.js 0.187's GLTFLoader with its
``KHR_gaussian_splatting`` extension on ``WebGPURenderer`` (``forceWebGL``), pictures back as arrays.

A page served on 127.0.0.1 loads the GLB, finds the file's camera (the reference view), plays
its animation with an ``AnimationMixer`` set to each requested time, renders, and posts each
picture back to the server. Chromium runs WebGL 2 on SwiftShader (no GPU needed).

The splat colour space: the file says ``srgb_rec709_display`` (the colours are display sRGB,
blended as they are); three.js 0.187's loader does not read ``colorSpace``, and its renderer by
default treats material colours as linear and encodes them to sRGB on output. The page shows
them as the extension says, passing the blended colours through (``outputColorSpace`` linear);
``float_blend`` blends in a half-float target first (as the extension's text advises) instead of
the 8-bit canvas, by a linear tone mapping at exposure 1 (an identity that makes three.js
render to its float target).

Requirements: ``chromium`` (Debian's package), Node.js is not needed, three.js under
``.node-three/node_modules/three`` (``scripts/dev.py test`` installs it) or ``three_dir``;
for the second viewer, PlayCanvas under ``.node-playcanvas/`` (``dev.py test`` too).
:func:`browser_problem` and :func:`playcanvas_problem` say what is missing.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
THREE_DIR = ROOT / ".node-three" / "node_modules" / "three"
PLAYCANVAS_DIR = ROOT / ".node-playcanvas" / "node_modules" / "playcanvas"  # a second viewer (npm playcanvas@2.23.3)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")

# Both pages: a script error or a rejected promise ends the run with its message (a page that
# broke would otherwise only time out).
REPORT_ERRORS = """<script>
  const fail = (what) => fetch('/done', {method: 'POST', body: JSON.stringify({ok: false, error: String(what)})});
  window.addEventListener('error', (e) => fail(e.message + ' at ' + e.filename + ':' + e.lineno));
  window.addEventListener('unhandledrejection', (e) => fail(e.reason && e.reason.stack || e.reason));
</script>"""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><style>html,body{margin:0;background:#fff}</style>
<script type="importmap">
{"imports": {"three": "/three/build/three.webgpu.js", "three/webgpu": "/three/build/three.webgpu.js",
             "three/tsl": "/three/build/three.tsl.js", "three/addons/": "/three/examples/jsm/"}}
</script></head><body>
<canvas id="c" width="%(width)d" height="%(height)d"></canvas>
%(report_errors)s
<script type="module">
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { GLTFGaussianSplatLoaderExtension } from 'three/addons/loaders/GLTFGaussianSplatLoaderExtension.js';
const job = %(job)s;
async function post(path, body) { await fetch(path, {method: 'POST', body: JSON.stringify(body)}); }
try {
  const canvas = document.getElementById('c');
  // Our own context, so the drawing buffer survives until it is read back.
  const context = canvas.getContext('webgl2', {preserveDrawingBuffer: true, antialias: false, alpha: true, depth: true, stencil: false});
  const renderer = new THREE.WebGPURenderer({canvas, context, forceWebGL: true, antialias: false});
  renderer.setPixelRatio(1);
  renderer.setSize(job.width, job.height, false);
  renderer.outputColorSpace = THREE.LinearSRGBColorSpace;  // srgb_rec709_display: show the blended colours as they are
  if (job.float_blend) { renderer.toneMapping = THREE.LinearToneMapping; renderer.toneMappingExposure = 1.0; }
  await renderer.init();
  const loader = new GLTFLoader();
  loader.register((parser) => new GLTFGaussianSplatLoaderExtension(parser));
  const gltf = await loader.loadAsync('/model.glb');
  const scene = new THREE.Scene();  // gltf.scene is a Group, which has no background
  scene.add(gltf.scene);
  scene.background = new THREE.Color(job.background, job.background, job.background);
  const camera = gltf.cameras[0];
  if (!camera) throw new Error('the file has no camera');
  camera.aspect = job.width / job.height;
  camera.updateProjectionMatrix();
  const mixer = new THREE.AnimationMixer(gltf.scene);
  const actions = gltf.animations.map((clip) => {
    const action = mixer.clipAction(clip);
    action.setLoop(THREE.LoopOnce);
    action.clampWhenFinished = true;  // hold the last pose (a looping clip at its end is at its start)
    return action;
  });
  let splats = 0;
  scene.traverse((o) => { if (o.isGaussianSplat) splats += 1; });
  for (let i = 0; i < job.times.length; i++) {
    for (const action of actions) action.reset().play();  // a finished clip stays paused otherwise
    mixer.setTime(job.times[i]);
    scene.updateMatrixWorld(true);
    await renderer.renderAsync(scene, camera);
    await renderer.renderAsync(scene, camera);  // the splats sort in onBeforeRender: draw once more with the order of this pose
    await post('/picture', {index: i, png: canvas.toDataURL('image/png'), splats, backend: renderer.backend.isWebGLBackend ? 'webgl' : 'webgpu'});
  }
  await post('/done', {ok: true});
} catch (error) {
  await post('/done', {ok: false, error: String(error && error.stack || error)});
}
</script></body></html>
"""


# PlayCanvas: its own glTF parser reads KHR_gaussian_splatting (engine 2.23); the file's camera
# becomes a camera component of the instantiated entity. Sorting runs in a worker, so the
# picture is taken after some frames.
PLAYCANVAS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><style>html,body{margin:0;background:#fff}</style></head><body>
<canvas id="c" width="%(width)d" height="%(height)d" style="width:%(width)dpx;height:%(height)dpx"></canvas>
%(report_errors)s
<script type="module">
import * as pc from '/viewer/build/playcanvas.mjs';
const job = %(job)s;
async function post(path, body) { await fetch(path, {method: 'POST', body: JSON.stringify(body)}); }
try {
  const canvas = document.getElementById('c');
  const device = await pc.createGraphicsDevice(canvas, {deviceTypes: ['webgl2'], antialias: false, preserveDrawingBuffer: true, alpha: false});
  const app = new pc.Application(canvas, {graphicsDevice: device});
  app.setCanvasFillMode(pc.FILLMODE_NONE);
  app.setCanvasResolution(pc.RESOLUTION_FIXED, job.width, job.height);
  app.start();
  const asset = new pc.Asset('model', 'container', {url: '/model.glb'});
  app.assets.add(asset);
  await new Promise((resolve, reject) => { asset.once('load', resolve); asset.once('error', reject); app.assets.load(asset); });
  await post('/log', 'loaded');
  const entity = asset.resource.instantiateRenderEntity();
  app.root.addChild(entity);
  const cameras = entity.findComponents('camera');
  if (!cameras.length) throw new Error('the file has no camera');
  const camera = cameras[0];
  camera.enabled = true;  // glTF cameras arrive disabled
  camera.clearColor = new pc.Color(job.background, job.background, job.background, 1);
  const splats = entity.findComponents('gsplat').length;
  let frames = 0;
  await post('/log', {cameras: cameras.length, splats});
  app.on('frameend', () => {
    frames += 1;
    if (frames === job.settle) {
      post('/picture', {index: 0, png: canvas.toDataURL('image/png'), splats, backend: 'webgl2'}).then(() => post('/done', {ok: true}));
    }
  });
} catch (error) {
  await post('/done', {ok: false, error: String(error && error.stack || error)});
}
</script></body></html>
"""


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_problem(three_dir: Path | None = None) -> str | None:
    """Why the browser check cannot run here (None when it can)."""
    three = Path(three_dir or THREE_DIR)
    if find_chromium() is None:
        return "Chromium is not installed (Debian: apt-get install chromium)"
    if not (three / "examples" / "jsm" / "loaders" / "GLTFGaussianSplatLoaderExtension.js").is_file():
        return f"three.js with GLTFGaussianSplatLoaderExtension is not in {three} (python3 scripts/dev.py test installs three@0.187.0 into .node-three/)"
    return None


def playcanvas_problem(playcanvas_dir: Path | None = None) -> str | None:
    """Why the PlayCanvas check cannot run here (None when it can)."""
    if find_chromium() is None:
        return "Chromium is not installed (Debian: apt-get install chromium)"
    folder = Path(playcanvas_dir or PLAYCANVAS_DIR)
    if not (folder / "build" / "playcanvas.mjs").is_file():
        return f"PlayCanvas is not in {folder} (npm install --prefix .node-playcanvas playcanvas@2.23.3)"
    return None


def render_glb(glb: str | Path, times: list[float], width: int = 256, height: int = 256, *, background: float = 1.0,
               float_blend: bool = True, three_dir: Path | None = None, timeout: float = 240.0, viewer: str = "three") -> dict:
    """Pictures of ``glb`` from its first camera at animation ``times`` (seconds):
    ``{"images": [H, W, 3] float arrays in [0, 1], "splats": splat objects, "backend",
    "seconds"}``. ``viewer="playcanvas"`` shows it with PlayCanvas instead (a static file, one
    picture). Raises :class:`BrowserError` with the page's error or Chromium's output."""
    if viewer == "playcanvas":
        problem = playcanvas_problem()
        folder = PLAYCANVAS_DIR.resolve()
        times = [0.0]
        template = PLAYCANVAS_PAGE
    else:
        problem = browser_problem(three_dir)
        folder = Path(three_dir or THREE_DIR).resolve()
        template = PAGE
    if problem:
        raise BrowserError(problem)
    job = {"times": [float(t) for t in times], "width": width, "height": height, "background": background, "float_blend": float_blend, "settle": 60}
    page = (template % {"width": width, "height": height, "job": json.dumps(job), "report_errors": REPORT_ERRORS}).encode()
    glb_bytes = Path(glb).read_bytes()
    state = {"pictures": {}, "done": None, "log": []}
    finished = threading.Event()

    Handler = _page_handler(page, glb_bytes, folder, state, finished)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    profile = tempfile.mkdtemp(prefix="dp4d-chromium-")
    args = [
        find_chromium(), "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--no-first-run",
        "--disable-background-networking", "--disable-extensions", f"--window-size={width},{height}",
        "--remote-debugging-port=0",  # keeps the headless browser running until the page is done
        "--enable-logging=stderr", "--log-level=0",
        f"http://127.0.0.1:{server.server_port}/index.html",
    ]
    t0 = time.perf_counter()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HOME=profile))
    try:
        if not finished.wait(timeout):
            raise BrowserError(f"the page did not finish in {timeout:.0f} s; it said {state['log'][-5:]}; Chromium said: {_tail(log)}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.shutdown()
        server.server_close()
        shutil.rmtree(profile, ignore_errors=True)
    done = state["done"]
    if not done.get("ok"):
        raise BrowserError(f"the page failed: {done.get('error')}; it said {state['log'][-8:]}")
    images = [_decode(state["pictures"][i]["png"]) for i in range(len(times))]
    first = state["pictures"][0] if times else {}
    return {"images": images, "splats": first.get("splats"), "backend": first.get("backend"), "seconds": time.perf_counter() - t0}


def _page_handler(page: bytes, glb_bytes: bytes, folder: Path, state: dict, finished: threading.Event):
    """The page's server on 127.0.0.1: the page, the GLB, the viewer's modules under ``folder``;
    the page posts its pictures, log lines and end into ``state`` (``finished`` set at the end)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            if path in ("/", "/index.html"):
                self._send(page, "text/html")
            elif path == "/model.glb":
                self._send(glb_bytes, "model/gltf-binary")
            elif path.startswith(("/three/", "/viewer/")):
                target = (folder / path.split("/", 2)[2]).resolve()
                if folder not in target.parents or not target.is_file():
                    self.send_error(404)
                    return
                self._send(target.read_bytes(), "text/javascript" if target.suffix in (".js", ".mjs") else "application/octet-stream")
            else:
                self.send_error(404)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/picture":
                state["pictures"][body["index"]] = body
            elif self.path == "/log":
                state["log"].append(str(body))
            elif self.path == "/done":
                state["done"] = body
                finished.set()
            self._send(b"{}", "application/json")

        def _send(self, data: bytes, kind: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _decode(data_url: str) -> np.ndarray:
    from PIL import Image

    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), np.float32) / 255.0


def _tail(log) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB) of images in [0, 1], over the pixels of ``mask [H, W]`` when given."""
    diff = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    mse = float(diff[mask].mean()) if mask is not None else float(diff.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
