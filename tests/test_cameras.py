"""Golden tests of the conventions in DESIGN.md §4: hand-computed values and asymmetric scenes,
so that a flipped axis or sign fails."""

import math

import pytest
import torch

from dynapose4d.cameras import (
    EVAL_AZIMUTHS_DEG,
    Cameras,
    c2w_gl_to_viewmat_cv,
    intrinsics,
    look_at_c2w,
    orbit_c2w,
    pixel_centers,
    pixels_from_opencv,
    pixels_to_opencv,
)

D = torch.float64


def t(*v):
    return torch.tensor(v, dtype=D)


def test_orbit_front_view_is_on_plus_z_looking_down_minus_z():
    c2w = orbit_c2w(0.0, 0.0, 2.0, dtype=D)
    expected = t([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1])
    torch.testing.assert_close(c2w, expected)


def test_orbit_azimuth_90_is_on_plus_x():
    c2w = orbit_c2w(0.0, 90.0, 2.0, dtype=D)
    # position +X; right = -Z (counter-clockwise seen from above); up = +Y; back = +X
    expected = t([0, 0, 1, 2], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1])
    torch.testing.assert_close(c2w, expected, atol=1e-12, rtol=0)


def test_orbit_positive_elevation_is_above():
    c2w = orbit_c2w(30.0, 0.0, 2.0, dtype=D)
    s, c = 0.5, math.sqrt(3) / 2
    torch.testing.assert_close(c2w[:3, 3], t(0, 2 * s, 2 * c))  # y > 0: above
    torch.testing.assert_close(c2w[:3, 2], t(0, s, c))  # back axis points at the camera
    torch.testing.assert_close(c2w[:3, 1], t(0, c, -s))  # up tilts away when looking down
    torch.testing.assert_close(c2w[:3, 0], t(1, 0, 0))


def test_orbit_position_formula_at_an_oblique_view():
    e, a, r = 20.0, -75.0, 1.7
    c2w = orbit_c2w(e, a, r, dtype=D)
    er, ar = math.radians(e), math.radians(a)
    expected = t(r * math.cos(er) * math.sin(ar), r * math.sin(er), r * math.cos(er) * math.cos(ar))
    torch.testing.assert_close(c2w[:3, 3], expected)
    rot = c2w[:3, :3]
    torch.testing.assert_close(rot @ rot.T, torch.eye(3, dtype=D))
    assert torch.det(rot) == pytest.approx(1.0)  # right-handed


def test_orbit_is_well_defined_straight_above():
    c2w = orbit_c2w(90.0, 0.0, 2.0, dtype=D)
    torch.testing.assert_close(c2w[:3, 3], t(0, 2, 0), atol=1e-12, rtol=0)
    torch.testing.assert_close(c2w[:3, :3] @ c2w[:3, :3].T, torch.eye(3, dtype=D))
    assert torch.isfinite(c2w).all()


def test_look_at_agrees_with_orbit():
    orbit = orbit_c2w(25.0, 130.0, 2.5, dtype=D)
    look = look_at_c2w(orbit[:3, 3], torch.zeros(3, dtype=D))
    torch.testing.assert_close(look, orbit)
    with pytest.raises(ValueError, match="parallel"):
        look_at_c2w(t(0, 2, 0), torch.zeros(3, dtype=D))


def test_viewmat_is_opencv_world_to_camera():
    vm = c2w_gl_to_viewmat_cv(orbit_c2w(0.0, 0.0, 2.0, dtype=D))
    expected = t([1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2], [0, 0, 0, 1])
    torch.testing.assert_close(vm, expected)


def test_intrinsics_from_vertical_fov():
    K = intrinsics(torch.tensor(math.radians(49.1), dtype=D), 256, 128)
    f = 64 / math.tan(math.radians(49.1) / 2)  # fy = (H/2) / tan(fovy/2) = 140.111...
    assert f == pytest.approx(140.11103527054343)
    torch.testing.assert_close(K, t([f, 0, 128], [0, f, 64], [0, 0, 1]))


def test_pixel_centres_and_opencv_offsets():
    pc = pixel_centers(2, 3, dtype=D)
    assert pc.shape == (2, 3, 2)
    torch.testing.assert_close(pc[0, 0], t(0.5, 0.5))
    torch.testing.assert_close(pc[1, 2], t(2.5, 1.5))  # (row 1, col 2) -> (x 2.5, y 1.5)
    torch.testing.assert_close(pixels_from_opencv(t(0.0, 0.0)), t(0.5, 0.5))
    torch.testing.assert_close(pixels_to_opencv(t(0.5, 0.5)), t(0.0, 0.0))


def front_camera(**kw):
    return Cameras.orbit(0.0, 0.0, 2.0, width=256, dtype=D, **kw)


def test_projection_golden_values():
    cam = front_camera()
    f = 280.22207054108685  # 128 / tan(24.55 deg)
    pts = t([0, 0, 0], [0.3, 0, 0], [0, 0.2, 0], [0, 0, 0.5])
    pix, depth = cam.project(pts)
    torch.testing.assert_close(depth, t(2.0, 2.0, 2.0, 1.5))
    torch.testing.assert_close(pix[0], t(128, 128))
    torch.testing.assert_close(pix[1], t(128 + f * 0.3 / 2, 128))  # +X is to the right
    torch.testing.assert_close(pix[2], t(128, 128 - f * 0.2 / 2))  # +Y is up in the image
    torch.testing.assert_close(pix[3], t(128, 128))


def test_asymmetric_scene_from_the_side_and_from_above():
    pts = t([0, 0, 0.5], [0, 0, -0.5], [0, 0.5, 0])  # front, back, top
    side = Cameras.orbit(0.0, 90.0, 2.0, width=256, dtype=D)  # camera on +X
    pix, depth = side.project(pts)
    assert pix[0, 0] < 128 < pix[1, 0]  # from +X, the front (+Z) is on the left
    assert pix[2, 1] < 128  # up stays up
    above = Cameras.orbit(30.0, 0.0, 2.0, width=256, dtype=D)
    pix, depth = above.project(pts)
    # Seen from above, the far side of the object appears higher in the image.
    assert pix[1, 1] < 128 < pix[0, 1]
    assert depth[0] < depth[1]
    below = Cameras.orbit(-30.0, 0.0, 2.0, width=256, dtype=D)
    pix, _ = below.project(pts)
    assert pix[0, 1] < 128 < pix[1, 1]


def test_unproject_inverts_project():
    cams = Cameras.orbit(t(10.0, -20.0, 45.0), t(0.0, 105.0, 200.0), 2.0, width=64, height=48, dtype=D)
    pts = torch.rand(3, 5, 3, dtype=D) - 0.5
    pix, depth = cams.project(pts)
    torch.testing.assert_close(cams.unproject(pix, depth), pts)


def test_ray_directions_point_through_pixel_centres():
    cam = front_camera()
    dirs = cam.ray_directions()
    assert dirs.shape == (256, 256, 3)
    # The four centre pixels straddle the optical axis symmetrically.
    centre = dirs[127:129, 127:129].mean((0, 1))
    torch.testing.assert_close(torch.nn.functional.normalize(centre, dim=0), t(0, 0, -1), atol=1e-6, rtol=0)
    assert dirs[0, 0, 0] < 0 and dirs[0, 0, 1] > 0  # top-left pixel looks left and up


def test_evaluation_views():
    cams = Cameras.evaluation_views(size=512, dtype=D)
    assert EVAL_AZIMUTHS_DEG == (-75.0, 15.0, 105.0, 195.0)
    assert cams.batch_shape == (4,) and cams.width == cams.height == 512
    pos = cams.positions
    torch.testing.assert_close(pos.norm(dim=-1), torch.full((4,), 2.0, dtype=D))
    torch.testing.assert_close(pos[:, 1], torch.zeros(4, dtype=D), atol=1e-12, rtol=0)
    assert pos[0, 0] < 0 and pos[1, 0] > 0 and pos[2, 0] > 0 and pos[3, 0] < 0
    assert pos[2, 2] < 0 and pos[3, 2] < 0  # 105 and 195 are behind the object


def test_cameras_reject_bad_input():
    with pytest.raises(ValueError, match="fovy"):
        Cameras(orbit_c2w(0.0, 0.0), torch.tensor(4.0), 64, 64)
    with pytest.raises(ValueError, match="finite"):
        Cameras(torch.full((4, 4), float("nan")), torch.tensor(0.8), 64, 64)
    with pytest.raises(ValueError, match="image size"):
        Cameras(orbit_c2w(0.0, 0.0), torch.tensor(0.8), 0, 64)
