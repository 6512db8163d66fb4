"""Image intake: orientation, modes, limits and every kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
from loupe.core.errors import ImageError
from loupe.core.images.boxes import find_boxes, to_pixels
from loupe.core.images.load import decode_image, load_image, to_rgb
from loupe.core.images.resize import fit
from PIL import Image


def test_exif_orientation_6_is_applied_before_anything(images):
    img = load_image(images["exif6"])
    assert img.size == (100, 200)  # portrait after rotating 90° clockwise
    top = np.asarray(img.image)[5, 50]
    bottom = np.asarray(img.image)[195, 50]
    assert top[0] > 200 and top[2] < 60  # red (was left) is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    assert any("orientation 6" in t for t in img.transforms)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("text_as_jpg", "not an image"),
        ("truncated_png", "truncated"),
        ("empty", "empty file"),
        ("bomb", "decompression bomb"),
        ("missing", "no such file"),
    ],
)
def test_bad_images_get_a_clear_error_naming_the_problem(images, name, expected):
    with pytest.raises(ImageError) as info:
        load_image(images[name])
    assert expected in str(info.value)
    assert str(images[name]) in str(info.value)


def test_good_images_are_rgb_with_sha256(images):
    for key in ("jpeg", "png"):
        img = load_image(images[key])
        assert img.image.mode == "RGB"
        assert img.size == (160, 120)
        assert len(img.sha256) == 64


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "I;16", "L", "1", "F"])
def test_every_mode_becomes_8bit_rgb(mode):
    src = Image.new("RGBA", (8, 8), (10, 200, 30, 0)).convert(mode) if mode != "I;16" else None
    if mode == "I;16":
        src = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    out, _ = to_rgb(src)
    assert out.mode == "RGB"
    if mode in ("RGBA", "LA"):
        assert out.getpixel((0, 0)) == (255, 255, 255)  # fully transparent -> white background
    if mode == "I;16":
        assert out.getpixel((0, 0)) == (255, 255, 255)  # full-scale 16-bit stays white, not clipped


def test_animated_gif_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    img = load_image(path)
    r, g, _ = img.image.getpixel((5, 5))
    assert r > 200 and g < 50
    assert "first frame of an animation" in img.transforms


def test_decode_bytes_rejects_garbage():
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"\x00\x01garbage" * 10, "upload")


def test_fit_downscales_and_never_enlarges():
    big = Image.new("RGB", (4000, 3000))
    small, note = fit(big, 512)
    assert small.size == (512, 384) and "4000x3000" in note
    same, note2 = fit(Image.new("RGB", (100, 50)), 512)
    assert same.size == (100, 50) and note2 == ""


def test_box_conversion_orders_and_clamps():
    assert to_pixels([100, 200, 500, 800], 1000, 500) == (200, 50, 800, 250)
    assert to_pixels([500, 800, 100, 200], 1000, 500) == (200, 50, 800, 250)  # swapped corners
    assert to_pixels([-5, 0, 1200, 1000], 640, 480) == (0, 0, 640, 480)


def test_find_boxes_uses_label_image_id_and_confidence():
    data = {
        "defects": [
            {"label": "scratch", "box_2d": [0, 0, 500, 500]},
            {"label": "dent", "box_2d": [0, 0, 1000, 1000], "image_id": "img_02"},
        ]
    }
    conf = {"/defects/0/box_2d/0": 0.9, "/defects/0/box_2d/3": 0.4}
    boxes = find_boxes(data, {"img_01": (200, 100), "img_02": (50, 50)}, conf)
    assert [b.label for b in boxes] == ["scratch", "dent"]
    assert boxes[0].pixels == (0, 0, 100, 50) and boxes[0].confidence == 0.4
    assert boxes[1].image_id == "img_02" and boxes[1].pixels == (0, 0, 50, 50)


def test_heic_is_read_upright_when_pillow_heif_is_installed(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    path = tmp_path / "phone.heic"
    exif = Image.Exif()
    exif[0x0112] = 6
    pillow_heif.from_pillow(Image.new("RGB", (64, 32), (255, 0, 0))).save(path, exif=exif.tobytes())
    img = load_image(path)
    assert img.format == "HEIF" and img.size == (32, 64) and img.image.mode == "RGB"
