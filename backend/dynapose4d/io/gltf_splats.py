"""``KHR_gaussian_splatting``: 3D Gaussians as a glTF POINTS primitive (numpy + json + struct only).

Every convention below is the extension's text (Khronos glTF repository,
``extensions/2.0/Khronos/KHR_gaussian_splatting/README.md``), and each is pinned by a golden
test that three.js 0.187's ``GLTFGaussianSplatLoaderExtension`` reads our file the same way
(``tests/test_gltf_splats.py``):

- ``POSITION`` (VEC3 float): the Gaussian's mean, in the node's local space (glTF: +Y up,
  like the backend world).
- ``KHR_gaussian_splatting:ROTATION`` (VEC4 float): a unit quaternion "in the usual glTF order",
  x, y, z, w. The backend's quaternions are w, x, y, z and not necessarily normalised.
- ``KHR_gaussian_splatting:SCALE`` (VEC3 float): "linear", the standard deviations along the
  local axes, ``exp(log_scales)`` (an early draft said log; the ratified text says linear).
  Covariance ``Sigma = M C C^T M^T`` with ``C = R(q) diag(s)`` and ``M`` the node's matrix.
- ``KHR_gaussian_splatting:OPACITY`` (SCALAR float): linear in [0, 1], ``sigmoid(logit)``.
- ``KHR_gaussian_splatting:SH_DEGREE_l_COEF_n`` (VEC3 float): real SH with the Condon-Shortley
  phase, coefficients ``n = 0..2l`` in order m = -l..l, unnormalised as 3DGS stores them (the
  renderer multiplies by the basis constants, e.g. 0.2820948 for degree 0, and adds 0.5). That
  is exactly the backend's ``sh_dc`` and ``sh_rest[:, l*l - 1 + n]`` (``dynapose4d.sh``).
  Degrees above the result's own (all-zero padding, as a 3DGS PLY carries) are not written.
- ``colorSpace`` ``"srgb_rec709_display"``: our renderer's colours ``0.5 + SH`` are composited
  and shown as display sRGB, the space the images it was fitted to are in. ``kernel``
  ``"ellipse"`` (the 3DGS Gaussian).
- ``COLOR_0`` (VEC4 unsigned byte, normalised): the fallback for viewers without the extension:
  ``clamp(0.5 + C0 * sh_dc)`` decoded from sRGB to linear (glTF's COLOR_0 is linear), alpha =
  opacity, as the extension's fallback section says.
- The extension goes in ``extensionsUsed``, not ``extensionsRequired``: other viewers draw the
  points.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .glb import ARRAY_BUFFER, FLOAT, POINTS, UNSIGNED_BYTE, GlbBuilder, add_camera_node, srgb_to_linear

EXTENSION = "KHR_gaussian_splatting"
KERNEL = "ellipse"
COLOR_SPACE = "srgb_rec709_display"
SH_C0 = 0.28209479177387814


def sh_semantic(degree: int, coefficient: int) -> str:
    return f"{EXTENSION}:SH_DEGREE_{degree}_COEF_{coefficient}"


@dataclass
class SplatAttributes:
    """What the extension stores, float32: ``positions [N, 3]``, ``rotations [N, 4]`` unit
    quaternions xyzw, ``scales [N, 3]`` linear, ``opacities [N]`` in [0, 1], ``sh [N, K, 3]``
    (K = (degree + 1)^2, the DC coefficient first)."""

    positions: np.ndarray
    rotations: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    sh: np.ndarray

    @property
    def count(self) -> int:
        return int(self.positions.shape[0])

    @property
    def degree(self) -> int:
        return int(round(np.sqrt(self.sh.shape[1]))) - 1

    @classmethod
    def from_backend(cls, means, quats, log_scales, opacity_logits, sh_dc, sh_rest=None, *, trim: bool = True) -> "SplatAttributes":
        """From the backend's parameters (DESIGN.md §4): ``means [N, 3]``, ``quats [N, 4]`` wxyz,
        ``log_scales [N, 3]``, ``opacity_logits [N, 1]`` (or ``[N]``), ``sh_dc [N, 3]``,
        ``sh_rest [N, K, 3]`` or None. ``trim`` drops top SH degrees that are all zero."""
        means = np.asarray(means, np.float64)
        n = means.shape[0]
        q = np.asarray(quats, np.float64).reshape(n, 4)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        logits = np.asarray(opacity_logits, np.float64).reshape(n)
        sh = np.asarray(sh_dc, np.float64).reshape(n, 1, 3)
        if sh_rest is not None and np.asarray(sh_rest).size:
            sh = np.concatenate([sh, np.asarray(sh_rest, np.float64).reshape(n, -1, 3)], 1)
            if trim:
                sh = sh[:, : (_used_degree(sh) + 1) ** 2]
        return cls(
            positions=means.astype(np.float32),
            rotations=q[:, [1, 2, 3, 0]].astype(np.float32),  # wxyz -> xyzw
            scales=np.exp(np.asarray(log_scales, np.float64).reshape(n, 3)).astype(np.float32),
            opacities=(0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32),  # sigmoid, without overflow
            sh=sh.astype(np.float32),
        )

    def fallback_colors(self) -> np.ndarray:
        """``[N, 4]`` linear RGBA in [0, 1] for ``COLOR_0``."""
        rgb = srgb_to_linear(np.clip(0.5 + SH_C0 * self.sh[:, 0].astype(np.float64), 0.0, 1.0))
        return np.concatenate([rgb, np.clip(self.opacities, 0, 1)[:, None]], 1)

    def select(self, index) -> "SplatAttributes":
        return SplatAttributes(self.positions[index], self.rotations[index], self.scales[index], self.opacities[index], self.sh[index])

    def translated(self, offset: np.ndarray) -> "SplatAttributes":
        """The same Gaussians with positions relative to ``offset [3]`` (a part node's origin)."""
        return SplatAttributes((self.positions - np.asarray(offset, np.float32)).astype(np.float32), self.rotations, self.scales, self.opacities, self.sh)


def _used_degree(sh: np.ndarray) -> int:
    for degree in range(int(round(np.sqrt(sh.shape[1]))) - 1, 0, -1):
        if np.any(sh[:, degree * degree : (degree + 1) ** 2]):
            return degree
    return 0


def splat_primitive(builder: GlbBuilder, splats: SplatAttributes) -> dict:
    """Add the accessors of one splat primitive; returns the primitive's JSON."""
    if splats.count == 0:
        raise ValueError("a KHR_gaussian_splatting primitive needs at least one Gaussian")
    builder.use_extension(EXTENSION)
    attributes = {
        "POSITION": builder.add_accessor(splats.positions, minmax=True, target=ARRAY_BUFFER),
        "COLOR_0": builder.add_accessor(np.round(splats.fallback_colors() * 255), UNSIGNED_BYTE, normalized=True, target=ARRAY_BUFFER),
        f"{EXTENSION}:ROTATION": builder.add_accessor(splats.rotations, target=ARRAY_BUFFER),
        f"{EXTENSION}:SCALE": builder.add_accessor(splats.scales, target=ARRAY_BUFFER),
        f"{EXTENSION}:OPACITY": builder.add_accessor(splats.opacities, target=ARRAY_BUFFER),
    }
    for degree in range(splats.degree + 1):
        for n in range(2 * degree + 1):
            attributes[sh_semantic(degree, n)] = builder.add_accessor(splats.sh[:, degree * degree + n], FLOAT, target=ARRAY_BUFFER)
    return {"attributes": attributes, "mode": POINTS,
            "extensions": {EXTENSION: {"kernel": KERNEL, "colorSpace": COLOR_SPACE, "projection": "perspective", "sortingMethod": "cameraDistance"}}}


def add_splat_mesh(builder: GlbBuilder, splats: SplatAttributes, name: str = "splats") -> int:
    """A mesh of one splat primitive; returns the mesh index."""
    return builder.add_mesh(name, [splat_primitive(builder, splats)])


def write_splat_glb(path: str | os.PathLike, means, quats, log_scales, opacity_logits, sh_dc, sh_rest=None, *,
                    name: str = "splats", camera: dict | None = None) -> Path:
    """One static splat from arrays (the backend's parameters, see :meth:`SplatAttributes.from_backend`)
    as a GLB at ``path``; ``camera`` (``{"c2w", "fovy_deg", "width", "height"}``, OpenGL
    camera-to-world) adds the reference view. The function the Blender add-on calls."""
    builder = GlbBuilder()
    splats = SplatAttributes.from_backend(means, quats, log_scales, opacity_logits, sh_dc, sh_rest)
    builder.add_node(name, mesh=add_splat_mesh(builder, splats, name))
    if camera is not None:
        add_camera_node(builder, camera)
    return builder.write(path)
