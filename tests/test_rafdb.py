"""RAF-DB (``resemote_lib/data/rafdb.py``): the official and the Kaggle release."""

from __future__ import annotations

import pytest

from resemote_lib.data import open_dataset, open_splits

from . import layouts as L


@pytest.mark.parametrize("writer", [L.write_rafdb_official, L.write_rafdb_kaggle])
def test_rafdb_layouts(tmp_path, writer):
    root = writer(tmp_path / "raf")
    splits = open_splits("rafdb", root, image_size=32, val_fraction=0.25, seed=3, cache_dir=tmp_path / "c")
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert test.counts() == L.RAF_COUNTS["test"]
    total = [a + b for a, b in zip(train.counts(), val.counts(), strict=True)]
    assert total == L.RAF_COUNTS["train"]
    assert not set(train.ids) & set(val.ids)  # disjoint
    assert val.report["seed"] == 3 and val.report["val_fraction"] == 0.25
    # stratified: each class with >= 4 items puts ~25% into val
    assert val.counts() == [round(0.25 * n) for n in L.RAF_COUNTS["train"]]
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
