"""Helpers of the KHR_gaussian_splatting tests: scenes whose values are asymmetric (a swapped axis,
order or activation gives other numbers), a tiny 4D result, and three.js 0.187's own loader under
Node.js reading our files."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.addon_fixtures import THREE

# Three Gaussians, every value different: quaternions (w, x, y, z) not normalised and with no
# two components alike, three different scales per Gaussian, opacities either side of 0.5,
# degree-1 SH within [-1, 1] (three.js stores them as bytes over that range).
MEANS = np.array([[0.10, -0.20, 0.30], [-0.25, 0.05, 0.15], [0.02, 0.31, -0.12]])
QUATS_WXYZ = np.array([[2.0, 0.4, -0.8, 1.2], [0.3, -1.1, 0.5, 0.2], [-0.6, 0.25, 0.9, -1.4]])
LOG_SCALES = np.log(np.array([[0.010, 0.030, 0.060], [0.045, 0.012, 0.020], [0.025, 0.070, 0.015]]))
OPACITY_LOGITS = np.array([[-1.0], [0.5], [2.0]])
SH_DC = np.array([[0.9, -0.3, 0.1], [-1.2, 0.6, 1.5], [0.2, 0.8, -0.7]])
SH_REST = np.array([  # [N, 3 coefficients (m = -1, 0, 1), 3 channels]
    [[0.11, -0.23, 0.35], [-0.41, 0.52, -0.63], [0.74, -0.05, 0.16]],
    [[-0.27, 0.38, -0.49], [0.58, -0.69, 0.07], [-0.18, 0.29, -0.33]],
    [[0.44, 0.13, -0.57], [-0.66, -0.09, 0.21], [0.31, -0.77, 0.62]],
])


def quat_wxyz_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices of wxyz quaternions, written out here (not the code under test)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def covariance(quats_wxyz: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``R diag(s^2) R^T`` ``[N, 3, 3]``: the covariance of 3DGS (and of our renderer)."""
    R = quat_wxyz_matrix(quats_wxyz)
    return np.einsum("nij,nj,nkj->nik", R, scales**2, R)


def upper(cov: np.ndarray) -> np.ndarray:
    """three.js's covariance attribute layout: c00, c01, c02, c11, c12, c22."""
    return np.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 0, 2], cov[:, 1, 1], cov[:, 1, 2], cov[:, 2, 2]], 1)


# -- three.js under Node ---------------------------------------------------------------------------

_READ_JS = """
import fs from 'fs';
import { pathToFileURL } from 'url';
const [three, glbPath, timesJson] = process.argv.slice(2);
const THREE = await import(pathToFileURL(three + '/build/three.webgpu.js').href);
const { GLTFLoader } = await import(pathToFileURL(three + '/examples/jsm/loaders/GLTFLoader.js').href);
const { GLTFGaussianSplatLoaderExtension } = await import(pathToFileURL(three + '/examples/jsm/loaders/GLTFGaussianSplatLoaderExtension.js').href);
const data = fs.readFileSync(glbPath);
const loader = new GLTFLoader();
loader.register((parser) => new GLTFGaussianSplatLoaderExtension(parser));
loader.parse(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength), '', (gltf) => {
  const splats = [];
  gltf.scene.traverse((o) => { if (o.isGaussianSplat) splats.push(o); });
  const out = { splats: [], frames: [] };
  for (const s of splats) {
    const g = s.splatGeometry;
    const entry = { name: s.name, center: Array.from(g.getAttribute('position').array),
                    covariance: Array.from(g.getAttribute('covariance').array),
                    color: Array.from(g.getAttribute('color').array), extension: s.userData.gltfExtensions };
    for (let d = 1; d <= 3; d++) {
      const a = g.getAttribute('sphericalHarmonics' + d);
      if (a) entry['sh' + d] = Array.from(new Uint8Array(a.array.buffer, a.array.byteOffset, a.array.byteLength));
    }
    out.splats.push(entry);
  }
  const mixer = new THREE.AnimationMixer(gltf.scene);
  const actions = gltf.animations.map((clip) => {
    const action = mixer.clipAction(clip);
    action.setLoop(THREE.LoopOnce);
    action.clampWhenFinished = true;  // hold the last pose (a looping clip at its end is at its start)
    return action;
  });
  for (const t of JSON.parse(timesJson)) {
    for (const action of actions) action.reset().play();  // a finished clip stays paused otherwise
    mixer.setTime(t);
    gltf.scene.updateMatrixWorld(true);
    out.frames.push(splats.map((s) => Array.from(s.matrixWorld.elements)));
  }
  process.stdout.write(JSON.stringify(out));
}, (error) => { process.stderr.write('GLTFLoader failed: ' + error + '\\n' + (error.stack || '')); process.exit(2); });
"""


def three_read_splats(path, times=()) -> dict:
    """three.js 0.187's ``GLTFLoader`` + ``GLTFGaussianSplatLoaderExtension`` under Node: for each
    ``GaussianSplat`` it made, ``center [N, 3]``, ``covariance [N, 6]`` (upper triangle),
    ``color [N, 4]`` bytes, ``sh1``.. packed bytes and the extension object; ``frames``: each
    splat's world matrix ``[4, 4]`` at each animation time. Skips where Node or three is missing."""
    if shutil.which("node") is None or not THREE.is_dir():
        pytest.skip("three.js is not installed (python3 scripts/dev.py test installs it into .node-three/; needs Node.js)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "read.mjs"
        script.write_text(_READ_JS)
        done = subprocess.run(["node", str(script), str(THREE), str(path), json.dumps([float(t) for t in times])],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    for s in out["splats"]:
        s["center"] = np.asarray(s["center"], np.float64).reshape(-1, 3)
        s["covariance"] = np.asarray(s["covariance"], np.float64).reshape(-1, 6)
        s["color"] = np.asarray(s["color"], np.int64).reshape(-1, 4)
    out["frames"] = [[np.asarray(m, np.float64).reshape(4, 4).T for m in frame] for frame in out["frames"]]  # column-major
    return out


def tiny_result(gaussians: int = 1500, frames: int = 6):
    """A real Dynamic4D with known articulated motion (the lamp), small enough for tests."""
    from dynapose4d.evaluation.articulated import make_articulated
    from dynapose4d.testing.moving import articulated_model

    model, _ = articulated_model(make_articulated("lamp", gaussians), controls=64, frames=frames, steps=120)
    return model
