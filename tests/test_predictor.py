"""The ``Predictor`` (resemote_lib/predict/predictor.py): faces found, cropped, preprocessed as
evaluation does and classified, with the model's calibration, one by one or in a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata

from resemote_lib import paths
from resemote_lib.checkpoint import read_checkpoint, set_checkpoint_meta
from resemote_lib.model import ResEmoteNet
from resemote_lib.predict import FixedBoxes, Predictor, expand_box, predict_files

ASTRONAUT_FACE = (180, 40, 260, 140)  # x0, y0, x1, y1 of Eileen Collins' face in skimage's sample


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


def test_no_detector_and_given_boxes(checkpoint):
    crop = skdata.astronaut()[30:150, 170:270]
    whole = Predictor(checkpoint, detector=None, device="cpu").predict(crop, color="rgb").faces
    assert len(whole) == 1 and whole[0].box == (0, 0, 100, 120)
    boxes = Predictor(checkpoint, detector=FixedBoxes([(170, 30, 100, 120), (0, 0, 50, 50)]),
                      device="cpu").predict(skdata.astronaut(), color="rgb").faces
    assert [f.box for f in boxes] == [(170, 30, 100, 120), (0, 0, 50, 50)]
    assert expand_box((10, 10, 20, 20), 0.5, 35, 100) == (0, 0, 35, 40)


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


@pytest.mark.parametrize("temperature", [0, -1, float("nan"), float("inf"), 1e-300, 1e308])
def test_predictor_refuses_a_temperature_outside_the_sane_range(temperature):
    model = ResEmoteNet()
    model.class_names = tuple("abcdefg")
    with pytest.raises(ValueError, match=r"Predictor: temperature must be a number in \[0\.05, 20\]"):
        Predictor(model, detector=None, device="cpu", temperature=temperature)


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
