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
from resemote_lib.metrics import expected_calibration_error, fit_temperature, softmax
from resemote_lib.model import ResEmoteNet
from resemote_lib.predict import (
    FixedBoxes,
    Predictor,
    expand_box,
    predict_files,
    predict_video,
    to_rgb,
    write_results,
)

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
    results = list(predict_files(predictor, [tmp_path, tmp_path / "missing.png"]))
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
    rows = predict_video(predictor, str(path), every=2, smoothing=0.5, annotate=tmp_path / "annotated.mp4")
    assert [r["frame"] for r in rows] == [0, 2, 4]
    assert all(r["faces"] >= 1 for r in rows) and "p_happy" in rows[0]
    assert (tmp_path / "annotated.mp4").stat().st_size > 0
    with pytest.raises(FileNotFoundError):
        predict_video(predictor, str(tmp_path / "nope.mp4"))


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



def test_the_folder_datasets_face_crop_uses_the_predictors_defaults():
    """Whole photos are evaluated on the faces predict classifies: one detector and margin for
    both (data/faces.py), never two defaults that could drift apart."""
    import inspect

    from resemote_lib.data.folder import FaceCrop

    defaults = inspect.signature(Predictor).parameters
    crop = FaceCrop()
    assert (crop.detector, crop.margin) == (defaults["detector"].default, defaults["margin"].default)

# --- the predict command: every output checked first, written as it comes, nothing replaced -----------

def _predict(*argv) -> int:
    from resemote_lib.commands.cli import build_parser

    args = build_parser().parse_args(["predict", *map(str, argv)])
    from resemote_lib.predict import predict_command

    return predict_command(args)


def _faces(folder, names, seed=0):
    from resemote_lib.data.synthetic import make_faces

    for name, img in zip(names, make_faces(len(names), seed=seed)[0], strict=True):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / name)
    return folder


def _clip(path, frames=3, size=64):
    import cv2

    from resemote_lib.data.synthetic import make_faces

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))
    for img in make_faces(frames, seed=3)[0]:
        writer.write(cv2.cvtColor(cv2.resize(img, (size, size)), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_annotated_names_are_unique_and_existing_files_are_never_replaced(checkpoint, tmp_path, capsys):
    faces = _faces(tmp_path / "faces", ["a/x.png", "b/x.jpg", "x.png", "x.jpg"])
    assert _predict(checkpoint, faces, "--detector", "none", "--annotate", tmp_path / "ann") == 0
    written = sorted(str(p.relative_to(tmp_path / "ann")) for p in (tmp_path / "ann").rglob("*.jpg"))
    assert written == ["a/x_annotated.jpg", "b/x_annotated.jpg", "x_annotated-2.jpg", "x_annotated.jpg"]
    # files given directly: the same stem twice gets a counter
    assert _predict(checkpoint, faces / "a" / "x.png", faces / "b" / "x.jpg", "--detector", "none",
                    "--annotate", tmp_path / "ann2") == 0
    assert sorted(p.name for p in (tmp_path / "ann2").iterdir()) == ["x_annotated-2.jpg", "x_annotated.jpg"]
    before = {p: p.read_bytes() for p in (tmp_path / "ann").rglob("*.jpg")}
    with pytest.raises(FileExistsError, match=r"--annotate .*ann: 4 of the files .* already exist.*nothing was replaced"):
        _predict(checkpoint, faces, "--detector", "none", "--annotate", tmp_path / "ann")
    assert {p: p.read_bytes() for p in (tmp_path / "ann").rglob("*.jpg")} == before


def test_outputs_are_checked_before_the_model_is_loaded(checkpoint, tmp_path, monkeypatch):
    from resemote_lib.predict import command

    monkeypatch.setattr(command, "Predictor", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    faces = _faces(tmp_path / "faces", ["x.png"])
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OSError, match=r"--out .*file/out\.jsonl: cannot write there: .*file is a file, not a folder"):
        _predict(checkpoint, faces, "--out", tmp_path / "file" / "out.jsonl")
    with pytest.raises(ValueError, match=r"--out .*model\.pt is one of the inputs"):
        _predict(checkpoint, faces, "--out", checkpoint)
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(FileExistsError, match=r"--out .*other\.pt is an existing PyTorch file"):
        _predict(checkpoint, faces, "--out", tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"--annotate .*file is a file"):
        _predict(checkpoint, faces, "--annotate", tmp_path / "file")
    with pytest.raises(ValueError, match=r"--out .* is a folder"):
        _predict(checkpoint, faces, "--out", tmp_path)
    assert (tmp_path / "file").read_text() == "a file, not a folder"


def test_results_are_written_as_they_come(tmp_path):
    from resemote_lib.predict import Face, Result

    def results():
        for i in range(3):
            yield Result(source=f"img{i}.png", faces=[Face((0, 0, 4, 4), {"a": 0.75, "b": 0.25}, "a", 1.0)])
        raise RuntimeError("the machine went down")

    for name in ("r.jsonl", "r.csv"):
        with pytest.raises(RuntimeError):
            write_results(results(), tmp_path / name, class_names=["a", "b"])
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 3  # what was computed is kept
    assert (tmp_path / "r.csv").read_text().splitlines()[0].endswith("p_a,p_b")
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 4


def test_video_without_out_prints_its_frames_and_writes_nothing_in_the_working_directory(checkpoint, tmp_path,
                                                                                         monkeypatch, capsys):
    clip = _clip(tmp_path / "clip.mp4")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert _predict(checkpoint, clip, "--detector", "none") == 0
    assert list(work.iterdir()) == []
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("source,frame,time_s,faces,box,label,p_angry") and len(lines) == 4
    # with --annotate DIR that does not exist yet: created, the video and its frame table written there
    assert _predict(checkpoint, clip, "--detector", "none", "--annotate", tmp_path / "new" / "ann") == 0
    ann = tmp_path / "new" / "ann"
    assert (ann / "clip_annotated.mp4").stat().st_size > 0
    assert len((ann / "clip_frames.csv").read_text().splitlines()) == 4
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("temperature", [0, -1, float("nan"), float("inf"), 1e-300, 1e308])
def test_predictor_refuses_a_temperature_outside_the_sane_range(checkpoint, temperature):
    model = ResEmoteNet()
    model.class_names = tuple("abcdefg")
    with pytest.raises(ValueError, match=r"Predictor: temperature must be a number in \[0\.05, 20\]"):
        Predictor(model, detector=None, device="cpu", temperature=temperature)


def test_sixteen_bit_png_predicts_like_its_8_bit_twin(predictor, tmp_path):
    gray = np.asarray(Image.fromarray(skdata.astronaut()).convert("L"))
    Image.fromarray(gray).save(tmp_path / "g8.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    assert np.array_equal(to_rgb(tmp_path / "g16.png"), to_rgb(tmp_path / "g8.png"))


def test_folders_skip_hidden_files_such_as_macos_copies(tmp_path):
    from resemote_lib.predict import iter_image_files

    faces = _faces(tmp_path / "faces", ["x.png", "sub/y.jpg"])
    (faces / "._x.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (faces / ".thumbnails").mkdir()
    Image.new("L", (4, 4)).save(faces / ".thumbnails" / "x.png")
    assert [p.relative_to(faces).as_posix() for p in iter_image_files([faces])] == ["sub/y.jpg", "x.png"]
    assert list(iter_image_files([faces / "._x.png"])) == [faces / "._x.png"]  # named explicitly: tried, reported


def test_exif_orientation_turns_phone_photos_upright(checkpoint, tmp_path):
    """A phone stores a portrait photo sideways with an EXIF Orientation tag; the model must
    see it as a viewer shows it (issue 24.8)."""
    upright = np.zeros((40, 20, 3), np.uint8)
    upright[:10] = 255  # a white band at the top
    sideways = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 20 high, 40 wide, band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    assert Image.open(tmp_path / "phone.jpg").size == (40, 20)
    rgb = to_rgb(tmp_path / "phone.jpg")
    assert rgb.shape == (40, 20, 3)
    assert rgb[:8].mean() > 200 and rgb[12:].mean() < 50
    assert np.array_equal(to_rgb(Image.open(tmp_path / "phone.jpg")), rgb)
    result = next(predict_files(Predictor(checkpoint, detector=None, device="cpu"), [tmp_path / "phone.jpg"]))
    assert result.faces[0].box == (0, 0, 20, 40)  # the whole upright picture went to the model


@pytest.mark.realdata
@pytest.mark.slow
def test_predict_on_real_test_images_agrees_with_evaluate(real_fer2013, tmp_path):
    """400 real FER2013 PrivateTest files through `evaluate` (the FER2013 loader's decoding) and
    through the Predictor with the detector off (a file is a face crop) give the same labels, and
    probabilities within 1e-4: one preprocessing for both. The model is the `cnn` variant after
    one epoch on 2,048 real faces of the CPU-budget recipe (it still calls most faces happy): its
    probabilities vary from face to face by far more than the tolerance, so that agreeing within it
    means the same pixels went in."""
    from resemote_lib import runs
    from resemote_lib.checkpoint import load_model
    from resemote_lib.evaluate import evaluate
    from resemote_lib.params import load_params
    from resemote_lib.train import fit

    if not (real_fer2013 / "test").is_dir():
        pytest.skip("this test reads the Kaggle folder layout's test/ files; the data here is fer2013.csv")
    cfg = load_params(paths.PARAMS / "fer2013_cpu.yaml", data_root=str(real_fer2013), model="cnn",
                      max_train_items=2048, epochs=1, results_dir=str(tmp_path / "results"), run_name="agree",
                      tta_flip=False)
    checkpoint = fit(cfg, progress=False).selected_checkpoint
    test = runs.select(runs.open_split(cfg, "test"), list(range(0, 3589, 8))[:400])
    probs = evaluate(load_model(checkpoint), test, tta=False).extra["probs"]
    expected = [test.class_names[k] for k in probs.argmax(1)]
    files = [real_fer2013 / "test" / item for item in test.ids]  # ids are <class folder>/<file name>
    got = list(predict_files(Predictor(checkpoint, detector=None), files))
    assert len(test) == 400 and [r.error for r in got] == [None] * 400 and all(len(r.faces) == 1 for r in got)
    assert [r.faces[0].label for r in got] == expected
    assert np.abs(probs - probs.mean(0)).max() > 100 * 1e-4  # faces differ by >= 100x the tolerance below
    diff = max(abs(r.faces[0].probs[name] - float(p[k])) for r, p in zip(got, probs, strict=True)
               for k, name in enumerate(test.class_names))
    assert diff < 1e-4


def test_probabilities_that_are_not_finite_are_refused_never_written(tmp_path, capsys):
    """A model whose logits overflow gives NaN probabilities: predicting is an error naming the
    cause, and no writer prints bare NaN (invalid JSON) for ``--out -`` (issue 31.2)."""
    from resemote_lib.model import build_model
    from resemote_lib.predict import Face, Result, ResultWriter

    model = build_model("cnn")
    with torch.no_grad():
        model.fc4.bias.fill_(float("inf"))
    model.class_names, model.image_size = tuple("abcdefg"), 32
    predictor = Predictor(model, detector=None, device="cpu")
    with pytest.raises(ValueError, match=r"the model's probabilities for 1 face\(s\) are not finite \(NaN or inf\)"):
        predictor.predict(np.zeros((32, 32), np.uint8))
    nan = Result("x.png", [Face((0, 0, 4, 4), dict.fromkeys("abcdefg", float("nan")), "a", 1.0)])
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        ResultWriter("-", tuple("abcdefg")).write(nan)
    assert "NaN" not in capsys.readouterr().out


def test_videos_in_a_folder_are_named_by_the_image_iterator_never_skipped_without_a_word(tmp_path, caplog):
    """``iter_image_files`` yields images; the videos of a folder are counted in one warning
    (``predict_command`` reads them, as predict does a video given directly: issue 31.6)."""
    from resemote_lib.predict import iter_image_files

    faces = _faces(tmp_path / "faces", ["x.png"])
    for name in ("clip.mp4", "sub/b.MOV", "._clip.mp4"):
        (faces / name).parent.mkdir(exist_ok=True)
        (faces / name).write_bytes(b"")
    with caplog.at_level("WARNING", logger="resemote_lib.predict"):
        assert list(iter_image_files([faces])) == [faces / "x.png"]
    assert f"{faces}: 2 video(s) skipped (predict_video reads videos; the predict command reads them too)" in caplog.text


def test_predictor_explorer_evaluation_and_export_use_the_models_own_preprocessing(tmp_path):
    """A checkpoint whose record names another mean/std (``load_model`` sets ``model.preprocess``)
    is fed that preprocessing by every path that feeds it, not resemote's EVAL."""
    from resemote_lib.data.base import FaceDataset
    from resemote_lib.data.synthetic import make_faces
    from resemote_lib.data.transforms import EVAL, Preset
    from resemote_lib.evaluate import evaluate
    from resemote_lib.inference import predict_logits
    from resemote_lib.labels import CLASS_NAMES
    from resemote_lib.model import build_model
    from resemote_lib.predict.export import Deployable
    from resemote_lib.reports.explain import layer_cam
    from resemote_lib.reports.explore import cams, predict_image, predictions

    torch.manual_seed(0)
    model = build_model("cnn", image_size=48).eval()
    model.class_names, model.image_size = CLASS_NAMES, 48
    with torch.no_grad():
        model.fc4.weight.mul_(100)  # at initialisation every face gets nearly the same output
    model.preprocess = Preset("released-eval", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    faces, labels = make_faces(6, seed=1)[:2]
    images = torch.from_numpy(faces)[:, None]
    own = predict_logits(model, images, preprocess=model.preprocess).softmax(1).numpy()
    evals = predict_logits(model, images, preprocess=EVAL).softmax(1).numpy()
    assert np.abs(own - evals).max() > 1e-3  # the two preprocessings give different answers here

    by_predictor = Predictor(model, detector=None).predict_batch(list(faces))
    got = np.array([[r.faces[0].probs[n] for n in CLASS_NAMES] for r in by_predictor])
    np.testing.assert_allclose(got, own, atol=2e-6)  # Face.probs are rounded to 6 decimals
    ds = FaceDataset(images, torch.as_tensor(labels), [str(i) for i in range(6)], name="synthetic", split="test",
                     layout="arrays", root=tmp_path)
    np.testing.assert_allclose(predictions(model, ds)["confidence"], own.max(1), atol=1e-6)
    np.testing.assert_allclose(predict_image(model, faces[0], 48)[0], own[0], atol=1e-6)
    np.testing.assert_allclose(evaluate(model, ds, tta=False).extra["probs"], own, atol=1e-6)
    cam = cams(model, ds, [0])[0]
    assert np.allclose(cam, layer_cam(model, model.preprocess(images[0]))[0])
    assert not np.allclose(cam, layer_cam(model, EVAL(images[0]))[0])
    with torch.inference_mode():
        deployed = Deployable(model)(images.float())[1].numpy()
    np.testing.assert_allclose(deployed, own, atol=1e-5)
