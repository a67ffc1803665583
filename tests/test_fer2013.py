"""FER2013 (``resemote_lib/data/fer2013.py``): the Kaggle CSV and the Kaggle image folders,
opened end to end through ``open_dataset``."""

from __future__ import annotations

import pytest
import torch

from resemote_lib.data import open_dataset, open_splits
from resemote_lib.data.transforms import EVAL, TRAIN
from resemote_lib.labels import CLASS_NAMES

from . import layouts as L


@pytest.mark.parametrize("writer", [L.write_fer2013_csv, L.write_fer2013_folders])
def test_fer2013_splits_and_counts(tmp_path, writer):
    root = writer(tmp_path / "fer")
    splits = open_splits("fer2013", root, image_size=48, cache_dir=tmp_path / "c")
    assert splits["train"].counts() == L.FER_COUNTS["Training"]
    assert splits["val"].counts() == L.FER_COUNTS["PublicTest"]
    assert splits["test"].counts() == L.FER_COUNTS["PrivateTest"]
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


def test_a_folder_holding_both_fer2013_layouts_is_an_error_naming_both(tmp_path):
    root = L.write_fer2013_folders(tmp_path / "fer")
    L.write_fer2013_csv(root)
    with pytest.raises(ValueError, match=r"holds both FER2013 layouts, .*fer/fer2013\.csv and the image folders "
                                         r".*fer/train/ and .*fer/test/"):
        open_dataset("fer2013", root, "train", image_size=48, cache_dir=tmp_path / "c")
