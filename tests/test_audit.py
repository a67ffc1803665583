from __future__ import annotations

import hashlib
import io
import itertools
import logging
import warnings
from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from resemote_lib.data import audit, open_splits
from resemote_lib.data.audit import (
    AUDIT_SIZE,
    CLEAN_COLUMNS,
    EXCLUDED_COLUMNS,
    GROUP_COLUMNS,
    PAIR_COLUMNS,
    QualityReport,
    find_duplicates,
    phash,
    quality_report,
    summarize,
)
from resemote_lib.data.base import FaceDataset
from resemote_lib.data.synthetic import make_faces
from resemote_lib.reports import plots


def _ds(images: np.ndarray, split: str, labels: list[int] | None = None, name: str = "synthetic") -> FaceDataset:
    """A split of in-memory images; ``synthetic`` takes that dataset's audit settings."""
    t = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    y = torch.tensor(labels if labels is not None else [0] * len(t), dtype=torch.int64)
    return FaceDataset(t, y, [f"{split}{i}" for i in range(len(t))], name=name, split=split, layout="x", root=None)


def _reencode(img: np.ndarray, quality: int = 60) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("L"))


def _brighter(img: np.ndarray) -> np.ndarray:
    return (img.astype(float) * 0.8 + 20).round().astype(np.uint8)


def _found(report_pairs: pd.DataFrame) -> dict[tuple, str]:
    return {(r.split_a, r.index_a, r.split_b, r.index_b): r.kind for r in report_pairs.itertuples()}


# ---------------------------------------------------------------- find_duplicates (first version's API)


def test_finds_every_planted_copy_and_no_false_pairs():
    # 300 distinct faces; all 7 classes, so many look alike (same expression, similar pose).
    faces, _ = make_faces(300, seed=11)
    train, test = faces[:240].copy(), faces[240:].copy()
    planted = {
        0: ("exact", test[0]),
        1: ("flipped", test[1][:, ::-1]),
        2: ("near", np.clip(test[2].astype(int) + 35, 0, 255).astype(np.uint8)),  # brighter
        3: ("near", np.clip((test[3].astype(float) - 128) * 0.7 + 128, 0, 255).astype(np.uint8)),  # contrast
        4: ("near", _reencode(test[4], 50)),  # re-encoded JPEG
        5: ("flipped", _reencode(np.clip(test[5].astype(int) - 20, 0, 255).astype(np.uint8)[:, ::-1], 70)),
    }
    slots = [10, 40, 80, 120, 160, 200]
    for slot, (_, (_, img)) in zip(slots, planted.items(), strict=True):
        train[slot] = np.ascontiguousarray(img)
    pairs = find_duplicates({"train": _ds(train, "train"), "test": _ds(test, "test")})
    found = {(r.index_a, r.index_b): r.kind for r in pairs.itertuples()}
    expected = {(slot, k): kind for slot, (k, (kind, _)) in zip(slots, planted.items(), strict=True)}
    assert found == expected, pairs
    assert list(pairs.columns) == audit.COLUMNS
    table = summarize(pairs)
    assert table["pairs"].sum() == 6


def test_no_pairs_among_distinct_images():
    faces, _ = make_faces(400, seed=12)
    pairs = find_duplicates({"train": _ds(faces[:300], "train"), "val": _ds(faces[300:], "val")})
    assert pairs.empty, pairs
    assert summarize(pairs).empty


def test_phash_ignores_brightness_and_contrast():
    faces, _ = make_faces(5, seed=1)
    x = faces.astype(np.float64)
    small = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=(32, 32), mode="area")[:, 0].numpy()
    assert (phash(small) == phash(small * 0.6 + 40)).all()


def test_find_duplicates_works_at_any_size():
    faces, _ = make_faces(40, seed=4)
    big = torch.nn.functional.interpolate(torch.from_numpy(faces).float()[:, None], size=(64, 64),
                                          mode="bilinear").round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    train, test = big[:30].copy(), big[30:].copy()
    train[3] = test[1]
    pairs = find_duplicates({"train": _ds(train, "train"), "test": _ds(test, "test")})
    assert _found(pairs) == {("train", 3, "test", 1): "exact"}


# ---------------------------------------------------------------- the quality report


def _hand_built() -> dict[str, FaceDataset]:
    """Duplicates within and across splits, two label conflicts and blanks, all known."""
    faces, _ = make_faces(20, seed=3)
    train, val, test = faces[:10].copy(), faces[10:15].copy(), faces[15:].copy()
    y_train, y_val, y_test = [0] * 10, [0] * 5, [0] * 5
    test[0] = train[1]  # exact, train/test
    test[1] = val[0][:, ::-1]  # mirror image, val/test
    test[2] = _brighter(train[3])  # near, train/test...
    val[1] = test[2]  # ...and its exact copy in val: group {train3, val1, test2}
    val[2] = train[5]  # exact, train/val, with another label: a conflict
    y_val[2] = 3
    train[8] = train[7]  # exact within train, another label: a conflict
    y_train[8] = 5
    train[9] = 0  # blanks: black, black, grey
    val[4] = 0
    test[4] = 128
    return {"train": _ds(train, "train", y_train), "val": _ds(val, "val", y_val), "test": _ds(test, "test", y_test)}


def test_report_on_hand_built_case(tmp_path):
    splits = _hand_built()
    report = quality_report(splits, cache_dir=tmp_path)
    assert list(report.pairs.columns) == PAIR_COLUMNS
    assert _found(report.pairs) == {
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
    report = quality_report(_hand_built(), use_cache=False)
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
    report = quality_report(_hand_built(), use_cache=False)
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


def test_blanks_found_and_never_paired():
    faces, _ = make_faces(30, seed=5)
    train, val = faces[:20].copy(), faces[20:].copy()
    black, grey = np.zeros((48, 48), np.uint8), np.full((48, 48), 200, np.uint8)
    speck = black.copy()
    speck[20:26, 20:26] = 255  # 1.6% of the pixels: near-constant
    page = np.full((48, 48), 255, np.uint8)
    page[5:40:5, 4:44] = 200  # light lines of "text" on white: 15% of the pixels
    page[6:41:5, 4:44:3] = 200
    for k in (0, 1, 2):
        train[k] = black  # identical blanks pair with each other trivially
    train[3], train[4], train[5] = grey, speck, page
    train[6] = speck  # a second, identical near-constant image
    val[0], val[1] = black, page
    splits = {"train": _ds(train, "train"), "val": _ds(val, "val")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero on constant images
        report = quality_report(splits, use_cache=False)
    reasons = dict(zip(zip(report.blanks["split"], report.blanks["index"], strict=True), report.blanks["reason"],
                       strict=True))
    assert reasons == {("train", 0): "blank", ("train", 1): "blank", ("train", 2): "blank", ("train", 3): "blank",
                       ("train", 4): "near-constant", ("train", 5): "text-placeholder",
                       ("train", 6): "near-constant", ("val", 0): "blank", ("val", 1): "text-placeholder"}
    assert report.pairs.empty, report.pairs
    assert report.blanks.loc[report.blanks["reason"] == "blank", "std"].max() < 1


def test_constant_images_never_match_when_blank_detection_is_off():
    faces, _ = make_faces(10, seed=6)
    faces[0] = faces[1] = 0
    faces[2] = 90
    faces[4] = faces[3]  # a real copy: the pair search runs, and finds it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = quality_report({"train": _ds(faces, "train")}, use_cache=False, blank_std=0,
                                near_constant_flat=2, text_min_flat=2)
    assert report.blanks.empty
    # correlation with a constant image is undefined: never a match, though their hashes are equal
    assert _found(report.pairs) == {("train", 3, "train", 4): "exact"}, report.pairs
    assert report.pairs["correlation"].tolist() == [pytest.approx(1.0, abs=1e-5)]


def test_within_and_cross_split_planted_kinds():
    faces, _ = make_faces(200, seed=7)
    train, val, test = faces[:140].copy(), faces[140:170].copy(), faces[170:].copy()
    train[20] = train[4][:, ::-1]  # within train, mirror image
    train[30] = _reencode(train[9], 50)  # within train, re-encoded
    val[7] = val[2]  # within val, exact
    test[5] = _brighter(test[1])  # within test, brighter
    test[9] = _reencode(train[50][:, ::-1], 70)  # train/test, mirrored and re-encoded
    val[11] = _brighter(train[60])  # train/val, brighter
    splits = {"train": _ds(train, "train"), "val": _ds(val, "val"), "test": _ds(test, "test")}
    report = quality_report(splits, use_cache=False)
    assert _found(report.pairs) == {
        ("train", 4, "train", 20): "flipped", ("train", 9, "train", 30): "near", ("val", 2, "val", 7): "exact",
        ("test", 1, "test", 5): "near", ("train", 50, "test", 9): "flipped", ("train", 60, "val", 11): "near",
    }, report.pairs
    within = report.summary().query("split_a == split_b and pairs > 0")
    assert len(within) == 4


# ---------------------------------------------------------------- cache, size, settings


def test_cache_reused_then_invalidated(tmp_path, monkeypatch):
    splits = _hand_built()
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
    splits = _hand_built()
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
    report = quality_report(_hand_built(), use_cache=False)
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
    splits = {"train": _ds(faces, "train"), "test": _ds(big, "test")}
    with pytest.raises(ValueError, match=r"split 'test' is decoded at 64x64.*AUDIT_SIZE=48.*image_size=48"):
        quality_report(splits, use_cache=False)


def test_unknown_or_bad_setting_is_an_error():
    splits = {"train": _ds(make_faces(4, seed=9)[0], "train")}
    with pytest.raises(ValueError, match="unknown audit setting.*min_corr"):
        quality_report(splits, use_cache=False, min_corr=0.9)
    with pytest.raises(ValueError, match="min_correlation=2"):
        quality_report(splits, use_cache=False, min_correlation=2)


def test_settings_keyed_and_dataset_preset():
    faces, _ = make_faces(4, seed=9)
    report = quality_report({"train": _ds(faces, "train")}, use_cache=False)
    assert report.settings["audit_size"] == AUDIT_SIZE and report.settings["version"] == audit.VERSION
    assert report.settings["min_correlation"] == audit.DATASET_SETTINGS["synthetic"]["min_correlation"]
    photo = quality_report({"train": _ds(faces, "train", name="fer2013")}, use_cache=False)
    assert photo.settings["min_correlation"] == audit.DEFAULTS["min_correlation"]


# ---------------------------------------------------------------- the figure


def test_quality_examples_figure_covers_every_combination():
    splits = _hand_built()
    report = quality_report(splits, use_cache=False)
    fig = plots.quality_examples(report, splits, per_kind=2)
    titles = "\n".join(ax.get_title(loc="left") for ax in fig.get_axes())
    for r in report.summary().query("pairs > 0").itertuples():
        assert f"{r.split_a}/{r.split_b} {r.kind} r=" in titles
    assert "angry | happy" in titles  # labels in the captions
    assert titles.count("group ") == 2 and "blank std=0.0" in titles
    assert {s.get_suptitle().split(":")[0] for s in fig.subfigs} == {
        "duplicate pairs", "label conflicts", "blank images"}
    plt.close(fig)
    empty = QualityReport(pd.DataFrame(columns=PAIR_COLUMNS), pd.DataFrame(columns=audit.BLANK_COLUMNS),
                          {}, {}, 0.0)
    plt.close(plots.quality_examples(empty, {}))


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
    assert set(report.blanks["reason"]) <= set(audit.BLANK_REASONS)
