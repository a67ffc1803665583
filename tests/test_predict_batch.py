"""Files and folders through a Predictor, and results written as they come
(resemote_lib/predict/batch.py: ``predict_files``, ``iter_image_files``, ``ResultWriter``)."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from skimage import data as skdata

from resemote_lib.predict import predict_files, write_results

from .predicting import write_faces


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


def test_folders_skip_hidden_files_such_as_macos_copies(tmp_path):
    from resemote_lib.predict import iter_image_files

    faces = write_faces(tmp_path / "faces", ["x.png", "sub/y.jpg"])
    (faces / "._x.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (faces / ".thumbnails").mkdir()
    Image.new("L", (4, 4)).save(faces / ".thumbnails" / "x.png")
    assert [p.relative_to(faces).as_posix() for p in iter_image_files([faces])] == ["sub/y.jpg", "x.png"]
    assert list(iter_image_files([faces / "._x.png"])) == [faces / "._x.png"]  # named explicitly: tried, reported


def test_videos_in_a_folder_are_named_by_the_image_iterator_never_skipped_without_a_word(tmp_path, caplog):
    """``iter_image_files`` yields images; the videos of a folder are counted in one warning
    (``predict_command`` reads them, as predict does a video given directly: issue 31.6)."""
    from resemote_lib.predict import iter_image_files

    faces = write_faces(tmp_path / "faces", ["x.png"])
    for name in ("clip.mp4", "sub/b.MOV", "._clip.mp4"):
        (faces / name).parent.mkdir(exist_ok=True)
        (faces / name).write_bytes(b"")
    with caplog.at_level("WARNING", logger="resemote_lib.predict"):
        assert list(iter_image_files([faces])) == [faces / "x.png"]
    assert f"{faces}: 2 video(s) skipped (predict_video reads videos; the predict command reads them too)" in caplog.text
