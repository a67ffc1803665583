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


# --- bad images ------------------------------------------------------------------------

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


# --- issue 24: the data layer writes only where asked, and says what it left out ---------

def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("other", ["fer2013.csv", "kaggle folders", "a notes file"])
def test_synthetic_faces_are_never_written_into_a_folder_holding_other_data(tmp_path, other):
    root = tmp_path / "data"
    if other == "fer2013.csv":
        L.write_fer2013_csv(root)
    elif other == "kaggle folders":
        L.write_fer2013_folders(root)
    else:
        root.mkdir()
        (root / "notes.txt").write_text("mine")
    before = _tree(root)
    with pytest.raises(ValueError, match=rf"synthetic: data_root {re.escape(str(root))} holds other data"):
        open_dataset("synthetic", root, "train", image_size=48, synthetic_sizes={"n_train": 14, "n_val": 7,
                                                                                "n_test": 7}, cache_dir=tmp_path / "c")
    assert _tree(root) == before


def test_synthetic_faces_go_to_the_cache_or_a_folder_of_their_own(tmp_path):
    from resemote_lib import paths
    from resemote_lib.data import synthetic_root

    sizes = {"n_train": 14, "n_val": 7, "n_test": 7, "seed": 2}
    ds = open_dataset("synthetic", None, "train", image_size=48, synthetic_sizes=sizes, cache_dir=tmp_path / "c")
    assert ds.root == synthetic_root(**sizes) == paths.CACHE / "synthetic" / "14-7-7-seed2" and len(ds) == 14
    own = tmp_path / "syn"
    open_dataset("synthetic", own, "train", image_size=48, synthetic_sizes=sizes, cache_dir=tmp_path / "c")
    assert sorted(p.name for p in own.iterdir()) == ["fer2013.csv", "synthetic.json"]
    again = open_dataset("synthetic", own, "test", image_size=48, synthetic_sizes={**sizes, "n_test": 9},
                         cache_dir=tmp_path / "c")  # its own folder: rewritten with the new sizes
    assert len(again) == 9
    with open(own / "fer2013.csv", "a") as f:  # a hand-edited CSV is no longer the generator's
        f.write("3," + " ".join(["0"] * 2304) + ",Training\n")
    with pytest.raises(ValueError, match=r"holds other data \(fer2013\.csv \(changed since the generator wrote it"):
        open_dataset("synthetic", own, "test", image_size=48, synthetic_sizes=sizes, cache_dir=tmp_path / "c")


def test_a_folder_holding_both_fer2013_layouts_is_an_error_naming_both(tmp_path):
    root = L.write_fer2013_folders(tmp_path / "fer")
    L.write_fer2013_csv(root)
    with pytest.raises(ValueError, match=r"holds both FER2013 layouts, .*fer/fer2013\.csv and the image folders "
                                         r".*fer/train/ and .*fer/test/"):
        open_dataset("fer2013", root, "train", image_size=48, cache_dir=tmp_path / "c")


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


def _zip(folder: Path, archive: Path, prefix: str = "") -> Path:
    import zipfile

    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, prefix + str(p.relative_to(folder)))
    return archive


@pytest.mark.parametrize("prefix", ["", "fer2013/"])
def test_a_dataset_zip_in_the_data_root_is_unpacked_in_place_once(tmp_path, caplog, prefix):
    L.write_fer2013_folders(tmp_path / "src")
    (tmp_path / "fer2013").mkdir()
    archive = _zip(tmp_path / "src", tmp_path / "fer2013" / "archive.zip", prefix)
    with caplog.at_level("WARNING", logger="resemote_lib.data"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*one level below")
        ds = open_dataset("fer2013", tmp_path / "fer2013", "val", image_size=48, cache_dir=tmp_path / "c")
    assert "unpacking it there (once; the zip is kept)" in caplog.text and archive.is_file()
    assert ds.counts() == L.FER_COUNTS["PublicTest"]
    assert sorted(p.name for p in (tmp_path / "fer2013").iterdir()) == (
        ["archive.zip", "test", "train"] if not prefix else ["archive.zip", "fer2013"])


def test_an_unrelated_zip_leaves_the_folder_as_it_was(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "holiday.jpg").write_bytes(b"not a dataset")
    (tmp_path / "fer2013").mkdir()
    _zip(tmp_path / "src", tmp_path / "fer2013" / "photos.zip")
    with pytest.raises(ValueError, match=r"photos\.zip is not fer2013 .*: it holds 1 file\(s\), e\.g\. holiday\.jpg;"):
        detect_layout("fer2013", tmp_path / "fer2013")
    assert [p.name for p in (tmp_path / "fer2013").iterdir()] == ["photos.zip"]


def test_a_zip_in_a_read_only_kaggle_mount_is_never_unpacked(tmp_path, monkeypatch):
    from resemote_lib import data

    L.write_fer2013_folders(tmp_path / "src")
    mount = tmp_path / "input" / "fer2013"
    mount.mkdir(parents=True)
    _zip(tmp_path / "src", mount / "archive.zip")
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path / "input")
    with pytest.raises(FileNotFoundError, match=r"holds only the archive archive\.zip, and is read-only \(a Kaggle "
                                                r"mount\?\): unzip it into a writable folder"):
        detect_layout("fer2013", mount)
    assert [p.name for p in mount.iterdir()] == ["archive.zip"]


# --- issue 22: any labelled folder is an evaluation set ------------------------------------

def _class_folders(root: Path, plan: dict[str, tuple[int, int]], seed: int = 0) -> Path:
    """``{folder name: (canonical class, images)}``: synthetic faces saved as PNGs."""
    from PIL import Image

    from resemote_lib.data.synthetic import render_face

    rng = np.random.default_rng(seed)
    for name, (k, n) in plan.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(render_face(CLASS_NAMES[k], rng)).save(root / name / f"{name}_{i}.png")
    return root


def test_folder_dataset_reads_synonyms_in_any_case_and_excludes_other_classes(tmp_path):
    plan = {"Anger": (0, 2), "disgusted": (1, 1), "afraid": (2, 2), "JOY": (3, 3), "calm": (4, 1), "Sadness": (5, 2),
            "surprised": (6, 2), "contempt": (0, 4)}
    root = _class_folders(tmp_path / "faces", plan)
    with pytest.warns(UserWarning, match=r"folder/test .*: 4 image\(s\) in folders outside the seven classes "
                                         r"excluded: contempt/ \(4\)"):
        ds = open_dataset("folder", root, "test", image_size=48, cache_dir=tmp_path / "c")
    assert ds.layout == "folder-classes" and ds.counts() == [2, 1, 2, 3, 1, 2, 2]
    assert ds.report["excluded_classes"] == {"contempt": 4} and ds.report["missing_classes"] == []
    assert "JOY/JOY_0.png" in ds.ids and ds.labels[ds.ids.index("JOY/JOY_0.png")] == CLASS_NAMES.index("happy")
    for split in ("train", "val"):  # an evaluation set: everything is test
        empty = open_dataset("folder", root, split, image_size=48, cache_dir=tmp_path / "c")
        assert len(empty) == 0 and "evaluation set" in empty.report["rule"]


def test_folder_dataset_missing_class_and_nested_images(tmp_path):
    root = _class_folders(tmp_path / "faces", {"happy": (3, 2), "sad": (5, 1)})
    (root / "happy" / "session1").mkdir()
    (root / "happy" / "happy_1.png").rename(root / "happy" / "session1" / "happy_1.png")
    with pytest.warns(UserWarning, match=r"no images of angry, disgust, fear, neutral, surprise"):
        ds = open_dataset("folder", root, "test", image_size=48, cache_dir=tmp_path / "c")
    assert sorted(ds.ids) == ["happy/happy_0.png", "happy/session1/happy_1.png", "sad/sad_0.png"]
    assert ds.report["missing_classes"] == ["angry", "disgust", "fear", "neutral", "surprise"]


def test_folder_dataset_with_train_and_test_subfolders_is_a_full_dataset(tmp_path):
    plan = {name: (k, 4) for k, name in enumerate(CLASS_NAMES)}
    _class_folders(tmp_path / "ds" / "train", plan, seed=1)
    _class_folders(tmp_path / "ds" / "test", {name: (k, 1) for k, name in enumerate(CLASS_NAMES)}, seed=2)
    splits = open_splits("folder", tmp_path / "ds", image_size=48, val_fraction=0.25, seed=3, cache_dir=tmp_path / "c")
    assert splits["test"].layout == "folder-splits" and splits["test"].counts() == [1] * 7
    assert splits["val"].counts() == [1] * 7 and splits["train"].counts() == [3] * 7
    assert not set(splits["train"].ids) & set(splits["val"].ids)


def test_folder_dataset_needs_a_data_root_and_crop_faces_is_for_it_only(tmp_path):
    with pytest.raises(ValueError, match="dataset folder needs data_root"):
        open_dataset("folder", None, "test")
    with pytest.raises(ValueError, match="crop_faces is for the folder dataset"):
        open_dataset("fer2013", tmp_path, "test", crop_faces=True)


def test_face_crop_uses_the_predictors_crop_and_counts_photos_without_a_face(tmp_path, monkeypatch):
    """Whole photos: the face the detector finds, cropped with the Predictor's margin; no face: excluded, counted."""
    from PIL import Image

    from resemote_lib.data import faces, folder
    from resemote_lib.data.base import to_gray_square
    from resemote_lib.predict import to_rgb

    root = _class_folders(tmp_path / "photos", {"happy": (3, 3), "sad": (5, 2)})
    for f in sorted(root.rglob("*.png")):  # each face pasted into a larger dark photo at (30, 20)
        photo = Image.new("L", (120, 100), 5)
        photo.paste(Image.open(f).resize((48, 48)), (30, 20))
        photo.save(f)
    Image.new("L", (120, 100), 5).save(root / "sad" / "empty_room.png")
    found = lambda rgb: [((30, 20, 48, 48), 1.0)] if rgb.max() > 5 else []  # noqa: E731 - a stand-in detector
    monkeypatch.setattr(folder, "make_detector", lambda spec: found)
    with pytest.warns(UserWarning, match=r"folder/test: no face found in 1 of 6 image\(s\), excluded, e\.g\. "
                                         r".*empty_room\.png"):
        ds = open_dataset("folder", root, "test", image_size=40, crop_faces=True, cache_dir=tmp_path / "c")
    assert len(ds) == 5 and ds.report["no_face"] == 1 and ds.report["no_face_files"][0].endswith("empty_room.png")
    assert ds.report["crop_faces"] == "auto+margin0.15"
    x, y, w, h = faces.expand_box((30, 20, 48, 48), 0.15, 120, 100)
    rgb = to_rgb(root / "happy" / "happy_0.png")
    expected = to_gray_square(Image.fromarray(rgb[y:y + h, x:x + w]), 40)
    assert np.array_equal(ds.images[ds.ids.index("happy/happy_0.png"), 0].numpy(), expected)


def test_the_haar_detector_finds_no_face_in_a_blank_photo(tmp_path):
    from PIL import Image

    root = tmp_path / "photos" / "neutral"
    root.mkdir(parents=True)
    Image.new("RGB", (160, 120), (90, 120, 150)).save(root / "wall.jpg")
    with pytest.warns(UserWarning, match="no face found in 1 of 1"):
        ds = open_dataset("folder", root.parent, "test", image_size=48, crop_faces=True, cache_dir=tmp_path / "c")
    assert len(ds) == 0 and ds.report["no_face"] == 1


@pytest.mark.realdata
def test_real_fer2013_test_images_relaid_as_class_folders_give_the_same_pixels_and_labels(real_fer2013, tmp_path):
    import os
    import shutil

    fer = open_dataset("fer2013", real_fer2013, "test", image_size=48, cache_dir=tmp_path / "c")
    relaid = tmp_path / "relaid"
    for item in fer.ids:  # "<class>/PrivateTest_<n>.jpg", under test/
        cls, name = item.split("/")
        (relaid / cls.capitalize()).mkdir(parents=True, exist_ok=True)  # capitalised: the synonyms are any case
        src, dst = real_fer2013 / "test" / cls / name, relaid / cls.capitalize() / name
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    folder = open_dataset("folder", relaid, "test", image_size=48, cache_dir=tmp_path / "c")
    assert len(folder) == len(fer) == 3589
    by_id = {item.lower(): i for i, item in enumerate(folder.ids)}
    order = torch.tensor([by_id[item.lower()] for item in fer.ids])
    assert torch.equal(folder.labels[order], fer.labels) and torch.equal(folder.images[order], fer.images)


# --- issue 31: detector threads, EXIF, folder oddities, archives (cache: test_cache.py) ----------

def test_the_face_detector_works_on_every_decoding_thread(tmp_path):
    """Issue 31.1: in a fresh process (OpenCV not imported yet) the decoding threads each built a
    Haar detector, importing cv2 at once; some saw a half-initialised module ("this OpenCV has no
    Haar cascades") and their images were reported unreadable. Every image must be decoded."""
    import subprocess
    import sys

    from PIL import Image

    from resemote_lib.data.synthetic import make_faces

    faces, labels = make_faces(42, seed=1)
    for i, (img, y) in enumerate(zip(faces, labels, strict=True)):
        (tmp_path / "faces" / CLASS_NAMES[int(y)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / "faces" / CLASS_NAMES[int(y)] / f"{i}.png")
    code = ("import sys, warnings; warnings.simplefilter('ignore'); from resemote_lib.data import open_dataset; "
            "ds = open_dataset('folder', sys.argv[1], 'test', crop_faces=True, cache_dir=sys.argv[2]); "
            "print([b['error'] for b in ds.report['bad_files']])")
    for attempt in range(3):  # a race: three fresh processes
        out = subprocess.run([sys.executable, "-c", code, tmp_path / "faces", tmp_path / f"c{attempt}"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "[]", out.stdout[-2000:]


def test_a_detector_that_cannot_be_built_is_one_error_not_an_unreadable_image_each(tmp_path, monkeypatch):
    from resemote_lib.data import folder

    def no_cascade(spec):
        raise RuntimeError("this OpenCV has no Haar cascades (opencv 5.x dropped them)")

    root = _class_folders(tmp_path / "faces", {"happy": (3, 2)})
    monkeypatch.setattr(folder, "make_detector", no_cascade)
    with pytest.raises(ValueError, match=r"^crop_faces: the face detector cannot be built: this OpenCV has no Haar"):
        open_dataset("folder", root, "test", crop_faces=True, cache_dir=tmp_path / "c")


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


def test_a_linked_class_folder_counts_its_images_once(tmp_path):
    """Issue 31.5: joy -> happy lists the same files twice; each file is counted once, with a warning."""
    root = _class_folders(tmp_path / "faces", {"happy": (3, 3), "sad": (5, 2)})
    (root / "joy").symlink_to(root / "happy", target_is_directory=True)
    with pytest.warns(UserWarning, match=r"folder/test .*: 3 image\(s\) reached twice through links \(e\.g\. "
                                         r"joy/happy_0\.png is happy/happy_0\.png\): counted once"):
        ds = open_dataset("folder", root, "test", image_size=48, cache_dir=tmp_path / "c")
    assert len(ds) == 5 and ds.counts()[3] == 3 and ds.report["duplicate_links"] == 3


def test_a_class_folder_inside_another_class_folder_is_warned_about(tmp_path):
    """Issue 31.5: happy/sad/x.png is labelled happy (its class folder); the nested name says sad: warn."""
    root = _class_folders(tmp_path / "faces", {"happy": (3, 2), "sad": (5, 1)})
    (root / "happy" / "sad").mkdir()
    (root / "sad" / "sad_0.png").rename(root / "happy" / "sad" / "x.png")
    with pytest.warns(UserWarning, match=r"folder/test .*: 1 image\(s\) in folders named after another class "
                                         r"inside a class folder, labelled by the class folder: happy/sad/ \(1\)"):
        ds = open_dataset("folder", root, "test", image_size=48, cache_dir=tmp_path / "c")
    assert ds.labels[ds.ids.index("happy/sad/x.png")] == CLASS_NAMES.index("happy")


def test_an_unreadable_class_folder_is_an_error_naming_it(tmp_path, monkeypatch):
    """Issue 31.5: a class folder this process may not list is not "missing or empty" (tests run
    as root, whom permission bits do not stop: the listing's PermissionError is injected)."""
    import os

    root = _class_folders(tmp_path / "faces", {"happy": (3, 2), "sad": (5, 2)})
    real = os.scandir

    def scandir(path="."):
        if Path(path) == root / "sad":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PermissionError, match=r"cannot read the class folder .*faces/sad \(Permission denied\); "
                                              r"its images would be left out"):
        open_dataset("folder", root, "test", image_size=48, cache_dir=tmp_path / "c")


def _zip_of(archive: Path, files: dict[str, bytes]) -> Path:
    import zipfile

    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return archive


def test_a_zip_that_would_unpack_to_far_more_than_its_size_is_refused_before_unpacking(tmp_path):
    """Issue 31.12: a 100 KB zip of a 60 MB CSV (a zip bomb, in small) is refused by its listing."""
    archive = _zip_of(tmp_path / "fer2013" / "fer2013.zip",
                      {"fer2013.csv": b"emotion,pixels,Usage\n0," + b"1" * 60_000_000 + b",Training\n"})
    with pytest.raises(ValueError, match=r"fer2013: .*fer2013\.zip would unpack to 60 MB from 0\.1 MB \(\d+x\)"):
        detect_layout("fer2013", tmp_path / "fer2013")
    assert [p.name for p in archive.parent.iterdir()] == ["fer2013.zip"]


def test_a_zip_that_is_not_the_dataset_says_so_and_what_it_holds(tmp_path):
    """Issue 31.12: not "put the archive in DIR" when DIR holds it: what the zip holds instead."""
    _zip_of(tmp_path / "fer2013" / "fer2013.zip", {f"junk/{i:05d}.txt": b"x" for i in range(300)})
    with pytest.raises(ValueError, match=r"fer2013: .*fer2013\.zip is not fer2013 \(no fer2013\.csv .*\): it "
                                                r"holds 300 file\(s\), e\.g\. junk/00000\.txt, junk/00001\.txt"):
        detect_layout("fer2013", tmp_path / "fer2013")
    assert [p.name for p in (tmp_path / "fer2013").iterdir()] == ["fer2013.zip"]


def test_a_csv_field_over_the_csv_limit_names_the_file_and_line(tmp_path):
    (tmp_path / "fer").mkdir()
    (tmp_path / "fer" / "fer2013.csv").write_text("emotion,pixels,Usage\n0," + "7" * 200_000 + ",Training\n")
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 2: a field of more than 131072 characters"):
        open_dataset("fer2013", tmp_path / "fer", "train", cache_dir=tmp_path / "c")
