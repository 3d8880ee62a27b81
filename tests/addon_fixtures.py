"""Helpers for the Blender add-on's tests: a synthetic asymmetric sequence, a GLB reader that
needs no Blender (numpy only), and the Khronos glTF validator.

No torch and no backend imports here: the bpy-5 test step runs these in an environment that
has only bpy, numpy and pytest (with ``--noconftest``, so the Blender folders are set here too).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / ".node" / "node_modules" / "gltf-validator"

if "BLENDER_USER_RESOURCES" not in os.environ:  # conftest.py does this in the main suite
    _tmp = Path(tempfile.mkdtemp(prefix="dp4d-blender-"))
    os.environ["BLENDER_USER_RESOURCES"] = str(_tmp / "resources")
    os.environ.setdefault("XDG_CACHE_HOME", str(_tmp / "cache"))


@pytest.fixture
def fresh_blender():
    """An empty scene before the test and after it (import it into a test module: autouse
    there, not session-wide)."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context
    bpy.ops.wm.read_factory_settings(use_empty=True)


# -- a synthetic sequence ------------------------------------------------------------------------------

NAMES = ["root", "neck", "hand_l", "hand_r", "head"]
EDGES = [(0, 1), (1, 2), (1, 3), (1, 4)]


def make_sequence(count: int = 300, frames: int = 6, fps: float = 24.0, seed: int = 0, version: int = 1):
    """An asymmetric moving cloud (every axis moves differently, so a swapped or mirrored axis
    fails a test) with a 5-keypoint skeleton rotating about backend Z and stretching."""
    from blender_addon.format.sequence import Sampling, Sequence

    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, frames)
    base = (rng.normal(size=(count, 3)) * np.array([0.15, 0.25, 0.1])).astype(np.float32)
    shift = np.stack([0.3 * t, 0.1 * t**2, -0.2 * t], axis=1).astype(np.float32)  # [F, 3]
    positions = base[None] + shift[:, None]
    positions[:, :, 0] += 0.05 * np.sin(6.0 * base[None, :, 1] + 3.0 * t[:, None])
    kp0 = np.array([[0.0, 0.0, 0.0], [0.0, 0.3, 0.05], [0.2, 0.32, 0.0], [-0.18, 0.3, 0.02], [0.02, 0.5, 0.1]])
    keypoints = []
    for k, a in enumerate(np.linspace(0.0, 0.9, frames)):
        rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
        keypoints.append(kp0 @ rot.T * (1.0 + 0.2 * t[k]) + np.array([0.1 * t[k], 0.0, 0.05 * t[k]]))
    scales = np.exp(rng.normal(np.log(0.01), 0.3, size=(count, 3))).astype(np.float32)
    quats = rng.normal(size=(count, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    return Sequence(
        positions=positions.astype(np.float32),
        scales=np.repeat(scales[None], frames, axis=0),
        rotations=quats,
        opacities=rng.uniform(0.0, 1.0, count).astype(np.float32),
        colors=rng.uniform(0.0, 1.0, (count, 3)).astype(np.float32),
        keypoints=np.asarray(keypoints, dtype=np.float32),
        names=list(NAMES),
        edges=list(EDGES),
        valid=np.ones(len(NAMES), dtype=bool),
        camera={"c2w": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2.0], [0, 0, 0, 1]], "fovy_deg": 49.1, "width": 256, "height": 256},
        sampling=Sampling(fps, frames),
        times=t,
        snapshot={"version": version, "iteration": 10 * version, "stage": "dynamic"},
    )


def _axis_rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(4)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _about(point, rotation: np.ndarray) -> np.ndarray:
    to, back = np.eye(4), np.eye(4)
    to[:3, 3], back[:3, 3] = -np.asarray(point), point
    return back @ rotation @ to


def make_skinned(frames: int = 6, seed: int = 0, bend: float = 1.0):
    """A skinned tube along backend +Y (3 bones in a chain: the root slides along +X, the middle
    bends about Z at y = 0.2, the tip about X at y = 0.4), vertices weighted over the two
    nearest bones; ``deformed`` is its exact skinning. Asymmetric on every axis."""
    from blender_addon.format.skinned import Skinned

    rng = np.random.default_rng(seed)
    rings, around = 13, 10
    y = np.linspace(0.0, 0.6, rings)
    a = np.linspace(0.0, 2 * np.pi, around, endpoint=False)
    verts = np.array([[0.05 * np.cos(t) + 0.01 * k / rings, yy, 0.04 * np.sin(t)] for k, yy in enumerate(y) for t in a], np.float32)
    faces = []
    for r in range(rings - 1):
        for i in range(around):
            p, q = r * around + i, r * around + (i + 1) % around
            faces += [[p, q + around, q], [p, p + around, q + around]]
    heads = np.array([[0.0, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.4, 0.0]])
    motion = np.zeros((frames, 3, 4, 4))
    for f, t in enumerate(np.linspace(0.0, 1.0, frames)):
        root = np.eye(4)
        root[:3, 3] = [0.1 * t, 0.02 * t, -0.03 * t]
        mid = root @ _about(heads[1], _axis_rotation(2, 0.6 * bend * t))
        tip = mid @ _about(heads[2], _axis_rotation(0, -0.5 * bend * t))
        motion[f] = [root, mid, tip]
    # Weights: a smooth ramp between neighbouring bones around each joint.
    vy = verts[:, 1]
    w_mid = np.clip((vy - 0.12) / 0.16, 0.0, 1.0) - np.clip((vy - 0.32) / 0.16, 0.0, 1.0)
    w_tip = np.clip((vy - 0.32) / 0.16, 0.0, 1.0)
    w_root = 1.0 - w_mid - w_tip
    dense = np.stack([w_root, w_mid, w_tip], 1)
    order = np.argsort(-dense, axis=1)
    joints = np.zeros((len(verts), 4), np.int64)
    weights = np.zeros((len(verts), 4), np.float32)
    joints[:, :3] = order
    weights[:, :3] = np.take_along_axis(dense, order, 1)
    joints[weights == 0] = 0
    skinned = Skinned(
        vertices=verts, faces=np.array(faces, np.int32), colors=rng.uniform(0.0, 1.0, (len(verts), 3)).astype(np.float32),
        joints=joints, weights=weights, heads=heads, parents=np.array([-1, 0, 1]), motion=motion,
        deformed=np.zeros((frames, len(verts), 3), np.float32), names=["bone_00", "bone_01", "bone_02"], fps=24.0,
    )
    skinned.deformed = skinned.skinned().astype(np.float32)
    return skinned


# -- reading a GLB without Blender ----------------------------------------------------------------------

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class Glb:
    """A GLB file's JSON and binary chunk, with accessors decoded by numpy."""

    def __init__(self, path):
        data = Path(path).read_bytes()
        magic, version, length = struct.unpack("<4sII", data[:12])
        assert magic == b"glTF" and version == 2 and length == len(data)
        json_len, json_type = struct.unpack("<II", data[12:20])
        assert json_type == 0x4E4F534A  # "JSON"
        self.json = json.loads(data[20 : 20 + json_len])
        offset = 20 + json_len
        bin_len, bin_type = struct.unpack("<II", data[offset : offset + 8])
        assert bin_type == 0x004E4942  # "BIN\0"
        self.bin = data[offset + 8 : offset + 8 + bin_len]

    def accessor(self, index: int) -> np.ndarray:
        acc = self.json["accessors"][index]
        dtype, width = _COMPONENTS[acc["componentType"]], _WIDTH[acc["type"]]
        count = acc["count"]
        if "bufferView" in acc:
            view = self.json["bufferViews"][acc["bufferView"]]
            start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
            stride = view.get("byteStride")
            item = np.dtype(dtype).itemsize * width
            if stride and stride != item:
                raw = np.frombuffer(self.bin, np.uint8, count=stride * (count - 1) + item, offset=start)
                out = np.stack([np.frombuffer(raw[i * stride : i * stride + item].tobytes(), dtype) for i in range(count)])
            else:
                out = np.frombuffer(self.bin, dtype, count=count * width, offset=start).reshape(count, width).copy()
        else:
            out = np.zeros((count, width), dtype)
        if "sparse" in acc:
            sp = acc["sparse"]
            iv = self.json["bufferViews"][sp["indices"]["bufferView"]]
            idx = np.frombuffer(self.bin, _COMPONENTS[sp["indices"]["componentType"]], count=sp["count"],
                                offset=iv.get("byteOffset", 0) + sp["indices"].get("byteOffset", 0))
            vv = self.json["bufferViews"][sp["values"]["bufferView"]]
            vals = np.frombuffer(self.bin, dtype, count=sp["count"] * width,
                                 offset=vv.get("byteOffset", 0) + sp["values"].get("byteOffset", 0)).reshape(-1, width)
            out[idx.astype(np.int64)] = vals
        if acc.get("normalized"):
            out = out.astype(np.float32) / np.iinfo(dtype).max
        return out

    def node(self, name: str) -> int:
        return next(i for i, n in enumerate(self.json["nodes"]) if n.get("name") == name)

    def channels(self) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray, str]]:
        """(node, path) -> (times, values, interpolation) over every animation."""
        out = {}
        for anim in self.json.get("animations", []):
            for ch in anim["channels"]:
                sampler = anim["samplers"][ch["sampler"]]
                key = (ch["target"]["node"], ch["target"]["path"])
                out[key] = (self.accessor(sampler["input"])[:, 0], self.accessor(sampler["output"]), sampler.get("interpolation", "LINEAR"))
        return out

    def morph_frames(self, node_name: str, fps: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``[F, N, 3]`` of a point mesh at each key time of its weights animation
        (STEP weights applied to the morph targets), and the key times."""
        node_index = self.node(node_name)
        prim = self.json["meshes"][self.json["nodes"][node_index]["mesh"]]["primitives"][0]
        base = self.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
        targets = np.stack([self.accessor(t["POSITION"]) for t in prim["targets"]]).astype(np.float64)  # [T, N, 3]
        times, weights, interpolation = self.channels()[(node_index, "weights")]
        assert interpolation == "STEP", interpolation
        weights = weights.reshape(len(times), len(prim["targets"]))
        return base[None] + np.einsum("ft,tnc->fnc", weights, targets), times


    def node_matrices(self, key: int) -> np.ndarray:
        """World matrices ``[nodes, 4, 4]`` with every animated channel at its key ``key``."""

        nodes = self.json["nodes"]
        channels = self.channels()
        parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", [])}
        local = []
        for i, n in enumerate(nodes):
            if "matrix" in n:
                local.append(np.array(n["matrix"], dtype=np.float64).reshape(4, 4).T)
                continue
            t = np.array(n.get("translation", [0, 0, 0]), np.float64)
            r = np.array(n.get("rotation", [0, 0, 0, 1]), np.float64)
            s = np.array(n.get("scale", [1, 1, 1]), np.float64)
            if (i, "translation") in channels:
                t = channels[(i, "translation")][1][key].astype(np.float64)
            if (i, "rotation") in channels:
                r = channels[(i, "rotation")][1][key].astype(np.float64)
            if (i, "scale") in channels:
                s = channels[(i, "scale")][1][key].astype(np.float64)
            x, y, z, w = r / np.linalg.norm(r)
            R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                          [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                          [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
            m = np.eye(4)
            m[:3, :3] = R * s[None, :]
            m[:3, 3] = t
            local.append(m)
        world = [None] * len(nodes)

        def resolve(i):
            if world[i] is None:
                world[i] = local[i] if i not in parent else resolve(parent[i]) @ local[i]
            return world[i]

        return np.stack([resolve(i) for i in range(len(nodes))])

    def skinned_positions(self, node_name: str, key: int) -> np.ndarray:
        """Vertex positions ``[V, 3]`` of a skinned mesh node with its joints posed at animation key
        ``key``, computed as the glTF spec says (sum of weight * joint world * inverse bind)."""
        node = self.json["nodes"][self.node(node_name)]
        skin = self.json["skins"][node["skin"]]
        prim = self.json["meshes"][node["mesh"]]["primitives"][0]
        pos = self.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
        joints = self.accessor(prim["attributes"]["JOINTS_0"]).astype(np.int64)
        weights = self.accessor(prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
        ibm = self.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)
        world = self.node_matrices(key)
        joint_mats = np.stack([world[j] for j in skin["joints"]]) @ ibm  # [J, 4, 4]
        v = np.concatenate([pos, np.ones((len(pos), 1))], 1)
        out = np.zeros((len(pos), 3))
        for k in range(4):
            out += weights[:, k, None] * np.einsum("vij,vj->vi", joint_mats[joints[:, k]], v)[:, :3]
        return out


# -- the Khronos validator ------------------------------------------------------------------------------

_VALIDATE_JS = """
const fs = require('fs');
const validator = require(process.argv[2]);
const path = process.argv[3];
validator.validateBytes(new Uint8Array(fs.readFileSync(path)), {uri: path, maxIssues: 1000})
  .then((report) => { process.stdout.write(JSON.stringify(report)); })
  .catch((error) => { process.stderr.write('validator failed: ' + error); process.exit(2); });
"""


# three.js (npm ``three``) for the engine test: a GLB without textures loads under plain Node.
THREE = ROOT / ".node-three" / "node_modules" / "three"
_THREE_JS = """
import fs from 'fs';
import { pathToFileURL } from 'url';
const [three, loaderPath, glbPath, timesJson] = process.argv.slice(2);
const THREE = await import(pathToFileURL(three + '/build/three.module.js').href);
const { GLTFLoader } = await import(pathToFileURL(three + '/examples/jsm/loaders/GLTFLoader.js').href);
const data = fs.readFileSync(glbPath);
const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
new GLTFLoader().parse(buffer, '', (gltf) => {
  let mesh = null;
  gltf.scene.traverse((o) => { if (o.isSkinnedMesh && !mesh) mesh = o; });
  if (!mesh) { process.stderr.write('no skinned mesh in the file'); process.exit(3); }
  const mixer = new THREE.AnimationMixer(gltf.scene);
  for (const clip of gltf.animations) {
    // Play once and hold the end: a looping clip at t = duration is back at its start.
    const action = mixer.clipAction(clip);
    action.setLoop(THREE.LoopOnce);
    action.clampWhenFinished = true;
    action.play();
  }
  const out = { bones: mesh.skeleton.bones.length, clips: gltf.animations.map((c) => c.duration), frames: [] };
  const v = new THREE.Vector3();
  for (const t of JSON.parse(timesJson)) {
    mixer.setTime(t);
    gltf.scene.updateMatrixWorld(true);
    const n = mesh.geometry.attributes.position.count;
    const frame = new Array(n * 3);
    for (let i = 0; i < n; i++) {
      mesh.getVertexPosition(i, v);   // skinned, in the mesh's space
      v.applyMatrix4(mesh.matrixWorld);
      frame[3 * i] = v.x; frame[3 * i + 1] = v.y; frame[3 * i + 2] = v.z;
    }
    out.frames.push(frame);
  }
  process.stdout.write(JSON.stringify(out));
}, (error) => { process.stderr.write('GLTFLoader failed: ' + error); process.exit(2); });
"""


def three_skinned_positions(path, times) -> dict:
    """three.js ``GLTFLoader`` + ``AnimationMixer`` under Node: the skinned mesh's world-space
    vertex positions ``[len(times), V, 3]`` (``frames``), its bone count and clip durations.
    Skips where Node.js or three is missing (``scripts/dev.py test`` installs it)."""
    if shutil.which("node") is None or not THREE.is_dir():
        pytest.skip("three.js is not installed (python3 scripts/dev.py test installs it into .node-three/; needs Node.js)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "play.mjs"
        script.write_text(_THREE_JS)
        done = subprocess.run(["node", str(script), str(THREE), "", str(path), json.dumps([float(t) for t in times])],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    out["frames"] = np.asarray(out["frames"], dtype=np.float64).reshape(len(times), -1, 3)
    return out


def gltf_validator_available() -> bool:
    return shutil.which("node") is not None and VALIDATOR.is_dir()


def validate_gltf(path) -> dict:
    """The Khronos glTF validator's report (``issues.numErrors`` ...); skips the test where
    Node.js or the validator is missing (``scripts/dev.py test`` installs it into .node/)."""
    if not gltf_validator_available():
        pytest.skip("the glTF validator is not installed (python3 scripts/dev.py test installs it into .node/; needs Node.js)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "validate.js"
        script.write_text(_VALIDATE_JS)
        done = subprocess.run(["node", str(script), str(VALIDATOR), str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def validation_errors(report: dict) -> list[dict]:
    return [m for m in report["issues"]["messages"] if m["severity"] == 0]


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The add-on registered for a test module's tests (import it into the module: autouse there)."""
    import blender_addon

    blender_addon.register()
    yield
    blender_addon.unregister()


# -- drawing without a window ------------------------------------------------------------------------


class Recorder:
    """Stands in for a UILayout (the bpy module never draws): logs what a draw function asks for,
    and checks every property, operator and menu it names exists."""

    def __init__(self, log):
        object.__setattr__(self, "log", log)

    def __getattr__(self, name):
        if name in ("row", "column", "box", "grid_flow", "split"):
            return lambda *a, **k: Recorder(self.log)
        return lambda *a, **k: self.log.append((name, a, k))

    def __setattr__(self, name, value):
        pass

    def prop(self, data, name, **kw):
        assert name in data.bl_rna.properties, name
        self.log.append(("prop", name))

    def operator(self, idname, **kw):
        import bpy

        module, name = idname.split(".")
        # bpy.ops answers any attribute; only a registered operator has an RNA type.
        getattr(getattr(bpy.ops, module), name).get_rna_type()
        self.log.append(("operator", idname))
        return type("Props", (), {})()

    def operator_menu_enum(self, idname, prop, **kw):
        import bpy

        module, name = idname.split(".")
        assert prop in getattr(getattr(bpy.ops, module), name).get_rna_type().properties
        self.log.append(("menu", idname, kw.get("text")))


def drawn(panel, **attributes) -> list:
    """What ``panel.draw`` (a Panel's, or the preferences' with ``attributes`` standing in for
    their values) asks of its layout."""
    import bpy

    log = []
    stub = type("Stub", (), {})()
    stub.__dict__.update(layout=Recorder(log), **attributes)
    panel.draw(stub, bpy.context)
    return log
