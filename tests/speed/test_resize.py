"""Every resize and crop is recorded and boxes found on what the model saw map back to the original pixels."""

from __future__ import annotations

import pytest
from loupe.core.images.boxes import to_pixels
from loupe.core.images.resize import crop, fit
from PIL import Image


def test_downscale_keeps_aspect_so_normalized_boxes_map_straight_back():
    img = Image.new("RGB", (1600, 1200))
    small, note = fit(img, 512)
    assert small.size == (512, 384) and note == "downscaled 1600x1200 -> 512x384"
    assert fit(small, 512) == (small, "")  # never enlarges
    box = (250, 500, 750, 1000)  # 0-1000 on the 512x384 picture = the same fractions of the original
    assert to_pixels(box, 1600, 1200) == (800, 300, 1600, 900)


def test_a_box_found_in_a_crop_maps_back_to_the_whole_image():
    img = Image.new("RGB", (1000, 500))
    region_img, region = crop(img, (200, 100, 600, 300), margin=0.0)  # rows 100-300 px, columns 100-300 px
    assert (region.x0, region.y0, region.x1, region.y1) == (100, 100, 300, 300) and region_img.size == (200, 200)
    assert region.note() == "cropped (100,100)-(300,300) of 1000x500"
    assert region.to_original((0, 0, 1000, 1000)) == pytest.approx((200, 100, 600, 300))
    assert region.to_original((500, 500, 500, 500)) == pytest.approx((400, 200, 400, 200))  # the centre


def test_crop_margin_is_clamped_to_the_image():
    img = Image.new("RGB", (100, 100))
    _, region = crop(img, (0, 0, 500, 1000), margin=0.5)
    assert (region.x0, region.y0, region.x1, region.y1) == (0, 0, 100, 75)
