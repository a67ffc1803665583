"""Export to ONNX and TorchScript: the exported model matches PyTorch, the exported graph gives
the probabilities the library's own preprocessing gives, and an export never replaces a file it
was not asked to (issue 24.5)."""

from __future__ import annotations

import os
import subprocess
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from torch import nn

from resemote_lib.checkpoint import load_model, save_checkpoint
from resemote_lib.data.base import Items, to_gray_square
from resemote_lib.data.cache import decode_items
from resemote_lib.data.synthetic import make_faces
from resemote_lib.data.transforms import EVAL, IMAGENET_MEAN, Preset
from resemote_lib.inference import predict_logits
from resemote_lib.labels import CLASS_NAMES
from resemote_lib.model import build_model
from resemote_lib.predict.export import check_output, export, is_our_export


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The cnn variant at 32 px (6 MB): exports in about a second."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    return save_checkpoint(path, build_model("cnn"), image_size=32, config={"model": "cnn", "image_size": 32})


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_export_matches_pytorch(checkpoint, tmp_path, suffix):
    report = export(checkpoint, tmp_path / f"model{suffix}")
    assert report["max_abs_diff"] < 1e-4
    assert report["input"].startswith("float32 (N, 1, 48, 48)")


def test_export_refuses_its_input_and_existing_checkpoints(tiny, tmp_path, monkeypatch):
    from resemote_lib.predict import export as export_module

    link = tmp_path / "link.pt"
    link.symlink_to(tiny)
    for same in (tiny, tiny.parent / ".." / tiny.parent.name / tiny.name, link):
        with pytest.raises(ValueError, match="is the input checkpoint"):
            export(tiny, same)
        with pytest.raises(ValueError, match="is the input checkpoint"):
            check_output(tiny, same, overwrite=True)  # not even when asked
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "optimizer": {}}, other)  # e.g. someone's training state
    with pytest.raises(FileExistsError, match=r"other\.pt already exists and is a PyTorch checkpoint.*--force"):
        export(tiny, other)
    assert check_output(tiny, other, overwrite=True) == other
    with pytest.raises(ValueError, match="unknown export format '.pth'"):
        export(tiny, tmp_path / "m.pth")
    # a replacement is atomic: a failing export leaves the file as it was, and no temporary file
    (tmp_path / "m.onnx").write_bytes(b"what was there")
    monkeypatch.setattr(export_module, "_write", lambda *a: (_ for _ in ()).throw(RuntimeError("exporter crashed")))
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export(tiny, tmp_path / "m.onnx", overwrite=True)
    assert (tmp_path / "m.onnx").read_bytes() == b"what was there"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.pt", "m.onnx", "other.pt"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning",
                            "ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning",
                            "ignore:The feature will be removed:DeprecationWarning")  # the foreign model's export
def test_only_an_earlier_export_of_ours_is_replaced_without_force(tiny, tmp_path):
    for name in ("m.onnx", "m.pt"):
        export(tiny, tmp_path / name)
        assert is_our_export(tmp_path / name)
        export(tiny, tmp_path / name)  # an earlier export of ours: replaced
    foreign_onnx, foreign_ts = tmp_path / "yunet.onnx", tmp_path / "scripted.pt"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(foreign_onnx), input_names=["input"],
                      dynamo=False)
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(foreign_ts))
    (tmp_path / "notes.onnx").write_text("where I got the model from")
    for path, what in ((foreign_onnx, "an ONNX model of another network"),
                       (foreign_ts, "a TorchScript model of another network"), (tmp_path / "notes.onnx", "a text file")):
        assert not is_our_export(path)
        before = path.read_bytes()
        with pytest.raises(FileExistsError, match=rf"{path.name} already exists and is not an export of ours "
                                                  rf"\({what}\); refusing to replace it.*--force"):
            export(tiny, path)
        assert path.read_bytes() == before
    export(tiny, foreign_onnx, overwrite=True)  # --force
    assert is_our_export(foreign_onnx)
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert check_output(tiny, tmp_path / "empty.onnx") == tmp_path / "empty.onnx"  # nothing to lose


def test_a_killed_exports_temporary_file_is_removed_by_the_next_export(tiny, tmp_path, caplog):
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed = tmp_path / f".m.onnx.{dead.pid}.k1ll3d_x.tmp.onnx"  # what SIGKILL mid-export leaves
    running = tmp_path / f".m.onnx.{os.getpid()}.running_.tmp.onnx"  # a live process's: not touched
    other = tmp_path / f".n.onnx.{dead.pid}.k1ll3d_x.tmp.onnx"  # another output's: not touched
    for path in (killed, running, other):
        path.write_bytes(b"half an export")
    with caplog.at_level("WARNING", logger="resemote_lib.predict.export"):
        export(tiny, tmp_path / "m.onnx")
    assert f"removed 1 temporary file(s) left by an interrupted export: {killed.name}" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, running.name, "m.onnx"])


def _with_temperature(monkeypatch, temperature: float) -> None:
    """``load_model`` as export calls it, its model given ``temperature`` past every check."""
    from resemote_lib.predict import export as export_module

    load = export_module.load_model

    def load_with(path, *args, **kwargs):
        model = load(path, *args, **kwargs)
        model.temperature = temperature
        return model

    monkeypatch.setattr(export_module, "load_model", load_with)


@pytest.mark.parametrize("suffix", [".onnx", ".pt"])
def test_nan_probabilities_are_never_verified(tiny, tmp_path, monkeypatch, suffix):
    """A temperature of 1e-300 makes every probability NaN, and "max |exported - PyTorch| = nan"
    is no agreement: the export fails and writes nothing (issue 31.2)."""
    _with_temperature(monkeypatch, 1e-300)
    with pytest.raises(ValueError, match=r"tiny\.pt: the model's probabilities are not finite \(NaN or inf\) at "
                                         r"temperature 1e-300; nothing was exported"):
        export(tiny, tmp_path / f"m{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_disagrees_with_pytorch_fails(tiny, tmp_path, monkeypatch):
    from resemote_lib.predict import export as export_module
    from resemote_lib.usage import WorkFailed

    run = export_module.run_exported
    for broken in (lambda p, x: run(p, x) + 0.01, lambda p, x: run(p, x) * float("nan")):
        monkeypatch.setattr(export_module, "run_exported", broken)
        with pytest.raises(WorkFailed, match=r"m\.onnx: the exported model's probabilities differ from PyTorch's by "
                                             r"(0\.01|nan) \(more than 0\.0001\); nothing was exported"):
            export(tiny, tmp_path / "m.onnx")
        assert list(tmp_path.iterdir()) == []


def test_an_export_made_before_export_py_moved_into_predict_is_still_replaced_without_force(tiny, tmp_path):
    """A TorchScript archive stores its code under the module's path: exports written while the
    module was ``resemote_lib/export.py`` hold ``__torch__/resemote_lib/export.py``; they are ours."""
    export(tiny, tmp_path / "new.pt")
    old = tmp_path / "old.pt"
    with zipfile.ZipFile(tmp_path / "new.pt") as new, zipfile.ZipFile(old, "w") as out:
        for name in new.namelist():
            out.writestr(name.replace("resemote_lib/predict/export", "resemote_lib/export"), new.read(name))
    with zipfile.ZipFile(old) as z:
        assert not any("predict/export" in name for name in z.namelist())
    assert is_our_export(old)
    export(tiny, old)  # replaced without --force
    assert is_our_export(old)


# --- the exported graph against the library's own preprocessing -------------------------------
# Export's own check compares the exported file with the wrapper it was traced from, so a wrong
# mean, std or scale in the wrapper agrees with itself. These compare the ONNX graph, run by ONNX
# Runtime, with softmax(inference.predict_logits), the path evaluation and the Predictor take.
#
# Tolerance: the two agree to about 1e-7 here (float32: the library computes x * 1/(255 std) -
# mean/std, the graph (x / 255 - mean) / std, and the kernels differ); other CPUs and ONNX Runtime
# builds sum in other orders, about 1e-6 (export.VERIFY_TOLERANCE's note). 1e-5 is ten times that.
# The model below is made to notice a preprocessing error: an error of one gray level in the mean
# (1/255, the least an 8-bit pipeline can make) must move its probabilities by ten times the
# tolerance, else the comparison could not fail and the test says so.
TOLERANCE = 1e-5


def _responsive_model(images: torch.Tensor) -> nn.Module:
    """The cnn variant at 48 px with random weights, made to respond to faces as a trained one
    does: its BatchNorm statistics those of ``images`` (as training sets them; at initialisation
    they are 0 and 1, and every face gets nearly the same output), its last layer scaled by 10 so
    the probabilities are not all near 1/7. Class names as checkpoints record them."""
    torch.manual_seed(0)
    model = build_model("cnn", image_size=48).eval()  # dropout off while the statistics are taken
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average: one pass gives the batch's statistics
            norm.train()
        model(EVAL(images))
        model.eval()
        model.fc4.weight.mul_(10)
    model.class_names = CLASS_NAMES
    return model


def _assert_onnx_gives_the_librarys_probabilities(images: torch.Tensor, tmp_path) -> None:
    """``images``: uint8 ``(N, 1, 48, 48)`` gray faces."""
    import onnxruntime

    checkpoint = save_checkpoint(tmp_path / "faces.pt", _responsive_model(images), image_size=48,
                                 config={"model": "cnn", "image_size": 48})
    export(checkpoint, tmp_path / "faces.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "faces.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(["probs"], {"gray255": images.numpy().astype(np.float32)})[0]
    model = load_model(checkpoint)
    library = predict_logits(model, images).softmax(1).numpy()
    one_level_off = Preset("mean off by one gray level", mean=tuple(m + 1 / 255 for m in IMAGENET_MEAN))
    moved = np.abs(predict_logits(model, images, preprocess=one_level_off).softmax(1).numpy() - library).max()
    assert moved > 10 * TOLERANCE, f"the model barely notices a preprocessing error ({moved:.2g}): no test"
    assert exported.shape == library.shape == (len(images), len(CLASS_NAMES))
    difference = np.abs(exported - library).max()
    assert difference <= TOLERANCE, f"ONNX and the library's preprocessing differ by {difference:.3g}"


def test_the_onnx_graph_gives_the_probabilities_of_the_librarys_own_preprocessing(tmp_path):
    """Synthetic faces and a real photograph's face (skimage's astronaut), 48 px gray."""
    faces = make_faces(15, seed=0)[0]
    astronaut = to_gray_square(Image.fromarray(skdata.astronaut()[40:140, 180:260]), 48)
    images = torch.from_numpy(np.concatenate([faces, astronaut[None]]))[:, None]
    _assert_onnx_gives_the_librarys_probabilities(images, tmp_path)


@pytest.mark.realdata
def test_the_onnx_graph_gives_the_librarys_probabilities_on_real_fer2013_faces(real_fer2013, tmp_path):
    """64 of FER2013's test images (spread over its class folders), decoded as the dataset decodes them."""
    files = sorted((real_fer2013 / "test").glob("*/*.jpg"))
    if len(files) < 64:
        pytest.skip(f"FER2013 test images not found as files under {real_fer2013 / 'test'} (the CSV layout?)")
    files = files[::len(files) // 64][:64]
    decoded = decode_items(Items(ids=[f.name for f in files], labels=[0] * len(files), files=files), 48)
    assert not decoded.bad and len(decoded.images) == 64
    _assert_onnx_gives_the_librarys_probabilities(decoded.images, tmp_path)
