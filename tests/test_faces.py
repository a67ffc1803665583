"""Face detectors (``resemote_lib/data/faces.py``): the real Haar cascade, through ``crop_faces``."""

from __future__ import annotations

import pytest

from resemote_lib.data import open_dataset


def test_the_haar_detector_finds_no_face_in_a_blank_photo(tmp_path):
    from PIL import Image

    root = tmp_path / "photos" / "neutral"
    root.mkdir(parents=True)
    Image.new("RGB", (160, 120), (90, 120, 150)).save(root / "wall.jpg")
    with pytest.warns(UserWarning, match="no face found in 1 of 1"):
        ds = open_dataset("folder", root.parent, "test", image_size=48, crop_faces=True, cache_dir=tmp_path / "c")
    assert len(ds) == 0 and ds.report["no_face"] == 1
