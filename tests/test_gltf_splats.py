"""KHR_gaussian_splatting: each convention of the extension's text pinned on asymmetric values,
and three.js 0.187's own loader (under Node) reading our files the same way; the Khronos
validator's report of our files, message by message."""

import numpy as np
import pytest

from dynapose4d.io.gltf_splats import COLOR_SPACE, EXTENSION, SH_C0, SplatAttributes, write_splat_glb
from tests.addon_fixtures import Glb, validate_gltf, validation_errors
from tests.splat_fixtures import (
    LOG_SCALES,
    MEANS,
    OPACITY_LOGITS,
    QUATS_WXYZ,
    SH_DC,
    SH_REST,
    covariance,
    three_read_splats,
    upper,
)


def write_asymmetric(path, sh_rest=SH_REST):
    camera = {"c2w": np.eye(4), "fovy_deg": 49.1, "width": 256, "height": 192}
    return write_splat_glb(path, MEANS, QUATS_WXYZ, LOG_SCALES, OPACITY_LOGITS, SH_DC, sh_rest, camera=camera)


def test_backend_parameters_become_the_extensions_values():
    a = SplatAttributes.from_backend(MEANS, QUATS_WXYZ, LOG_SCALES, OPACITY_LOGITS, SH_DC, SH_REST)
    # ROTATION: unit quaternions, x y z w ("the usual glTF order"); the backend's are w x y z.
    q = QUATS_WXYZ / np.linalg.norm(QUATS_WXYZ, axis=1, keepdims=True)
    np.testing.assert_allclose(a.rotations, q[:, [1, 2, 3, 0]], atol=1e-7)
    np.testing.assert_allclose(a.rotations[0], np.array([0.4, -0.8, 1.2, 2.0]) / np.sqrt(4 + 0.16 + 0.64 + 1.44), atol=1e-7)
    # SCALE: linear standard deviations; OPACITY: sigmoid of the logit, in [0, 1].
    np.testing.assert_allclose(a.scales[0], [0.01, 0.03, 0.06], rtol=1e-6)
    np.testing.assert_allclose(a.opacities, 1 / (1 + np.exp([1.0, -0.5, -2.0])), rtol=1e-6)
    # SH: the DC coefficients as they are, then degree 1 in order m = -1, 0, 1.
    assert a.degree == 1 and a.sh.shape == (3, 4, 3)
    np.testing.assert_allclose(a.sh[:, 0], SH_DC, rtol=1e-6)
    np.testing.assert_allclose(a.sh[:, 1:], SH_REST, rtol=1e-6)
    # COLOR_0: clamp(0.5 + C0 dc) decoded from sRGB to linear; alpha = opacity.
    srgb = np.clip(0.5 + SH_C0 * SH_DC, 0, 1)
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    np.testing.assert_allclose(a.fallback_colors()[:, :3], linear, atol=1e-6)
    np.testing.assert_allclose(a.fallback_colors()[:, 3], a.opacities, atol=1e-7)
    # Degrees padded with zeros (a 3DGS PLY carries degree 3) are not written.
    padded = np.zeros((3, 15, 3))
    padded[:, :3] = SH_REST
    assert SplatAttributes.from_backend(MEANS, QUATS_WXYZ, LOG_SCALES, OPACITY_LOGITS, SH_DC, padded).degree == 1
    assert SplatAttributes.from_backend(MEANS, QUATS_WXYZ, LOG_SCALES, OPACITY_LOGITS, SH_DC, np.zeros((3, 15, 3))).degree == 0


def test_the_file_holds_one_points_primitive_with_the_extension(tmp_path):
    glb = Glb(write_asymmetric(tmp_path / "s.glb"))
    doc = glb.json
    assert doc["extensionsUsed"] == [EXTENSION] and "extensionsRequired" not in doc
    prim = doc["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0
    assert prim["extensions"][EXTENSION] == {"kernel": "ellipse", "colorSpace": COLOR_SPACE, "projection": "perspective", "sortingMethod": "cameraDistance"}
    names = [f"{EXTENSION}:{n}" for n in ("ROTATION", "SCALE", "OPACITY", "SH_DEGREE_0_COEF_0", "SH_DEGREE_1_COEF_0", "SH_DEGREE_1_COEF_1", "SH_DEGREE_1_COEF_2")]
    assert sorted(prim["attributes"]) == sorted(["POSITION", "COLOR_0", *names])
    np.testing.assert_allclose(glb.accessor(prim["attributes"]["POSITION"]), MEANS, atol=1e-7)
    np.testing.assert_allclose(glb.accessor(prim["attributes"][f"{EXTENSION}:SCALE"]), np.exp(LOG_SCALES), rtol=1e-6)
    np.testing.assert_allclose(glb.accessor(prim["attributes"][f"{EXTENSION}:SH_DEGREE_1_COEF_2"]), SH_REST[:, 2], rtol=1e-6)
    cam = doc["cameras"][0]["perspective"]
    assert cam["yfov"] == pytest.approx(np.radians(49.1)) and cam["aspectRatio"] == pytest.approx(256 / 192)


def test_three_reads_our_conventions(tmp_path):
    """three.js 0.187's GLTFGaussianSplatLoaderExtension turns our file into the Gaussians our
    renderer draws: the same centres, covariances R diag(s^2) R^T, colours 0.5 + C0 dc, opacities
    and degree-1 SH in order."""
    out = three_read_splats(write_asymmetric(tmp_path / "s.glb"))
    (s,) = out["splats"]
    assert s["extension"]["KHR_gaussian_splatting"]["colorSpace"] == COLOR_SPACE
    np.testing.assert_allclose(s["center"], MEANS, atol=1e-7)
    expected = upper(covariance(QUATS_WXYZ, np.exp(LOG_SCALES)))
    np.testing.assert_allclose(s["covariance"], expected, rtol=1e-4, atol=1e-9)
    # The scene is asymmetric enough that each misreading would fail the check above.
    for wrong in (covariance(QUATS_WXYZ[:, [1, 2, 3, 0]], np.exp(LOG_SCALES)),  # quaternion read as xyzw
                  covariance(QUATS_WXYZ, np.abs(LOG_SCALES)),  # log scales taken as linear
                  covariance(QUATS_WXYZ, np.exp(LOG_SCALES)[:, ::-1])):  # scale axes reversed
        assert np.abs(upper(wrong) - expected).max() > 100 * 1e-4 * np.abs(expected).max()
    rgb = np.clip(0.5 + SH_C0 * SH_DC, 0, 1) * 255
    np.testing.assert_array_equal(s["color"][:, :3], np.round(rgb))
    np.testing.assert_array_equal(s["color"][:, 3], np.round(255 / (1 + np.exp(-OPACITY_LOGITS[:, 0]))))
    # Degree 1: three words per splat, the 9 coefficient bytes (m = -1, 0, 1; r g b each) first.
    sh1 = np.asarray(s["sh1"]).reshape(3, 12)
    np.testing.assert_array_equal(sh1[:, :9], np.clip(np.round(SH_REST.reshape(3, 9) * 128 + 128), 0, 255))


def test_three_reads_every_sh_degree_in_order(tmp_path):
    """Degrees 2 and 3 too: coefficient n of degree l is the backend's sh_rest[:, l*l - 1 + n]."""
    rest = np.random.default_rng(7).uniform(-0.9, 0.9, (3, 15, 3)).round(3) + 0.0011  # no value on a byte's rounding tie
    out = three_read_splats(write_asymmetric(tmp_path / "sh3.glb", sh_rest=rest))
    (s,) = out["splats"]
    for degree, words in ((1, 3), (2, 4), (3, 6)):
        packed = np.asarray(s[f"sh{degree}"]).reshape(3, 4 * words)
        coefs = rest[:, degree * degree - 1 : (degree + 1) ** 2 - 1].reshape(3, -1)  # m = -l..l, r g b each
        np.testing.assert_array_equal(packed[:, : coefs.shape[1]], np.clip(np.round(coefs * 128 + 128), 0, 255), err_msg=f"degree {degree}")


def test_validator_reports_only_the_extensions_attribute_names(tmp_path):
    """gltf-validator 2.0.0-dev.3.10 does not know KHR_gaussian_splatting yet (its issue #252): it
    reports each of the extension's attribute names as an invalid attribute, and nothing else."""
    report = validate_gltf(write_asymmetric(tmp_path / "s.glb"))
    names = ["ROTATION", "SCALE", "OPACITY", "SH_DEGREE_0_COEF_0", "SH_DEGREE_1_COEF_0", "SH_DEGREE_1_COEF_1", "SH_DEGREE_1_COEF_2"]
    expected = sorted(("MESH_PRIMITIVE_INVALID_ATTRIBUTE", "Invalid attribute name.", f"/meshes/0/primitives/0/attributes/{EXTENSION}:{n}") for n in names)
    assert sorted((m["code"], m["message"], m["pointer"]) for m in validation_errors(report)) == expected
    assert report["issues"]["numWarnings"] == 0
    others = [m for m in report["issues"]["messages"] if m["severity"] > 0]
    assert [(m["code"], m["pointer"]) for m in others] == [("UNSUPPORTED_EXTENSION", "/extensionsUsed/0")]


def test_an_empty_splat_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="at least one Gaussian"):
        write_splat_glb(tmp_path / "e.glb", np.zeros((0, 3)), np.zeros((0, 4)), np.zeros((0, 3)), np.zeros((0, 1)), np.zeros((0, 3)))
