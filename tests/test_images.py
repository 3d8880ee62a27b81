"""Input image loading, masks and the reference layout."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dynapose4d.imaging.images import (
    ImageLoadError,
    ReferenceImage,
    estimate_foreground,
    load_image,
    prepare_reference,
    recentre,
)
from dynapose4d.imaging.masks import clean_mask


def _scene(h=300, w=400, bg=(200, 200, 200)):
    """A red disc and a blue bar on a plain background, and the true mask."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = bg
    cv2.circle(img, (150, 160), 60, (220, 30, 30), -1)
    cv2.rectangle(img, (200, 120), (260, 220), (30, 30, 200), -1)
    gt = np.zeros((h, w), np.uint8)
    cv2.circle(gt, (150, 160), 60, 1, -1)
    cv2.rectangle(gt, (200, 120), (260, 220), 1, -1)
    return img, gt.astype(bool)


def _iou(a, b):
    a, b = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    return (a & b).sum() / (a | b).sum()


# -- loading edge cases ---------------------------------------------------------------------------


def test_missing_empty_folder_and_non_image(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageLoadError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"is empty \(0 bytes\)"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "notes.png").write_text("this is not a picture")
    with pytest.raises(ImageLoadError, match="is not an image Pillow can read; give a PNG, JPEG"):
        load_image(tmp_path / "notes.png")


def test_truncated_file(tmp_path):
    img, _ = _scene()
    Image.fromarray(img).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        load_image(tmp_path / "cut.png")
    Image.fromarray(img).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageLoadError, match="damaged or truncated"):
        load_image(tmp_path / "cut.jpg")


def test_tiny_and_huge(tmp_path):
    Image.new("RGB", (20, 64)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageLoadError, match="only 20x64 pixels; give an image at least 32 px"):
        load_image(tmp_path / "tiny.png")
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match="300x200 = 60,000 pixels, above the limit of 50,000"):
        load_image(tmp_path / "big.png", max_pixels=50_000)
    assert load_image(tmp_path / "big.png").size == (300, 200)


def test_modes_are_converted(tmp_path):
    # grayscale
    Image.fromarray(np.full((40, 50), 128, np.uint8), "L").save(tmp_path / "gray.png")
    g = load_image(tmp_path / "gray.png")
    assert g.rgb.shape == (40, 50, 3) and g.alpha is None
    np.testing.assert_allclose(g.rgb, 128 / 255, atol=1e-6)
    # 16-bit grayscale keeps its precision
    Image.fromarray(np.full((40, 50), 1000, np.uint16)).save(tmp_path / "g16.png")
    g16 = load_image(tmp_path / "g16.png")
    assert g16.mode.startswith("I")
    np.testing.assert_allclose(g16.rgb, 1000 / 65535, atol=1e-6)
    # palette with a transparent index -> alpha
    pal = Image.fromarray(np.tile(np.array([[0, 1]], np.uint8), (40, 20)), "P")
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pal.png", transparency=0)
    p = load_image(tmp_path / "pal.png")
    assert p.alpha is not None and p.alpha[0, 0] == 0.0 and p.alpha[0, 1] == 1.0
    np.testing.assert_allclose(p.rgb[0, 1], [0, 0, 1])
    # LA
    la = np.zeros((40, 40, 2), np.uint8)
    la[..., 0], la[10:30, 10:30, 1] = 90, 255
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").alpha.sum() == 400
    # CMYK
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    c = load_image(tmp_path / "cmyk.jpg")
    assert c.rgb.shape == (40, 40, 3) and c.rgb[..., 0].mean() > 0.9 and c.rgb[..., 1].mean() < 0.1
    # an opaque alpha channel carries no mask
    Image.new("RGBA", (40, 40), (10, 20, 30, 255)).save(tmp_path / "opaque.png")
    assert load_image(tmp_path / "opaque.png").alpha is None
    Image.new("RGBA", (40, 40), (10, 20, 30, 0)).save(tmp_path / "clear.png")
    with pytest.raises(ImageLoadError, match="fully transparent"):
        load_image(tmp_path / "clear.png")


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").size == (40, 60)


# -- masks and the reference layout ---------------------------------------------------------------


def test_estimated_foreground_on_a_plain_background():
    img, gt = _scene()
    mask = estimate_foreground(img.astype(np.float32) / 255)
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    assert _iou(mask, gt) > 0.97
    # an object touching the border is still found
    img2, gt2 = _scene(bg=(240, 240, 235))
    img2[150:300, 180:200] = (20, 120, 20)
    gt2[150:300, 180:200] = True
    assert _iou(estimate_foreground(img2.astype(np.float32) / 255), gt2) > 0.95
    with pytest.raises(ImageLoadError, match="stands out from the background"):
        estimate_foreground(np.full((64, 64, 3), 0.5, np.float32))


def test_clean_mask_fills_holes_and_drops_specks():
    m = np.zeros((60, 60), bool)
    m[10:40, 10:40] = True
    m[20:30, 20:30] = False  # hole
    m[50, 50] = True  # speck
    out = clean_mask(m)
    assert out[25, 25] == 1.0 and out[50, 50] == 0.0 and out.sum() == 900


def test_rgba_input_is_recentred_with_its_alpha(tmp_path):
    rgba = np.zeros((200, 300, 4), np.uint8)
    rgba[50:110, 40:160] = (0, 200, 0, 255)  # a 120 x 60 green box, off-centre
    Image.fromarray(rgba, "RGBA").save(tmp_path / "obj.png")
    ref = prepare_reference(tmp_path / "obj.png", size=256, fill=0.85)
    assert ref.mask_source == "alpha" and ref.image.shape == (256, 256, 3) and ref.mask.shape == (256, 256)
    ys, xs = np.nonzero(ref.mask.numpy() > 0.5)
    assert xs.max() - xs.min() + 1 == round(0.85 * 256)  # longer side fills 85 %
    assert ys.max() - ys.min() + 1 == round(0.85 * 256 / 2)
    assert abs((xs.max() + 1 + xs.min()) / 2 - 128) <= 0.5 and abs((ys.max() + 1 + ys.min()) / 2 - 128) <= 0.5
    # background white, object green
    np.testing.assert_allclose(ref.image[5, 5].numpy(), [1, 1, 1])
    np.testing.assert_allclose(ref.image[128, 128].numpy(), [0, 200 / 255, 0], atol=1e-6)
    # the box corners map to the edges of the object in the reference
    corners = ref.to_reference(np.array([[40.0, 50.0], [160.0, 110.0]]))
    np.testing.assert_allclose(corners, [[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], atol=1e-6)
    np.testing.assert_allclose(ref.from_reference(ref.to_reference(np.array([[77.5, 91.25]]))), [[77.5, 91.25]])
    # save / load round trip
    back = ReferenceImage.load(ref.save(tmp_path / "ref"))
    assert back.crop == ref.crop and back.scale == ref.scale and back.mask_source == "alpha"
    torch.testing.assert_close(back.image, ref.image, atol=1 / 255, rtol=0)
    torch.testing.assert_close(back.mask, ref.mask, atol=1 / 255, rtol=0)


def test_mask_priorities_and_segmenter(tmp_path):
    img, gt = _scene()
    Image.fromarray(img).save(tmp_path / "scene.png")
    est = prepare_reference(tmp_path / "scene.png")
    assert est.mask_source == "estimated"
    calls = []

    def segmenter(rgb):
        calls.append(rgb.dtype)
        return gt.astype(np.uint8) * 255

    seg = prepare_reference(tmp_path / "scene.png", segmenter=segmenter)
    assert calls == [np.uint8] and seg.mask_source == "segmenter"
    assert _iou(seg.mask, est.mask) > 0.95
    box = np.zeros(gt.shape, np.float32)
    box[100:200, 100:150] = 1
    given = prepare_reference(tmp_path / "scene.png", mask=box, segmenter=segmenter)
    assert given.mask_source == "given" and len(calls) == 1 and given.crop == (100.0, 100.0, 150.0, 200.0)
    with pytest.raises(ImageLoadError, match=r"the given mask is \(10, 10\); it must have the image's shape \(300, 400\)"):
        prepare_reference(tmp_path / "scene.png", mask=np.ones((10, 10)))
    with pytest.raises(ImageLoadError, match="the foreground mask is empty"):
        recentre(img.astype(np.float32) / 255, np.zeros(gt.shape, np.float32))


def test_arrays_are_accepted():
    rgba = np.zeros((64, 64, 4), np.float32)
    rgba[16:48, 16:48] = (1.0, 0.0, 0.0, 1.0)
    ref = prepare_reference(rgba, size=128)
    assert ref.mask_source == "alpha" and ref.size == 128 and ref.source == "array"
    with pytest.raises(ImageLoadError, match=r"must be \[H, W, 3\] or \[H, W, 4\]"):
        prepare_reference(np.zeros((64, 64)))
