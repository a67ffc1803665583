"""AffectNet (``resemote_lib/data/affectnet.py``): the official and the Kaggle release."""

from __future__ import annotations

import numpy as np
import pytest

from resemote_lib.data import open_dataset, open_splits

from . import layouts as L


def test_affectnet_official(tmp_path):
    root = L.write_affectnet_official(tmp_path / "an")
    splits = open_splits("affectnet", root, image_size=32, val_fraction=0.2, cache_dir=tmp_path / "c")
    assert splits["test"].counts() == L.AFFECT_COUNTS["validation"]
    total = [a + b for a, b in zip(splits["train"].counts(), splits["val"].counts(), strict=True)]
    assert total == L.AFFECT_COUNTS["training"]
    assert splits["train"].report["excluded"] == {"contempt": 2, "none": 1, "uncertain": 1, "no-face": 1}
    # the face box is cropped: no blue background from the surrounding photo survives
    assert splits["test"].images.float().std() > 10
    sub = open_dataset("affectnet", root, "test", image_size=32, test_per_class=1, cache_dir=tmp_path / "c")
    assert sub.counts() == [1] * 7 and sub.report["test_per_class"] == 1


def test_affectnet_kaggle(tmp_path):
    root = L.write_affectnet_kaggle(tmp_path / "ak")
    splits = open_splits("affectnet", root, image_size=32, seed=1, cache_dir=tmp_path / "c")
    total = np.sum([s.counts() for s in splits.values()], axis=0).tolist()
    assert total == L.KAGGLE_AFFECT_COUNTS
    assert splits["test"].counts() == [1] * 6 + [1]
    assert splits["train"].report["excluded"] == {"contempt": L.KAGGLE_CONTEMPT}
    ids = [set(s.ids) for s in splits.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_affectnet_kaggle_unknown_label(tmp_path):
    root = L.write_affectnet_kaggle(tmp_path / "ak")
    text = (root / "labels.csv").read_text().replace(",happy,", ",joy,", 1)
    (root / "labels.csv").write_text(text)
    with pytest.raises(ValueError, match=r"labels.csv, line \d+: unknown label 'joy'"):
        open_dataset("affectnet", root, "train")
