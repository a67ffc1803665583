"""A video through a Predictor, frame by frame (resemote_lib/predict/video.py: ``predict_video``)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

from resemote_lib.predict import predict_video


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
