"""Finding and opening a dataset (``resemote_lib/data/__init__.py``): ``open_dataset``,
``detect_layout`` one level above or below, ``default_root``, zip archives in a data root, and
where synthetic faces are written. Each family and module has its own file (``test_<module>.py``)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from resemote_lib.data import detect_layout, open_dataset

from . import layouts as L


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


def test_folder_dataset_needs_a_data_root_and_crop_faces_is_for_it_only(tmp_path):
    with pytest.raises(ValueError, match="dataset folder needs data_root"):
        open_dataset("folder", None, "test")
    with pytest.raises(ValueError, match="crop_faces is for the folder dataset"):
        open_dataset("fer2013", tmp_path, "test", crop_faces=True)


def test_default_root_prefers_kaggle_mount(tmp_path, monkeypatch):
    from resemote_lib import data
    monkeypatch.setattr(data, "KAGGLE_INPUT", tmp_path)
    assert data.default_root("fer2013") != tmp_path / "fer2013"
    (tmp_path / "fer2013").mkdir()
    assert data.default_root("fer2013") == tmp_path / "fer2013"
    assert Path(data.default_root("rafdb")).name == "rafdb"


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


# --- issue 24: the data layer writes only where asked ---------------------------------------

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


# --- issue 31.12: archives that are not the dataset, or far larger unpacked ---------------

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
