"""The command line's ``predict`` (resemote_lib/predict/command.py): what it prints and where a
video's frame table goes."""

from __future__ import annotations

from .predicting import run_predict


def _clip(path, frames=3, size=64):
    import cv2

    from resemote_lib.data.synthetic import make_faces

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size, size))
    for img in make_faces(frames, seed=3)[0]:
        writer.write(cv2.cvtColor(cv2.resize(img, (size, size)), cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def test_video_without_out_prints_its_frames_and_writes_nothing_in_the_working_directory(checkpoint, tmp_path,
                                                                                         monkeypatch, capsys):
    clip = _clip(tmp_path / "clip.mp4")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert run_predict(checkpoint, clip, "--detector", "none") == 0
    assert list(work.iterdir()) == []
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("source,frame,time_s,faces,box,label,p_angry") and len(lines) == 4
    # with --annotate DIR that does not exist yet: created, the video and its frame table written there
    assert run_predict(checkpoint, clip, "--detector", "none", "--annotate", tmp_path / "new" / "ann") == 0
    ann = tmp_path / "new" / "ann"
    assert (ann / "clip_annotated.mp4").stat().st_size > 0
    assert len((ann / "clip_frames.csv").read_text().splitlines()) == 4
    assert list(work.iterdir()) == []
