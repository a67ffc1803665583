from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from resemote_lib.data import detect_layout, open_dataset, open_splits, stratified_split
from resemote_lib.data.transforms import EVAL, TRAIN
from resemote_lib.labels import CLASS_NAMES

from . import layouts as L


def _counts(ds):
    return ds.counts()


# --- FER2013 ---------------------------------------------------------------------------

@pytest.mark.parametrize("writer", [L.write_fer2013_csv, L.write_fer2013_folders])
def test_fer2013_splits_and_counts(tmp_path, writer):
    root = writer(tmp_path / "fer")
    splits = open_splits("fer2013", root, image_size=48, cache_dir=tmp_path / "c")
    assert _counts(splits["train"]) == L.FER_COUNTS["Training"]
    assert _counts(splits["val"]) == L.FER_COUNTS["PublicTest"]
    assert _counts(splits["test"]) == L.FER_COUNTS["PrivateTest"]
    ds = splits["train"]
    x, y = ds[0]
    assert x.shape == (3, 48, 48) and x.dtype == torch.float32 and isinstance(y, int)
    assert ds.class_names == CLASS_NAMES
    assert len(ds.targets) == len(ds) and ds.targets == ds.labels.tolist()
    assert ds.transform is TRAIN and splits["test"].transform is EVAL
    assert list(ds.summary()["count"]) == L.FER_COUNTS["Training"]


def test_fer2013_csv_and_folders_give_the_same_images(tmp_path):
    a = open_dataset("fer2013", L.write_fer2013_csv(tmp_path / "csv"), "test", image_size=48, cache_dir=tmp_path / "c")
    b = open_dataset("fer2013", L.write_fer2013_folders(tmp_path / "dir"), "test", image_size=48, cache_dir=tmp_path / "c")
    assert a.layout == "fer2013-csv" and b.layout == "fer2013-folders"
    # the same faces with the same labels, in another order: each CSV image's nearest folder image is
    # its JPEG copy (a few grey levels off), one to one
    xa, xb = a.images.flatten(1).float(), b.images.flatten(1).float()
    rms = torch.cdist(xa, xb) / xa.shape[1] ** 0.5
    nearest = rms.argmin(1)
    assert sorted(nearest.tolist()) == list(range(len(b))) and torch.equal(a.labels, b.labels[nearest])
    assert rms.min(1).values.max() < 3, rms.min(1).values


def test_resizes_to_image_size(tmp_path):
    ds = open_dataset("fer2013", L.write_fer2013_csv(tmp_path / "f"), "val", image_size=64, cache_dir=tmp_path / "c")
    assert ds.images.shape[1:] == (1, 64, 64) and ds.images.dtype == torch.uint8
    assert ds[0][0].shape == (3, 64, 64)


def test_missing_root_and_unknown_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*fer2013-csv"):
        open_dataset("fer2013", tmp_path / "nope", "train")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match=r"Looked for: .*Found there: \['readme.txt'\]"):
        open_dataset("rafdb", tmp_path / "junk", "train")
    with pytest.raises(ValueError, match="unknown dataset"):
        open_dataset("ckplus", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        open_dataset("fer2013", tmp_path, "dev")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda lines: ["emotion,pixel,Usage", *lines[1:]], r"line 1: expected header"),
    (lambda lines: [*lines[:3], lines[3].split(",")[0] + "," + " ".join(["7"] * 2303) + ",Training", *lines[4:]],
     r"fer2013.csv, line 4: 2303 pixel values, expected 2304"),
    (lambda lines: [*lines[:2], "9" + lines[2][1:], *lines[3:]], r"fer2013.csv, line 3: unknown emotion code 9"),
    (lambda lines: [*lines[:2], lines[2].rsplit(",", 1)[0] + ",Validation", *lines[3:]], r"line 3: unknown Usage 'Validation'"),
])
def test_fer2013_csv_errors_name_file_line_value(tmp_path, mutate, message):
    root = L.write_fer2013_csv(tmp_path / "f")
    path = root / "fer2013.csv"
    path.write_text("\n".join(mutate(path.read_text().splitlines())) + "\n")
    with pytest.raises(ValueError, match=message):
        open_dataset("fer2013", root, "train")


# --- RAF-DB ----------------------------------------------------------------------------

@pytest.mark.parametrize("writer", [L.write_rafdb_official, L.write_rafdb_kaggle])
def test_rafdb_layouts(tmp_path, writer):
    root = writer(tmp_path / "raf")
    splits = open_splits("rafdb", root, image_size=32, val_fraction=0.25, seed=3, cache_dir=tmp_path / "c")
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert _counts(test) == L.RAF_COUNTS["test"]
    total = [a + b for a, b in zip(_counts(train), _counts(val), strict=True)]
    assert total == L.RAF_COUNTS["train"]
    assert not set(train.ids) & set(val.ids)  # disjoint
    assert val.report["seed"] == 3 and val.report["val_fraction"] == 0.25
    # stratified: each class with >= 4 items puts ~25% into val
    assert _counts(val) == [round(0.25 * n) for n in L.RAF_COUNTS["train"]]
    again = open_dataset("rafdb", root, "val", image_size=32, val_fraction=0.25, seed=3, cache_dir=tmp_path / "c")
    assert again.ids == val.ids  # seeded


def test_rafdb_bad_label_line(tmp_path):
    root = L.write_rafdb_official(tmp_path / "raf")
    f = root / "basic" / "EmoLabel" / "list_patition_label.txt"
    lines = f.read_text().splitlines()
    lines[4] = "train_00005.jpg 8"
    f.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"list_patition_label.txt, line 5: unknown label code 8"):
        open_dataset("rafdb", root, "train")


# --- AffectNet -------------------------------------------------------------------------

def test_affectnet_official(tmp_path):
    root = L.write_affectnet_official(tmp_path / "an")
    splits = open_splits("affectnet", root, image_size=32, val_fraction=0.2, cache_dir=tmp_path / "c")
    assert _counts(splits["test"]) == L.AFFECT_COUNTS["validation"]
    total = [a + b for a, b in zip(_counts(splits["train"]), _counts(splits["val"]), strict=True)]
    assert total == L.AFFECT_COUNTS["training"]
    assert splits["train"].report["excluded"] == {"contempt": 2, "none": 1, "uncertain": 1, "no-face": 1}
    # the face box is cropped: no blue background from the surrounding photo survives
    assert splits["test"].images.float().std() > 10
    sub = open_dataset("affectnet", root, "test", image_size=32, test_per_class=1, cache_dir=tmp_path / "c")
    assert _counts(sub) == [1] * 7 and sub.report["test_per_class"] == 1


def test_affectnet_official_crops_the_box(tmp_path):
    from PIL import Image

    from resemote_lib.data.base import to_gray_square
    photo = Image.new("RGB", (120, 100), (0, 0, 0))
    photo.paste(Image.new("RGB", (64, 64), (255, 255, 255)), (20, 10))
    assert to_gray_square(photo, 16, (20, 10, 64, 64)).min() == 255


def test_affectnet_kaggle(tmp_path):
    root = L.write_affectnet_kaggle(tmp_path / "ak")
    splits = open_splits("affectnet", root, image_size=32, seed=1, cache_dir=tmp_path / "c")
    total = np.sum([_counts(s) for s in splits.values()], axis=0).tolist()
    assert total == L.KAGGLE_AFFECT_COUNTS
    assert _counts(splits["test"]) == [1] * 6 + [1]
    assert splits["train"].report["excluded"] == {"contempt": L.KAGGLE_CONTEMPT}
    ids = [set(s.ids) for s in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_affectnet_kaggle_unknown_label(tmp_path):
    root = L.write_affectnet_kaggle(tmp_path / "ak")
    text = (root / "labels.csv").read_text().replace(",happy,", ",joy,", 1)
    (root / "labels.csv").write_text(text)
    with pytest.raises(ValueError, match=r"labels.csv, line \d+: unknown label 'joy'"):
        open_dataset("affectnet", root, "train")


# --- bad images, cache -----------------------------------------------------------------

def test_corrupt_image_is_excluded_reported_and_warned(tmp_path):
    root = L.write_fer2013_folders(tmp_path / "fer")
    victim = next((root / "train" / "happy").iterdir())
    victim.write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="1 unreadable image"):
        ds = open_dataset("fer2013", root, "train", image_size=48, cache_dir=tmp_path / "c")
    assert len(ds) == sum(L.FER_COUNTS["Training"]) - 1
    assert ds.report["bad_files"][0]["file"] == str(victim)
    with pytest.raises(ValueError, match="unreadable"):
        open_dataset("fer2013", root, "train", image_size=48, strict=True, cache_dir=tmp_path / "c")


def test_cache_is_reused_and_rebuilt_on_change(tmp_path, monkeypatch):
    from resemote_lib.data import base
    root = L.write_fer2013_folders(tmp_path / "fer")
    calls = []
    real = base.decode_items
    monkeypatch.setattr(base, "decode_items", lambda *a, **k: calls.append(1) or real(*a, **k))
    open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    first = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    assert len(calls) == 1
    img = next((root / "test" / "angry").glob("PublicTest_*"))
    from PIL import Image
    Image.new("L", (48, 48), 255).save(img)  # changes size and mtime
    second = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    assert len(calls) == 2
    assert not torch.equal(first.images, second.images)


def test_stratified_split_is_disjoint_and_proportional():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    a, b, rest = stratified_split(labels, (0.1, 0.2), seed=0)
    assert len(set(a) | set(b) | set(rest)) == 100 and not set(a) & set(b)
    assert [sum(labels[i] == k for i in a) for k in range(3)] == [5, 3, 2]
    with pytest.raises(ValueError):
        stratified_split(labels, (0.8, 0.5), seed=0)


def test_transforms_normalise_and_flip():
    img = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    img[:, :, :, 0] = 255
    x = EVAL(img)
    assert x.shape == (2, 3, 4, 4)
    torch.testing.assert_close(x[0, :, 0, 0], (1 - torch.tensor(EVAL.mean)) / torch.tensor(EVAL.std))
    g = torch.Generator().manual_seed(0)
    flipped = TRAIN(img.repeat(50, 1, 1, 1), generator=g)
    left = flipped[:, 0, 0, 0] > 0
    assert 0 < left.sum() < 100  # some flipped, some not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EVAL(img[0]).shape == (3, 4, 4)


def test_synthetic_opens_through_the_fer2013_loader(tmp_path):
    sizes = {"n_train": 70, "n_val": 14, "n_test": 21, "seed": 5}
    ds = open_dataset("synthetic", tmp_path / "syn", "train", image_size=48, synthetic_sizes=sizes,
                      cache_dir=tmp_path / "c")
    assert ds.layout == "fer2013-csv" and len(ds) == 70
    header = (tmp_path / "syn" / "fer2013.csv").read_text().splitlines()[0]
    assert header == "emotion,pixels,Usage"
    # FER2013's imbalance: happy is the largest class, disgust the smallest
    counts = ds.counts()
    assert counts.index(max(counts)) == CLASS_NAMES.index("happy")
    assert counts.index(min(counts)) == CLASS_NAMES.index("disgust")


def test_default_root_prefers_kaggle_mount(tmp_path, monkeypatch):
    from resemote_lib import data
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path)
    assert data.default_root("fer2013") != tmp_path / "fer2013"
    (tmp_path / "fer2013").mkdir()
    assert data.default_root("fer2013") == tmp_path / "fer2013"
    assert Path(data.default_root("rafdb")).name == "rafdb"


# --- every PIL mode: decoded the same way by the loaders and the predictor, or refused by name -------

GRAY = 100  # the gray level each test image holds, in whatever mode it is stored


def _write_mode(path: Path, mode: str) -> Path:
    """A real file, written by PIL, whose pixels are GRAY in ``mode``."""
    from PIL import Image

    size = (8, 8)
    if mode in ("I;16", "I;16B"):  # 16-bit PNG (Pillow opens it as I;16) and big-endian 16-bit TIFF
        arr = np.full(size, GRAY * 257, np.dtype("<u2" if mode == "I;16" else ">u2"))
        img = Image.frombytes(mode, size, arr.tobytes())
    elif mode == "I":
        img = Image.fromarray(np.full(size, GRAY * 257, np.int32))
    elif mode == "F":
        img = Image.fromarray(np.full(size, GRAY / 255, np.float32))
    elif mode == "1":
        img = Image.new("1", size, 1)
    elif mode in ("P", "PA"):
        img = Image.new("L", size, GRAY).convert("RGB").convert("P")
        if mode == "PA":
            img = img.convert("PA")
    elif mode == "CMYK":
        img = Image.new("CMYK", size, (0, 0, 0, 255 - GRAY))
    elif mode == "YCbCr":
        img = Image.new("YCbCr", size, (GRAY, 128, 128))
    elif mode == "LAB":
        img = Image.new("LAB", size, (40, 128, 128))
    else:
        img = Image.new("L", size, GRAY).convert(mode)
    img.save(path)
    return path


_MODE_FILES = {"1": "png", "L": "png", "P": "png", "LA": "png", "PA": "tiff", "RGB": "png", "RGBA": "png",
               "CMYK": "jpg", "YCbCr": "tiff", "I;16": "png", "I;16B": "tiff", "I": "tiff"}


@pytest.mark.parametrize("mode", list(_MODE_FILES))
def test_every_photo_mode_decodes_to_its_gray_level(tmp_path, mode):
    from PIL import Image

    from resemote_lib.data.base import _decode_file, to_gray_square
    from resemote_lib.predict import to_rgb

    path = _write_mode(tmp_path / f"img.{_MODE_FILES[mode]}", mode)
    with Image.open(path) as img:
        assert img.mode == mode  # the file really is in that mode when read back
    expected = 255 if mode == "1" else GRAY
    loaded = _decode_file((path, 4, None))  # the dataset loaders' path
    assert isinstance(loaded, np.ndarray) and np.abs(loaded.astype(int) - expected).max() <= 2, (mode, loaded)
    rgb = to_rgb(path)  # the predictor's path: same pixels
    assert rgb.dtype == np.uint8 and np.abs(rgb.astype(int) - expected).max() <= 2
    assert np.array_equal(to_gray_square(Image.fromarray(rgb), 4), loaded)


def test_sixteen_bit_png_scales_instead_of_clipping(tmp_path):
    """PIL's convert("L") clips 16-bit values: a dark 16-bit face would turn white."""
    from PIL import Image

    from resemote_lib.data.base import _decode_file

    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    Image.fromarray(((ramp.astype(int) + 128) // 257).astype(np.uint8)).save(tmp_path / "ramp8.png")
    a, b = _decode_file((tmp_path / "ramp16.png", 64, None)), _decode_file((tmp_path / "ramp8.png", 64, None))
    assert np.array_equal(a, b) and a.min() == 0 and a.max() == 255 and (a == 255).mean() < 0.01  # not 99.6% white


@pytest.mark.parametrize(("mode", "suffix", "message"), [
    ("F", "tiff", r"img\.tiff: PIL mode 'F' \(32-bit floating point pixels\)"),
    ("LAB", "tiff", r"img\.tiff: PIL mode 'LAB'"),
])
def test_modes_that_are_not_photographs_are_refused_by_name(tmp_path, mode, suffix, message):
    from resemote_lib.data.base import _decode_file
    from resemote_lib.predict import to_rgb

    path = _write_mode(tmp_path / f"img.{suffix}", mode)
    with pytest.raises(ValueError, match=message):
        to_rgb(path)
    assert re.search(message, _decode_file((path, 4, None)))  # the loader excludes and reports it


def test_int32_image_outside_16_bits_is_refused(tmp_path):
    from PIL import Image

    from resemote_lib.predict import to_rgb

    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(tmp_path / "big.tiff")
    with pytest.raises(ValueError, match=r"big\.tiff: PIL mode 'I' with values 70000\.\.70000"):
        to_rgb(tmp_path / "big.tiff")


# --- CSV encodings -----------------------------------------------------------------------

def test_excel_csv_utf8_with_bom_is_read(tmp_path):
    root = L.write_fer2013_csv(tmp_path / "f")
    path = root / "fer2013.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    ds = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    assert _counts(ds) == L.FER_COUNTS["PublicTest"]


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
    assert _counts(ds) == L.FER_COUNTS["Training"] and not ds.report["bad_files"]
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
    assert _counts(ds) == expected and not ds.report["bad_files"]
    assert ds.report["skipped"] == {"hidden": 0, "not_images": 2}


# --- which folder is the dataset ---------------------------------------------------------

def test_several_datasets_below_the_root_are_an_error_listing_them(tmp_path):
    L.write_fer2013_folders(tmp_path / "data" / "fer2013")
    L.write_fer2013_csv(tmp_path / "data" / "fer2013_copy")
    (tmp_path / "data" / "__MACOSX" / "train" / "happy").mkdir(parents=True)  # never a candidate
    (tmp_path / "data" / "__MACOSX" / "test").mkdir()
    with pytest.raises(ValueError, match=r"data holds 2 datasets one level below it: .*fer2013 \(fer2013-folders\), "
                                         r".*fer2013_copy \(fer2013-csv\); pass the one you mean"):
        detect_layout("fer2013", tmp_path / "data")
    assert detect_layout("fer2013", tmp_path / "data" / "fer2013_copy") == ("fer2013-csv", tmp_path / "data" / "fer2013_copy")


def test_root_one_level_above_or_below_is_used_with_a_warning_naming_it(tmp_path):
    L.write_fer2013_folders(tmp_path / "outer" / "fer2013")  # unzip nests one level
    with pytest.warns(UserWarning, match=r"one level below it, at .*outer/fer2013\. Pass"):
        assert detect_layout("fer2013", tmp_path / "outer") == ("fer2013-folders", tmp_path / "outer" / "fer2013")
    with pytest.warns(UserWarning, match=r"one level above it, at .*outer/fer2013\. Pass"):
        layout, found = detect_layout("fer2013", tmp_path / "outer" / "fer2013" / "train")
    assert layout == "fer2013-folders" and found == tmp_path / "outer" / "fer2013"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detect_layout("fer2013", tmp_path / "outer" / "fer2013")  # the right root: silent


def test_quiet_detection_logs_instead_of_warning(tmp_path, caplog):
    L.write_fer2013_folders(tmp_path / "dest" / "fer2013")  # what a download's nested zip leaves
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level("INFO", logger="resemote_lib.data"):
            assert detect_layout("fer2013", tmp_path / "dest", quiet=True)[1] == tmp_path / "dest" / "fer2013"
    assert "one level below it" in caplog.text
