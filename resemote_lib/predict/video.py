"""A video file or a webcam through a ``Predictor``: one row per frame, optionally annotated.

``predict_video`` classifies every n-th frame, smooths the largest face's probabilities over
time if asked, and can write a copy of the video with each face's box and label drawn
(``draw_faces``, which annotated images use too).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .decode import to_rgb
from .predictor import Face, Predictor


def predict_video(predictor: Predictor, source: str | int, *, every: int = 1, smoothing: float = 0.0,
                  annotate: str | os.PathLike | None = None, max_frames: int | None = None,
                  on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Per-frame predictions of a video file or a webcam index.

    Args:
        predictor: the model, detector and calibration to apply to each frame.
        source: a video file, or a webcam's number.
        every: classify every n-th frame.
        smoothing: exponential moving average weight of the past (0: none) applied to
            the probabilities of the largest face, for stable labels.
        annotate: write a copy of the video with boxes and labels here (.mp4; its folder
            is created).
        max_frames: stop after this many frames (a webcam never ends by itself).
        on_row: called with each frame's row as soon as it is computed (to write it).
    """
    import cv2

    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video source {source!r}")
    names = predictor.class_names
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    rows: list[dict] = []
    ema: np.ndarray | None = None
    frame_no = 0
    try:
        while max_frames is None or frame_no < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if frame_no % every == 0:
                faces = predictor.faces(to_rgb(bgr, "bgr"))
                if faces:
                    main = max(faces, key=lambda f: f.box[2] * f.box[3])
                    p = np.array([main.probs[n] for n in names])
                    ema = p if ema is None or smoothing == 0 else smoothing * ema + (1 - smoothing) * p
                    smoothed = dict(zip(names, np.round(ema, 6).tolist(), strict=True))
                    rows.append({"frame": frame_no, "time_s": frame_no / fps, "faces": len(faces),
                                 "box": list(main.box), "label": names[int(ema.argmax())],
                                 **{f"p_{k}": v for k, v in smoothed.items()}})
                else:
                    rows.append({"frame": frame_no, "time_s": frame_no / fps, "faces": 0})
                if on_row is not None:
                    on_row(rows[-1])
                if annotate is not None:
                    if writer is None:
                        writer = _video_writer(Path(annotate), fps / every, bgr.shape[:2])
                    writer.write(draw_faces(bgr, faces))
            frame_no += 1
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    return rows


def _video_writer(path: Path, fps: float, shape: tuple[int, int]) -> Any:  # a cv2.VideoWriter
    """An OpenCV mp4 writer, its folder created; OpenCV itself fails silently (nothing written)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (shape[1], shape[0]))
    if not writer.isOpened():
        raise OSError(f"cannot write the annotated video {path} (OpenCV could not open it for writing; is the "
                      "folder writable, and does this OpenCV build have the mp4v codec?)")
    return writer


def draw_faces(bgr: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of a BGR frame with each face's box and top label drawn on it."""
    import cv2

    out = bgr.copy()
    for f in faces:
        x, y, w, h = f.box
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 200, 0), 2)
        cv2.putText(out, f"{f.label} {f.probs[f.label]:.2f}", (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (0, 200, 0), 1, cv2.LINE_AA)
    return out


__all__ = ["draw_faces", "predict_video"]
