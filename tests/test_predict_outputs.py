"""Where the predict command writes (resemote_lib/predict/outputs.py): every output named and
checked before the model is loaded, names made unique, no existing file replaced."""

from __future__ import annotations

import pytest
import torch

from .predicting import run_predict, write_faces


def test_annotated_names_are_unique_and_existing_files_are_never_replaced(checkpoint, tmp_path, capsys):
    faces = write_faces(tmp_path / "faces", ["a/x.png", "b/x.jpg", "x.png", "x.jpg"])
    assert run_predict(checkpoint, faces, "--detector", "none", "--annotate", tmp_path / "ann") == 0
    written = sorted(str(p.relative_to(tmp_path / "ann")) for p in (tmp_path / "ann").rglob("*.jpg"))
    assert written == ["a/x_annotated.jpg", "b/x_annotated.jpg", "x_annotated-2.jpg", "x_annotated.jpg"]
    # files given directly: the same stem twice gets a counter
    assert run_predict(checkpoint, faces / "a" / "x.png", faces / "b" / "x.jpg", "--detector", "none",
                    "--annotate", tmp_path / "ann2") == 0
    assert sorted(p.name for p in (tmp_path / "ann2").iterdir()) == ["x_annotated-2.jpg", "x_annotated.jpg"]
    before = {p: p.read_bytes() for p in (tmp_path / "ann").rglob("*.jpg")}
    with pytest.raises(FileExistsError, match=r"--annotate .*ann: 4 of the files .* already exist.*nothing was replaced"):
        run_predict(checkpoint, faces, "--detector", "none", "--annotate", tmp_path / "ann")
    assert {p: p.read_bytes() for p in (tmp_path / "ann").rglob("*.jpg")} == before


def test_outputs_are_checked_before_the_model_is_loaded(checkpoint, tmp_path, monkeypatch):
    from resemote_lib.predict import command

    monkeypatch.setattr(command, "Predictor", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    faces = write_faces(tmp_path / "faces", ["x.png"])
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(OSError, match=r"--out .*file/out\.jsonl: cannot write there: .*file is a file, not a folder"):
        run_predict(checkpoint, faces, "--out", tmp_path / "file" / "out.jsonl")
    with pytest.raises(ValueError, match=r"--out .*model\.pt is one of the inputs"):
        run_predict(checkpoint, faces, "--out", checkpoint)
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(FileExistsError, match=r"--out .*other\.pt is an existing PyTorch file"):
        run_predict(checkpoint, faces, "--out", tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"--annotate .*file is a file"):
        run_predict(checkpoint, faces, "--annotate", tmp_path / "file")
    with pytest.raises(ValueError, match=r"--out .* is a folder"):
        run_predict(checkpoint, faces, "--out", tmp_path)
    assert (tmp_path / "file").read_text() == "a file, not a folder"
