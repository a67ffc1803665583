"""What the dataset families share (``resemote_lib/data/base.py``): ``FaceDataset``, CSV rows and
their encodings, stratified splits, decoding a photo (``to_gray_square``, ``upright``), and which
files in a folder are images (``Skipped``, ``image_files``, ``missing_classes``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from resemote_lib.data import open_dataset
from resemote_lib.data.base import stratified_split
from resemote_lib.labels import CLASS_NAMES

from . import layouts as L


def test_resizes_to_image_size(tmp_path):
    ds = open_dataset("fer2013", L.write_fer2013_csv(tmp_path / "f"), "val", image_size=64, cache_dir=tmp_path / "c")
    assert ds.images.shape[1:] == (1, 64, 64) and ds.images.dtype == torch.uint8
    assert ds[0][0].shape == (3, 64, 64)


def test_stratified_split_is_disjoint_and_proportional():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    a, b, rest = stratified_split(labels, (0.1, 0.2), seed=0)
    assert len(set(a) | set(b) | set(rest)) == 100 and not set(a) & set(b)
    assert [sum(labels[i] == k for i in a) for k in range(3)] == [5, 3, 2]
    with pytest.raises(ValueError):
        stratified_split(labels, (0.8, 0.5), seed=0)


def test_affectnet_official_crops_the_box(tmp_path):
    from PIL import Image

    from resemote_lib.data.base import to_gray_square
    photo = Image.new("RGB", (120, 100), (0, 0, 0))
    photo.paste(Image.new("RGB", (64, 64), (255, 255, 255)), (20, 10))
    assert to_gray_square(photo, 16, (20, 10, 64, 64)).min() == 255


def test_folder_photos_are_turned_upright_by_their_exif_orientation_as_predict_does(tmp_path):
    """Issue 31.4: evaluation and predict see a phone photo the same way (EXIF orientation)."""
    from PIL import Image

    from resemote_lib.data.base import to_gray_square
    from resemote_lib.predict import to_rgb

    root = tmp_path / "faces" / "happy"
    root.mkdir(parents=True)
    pixels = np.zeros((40, 60), dtype=np.uint8)
    pixels[:, :20] = 255  # a white band on the left, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    Image.fromarray(pixels).save(root / "phone.jpg", exif=exif, quality=95)
    ds = open_dataset("folder", root.parent, "test", image_size=32, cache_dir=tmp_path / "c")
    expected = to_gray_square(Image.fromarray(to_rgb(root / "phone.jpg")), 32)
    assert np.array_equal(ds.images[0, 0].numpy(), expected)
    assert ds.images[0, 0, :8].float().mean() > 200 and ds.images[0, 0, -8:].float().mean() < 50  # band on top


# --- CSV encodings -----------------------------------------------------------------------

def test_excel_csv_utf8_with_bom_is_read(tmp_path):
    root = L.write_fer2013_csv(tmp_path / "f")
    path = root / "fer2013.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    ds = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    assert ds.counts() == L.FER_COUNTS["PublicTest"]


def test_utf16_csv_is_one_clear_error(tmp_path):
    root = L.write_fer2013_csv(tmp_path / "f")
    path = root / "fer2013.csv"
    path.write_bytes(path.read_text().encode("utf-16"))  # Excel's "Unicode Text": BOM + UTF-16LE
    with pytest.raises(ValueError, match=r"fer2013\.csv: the file is UTF-16 .*save it as UTF-8"):
        open_dataset("fer2013", root, "train")
    path.write_bytes(path.read_text(encoding="utf-16").encode("utf-16-le"))  # no BOM: NULs give it away
    with pytest.raises(ValueError, match="UTF-16"):
        open_dataset("fer2013", root, "train")


def test_latin1_csv_names_the_line_and_the_encoding_to_save_as(tmp_path):
    root = L.write_rafdb_kaggle(tmp_path / "raf")
    path = root / "train_labels.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace("train_", "tr\u00e9in_", 1)  # an accented file name, saved as latin-1
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(ValueError, match=r"train_labels\.csv, line 4: byte b'\\xe9' at column 3 is not UTF-8; "
                                         r"the file is probably latin-1.*save it as UTF-8"):
        open_dataset("rafdb", root, "train")


def test_a_csv_field_over_the_csv_limit_names_the_file_and_line(tmp_path):
    (tmp_path / "fer").mkdir()
    (tmp_path / "fer" / "fer2013.csv").write_text("emotion,pixels,Usage\n0," + "7" * 200_000 + ",Training\n")
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 2: a field of more than 131072 characters"):
        open_dataset("fer2013", tmp_path / "fer", "train", cache_dir=tmp_path / "c")


# --- what a folder listing skips ---------------------------------------------------------

def test_applefile_copies_and_dot_files_are_skipped_and_counted(tmp_path):
    root = L.write_fer2013_folders(tmp_path / "fer")
    for f in list((root / "train").rglob("Training_*.jpg"))[:3]:
        (f.parent / f"._{f.name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # what macOS copies leave
    (root / "train" / "happy" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # hidden files are expected: counted, not warned about
        ds = open_dataset("fer2013", root, "train", image_size=48, cache_dir=tmp_path / "c")
    assert ds.counts() == L.FER_COUNTS["Training"] and not ds.report["bad_files"]
    assert ds.report["skipped"] == {"hidden": 5, "not_images": 0}


def test_webp_and_gif_are_read_and_other_files_warned_about_once(tmp_path):
    from PIL import Image

    root = L.write_fer2013_folders(tmp_path / "fer")
    face = Image.open(next((root / "train" / "happy").glob("*.jpg"))).copy()
    face.save(root / "train" / "happy" / "Training_1.webp")
    face.save(root / "train" / "happy" / "Training_2.gif")
    face.save(root / "train" / "sad" / "Training_3.WEBP", format="WEBP")
    (root / "train" / "sad" / "notes.txt").write_text("labels checked by hand")
    (root / "train" / "sad" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    message = r"train: skipped 2 file\(s\) that are not images .*e\.g\. .*(notes\.txt|Thumbs\.db)"
    with pytest.warns(UserWarning, match=message) as w:
        ds = open_dataset("fer2013", root, "train", image_size=48, cache_dir=tmp_path / "c")
    assert len([x for x in w if "not images" in str(x.message)]) == 1
    expected = list(L.FER_COUNTS["Training"])
    expected[CLASS_NAMES.index("happy")] += 2
    expected[CLASS_NAMES.index("sad")] += 1
    assert ds.counts() == expected and not ds.report["bad_files"]
    assert ds.report["skipped"] == {"hidden": 0, "not_images": 2}


def test_a_missing_class_folder_is_warned_about_and_reported(tmp_path):
    import shutil

    root = L.write_fer2013_folders(tmp_path / "fer")
    shutil.rmtree(root / "train" / "disgust")
    with pytest.warns(UserWarning, match=r"fer2013/train .*: no images of disgust \(class folder missing or empty\)"):
        ds = open_dataset("fer2013", root, "train", image_size=48, cache_dir=tmp_path / "c")
    assert ds.report["missing_classes"] == ["disgust"] and ds.counts()[CLASS_NAMES.index("disgust")] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every class present: not a word
        assert open_dataset("fer2013", root, "test", image_size=48, cache_dir=tmp_path / "c").report[
            "missing_classes"] == []
