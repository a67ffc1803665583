from __future__ import annotations

import dataclasses
import os
import pickle
import random

import pytest
import torch

from resemote_lib import CLASS_NAMES, REFERENCE_CLASS_NAMES, CheckpointError, load_model, save_checkpoint
from resemote_lib.checkpoint import checkpoint_filter_fn, read_checkpoint
from resemote_lib.model import ResEmoteNet

from .conftest import REFERENCE_ORDER


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return ResEmoteNet().eval()


def _logits(m, x):
    with torch.no_grad():
        return m(x)


def test_round_trip_gives_identical_logits(model, tmp_path):
    path = save_checkpoint(tmp_path / "run" / "best.pt", model, image_size=64, epoch=3, note="x")
    loaded = load_model(path)
    x = torch.randn(4, 3, 64, 64)
    assert torch.equal(_logits(model, x), _logits(loaded, x))
    assert loaded.class_names == CLASS_NAMES
    assert not loaded.training
    assert loaded.checkpoint_meta == {"epoch": 3, "note": "x"}
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left


@pytest.mark.parametrize("wrap", ["bare", "model_state_dict", "module_prefix", "orig_mod_prefix", "state_dict"])
def test_reference_formats_load(model, tmp_path, wrap):
    sd = model.state_dict()
    payload = {
        "bare": sd,
        "model_state_dict": {"model_state_dict": sd, "epoch": 80},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "orig_mod_prefix": {"state_dict": {f"_orig_mod.{k}": v for k, v in sd.items()}},
        "state_dict": {"state_dict": sd},
    }[wrap]
    torch.save(payload, tmp_path / "ref.pth")
    loaded = load_model(tmp_path / "ref.pth")
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(_logits(model, x), _logits(loaded, x))
    # Outputs keep the reference's order (tests/golden/reference_class_order.tsv), and the names say so.
    assert loaded.class_names == REFERENCE_ORDER


def test_reference_class_order_is_the_reference_repositorys():
    """The constant against the order transcribed from the reference facts, not against itself."""
    assert REFERENCE_CLASS_NAMES == REFERENCE_ORDER
    assert sorted(REFERENCE_ORDER) == sorted(CLASS_NAMES)  # the golden file names our seven classes


def test_six_class_reference_needs_names(tmp_path):
    torch.save(ResEmoteNet(num_classes=6).state_dict(), tmp_path / "six.pth")
    with pytest.warns(UserWarning, match="class_names"):
        m = load_model(tmp_path / "six.pth")
    assert len(m.class_names) == 6
    named = load_model(tmp_path / "six.pth", class_names=list("abcdef"))
    assert named.class_names == tuple("abcdef")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    torch.save({"model_state_dict": {"x": _Evil()}}, tmp_path / "evil2.pt")
    for p in (path, tmp_path / "evil2.pt"):
        with pytest.raises(CheckpointError):
            load_model(p)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_file_gives_clear_error(model, tmp_path):
    path = save_checkpoint(tmp_path / "ok.pt", model)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(tmp_path / "cut.pt")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_model(tmp_path / "missing.pt")


def test_mismatched_keys_are_listed(model, tmp_path):
    sd = dict(model.state_dict())
    sd.pop("fc3.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \['fc3.bias'\].*unexpected keys \['extra.weight'\]"):
        load_model(tmp_path / "bad.pth")


def test_wrong_shape_is_listed(model, tmp_path):
    sd = dict(model.state_dict())
    sd["fc2.weight"] = torch.zeros(3, 3)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"fc2\.weight: file"):
        load_model(tmp_path / "shape.pth")


def test_filter_fn_strips_nested_prefixes():
    sd = {"module._orig_mod.fc4.weight": torch.zeros(7, 256)}
    assert list(checkpoint_filter_fn({"model": sd})) == ["fc4.weight"]


def test_read_checkpoint_rejects_non_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        read_checkpoint(tmp_path / "list.pt")


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"),
                                     RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 391307648 "
                                                  "vs 391307540")])
def test_full_disk_keeps_previous_file_and_says_how_much_is_needed(tmp_path, monkeypatch, failure):
    from resemote_lib import checkpoint, files

    path = checkpoint.atomic_torch_save({"w": torch.zeros(4)}, tmp_path / "last.pt")

    def fill_disk_then_fail(obj, f):
        f.write(b"partial")
        raise failure

    monkeypatch.setattr(checkpoint.torch, "save", fill_disk_then_fail)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: type("Usage", (), {"free": 2**20})())
    with pytest.raises(OSError, match=r"last\.pt: it needs about 4 MiB.*the previous last\.pt is intact") as err:
        checkpoint.atomic_torch_save({"w": torch.zeros(2**20)}, path)
    assert err.value.errno == 28
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.zeros(4))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_ctrl_c_during_a_save_is_an_interruption_not_a_full_disk(tmp_path, monkeypatch):
    """torch's zip writer reports Ctrl-C as "unexpected pos ..."; with plenty of space free,
    that is an interruption (the old file kept), not a full disk."""
    from resemote_lib import checkpoint

    path = checkpoint.atomic_torch_save({"w": torch.zeros(4)}, tmp_path / "last.pt")

    def interrupted(obj, f):
        f.write(b"partial")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0") from None

    monkeypatch.setattr(checkpoint.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt, match=r"interrupted while saving .*last\.pt; the previous last\.pt is intact"):
        checkpoint.atomic_torch_save({"w": torch.zeros(8)}, path)
    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, f: (_ for _ in ()).throw(
        RuntimeError("unexpected pos 64 vs 0")))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # space is free: not called a full disk
        checkpoint.atomic_torch_save({"w": torch.zeros(8)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.zeros(4))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_other_save_errors_pass_through_unchanged(tmp_path, monkeypatch):
    from resemote_lib import checkpoint

    monkeypatch.setattr(checkpoint.torch, "save", lambda obj, f: (_ for _ in ()).throw(TypeError("not picklable")))
    with pytest.raises(TypeError, match="not picklable"):
        checkpoint.atomic_torch_save({}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


# --- what a file is: checkpoint.classify / file_kind --------------------------------------

def test_training_state_loads_its_weights_with_the_runs_classes_and_size(model, tmp_path):
    """A run's last.pt is not a reference checkpoint: canonical classes, the config's size."""
    from resemote_lib.checkpoint import atomic_torch_save, file_kind

    sd = model.state_dict()
    payload = {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "scheduler": None, "scaler": {},
               "rng": {}, "state": {"epoch": 4, "step": 0, "history": []}, "config": {"image_size": 40, "lr": 1e-3},
               "code_sha256": "x"}
    path = atomic_torch_save(payload, tmp_path / "last.pt")
    assert file_kind(path) == "checkpoint"
    loaded = load_model(path)
    assert loaded.class_names == CLASS_NAMES and loaded.image_size == 40
    assert loaded.checkpoint_kind == "training-state"
    assert loaded.checkpoint_meta["training_state"] is True and loaded.checkpoint_meta["epoch"] == 4
    assert "training state last.pt (weights after epoch 4)" in loaded.checkpoint_meta["source"]
    x = torch.randn(2, 3, 40, 40)
    assert torch.equal(_logits(model, x), _logits(loaded, x))


def test_kinds_are_told_apart(model, tmp_path):
    from resemote_lib.checkpoint import classify

    sd = model.state_dict()
    assert classify({"format": "resemote-checkpoint", "state_dict": sd, "class_names": list(CLASS_NAMES),
                     "image_size": 48}).kind == "resemote"
    assert classify(sd).kind == "reference" and classify({"model_state_dict": sd}).class_names == REFERENCE_ORDER
    with pytest.raises(CheckpointError, match=r"x\.pt is a PyTorch file but not a ResEmoteNet checkpoint: top-level "
                                              r"keys \['epoch', 'weights'\]"):
        classify({"weights": [1.0], "epoch": 3}, "x.pt")
    with pytest.raises(CheckpointError, match="reads up to 1: update resemote"):
        classify({"format": "resemote-checkpoint", "format_version": 9, "state_dict": sd, "class_names": []})


def test_random_bytes_are_not_a_pytorch_checkpoint_at_all(tmp_path):
    junk = random.Random(0).randbytes(4096)
    assert not junk.startswith((b"PK", b"\x80"))
    (tmp_path / "random.pt").write_bytes(junk)
    with pytest.raises(CheckpointError, match=r"random\.pt is not a PyTorch checkpoint at all: it starts with bytes"):
        load_model(tmp_path / "random.pt")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    with pytest.raises(CheckpointError, match=r"an ONNX export\?"):
        load_model(tmp_path / "model.onnx")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt is empty \(0 bytes\)"):
        load_model(tmp_path / "empty.pt")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        load_model(tmp_path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_real_pickle_with_foreign_objects_is_refused_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model_state_dict": {"x": _Evil()}}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"evil\.pt was refused: .*loading it could run code"):
        load_model(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_export_is_named_as_such(tmp_path):
    from resemote_lib.checkpoint import file_kind

    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "model.pt"))
    assert file_kind(tmp_path / "model.pt") == "torchscript"
    with pytest.raises(CheckpointError, match="is a TorchScript export, not a checkpoint"):
        load_model(tmp_path / "model.pt")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_with_nan_or_inf_name_the_first_bad_tensor(model, tmp_path, bad):
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["res_block2.conv1.weight"][0, 0, 0, 0] = bad
    sd["fc3.bias"][:2] = bad
    path = save_checkpoint(tmp_path / "broken.pt", model)
    payload = read_checkpoint(path)
    payload["state_dict"] = sd
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"broken\.pt: tensor 'res_block2\.conv1\.weight' holds 1 NaN/inf"):
        load_model(path)


@pytest.mark.parametrize("temperature", [0, -1.5, float("nan"), float("inf"), "hot"])
def test_a_stored_temperature_that_is_not_positive_and_finite_is_refused(model, tmp_path, temperature):
    from resemote_lib.checkpoint import check_temperature

    path = save_checkpoint(tmp_path / "t.pt", model, temperature=temperature)
    with pytest.raises(CheckpointError, match=r"t\.pt: the stored calibration: temperature must be a number in \[0\.05, 20\], got"):
        load_model(path)
    assert check_temperature(1.5, "x") == 1.5


def test_an_ablation_variant_loads_as_the_variant_its_config_names(tmp_path):
    from resemote_lib.model import build_model

    torch.manual_seed(0)
    cnn = build_model("cnn").eval()
    path = save_checkpoint(tmp_path / "cnn.pt", cnn, image_size=48, config={"model": "cnn", "image_size": 48})
    loaded = load_model(path)
    x = torch.randn(2, 3, 48, 48)
    assert loaded.res_blocks == 0 and torch.equal(_logits(cnn, x), _logits(loaded, x))


# --- metadata a damaged or foreign checkpoint can carry (issue 24.10, 24.12, 24.13) --------------

def _resemote_payload(model, **changes):
    payload = {"format": "resemote-checkpoint", "format_version": 1, "state_dict": model.state_dict(),
               "class_names": list(CLASS_NAMES), "image_size": 48, "in_channels": 3, "meta": {}}
    payload.update(changes)
    return payload


def test_class_names_named_twice_are_refused(model, tmp_path):
    twice = ["angry", "disgust", "fear", "happy", "happy", "sad", "surprise"]
    torch.save(_resemote_payload(model, class_names=twice), tmp_path / "twice.pt")
    with pytest.raises(CheckpointError, match=r"twice\.pt: class_names \[.*\] name 'happy' more than once"):
        load_model(tmp_path / "twice.pt")
    with pytest.raises(CheckpointError, match=r"ok\.pt: class_names .* name 'a' more than once"):
        load_model(save_checkpoint(tmp_path / "ok.pt", model), class_names=list("abcdefa"))


def test_a_checkpoint_without_class_names_is_named(model, tmp_path):
    payload = _resemote_payload(model)
    del payload["class_names"]
    torch.save(payload, tmp_path / "nonames.pt")
    with pytest.raises(CheckpointError, match=r"nonames\.pt has no class_names"):
        load_model(tmp_path / "nonames.pt")
    torch.save(_resemote_payload(model, class_names="angry"), tmp_path / "str.pt")
    with pytest.raises(CheckpointError, match=r"str\.pt: class_names must be a list of strings, got str"):
        load_model(tmp_path / "str.pt")


@pytest.mark.parametrize("size", [200000, 0, -64, 7, "64", 64.0, True, None])
def test_an_image_size_outside_trainings_range_is_refused_before_any_allocation(model, tmp_path, size, monkeypatch):
    from resemote_lib import checkpoint

    monkeypatch.setattr(checkpoint, "build_model", lambda *a, **k: pytest.fail("a model was built"))
    torch.save(_resemote_payload(model, image_size=size), tmp_path / "size.pt")
    with pytest.raises(CheckpointError, match=r"size\.pt: image_size .* is not a whole number in \[8, 1024\]"):
        load_model(tmp_path / "size.pt")
    state = {"model": model.state_dict(), "optimizer": {}, "state": {"epoch": 1}, "config": {"image_size": size}}
    torch.save(state, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=r"last\.pt: image_size .* is not a whole number in \[8, 1024\]"):
        load_model(tmp_path / "last.pt")


def test_an_unknown_model_variant_names_the_checkpoint(model, tmp_path):
    torch.save(_resemote_payload(model, meta={"config": {"model": "resemotenet_v2"}}), tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"future\.pt: its config names model 'resemotenet_v2', which this "
                                              r"resemote does not know \(known: cnn, .*resemotenet"):
        load_model(tmp_path / "future.pt")


def test_a_released_checkpoint_brings_its_records_preprocessing_and_others_get_evals(model, tmp_path, monkeypatch):
    """A record (weights.KNOWN) names the mean/std its checkpoint was trained with; load_model
    hands it on as ``model.preprocess`` for the Predictor, export and the explorer. A file no
    record knows, and everything resemote writes, get EVAL (ImageNet's mean/std, 3 channels)."""
    from resemote_lib import weights
    from resemote_lib.data.transforms import EVAL
    from resemote_lib.files import sha256_of

    torch.save(model.state_dict(), tmp_path / "released.pth")
    names = ("happy", "sad", "angry", "fear", "surprise", "neutral", "disgust")  # neither ours nor the reference's
    record = weights.KnownCheckpoint("released-test", "fer2013", "released.pth", "test", class_names=names,
                                     image_size=56, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                                     sha256=sha256_of(tmp_path / "released.pth"))
    monkeypatch.setitem(weights.KNOWN, record.name, record)
    loaded = load_model(tmp_path / "released.pth")
    assert loaded.preprocess == record.transform and loaded.preprocess.mean == (0.5, 0.5, 0.5)
    assert (loaded.image_size, loaded.class_names) == (56, names)  # all of it from the record
    monkeypatch.setitem(weights.KNOWN, record.name, dataclasses.replace(record, channels=1))
    with pytest.raises(CheckpointError, match=r"released\.pth: its record 'released-test' says 1 input channel\(s\), "
                                              r"but the file's conv1 takes 3"):
        load_model(tmp_path / "released.pth")
    torch.save({"model_state_dict": model.state_dict()}, tmp_path / "unknown.pth")  # other bytes, no record
    assert load_model(tmp_path / "unknown.pth").preprocess == EVAL
    ours = save_checkpoint(tmp_path / "ours.pt", model, image_size=64)
    assert load_model(ours).preprocess == EVAL


def test_a_checkpoint_replaced_keeping_its_size_and_mtime_is_hashed_again(tmp_path):
    """``weights.identify`` reads a file once per version: the three released checkpoints have
    the same size, and ``cp -p`` of one over another keeps the mtime; the new bytes still give
    the new hash (and so the right record, results folder and preprocessing)."""
    import shutil

    from resemote_lib.files import sha256_of
    from resemote_lib.weights import identify

    first, second = tmp_path / "a.pth", tmp_path / "b.pth"
    first.write_bytes(b"a" * 4096)
    second.write_bytes(b"b" * 4096)
    os.utime(second, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns))
    assert identify(first)[1] == sha256_of(first)
    shutil.copy2(second, first)  # cp -p: same size, same mtime, other bytes
    assert (first.stat().st_size, first.stat().st_mtime_ns) == (second.stat().st_size, second.stat().st_mtime_ns)
    assert identify(first)[1] == sha256_of(second)


def test_a_one_channel_model_gets_a_one_channel_preprocessing_everywhere(tmp_path):
    """A model whose first convolution takes 1 channel (build_model(in_channels=1)) is fed one
    channel by load_model's preprocessing, the Predictor and the export wrapper, not 3."""
    import numpy as np

    from resemote_lib.model import build_model
    from resemote_lib.predict import Predictor
    from resemote_lib.predict.export import Deployable

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "gray.pt", build_model("cnn", in_channels=1, image_size=32).eval(),
                           image_size=32, config={"model": "cnn", "image_size": 32})
    loaded = load_model(path)
    assert loaded.preprocess.channels == 1 and loaded.preprocess.mean == (0.485, 0.456, 0.406)
    face = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    probs = Predictor(loaded, detector=None).predict(face).faces[0].probs
    with torch.inference_mode():
        deployed = Deployable(loaded)(torch.from_numpy(face).float()[None, None])[1][0]
    assert np.allclose([probs[n] for n in loaded.class_names], deployed.numpy(), atol=2e-6)
