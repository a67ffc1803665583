from __future__ import annotations

import hashlib
import itertools
import logging
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from resemote_lib.data import audit, duplicates, open_splits
from resemote_lib.data.audit import (
    AUDIT_SIZE,
    CLEAN_COLUMNS,
    EXCLUDED_COLUMNS,
    GROUP_COLUMNS,
    QualityReport,
    quality_report,
)
from resemote_lib.data.base import FaceDataset
from resemote_lib.data.duplicates import BLANK_REASONS, PAIR_COLUMNS
from resemote_lib.data.synthetic import make_faces

from .planted import found, hand_built_splits, split

# ---------------------------------------------------------------- the quality report


def test_report_on_hand_built_case(tmp_path):
    splits = hand_built_splits()
    report = quality_report(splits, cache_dir=tmp_path)
    assert list(report.pairs.columns) == PAIR_COLUMNS
    assert found(report.pairs) == {
        ("train", 1, "test", 0): "exact",
        ("train", 3, "val", 1): "near",
        ("train", 3, "test", 2): "near",
        ("train", 5, "val", 2): "exact",
        ("train", 7, "train", 8): "exact",
        ("val", 0, "test", 1): "flipped",
        ("val", 1, "test", 2): "exact",
    }, report.pairs
    row = report.pairs.set_index(["split_a", "index_a", "split_b", "index_b"]).loc[("train", 5, "val", 2)]
    assert (row["label_a"], row["label_b"], row["id_a"], row["id_b"]) == ("angry", "happy", "train5", "val2")
    summary = report.summary().set_index(["split_a", "split_b", "kind"])["pairs"]
    assert summary[("train", "train", "exact")] == 1 and summary[("val", "test", "flipped")] == 1
    assert summary[("test", "test", "near")] == 0 and summary.sum() == 7
    assert len(summary) == 6 * 3  # every split pair (within too) and kind, zeros included


def test_groups_and_conflicts():
    report = quality_report(hand_built_splits(), use_cache=False)
    groups = report.groups()
    assert list(groups.columns) == GROUP_COLUMNS
    members = {g: sorted(zip(sub["split"], sub["index"], strict=True)) for g, sub in groups.groupby("group")}
    assert members == {0: [("test", 0), ("train", 1)], 1: [("test", 2), ("train", 3), ("val", 1)],
                       2: [("train", 5), ("val", 2)], 3: [("train", 7), ("train", 8)],
                       4: [("test", 1), ("val", 0)]}
    conflicts = report.conflicts()
    assert sorted(set(conflicts["group"])) == [2, 3]
    assert set(zip(conflicts["split"], conflicts["index"], conflicts["label"], strict=True)) == {
        ("train", 5, "angry"), ("val", 2, "happy"), ("train", 7, "angry"), ("train", 8, "sad")}


def test_test_excluded_and_clean_exclusions_exact():
    report = quality_report(hand_built_splits(), use_cache=False)
    excluded = report.test_excluded()
    assert list(excluded.columns) == EXCLUDED_COLUMNS
    # test2 has a near copy in train and an exact one in val: the exact one is the closest
    assert excluded[["id", "index", "by_split", "by_id", "kind"]].values.tolist() == [
        ["test0", 0, "train", "train1", "exact"],
        ["test1", 1, "val", "val0", "flipped"],
        ["test2", 2, "val", "val1", "exact"],
    ]
    clean = report.clean_exclusions()
    assert list(clean.columns) == CLEAN_COLUMNS
    expected = pd.DataFrame([
        ["train", "train1", 1, "duplicate_of_test", "test", "test0"],
        ["train", "train3", 3, "duplicate_of_val", "val", "val1"],  # val before test
        ["train", "train5", 5, "duplicate_of_val", "val", "val2"],  # ...and before label_conflict
        ["train", "train7", 7, "label_conflict", "train", "train8"],
        ["train", "train8", 8, "label_conflict", "train", "train7"],
        ["train", "train9", 9, "blank", None, None],
        # val loses its blank only: its copies of train images stay (train lost them instead),
        # and so does val2, whose label conflicts with train5's
        ["val", "val4", 4, "blank", None, None],
    ], columns=CLEAN_COLUMNS)
    pd.testing.assert_frame_equal(clean, expected, check_dtype=False)




# ---------------------------------------------------------------- cache, size, settings


def test_cache_reused_then_invalidated(tmp_path, monkeypatch):
    splits = hand_built_splits()
    first = quality_report(splits, cache_dir=tmp_path)
    assert not first.cached and len(list(tmp_path.iterdir())) == 1

    def refuse(*_, **__):
        raise RuntimeError("recomputed")

    monkeypatch.setattr(audit, "_compute_report", refuse)
    again = quality_report(splits, cache_dir=tmp_path)
    assert again.cached and again.seconds == first.seconds
    pd.testing.assert_frame_equal(again.pairs, first.pairs)
    pd.testing.assert_frame_equal(again.blanks, first.blanks)
    assert again.membership == first.membership and again.settings == first.settings
    # another membership (one label changed), other settings, or no cache: computed again
    relabelled = dict(splits)
    labels = splits["val"].labels.clone()
    labels[0] = 6
    v = splits["val"]
    relabelled["val"] = FaceDataset(v.images, labels, v.ids, name=v.name, split="val", layout="x", root=None)
    with pytest.raises(RuntimeError, match="recomputed"):
        quality_report(relabelled, cache_dir=tmp_path)
    with pytest.raises(RuntimeError, match="recomputed"):
        quality_report(splits, cache_dir=tmp_path, min_correlation=0.99)
    with pytest.raises(RuntimeError, match="recomputed"):
        quality_report(splits, cache_dir=tmp_path, use_cache=False)


def test_damaged_cache_is_recomputed(tmp_path, caplog):
    splits = hand_built_splits()
    first = quality_report(splits, cache_dir=tmp_path)
    folder = next(tmp_path.iterdir())
    text = (folder / "pairs.csv").read_text().splitlines()
    (folder / "pairs.csv").write_text("\n".join(text[:-2]) + "\n")  # truncated
    with caplog.at_level(logging.WARNING, logger="resemote_lib.data.audit"):
        again = quality_report(splits, cache_dir=tmp_path)
    assert not again.cached and "ignoring unreadable audit cache" in caplog.text
    pd.testing.assert_frame_equal(again.pairs, first.pairs)
    assert QualityReport.load(folder).cached  # rewritten whole


def test_save_load_round_trip(tmp_path):
    report = quality_report(hand_built_splits(), use_cache=False)
    loaded = QualityReport.load(report.save(tmp_path / "r"))
    assert (loaded.membership, loaded.settings, loaded.seconds) == (report.membership, report.settings,
                                                                     report.seconds)
    pd.testing.assert_frame_equal(loaded.pairs, report.pairs)
    pd.testing.assert_frame_equal(loaded.blanks, report.blanks)
    pd.testing.assert_frame_equal(loaded.clean_exclusions(), report.clean_exclusions())
    (tmp_path / "r" / "blanks.csv").unlink()
    with pytest.raises(FileNotFoundError, match="blanks.csv"):
        QualityReport.load(tmp_path / "r")


def test_wrong_size_is_a_clear_error():
    faces, _ = make_faces(6, seed=8)
    big = np.repeat(np.repeat(faces, 2, axis=1), 2, axis=2)[:, :64, :64]  # 64x64
    splits = {"train": split(faces, "train"), "test": split(big, "test")}
    with pytest.raises(ValueError, match=r"split 'test' is decoded at 64x64.*AUDIT_SIZE=48.*image_size=48"):
        quality_report(splits, use_cache=False)


def test_unknown_or_bad_setting_is_an_error():
    splits = {"train": split(make_faces(4, seed=9)[0], "train")}
    with pytest.raises(ValueError, match="unknown audit setting.*min_corr"):
        quality_report(splits, use_cache=False, min_corr=0.9)
    with pytest.raises(ValueError, match="min_correlation=2"):
        quality_report(splits, use_cache=False, min_correlation=2)


def test_settings_keyed_and_dataset_preset():
    faces, _ = make_faces(4, seed=9)
    report = quality_report({"train": split(faces, "train")}, use_cache=False)
    assert report.settings["audit_size"] == AUDIT_SIZE and report.settings["version"] == audit.VERSION
    assert report.settings["min_correlation"] == duplicates.DATASET_SETTINGS["synthetic"]["min_correlation"]
    photo = quality_report({"train": split(faces, "train", dataset="fer2013")}, use_cache=False)
    assert photo.settings["min_correlation"] == duplicates.DEFAULTS["min_correlation"]


# ---------------------------------------------------------------- the real FER2013


def _content_digest(ds: FaceDataset, i: int) -> str:
    """SHA-256 of the item's bytes as the dataset stores them: the JPEG file of the folder
    layout; in the CSV layout the 48x48 pixel values are the data."""
    if ds.layout == "fer2013-folders":
        path = ds.root / ("train" if ds.split == "train" else "test") / ds.ids[i]
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return hashlib.sha256(ds.images[i].numpy().tobytes()).hexdigest()


@pytest.mark.realdata
def test_real_fer2013_finds_every_byte_identical_copy(real_fer2013, tmp_path):
    splits = open_splits("fer2013", real_fer2013, image_size=AUDIT_SIZE)
    report = quality_report(splits, cache_dir=tmp_path)
    by_digest: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, ds in splits.items():
        for i in range(len(ds)):
            by_digest[_content_digest(ds, i)].append((name, i))
    order = {s: k for k, s in enumerate(splits)}
    truth = {(a, b) for members in by_digest.values()
             for a, b in itertools.combinations(sorted(members, key=lambda m: (order[m[0]], m[1])), 2)
             if a[0] != b[0]}
    assert truth, "FER2013 has byte-identical files across splits"
    exact = {((r.split_a, r.index_a), (r.split_b, r.index_b))
             for r in report.pairs[report.pairs["kind"] == "exact"].itertuples()}
    blank = set(zip(report.blanks["split"], report.blanks["index"], strict=True))
    # blank images are kept out of the pair search by design and reported in `blanks`: the copies
    # among the other images must all be found (recall 1), and the blank ones are few
    searchable = {(a, b) for a, b in truth if not (a in blank and b in blank)}
    recall = len(searchable & exact) / len(searchable)
    assert recall == 1.0, (recall, sorted(searchable - exact)[:5])
    assert len(truth - searchable) < len(truth) / 20
    excluded = report.test_excluded()
    assert 0 < len(excluded) < len(splits["test"])
    assert set(report.blanks["reason"]) <= set(BLANK_REASONS)
