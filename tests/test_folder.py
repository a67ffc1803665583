"""Any labelled folder (``resemote_lib/data/folder.py``): class folders by any synonym, the
evaluation-set and train/test layouts, ``crop_faces``, and folder oddities (links, nesting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from resemote_lib.data import open_dataset, open_splits
from resemote_lib.labels import CLASS_NAMES


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


# --- issue 31: detector threads, folder oddities --------------------------------------------

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
