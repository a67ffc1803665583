from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from resemote_lib import paths
from resemote_lib.checkpoint import read_checkpoint, save_checkpoint, set_checkpoint_meta
from resemote_lib.data.base import to_gray_square
from resemote_lib.evaluate import expected_calibration_error, fit_temperature, softmax
from resemote_lib.export import export
from resemote_lib.model import ResEmoteNet
from resemote_lib.predict import FixedBoxes, Predictor, expand_box, to_rgb, write_results

ASTRONAUT_FACE = (180, 40, 260, 140)  # x0, y0, x1, y1 of Eileen Collins' face in skimage's sample


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, ResEmoteNet(), image_size=48)
    yield path
    shutil.rmtree(path.parent)  # 321 MB: not kept for the rest of the session


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor(checkpoint, device="cpu")


def _inside(box, region, slack=30):
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    x0, y0, x1, y1 = region
    return x0 - slack <= cx <= x1 + slack and y0 - slack <= cy <= y1 + slack


def test_haar_finds_the_face_in_a_real_photograph(predictor):
    result = predictor.predict(skdata.astronaut(), color="rgb")
    assert result.faces, "no face found in skimage's astronaut()"
    face = max(result.faces, key=lambda f: f.box[2] * f.box[3])
    assert _inside(face.box, ASTRONAUT_FACE)
    assert set(face.probs) == set(predictor.class_names) and abs(sum(face.probs.values()) - 1) < 1e-4
    assert face.label == max(face.probs, key=face.probs.get)


def test_haar_finds_the_face_in_a_synthetic_frame(predictor):
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame += np.random.default_rng(0).integers(0, 20, frame.shape, dtype=np.uint8)
    face = skdata.astronaut()[20:170, 160:290]  # the face with some context
    frame[150:300, 400:530] = face
    faces = predictor.predict(frame, color="rgb").faces
    assert any(_inside(f.box, (400 + 20, 150 + 20, 400 + 100, 150 + 120)) for f in faces)


def test_bgr_is_converted_and_colour_order_must_be_stated(predictor):
    rgb = skdata.astronaut()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    assert np.array_equal(to_rgb(bgr, "bgr"), rgb)
    a = predictor.predict(rgb, color="rgb").faces
    b = predictor.predict(bgr, color="bgr").faces
    assert [f.box for f in a] == [f.box for f in b] and [f.probs for f in a] == [f.probs for f in b]
    with pytest.raises(ValueError, match="color='rgb' or color='bgr'"):
        predictor.predict(rgb)
    # A pure red picture is red, whichever order it arrives in: luma 76, not blue's 29.
    red_bgr = np.zeros((10, 10, 3), np.uint8)
    red_bgr[..., 2] = 255
    assert to_gray_square(Image.fromarray(to_rgb(red_bgr, "bgr")), 4)[0, 0] == 76
    assert to_gray_square(Image.fromarray(to_rgb(red_bgr, "rgb")), 4)[0, 0] == 29


def test_no_detector_and_given_boxes(checkpoint):
    crop = skdata.astronaut()[30:150, 170:270]
    whole = Predictor(checkpoint, detector=None, device="cpu").predict(crop, color="rgb").faces
    assert len(whole) == 1 and whole[0].box == (0, 0, 100, 120)
    boxes = Predictor(checkpoint, detector=FixedBoxes([(170, 30, 100, 120), (0, 0, 50, 50)]),
                      device="cpu").predict(skdata.astronaut(), color="rgb").faces
    assert [f.box for f in boxes] == [(170, 30, 100, 120), (0, 0, 50, 50)]
    assert expand_box((10, 10, 20, 20), 0.5, 35, 100) == (0, 0, 35, 40)


def test_folder_with_a_corrupt_and_a_missing_file_carries_on(predictor, tmp_path):
    Image.fromarray(skdata.astronaut()).save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    results = list(predictor.predict_many([tmp_path, tmp_path / "missing.png"]))
    by_name = {r.source.split("/")[-1]: r for r in results}
    assert set(by_name) == {"a.jpg", "b.jpg", "missing.png"}
    assert by_name["a.jpg"].faces and by_name["a.jpg"].error is None
    assert "not a readable image" in by_name["b.jpg"].error
    assert by_name["missing.png"].error == "file not found"
    lines = write_results(results, tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["faces"]
    csv_text = write_results(results, tmp_path / "out.csv").read_text()
    assert "file not found" in csv_text


def test_video_frames_with_smoothing_and_annotation(predictor, tmp_path):
    import cv2

    path = tmp_path / "clip.mp4"
    frame = np.ascontiguousarray(skdata.astronaut()[:, :, ::-1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512))
    for k in range(6):
        writer.write(np.roll(frame, 3 * k, axis=1))
    writer.release()
    rows = predictor.predict_video(str(path), every=2, smoothing=0.5, annotate=tmp_path / "annotated.mp4")
    assert [r["frame"] for r in rows] == [0, 2, 4]
    assert all(r["faces"] >= 1 for r in rows) and "p_happy" in rows[0]
    assert (tmp_path / "annotated.mp4").stat().st_size > 0
    with pytest.raises(FileNotFoundError):
        predictor.predict_video(str(tmp_path / "nope.mp4"))


def test_temperature_scaling_reduces_ece_on_a_synthetic_validation_split():
    rng = np.random.default_rng(0)
    n, c = 4000, 7
    y = rng.integers(0, c, n)
    correct = rng.random(n) < 0.6  # a 60%-accurate classifier...
    pred = np.where(correct, y, rng.integers(0, c, n))
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), pred] += 6.0  # ...that is far too sure of itself
    val, test = slice(0, 2000), slice(2000, None)
    t = fit_temperature(logits[val], y[val])
    before = expected_calibration_error(softmax(logits[test]), y[test])
    after = expected_calibration_error(softmax(logits[test], t), y[test])
    assert t > 1.5 and after < before / 2
    assert (softmax(logits[test], t).argmax(1) == softmax(logits[test]).argmax(1)).all()


def test_predictor_applies_the_checkpoint_temperature(checkpoint, tmp_path):
    hot = tmp_path / "hot.pt"
    hot.write_bytes(checkpoint.read_bytes())
    set_checkpoint_meta(hot, temperature=5.0)
    assert read_checkpoint(hot)["meta"]["temperature"] == 5.0
    crop = skdata.astronaut()[30:150, 170:270]
    p1 = Predictor(checkpoint, detector=None, device="cpu").predict(crop, color="rgb").faces[0].probs
    p5 = Predictor(hot, detector=None, device="cpu").predict(crop, color="rgb").faces[0].probs
    assert max(p5.values()) < max(p1.values())  # flatter, same ranking
    assert max(p5, key=p5.get) == max(p1, key=p1.get)


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_export_matches_pytorch(checkpoint, tmp_path, suffix):
    report = export(checkpoint, tmp_path / f"model{suffix}")
    assert report["max_abs_diff"] < 1e-4
    assert report["input"].startswith("float32 (N, 1, 48, 48)")


@pytest.mark.slow
def test_cli_end_to_end_on_synthetic_data(tmp_path):
    env_run = lambda *a: subprocess.run([sys.executable, "-m", "resemote_lib", *map(str, a)],  # noqa: E731
                                        capture_output=True, text=True, timeout=900)
    results = tmp_path / "results"
    out = env_run("train", paths.PARAMS / "smoke.yaml", f"results_dir={results}", "run_name=cli")
    assert out.returncode == 0, out.stderr[-2000:]
    out = env_run("evaluate", results / "cli")
    assert out.returncode == 0 and "accuracy" in out.stdout, out.stderr[-2000:]
    faces = tmp_path / "faces"
    faces.mkdir()
    from resemote_lib.data.synthetic import make_faces
    for i, img in enumerate(make_faces(3, seed=9)[0]):
        Image.fromarray(img).save(faces / f"face{i}.png")
    out = env_run("predict", results / "cli" / "best.pt", faces, "--detector", "none", "--out", tmp_path / "p.jsonl")
    assert out.returncode == 0, out.stderr[-2000:]
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3
    (faces / "broken.png").write_bytes(b"nope")
    out = env_run("predict", results / "cli" / "best.pt", faces, "--detector", "none")
    assert out.returncode == 1 and "broken.png: not a readable image" in out.stderr
    out = env_run("export", results / "cli" / "best.pt", tmp_path / "m.onnx")
    assert out.returncode == 0 and "max |exported - PyTorch|" in out.stdout
    out = env_run("predict", tmp_path / "missing.pt", faces)
    assert out.returncode == 2 and "checkpoint not found" in out.stderr
    out = env_run("--help")
    assert out.returncode == 0 and "predict" in out.stdout


def test_batch_prediction_equals_one_by_one(predictor, tmp_path):
    rgb = skdata.astronaut()
    crops = [rgb, np.ascontiguousarray(rgb[:, ::-1]), rgb[100:400, 100:400]]
    batch = predictor.predict_batch(crops, color="rgb")
    for img, r in zip(crops, batch, strict=True):
        single = predictor.predict(img, color="rgb")
        assert [f.box for f in r.faces] == [f.box for f in single.faces]
        for a, b in zip(r.faces, single.faces, strict=True):
            assert max(abs(a.probs[k] - b.probs[k]) for k in a.probs) < 1e-4
