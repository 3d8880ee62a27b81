"""Driver (bpy 5.3 module, no window): the add-on's import as Blender's own Gaussian splats.

Installs the extension zip ($DP4D_FILES), imports a made-up sequence whose Gaussians turn,
stretch and carry degree-1 SH through the add-on's importer, and checks what Blender evaluates
at two frames: a GAUSSIAN_SPLAT point cloud with the frame's ``scale`` and ``rotation``, the
``radiance:*`` colour; then renders one flat Gaussian from above with Cycles and compares it
with its analytic footprint. No backend needed.
"""

import importlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpy  # noqa: E402
import windowkit as kit  # noqa: E402
from cycles_still import flat_footprint, render_flat_gaussian  # noqa: E402
from windowkit import check, mark  # noqa: E402

COUNT, FRAMES, START = 64, 4, 1


def addon(module: str):
    return importlib.import_module(f"{kit.PACKAGE}.{module}")


def sequence(seq_mod, count=COUNT, frames=FRAMES, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(frames, count, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    scales = np.exp(rng.normal(np.log(0.05), 0.3, size=(count, 3))).astype(np.float32)
    return seq_mod.Sequence(
        positions=(rng.normal(size=(1, count, 3)) * 0.3 + np.linspace(0, 0.2, frames)[:, None, None]).astype(np.float32),
        scales=scales[None] * np.linspace(1.0, 2.0, frames, dtype=np.float32)[:, None, None],
        rotations=q[0], frame_rotations=q,
        opacities=rng.uniform(0.3, 1.0, count).astype(np.float32), colors=rng.uniform(0, 1, (count, 3)).astype(np.float32),
        keypoints=np.zeros((frames, 0, 3), np.float32), names=[], edges=[], valid=np.zeros(0, bool), camera={},
        sampling=seq_mod.Sampling(24.0, frames), times=np.linspace(0, 1, frames),
        sh_rest=rng.normal(scale=0.1, size=(count, 3, 3)).astype(np.float32),
    )


def evaluated_cloud(obj, reads):
    """``{name: array}`` of the display's evaluated point cloud (type, count and the attributes
    ``reads`` names: ``{name: (width, field)}``), read while Blender still holds it."""
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    cloud = geometry.pointcloud
    if cloud is None:
        return None
    out = {"type": cloud.type, "count": len(cloud.points), "names": sorted(a.name for a in cloud.attributes)}
    for name, (width, field) in reads.items():
        out[name] = values(cloud, name, width, field)
    return out


def values(cloud, name, width, field):
    data = cloud.attributes[name].data
    out = np.empty(len(data) * width, np.float32)
    data.foreach_get(field, out)
    return out.reshape(len(data), width)


def steps():
    R = kit.RESULT
    bpy.ops.wm.read_factory_settings(use_empty=True)
    check("extension installed and enabled", kit.install_extension(kit.file("*.zip")), kit.PACKAGE)
    importer, seq_mod, display = addon("scene.importer"), addon("format.sequence"), addon("scene.display")
    check("native splats detected", display.supports_native_splats())
    seq = sequence(seq_mod)
    coll = importer.import_sequence(bpy.context, seq, "native", importer.ImportOptions(frame_start=START, place=False))
    obj = kit.role(coll, "gaussians")
    mod = obj.modifiers[display.MODIFIER]
    check("native display group", mod.node_group.name == display.NATIVE_GROUP, mod.node_group.name)
    check("modifier inputs set (5.3 API)", display.get_input(mod, "Frame Count") == FRAMES, display.get_input(mod, "Frame Count"))
    mark("imported")
    errors = {}
    for k in (0, FRAMES - 1):
        bpy.context.scene.frame_set(START + k)
        cloud = evaluated_cloud(obj, {"rotation": (4, "value"), "scale": (3, "vector"), "radiance:base": (4, "vector")})
        check(f"frame {k}: GAUSSIAN_SPLAT cloud", cloud is not None and cloud["type"] == "GAUSSIAN_SPLAT" and cloud["count"] == COUNT,
              None if cloud is None else [cloud["type"], cloud["count"]])
        want = seq_mod.rotations_to_blender(seq.frame_rotations[k])
        errors[f"rotation_{k}"] = float(np.abs(np.abs(np.sum(cloud["rotation"] * want, axis=1)) - 1).max())
        errors[f"scale_{k}"] = float(np.abs(cloud["scale"] - seq.scales[k]).max())
        check(f"frame {k}: the frame's rotation and scale", errors[f"rotation_{k}"] < 1e-5 and errors[f"scale_{k}"] < 1e-6, errors)
    dc = (seq.colors - 0.5) / 0.28209479177387814
    check("radiance:base is (SH DC, opacity)", np.allclose(cloud["radiance:base"], np.column_stack([dc, seq.opacities]), atol=1e-5))
    sh = [n for n in cloud["names"] if n.startswith("radiance:sh_")]
    check("radiance:sh_k up to the degree", sh == ["radiance:sh_0", "radiance:sh_1", "radiance:sh_2"], sh)
    R["errors"] = errors
    yield 0
    render_one_gaussian(importer, seq_mod)
    yield 0


def render_one_gaussian(importer, seq_mod):
    size = 48
    got = render_flat_gaussian(importer, sequence(seq_mod, count=1, frames=2), os.path.join(kit.OUT, "one.exr"),
                               size=size, samples=64, frame_start=START)
    want, x, y = flat_footprint(size)
    kit.RESULT["footprint"] = {"max_err": float(np.abs(got - want).max()), "mean_err": float(np.abs(got - want).mean()),
                               "peak": float(got.max()), "centre": np.round(np.unravel_index(got.argmax(), got.shape), 1).tolist(),
                               "col": np.round(got[::4, size // 2], 3).tolist(), "want_col": np.round(want[::4, size // 2], 3).tolist(),
                               "row": np.round(got[size // 2, ::4], 3).tolist(), "want": np.round(want[size // 2, ::4], 3).tolist()}
    # Cycles samples the splats' transparency stochastically: compare the mean error and the
    # footprint's spread along each axis (0.3 and 0.1: the Gaussian lies along Blender x).
    spread = [float(np.sqrt((got * x**2).sum() / got.sum())), float(np.sqrt((got * y**2).sum() / got.sum()))]
    kit.RESULT["footprint"]["spread"] = spread
    check("Cycles draws the native splat's footprint", np.abs(got - want).mean() < 0.02
          and abs(spread[0] / 0.3 - 1) < 0.1 and abs(spread[1] / 0.1 - 1) < 0.15, kit.RESULT["footprint"])


kit.run_steps(steps())
