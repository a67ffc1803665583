from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from resemote_lib.data import duplicates
from resemote_lib.data.duplicates import BLANK_COLUMNS, PAIR_COLUMNS, phash, search
from resemote_lib.data.synthetic import make_faces

from .planted import brighter, found, reencode, split


def test_finds_every_planted_copy_and_no_false_pairs():
    # 300 distinct faces; all 7 classes, so many look alike (same expression, similar pose).
    faces, _ = make_faces(300, seed=11)
    train, test = faces[:240].copy(), faces[240:].copy()
    planted = {
        0: ("exact", test[0]),
        1: ("flipped", test[1][:, ::-1]),
        2: ("near", np.clip(test[2].astype(int) + 35, 0, 255).astype(np.uint8)),  # brighter
        3: ("near", np.clip((test[3].astype(float) - 128) * 0.7 + 128, 0, 255).astype(np.uint8)),  # contrast
        4: ("near", reencode(test[4], 50)),  # re-encoded JPEG
        5: ("flipped", reencode(np.clip(test[5].astype(int) - 20, 0, 255).astype(np.uint8)[:, ::-1], 70)),
    }
    slots = [10, 40, 80, 120, 160, 200]
    for slot, (_, (_, img)) in zip(slots, planted.items(), strict=True):
        train[slot] = np.ascontiguousarray(img)
    pairs, blanks = search({"train": split(train, "train"), "test": split(test, "test")}, within=False)
    pairs_found = {(r.index_a, r.index_b): r.kind for r in pairs.itertuples()}
    expected = {(slot, k): kind for slot, (k, (kind, _)) in zip(slots, planted.items(), strict=True)}
    assert pairs_found == expected, pairs
    assert list(pairs.columns) == PAIR_COLUMNS and list(blanks.columns) == BLANK_COLUMNS and blanks.empty


def test_no_pairs_among_distinct_images():
    faces, _ = make_faces(400, seed=12)
    pairs, _ = search({"train": split(faces[:300], "train"), "val": split(faces[300:], "val")}, within=False)
    assert pairs.empty, pairs


def test_phash_ignores_brightness_and_contrast():
    faces, _ = make_faces(5, seed=1)
    x = faces.astype(np.float64)
    small = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=(32, 32), mode="area")[:, 0].numpy()
    assert (phash(small) == phash(small * 0.6 + 40)).all()


def test_search_works_at_any_size():
    faces, _ = make_faces(40, seed=4)
    big = torch.nn.functional.interpolate(torch.from_numpy(faces).float()[:, None], size=(64, 64),
                                          mode="bilinear").round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    train, test = big[:30].copy(), big[30:].copy()
    train[3] = test[1]
    pairs, _ = search({"train": split(train, "train"), "test": split(test, "test")}, within=False)
    assert found(pairs) == {("train", 3, "test", 1): "exact"}


def test_within_and_cross_split_planted_kinds():
    faces, _ = make_faces(200, seed=7)
    train, val, test = faces[:140].copy(), faces[140:170].copy(), faces[170:].copy()
    train[20] = train[4][:, ::-1]  # within train, mirror image
    train[30] = reencode(train[9], 50)  # within train, re-encoded
    val[7] = val[2]  # within val, exact
    test[5] = brighter(test[1])  # within test, brighter
    test[9] = reencode(train[50][:, ::-1], 70)  # train/test, mirrored and re-encoded
    val[11] = brighter(train[60])  # train/val, brighter
    splits = {"train": split(train, "train"), "val": split(val, "val"), "test": split(test, "test")}
    pairs, _ = search(splits)
    assert found(pairs) == {
        ("train", 4, "train", 20): "flipped", ("train", 9, "train", 30): "near", ("val", 2, "val", 7): "exact",
        ("test", 1, "test", 5): "near", ("train", 50, "test", 9): "flipped", ("train", 60, "val", 11): "near",
    }, pairs


def test_within_false_keeps_only_the_pairs_across_splits():
    faces, _ = make_faces(60, seed=10)
    train, test = faces[:40].copy(), faces[40:].copy()
    train[7] = train[2]  # within train
    test[3] = test[0]  # within test
    train[30] = test[9]  # across
    splits = {"train": split(train, "train", list(range(7)) * 5 + [0] * 5), "test": split(test, "test", [3] * 20)}
    both = search(splits)[0]
    assert found(both) == {("train", 2, "train", 7): "exact", ("test", 0, "test", 3): "exact",
                           ("train", 30, "test", 9): "exact"}, both
    cross = search(splits, within=False)[0]
    assert found(cross) == {("train", 30, "test", 9): "exact"}, cross
    # each side described from its own split: id, index and label (class name)
    assert cross[["id_a", "label_a", "id_b", "label_b"]].values.tolist() == [["train30", "fear", "test9", "happy"]]


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
    splits = {"train": split(train, "train"), "val": split(val, "val")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero on constant images
        pairs, blanks = search(splits)
    reasons = dict(zip(zip(blanks["split"], blanks["index"], strict=True), blanks["reason"], strict=True))
    assert reasons == {("train", 0): "blank", ("train", 1): "blank", ("train", 2): "blank", ("train", 3): "blank",
                       ("train", 4): "near-constant", ("train", 5): "text-placeholder",
                       ("train", 6): "near-constant", ("val", 0): "blank", ("val", 1): "text-placeholder"}
    assert pairs.empty, pairs
    assert blanks.loc[blanks["reason"] == "blank", "std"].max() < 1


def test_constant_images_never_match_when_blank_detection_is_off():
    faces, _ = make_faces(10, seed=6)
    faces[0] = faces[1] = 0
    faces[2] = 90
    faces[4] = faces[3]  # a real copy: the pair search runs, and finds it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pairs, blanks = search({"train": split(faces, "train")}, blank_std=0, near_constant_flat=2, text_min_flat=2)
    assert blanks.empty
    # correlation with a constant image is undefined: never a match, though their hashes are equal
    assert found(pairs) == {("train", 3, "train", 4): "exact"}, pairs
    assert pairs["correlation"].tolist() == [pytest.approx(1.0, abs=1e-5)]


def test_splits_decoded_at_different_sizes_are_an_error():
    faces, _ = make_faces(6, seed=8)
    big = np.repeat(np.repeat(faces, 2, axis=1), 2, axis=2)  # 96x96
    with pytest.raises(ValueError, match=r"different sizes.*train=\(48, 48\), test=\(96, 96\).*one image_size"):
        search({"train": split(faces, "train"), "test": split(big, "test")})


def test_settings_are_the_defaults_then_the_dataset_preset_then_the_callers():
    faces, _ = make_faces(4, seed=9)
    photos = {"train": split(faces, "train", dataset="fer2013")}
    assert duplicates.resolve_settings(photos, {}) == duplicates.DEFAULTS
    cartoons = duplicates.resolve_settings({"train": split(faces, "train")}, {"max_hamming": 3})
    assert cartoons == {**duplicates.DEFAULTS, **duplicates.DATASET_SETTINGS["synthetic"], "max_hamming": 3}
    with pytest.raises(ValueError, match="unknown audit setting.*min_corr"):
        search(photos, min_corr=0.9)
    with pytest.raises(ValueError, match="max_hamming=70: expected 0..64"):
        search(photos, max_hamming=70)
