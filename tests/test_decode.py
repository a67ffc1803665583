"""Images as the model sees them (resemote_lib/predict/decode.py): colour order stated, 16-bit
PNGs scaled, phone photos turned upright by their EXIF orientation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from resemote_lib.data.base import to_gray_square
from resemote_lib.predict import Predictor, predict_files, to_rgb


def test_bgr_is_converted_and_colour_order_must_be_stated(predictor):
    rgb = skdata.astronaut()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert np.array_equal(to_rgb(bgr, "bgr"), rgb)
    a = predictor.predict(rgb, color="rgb").faces
    b = predictor.predict(bgr, color="bgr").faces
    assert [f.box for f in a] == [f.box for f in b] and [f.probs for f in a] == [f.probs for f in b]
    with pytest.raises(ValueError, match="color='rgb' or color='bgr'"):
        predictor.predict(rgb)
    # A pure red picture is red, whichever order it arrives in: luma 76, not blue's 29.
    red_bgr = np.zeros((10, 10, 3), np.uint8)
    red_bgr[..., 2] = 255
    assert to_gray_square(Image.fromarray(to_rgb(red_bgr, "bgr")), 4)[0, 0] == 76
    assert to_gray_square(Image.fromarray(to_rgb(red_bgr, "rgb")), 4)[0, 0] == 29


def test_sixteen_bit_png_predicts_like_its_8_bit_twin(predictor, tmp_path):
    gray = np.asarray(Image.fromarray(skdata.astronaut()).convert("L"))
    Image.fromarray(gray).save(tmp_path / "g8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    assert np.array_equal(to_rgb(tmp_path / "g16.png"), to_rgb(tmp_path / "g8.png"))


def test_exif_orientation_turns_phone_photos_upright(checkpoint, tmp_path):
    """A phone stores a portrait photo sideways with an EXIF Orientation tag; the model must
    see it as a viewer shows it (issue 24.8)."""
    upright = np.zeros((40, 20, 3), np.uint8)
    upright[:10] = 255  # a white band at the top
    sideways = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 20 high, 40 wide, band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    assert Image.open(tmp_path / "phone.jpg").size == (40, 20)
    rgb = to_rgb(tmp_path / "phone.jpg")
    assert rgb.shape == (40, 20, 3)
    assert rgb[:8].mean() > 200 and rgb[12:].mean() < 50
    assert np.array_equal(to_rgb(Image.open(tmp_path / "phone.jpg")), rgb)
    result = next(predict_files(Predictor(checkpoint, detector=None, device="cpu"), [tmp_path / "phone.jpg"]))
    assert result.faces[0].box == (0, 0, 20, 40)  # the whole upright picture went to the model
