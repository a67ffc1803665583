"""Use a trained model on real photos, folders, videos and a webcam.

``Predictor`` finds faces (OpenCV's bundled Haar cascade by default, fully offline; YuNet
with a model file you provide; boxes computed elsewhere; or ``detector=None`` for images
that are already face crops), crops each with a margin, applies exactly the evaluation
preprocessing, and returns per face its box, the probabilities keyed by class name
(calibrated with the model's ``temperature``: the checkpoint's calibration file, else 1),
the top label and the detector's score. Colour order is explicit: the reference's
inference scripts feed OpenCV's BGR pixels as RGB; here a NumPy array must say which it
is. Files are decoded as the dataset loaders decode them (``data.base.to_8bit``: 16-bit
PNGs scaled, unusual PIL modes refused by name), turned upright by their EXIF orientation
as photo viewers show them.

``predict_files`` (files and folders, in batches) and ``predict_video`` (a video file or a
webcam) run a Predictor over many inputs. ``predict_command`` (the CLI's ``predict``)
checks every output it will write before it loads the model (exit 2 with nothing
computed), never replaces a file it was not asked to write, and says what it kept when it
stops (Ctrl-C or SIGTERM: exit 130).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .calibration import check_temperature
from .checkpoint import file_kind, load_model
from .data.base import IMAGE_SUFFIXES, is_hidden, to_gray_square, upright
from .device import resolve_device
from .files import remove_stale_temporaries, temporary_beside, umask
from .inference import predict_logits
from .model import ResEmoteNet
from .usage import UsageError, WorkFailed

log = logging.getLogger(__name__)
Box = tuple[int, int, int, int]  # x, y, width, height in pixels
_VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


@dataclass
class Face:
    box: Box
    probs: dict[str, float]
    label: str
    score: float  # detector confidence (1.0 for given boxes or no detector)


@dataclass
class Result:
    source: str
    faces: list[Face] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "error": self.error, "faces": [asdict(f) for f in self.faces]}


class Detector(Protocol):
    def __call__(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        """Faces in an RGB uint8 image: ``[(box, score), ...]``."""


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade (offline; opencv-python-headless < 5)."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24) -> None:
        import cv2

        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise RuntimeError("this OpenCV has no Haar cascades (opencv 5.x dropped them): "
                               "pip install 'opencv-python-headless<5'")
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade at {path}")
        self.kw = dict(scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_size, min_size))

    def __call__(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        boxes, _, weights = self.cascade.detectMultiScale3(gray, outputRejectLevels=True, **self.kw)
        return [(tuple(int(v) for v in b), float(w)) for b, w in zip(boxes, np.ravel(weights), strict=True)]


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``) with an ONNX model file you provide."""

    def __init__(self, model_path: str | os.PathLike, score_threshold: float = 0.7) -> None:
        import cv2

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"YuNet model not found: {model_path} (face_detection_yunet_*.onnx "
                                    "from the OpenCV model zoo)")
        self.net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold)

    def __call__(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        import cv2

        h, w = rgb.shape[:2]
        self.net.setInputSize((w, h))
        _, faces = self.net.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return [] if faces is None else [((int(f[0]), int(f[1]), int(f[2]), int(f[3])), float(f[-1])) for f in faces]


class FixedBoxes:
    """Boxes computed elsewhere: the same list for every image, or a function of the source."""

    def __init__(self, boxes: Sequence[Box] | Callable[[np.ndarray], Sequence[Box]]) -> None:
        self.boxes = boxes

    def __call__(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        boxes = self.boxes(rgb) if callable(self.boxes) else self.boxes
        return [(tuple(int(v) for v in b), 1.0) for b in boxes]


def _whole_image(rgb: np.ndarray) -> list[tuple[Box, float]]:
    return [((0, 0, rgb.shape[1], rgb.shape[0]), 1.0)]


def make_detector(detector: str | Detector | None) -> Detector:
    if detector is None or detector == "none":
        return _whole_image
    if detector in ("auto", "haar"):
        return HaarDetector()
    if isinstance(detector, str):
        raise ValueError(f"unknown detector {detector!r}: use 'auto'/'haar', None, a YuNetDetector(path), "
                         "FixedBoxes(boxes) or any callable rgb -> [(box, score)]")
    return detector


def to_rgb(image: str | os.PathLike | Image.Image | np.ndarray, color: str | None = None) -> np.ndarray:
    """An RGB uint8 array from a path, a PIL image or an array whose colour order is given.

    Files and PIL images are turned by their EXIF orientation (``data.base.upright``, which
    evaluation reads them with too): a phone stores a portrait photo sideways with a tag
    saying so, and the model must see the face upright. A path that is not a regular file (a FIFO, a device) is refused
    before it is opened, since reading it could block for ever.

    Args:
        color: for 3-channel arrays, ``"rgb"`` or ``"bgr"`` (OpenCV); required, since the
            two cannot be told apart from the pixels.
    """
    if isinstance(image, str | os.PathLike):
        kind = _file_type(Path(image))
        if kind not in ("missing", "file"):
            raise ValueError(f"{image}: not a regular file but {kind}; give an image file")
        with Image.open(image) as img:
            return np.asarray(upright(img, image).convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(upright(image).convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {arr.dtype}")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        if color not in ("rgb", "bgr"):
            raise ValueError("a colour NumPy array needs color='rgb' or color='bgr' (OpenCV images are BGR)")
        arr = arr[:, :, :3]
        return np.ascontiguousarray(arr[:, :, ::-1] if color == "bgr" else arr)
    raise ValueError(f"expected an image array of shape (H, W) or (H, W, 3|4), got {arr.shape}")


def _file_type(path: Path) -> str:
    """``"file"`` (regular), ``"missing"``, or what else the path is, in words."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "neither a file nor a folder"


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """Grow ``box`` by ``margin`` of its size on each side, clipped to the image."""
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, x1 - x0, y1 - y0


class Predictor:
    """Faces and their emotions in images: a model, its preprocessing and its calibration.

    ``predict_files`` and ``predict_video`` run a Predictor over files, folders, videos and
    webcams.

    Args:
        model_or_checkpoint: a ``ResEmoteNet`` (with ``class_names``) or a checkpoint path.
        detector: ``"auto"`` (Haar cascade), ``None`` (images are face crops), a
            ``YuNetDetector``, ``FixedBoxes`` or any callable ``rgb -> [(box, score)]``.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        tta: average each face with its mirror image.
        margin: crop margin around each detected box, as a fraction of its size.
        temperature: softmax temperature (a finite number > 0); default the model's
            ``temperature`` (``load_model`` reads the checkpoint's calibration file), else 1.
    """

    def __init__(self, model_or_checkpoint: ResEmoteNet | str | os.PathLike, detector: str | Detector | None = "auto",
                 device: str | torch.device = "auto", tta: bool = False, margin: float = 0.15,
                 temperature: float | None = None, image_size: int | None = None) -> None:
        self.device = resolve_device(device)
        model = model_or_checkpoint
        if not isinstance(model, torch.nn.Module):
            model = load_model(model, device=self.device)
        self.model = model.to(self.device).eval()
        self.class_names = tuple(getattr(model, "class_names", ()))
        if len(self.class_names) != model.fc4.out_features:
            raise ValueError("the model needs a class_names attribute naming its outputs")
        self.temperature = check_temperature(temperature if temperature is not None else getattr(model, "temperature", 1.0),
                                             "Predictor" if temperature is not None else "the model's temperature")
        self.image_size = int(image_size or getattr(model, "image_size", 64))
        self.detector = make_detector(detector)
        self.tta, self.margin = tta, margin

    def _classify(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, len(self.class_names)))
        images = torch.from_numpy(np.stack(crops))[:, None]
        views = (False, True) if self.tta else (False,)
        probs = [(predict_logits(self.model, images, device=self.device, flip=flip) / self.temperature).softmax(1)
                 for flip in views]
        out = (sum(probs) / len(probs)).cpu().numpy()
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        if bad:  # written out they would be NaN: invalid JSON, and argmax calls them "angry"
            raise ValueError(f"the model's probabilities for {bad} face(s) are not finite (NaN or inf): its logits "
                             f"overflow (temperature {self.temperature:g}); check the checkpoint's weights")
        return out

    def _crops(self, rgb: np.ndarray) -> tuple[list[np.ndarray], list[tuple[Box, float]]]:
        """Detected faces of one RGB image, cropped with the margin and preprocessed."""
        h, w = rgb.shape[:2]
        crops, kept = [], []
        for box, score in self.detector(rgb):
            x, y, bw, bh = expand_box(box, self.margin, w, h) if self.detector is not _whole_image else box
            if bw < 2 or bh < 2:
                continue
            crops.append(to_gray_square(Image.fromarray(rgb[y:y + bh, x:x + bw]), self.image_size))
            kept.append((box, score))
        return crops, kept

    def _faces(self, kept: list[tuple[Box, float]], probs: np.ndarray) -> list[Face]:
        return [Face(box=box, probs={n: round(float(p), 6) for n, p in zip(self.class_names, row, strict=True)},
                     label=self.class_names[int(row.argmax())], score=score)
                for (box, score), row in zip(kept, probs, strict=True)]

    def faces(self, rgb: np.ndarray) -> list[Face]:
        """Detect, crop and classify every face of one RGB uint8 image."""
        crops, kept = self._crops(rgb)
        return self._faces(kept, self._classify(crops))

    def predict(self, image: str | os.PathLike | Image.Image | np.ndarray, color: str | None = None) -> Result:
        """One image: a path, a PIL image, or an array with ``color`` given."""
        source = str(image) if isinstance(image, str | os.PathLike) else type(image).__name__
        return Result(source=source, faces=self.faces(to_rgb(image, color)))

    def predict_batch(self, images: Sequence[str | os.PathLike | Image.Image | np.ndarray],
                      color: str | None = None) -> list[Result]:
        """Several images, their faces classified in one forward pass."""
        per_image = [self._crops(to_rgb(img, color)) for img in images]
        probs = self._classify([c for crops, _ in per_image for c in crops])
        out, start = [], 0
        for img, (crops, kept) in zip(images, per_image, strict=True):
            source = str(img) if isinstance(img, str | os.PathLike) else type(img).__name__
            out.append(Result(source=source, faces=self._faces(kept, probs[start:start + len(crops)])))
            start += len(crops)
        return out


def predict_files(predictor: Predictor, inputs: Iterable[str | os.PathLike], *, batch_size: int = 32,
                  progress: bool = False) -> Iterator[Result]:
    """One ``Result`` per image file of ``inputs`` (files, and folders recursively), in order,
    classified in batches. A missing, unreadable or oversized image (over PIL's
    decompression-bomb limit) and a path that is not a regular file (a FIFO...) are reported
    in their ``Result.error``, and the rest go on."""
    from tqdm.auto import tqdm

    files = list(iter_image_files(inputs))
    with tqdm(total=len(files), desc="predict", unit="img", disable=not progress) as bar:
        for start in range(0, len(files), batch_size):
            batch = [(path, *_read_image(path)) for path in files[start:start + batch_size]]
            readable = [(path, rgb) for path, rgb, _ in batch if rgb is not None]
            done = iter(predictor.predict_batch([rgb for _, rgb in readable], "rgb"))
            for path, rgb, error in batch:
                result = Result(source=str(path), error=error) if rgb is None else next(done)
                result.source = str(path)
                yield result
            bar.update(len(batch))


def _read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """An image file's RGB pixels, or why there are none (never opens a FIFO: it could block)."""
    kind = _file_type(path)
    if kind == "missing":
        return None, "file not found"
    if kind != "file":
        return None, f"not a regular file but {kind}; skipped"
    try:
        return to_rgb(path), None
    except FileNotFoundError:
        return None, "file not found"
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        return None, f"not a readable image: {type(e).__name__}: {e}"


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


def _video_writer(path: Path, fps: float, shape: tuple[int, int]):
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


def iter_image_files(inputs: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files as given (even if missing, so they can be reported) and image files in folders
    (recursively; hidden files and folders such as macOS ``._*`` copies are skipped). Videos
    in folders are not images: one warning per folder counts them (``predict_video`` reads
    them; so does the ``predict`` command, which finds them with ``_media_inputs``)."""
    images, videos = _media_inputs(inputs)
    for folder in sorted({folder for _, folder in videos}):
        n = sum(f == folder for _, f in videos)
        log.warning("%s: %d video(s) skipped (predict_video reads videos; the predict command reads them too)",
                    folder, n)
    for path, _ in images:
        yield path


def _media_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]]]:
    """``(images, videos)``: ``(file, name)`` per image, ``name`` the path below the folder it
    was found in or the file's own name for a file given directly; ``(video, folder)`` per
    video found in a folder ``inputs`` names (a video given directly is the caller's)."""
    images, videos = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            # not p.is_file(): a FIFO or a broken link named *.png is listed, to be reported, not skipped
            found = sorted(p for p in path.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES | _VIDEO_SUFFIXES and not p.is_dir())
            hidden = [p for p in found if any(is_hidden(Path(part)) for part in p.relative_to(path).parts)]
            if hidden:
                log.info("%s: skipping %d hidden file(s) (macOS ._* copies...), e.g. %s", path, len(hidden), hidden[0])
            found = [p for p in found if p not in set(hidden)]
            images += [(p, p.relative_to(path)) for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
            videos += [(p, path) for p in found if p.suffix.lower() in _VIDEO_SUFFIXES]
        else:
            images.append((path, Path(path.name)))
    return images, videos


class ResultWriter:
    """Results written as they come, flushed after each: ``.csv`` one row per face, else
    ``.jsonl`` one line per input; ``"-"``: JSON lines on standard output. A run that stops
    half-way keeps what it computed; ``written`` counts the results written."""

    def __init__(self, path: str | os.PathLike, class_names: Sequence[str]) -> None:
        self.path = Path(path)
        self.names = list(class_names)
        self.is_csv = self.path.suffix.lower() == ".csv"
        self.written = 0
        if str(path) == "-":
            self._file, self.is_csv = sys.stdout, False
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # closed by close() / the with block: the file stays open while results come in
            self._file = open(self.path, "w", newline="" if self.is_csv else None, encoding="utf-8")  # noqa: SIM115
        if self.is_csv:
            self._csv = csv.writer(self._file)
            self._csv.writerow(["source", "error", "x", "y", "w", "h", "label", "score",
                                *[f"p_{n}" for n in self.names]])

    def write(self, r: Result) -> None:
        if self.is_csv:
            if not r.faces:
                self._csv.writerow([r.source, r.error or "no face found", *[""] * (6 + len(self.names))])
            for face in r.faces:
                self._csv.writerow([r.source, "", *face.box, face.label, face.score,
                                    *[face.probs.get(n, "") for n in self.names]])
        else:
            self._file.write(json.dumps(r.to_dict(), allow_nan=False) + "\n")  # never a bare NaN: invalid JSON
        self._file.flush()
        self.written += 1

    def close(self) -> None:
        if self._file is not sys.stdout:
            self._file.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_results(results: Iterable[Result], path: str | os.PathLike,
                  class_names: Sequence[str] | None = None) -> Path:
    """``.jsonl`` (one result per line) or ``.csv`` (one face per row), written as they come.

    Args:
        class_names: the CSV's probability columns, in order; default: every name found
            in the results, sorted (which reads them all first).
    """
    if class_names is None:
        results = list(results)
        class_names = sorted({n for r in results for face in r.faces for n in face.probs})
    with ResultWriter(path, class_names) as writer:
        for r in results:
            writer.write(r)
    return writer.path


def _detector(spec: str):
    if spec == "none":
        return None
    if spec.startswith("yunet:"):
        return YuNetDetector(spec.split(":", 1)[1])
    return spec


def _video_source(spec: str) -> str | int:
    """A video input as OpenCV opens it: a file name, or ``webcam:N`` -> camera ``N``."""
    if not spec.startswith("webcam:"):
        return spec
    index = spec.split(":", 1)[1]
    if not index.isdigit():
        raise UsageError(f"{spec}: a webcam is webcam:N, N the camera's number (webcam:0 is the first camera). "
                         "Nothing was computed")
    return int(index)


@dataclass
class _Outputs:
    """Every file a ``predict`` command will write, decided and checked before any work."""

    annotated: list[Path | None]  # per image input
    videos: list[tuple[Path | None, Path | None]]  # per video: (annotated .mp4, frames .csv or None: stdout)


def _check_writable_folder(folder: Path, what: str) -> None:
    """Create ``folder`` and prove a file can be written there, or raise naming ``what``."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise NotADirectoryError(f"{what}: cannot write there: {blocker} is a file, not a folder; choose another "
                                 "place. Nothing was computed")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(f"{what}: cannot write in {folder} ({e.strerror}); choose a writable place. "
                      "Nothing was computed") from None


def _stem(source: str) -> str:
    return Path(source.replace(":", "_")).stem


def _unique(path: Path, taken: set[Path]) -> Path:
    """``path``, or ``<stem>-2<suffix>``, ``-3``... when an earlier output of this run took it
    (``taken`` holds resolved paths)."""
    candidate, n = path, 1
    while candidate.resolve() in taken:
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    taken.add(candidate.resolve())
    return candidate


def _check_out(out: Path, inputs: list[Path]) -> None:
    """``--out FILE`` may be replaced: not an input (a video neither), not a PyTorch file, writable."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name (results.jsonl or results.csv)")
    if out.exists():
        if any(p.exists() and os.path.samefile(p, out) for p in inputs):
            raise ValueError(f"--out {out} is one of the inputs; writing results there would destroy it")
        if file_kind(out) not in ("other", "empty"):
            raise FileExistsError(f"--out {out} is an existing PyTorch file; refusing to replace it with "
                                  "results: choose another name (results.jsonl or results.csv)")
        if not os.access(out, os.W_OK):
            raise PermissionError(f"--out {out} exists and is not writable; choose another name or make it "
                                  "writable. Nothing was computed")
    _check_writable_folder(out.parent, f"--out {out}")


def _plan_outputs(checkpoint: Path, images: list[tuple[Path, Path]], videos: list[str], out: Path | None,
                  annotate: Path | None) -> _Outputs:
    """Name every output, and refuse (before any work) what would fail or destroy a file:
    an input as ``--out``, a way out of ``--annotate``, or anything already where another
    output goes (a file, or a link, even a broken one: it is never replaced or followed)."""
    taken: set[Path] = set()
    sources = [_video_source(v) for v in videos]
    if out is not None:
        _check_out(out, [checkpoint, *(p for p, _ in images), *(Path(s) for s in sources if isinstance(s, str))])
        taken.add(out.resolve())
    if annotate is not None:
        if annotate.exists() and not annotate.is_dir():
            raise ValueError(f"--annotate {annotate} is a file; give a folder (it is created if missing)")
        _check_writable_folder(annotate, f"--annotate {annotate}")
    annotated = [_unique(annotate / name.with_name(f"{name.stem}_annotated.jpg"), taken) if annotate else None
                 for _, name in images]
    planned_videos = []
    for v in videos:
        mp4 = _unique(annotate / f"{_stem(v)}_annotated.mp4", taken) if annotate else None
        folder = out.parent if out is not None else annotate
        frames = _unique(folder / f"{_stem(v)}_frames.csv", taken) if folder is not None else None
        planned_videos.append((mp4, frames))
    in_annotate = [p for p in annotated + [mp4 for mp4, _ in planned_videos] if p is not None]
    _check_inside(annotate, in_annotate)
    frames_of = {frames: v for v, (_, frames) in zip(videos, planned_videos, strict=True) if frames is not None}
    _refuse_existing(in_annotate, frames_of, out, annotate)
    return _Outputs(annotated, planned_videos)


def _refuse_existing(in_annotate: list[Path], frames_of: dict[Path, str], out: Path | None,
                     annotate: Path | None) -> None:
    """A file, or a link (even a broken one), where an output goes: ``FileExistsError`` naming it."""
    existing = [p for p in in_annotate + list(frames_of) if os.path.lexists(p)]
    beside_out = [p for p in existing if annotate is None or not p.is_relative_to(annotate)]
    if beside_out:
        raise FileExistsError(f"{_named(beside_out[0])} already exists: predict would write {frames_of[beside_out[0]]}'s "
                              f"per-frame table there (beside --out {out}); nothing was replaced. Move or delete it, "
                              "or give --out in another folder. Nothing was computed")
    if existing:
        raise FileExistsError(f"--annotate {annotate}: {len(existing)} of the files this command would write already "
                              f"exist, e.g. {_named(existing[0])}; nothing was replaced. Choose an empty folder, or "
                              "delete them")


def _check_inside(annotate: Path | None, outputs: list[Path]) -> None:
    """No output of ``--annotate DIR`` may land outside DIR through a linked subfolder."""
    if annotate is None:
        return
    root = annotate.resolve()
    for p in outputs:
        if not p.parent.resolve().is_relative_to(root):
            raise ValueError(f"--annotate {annotate}: {p.parent} leads out of the folder (a symbolic link to "
                             f"{p.parent.resolve()}); predict writes only inside --annotate. Remove the link or "
                             "choose another folder. Nothing was computed")


def _named(path: Path) -> str:
    return f"{path} (a symbolic link to {os.readlink(path)})" if path.is_symlink() else str(path)


def _frame_fields(class_names: Sequence[str]) -> list[str]:
    return ["source", "frame", "time_s", "faces", "box", "label", *[f"p_{n}" for n in class_names]]


class _ResultsFile:
    """``--out FILE``: results written as they come to a hidden temporary file beside FILE,
    which replaces FILE when predict ends (also when stopped) if at least one image was
    read; otherwise FILE is left as it was (or not created)."""

    def __init__(self, out: Path, class_names: Sequence[str]) -> None:
        suffix = f".partial{out.suffix}"  # the suffix says CSV or JSON lines
        stale = remove_stale_temporaries(out, suffix)
        if stale:
            log.warning("removed %d temporary file(s) left by an interrupted predict: %s", len(stale),
                        ", ".join(p.name for p in stale))
        self.out, self.read = out, 0
        self.writer = ResultWriter(temporary_beside(out, suffix), class_names)

    @property
    def written(self) -> int:
        return self.writer.written

    def write(self, r: Result) -> None:
        self.read += r.error is None
        self.writer.write(r)

    def close(self) -> str:
        """Finish; returns what became of FILE, in words."""
        self.writer.close()
        tmp = self.writer.path
        if self.read:
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; results get the usual mode
            os.replace(tmp, self.out)
            return f"{self.out} holds the {self.written} done"
        tmp.unlink(missing_ok=True)
        return f"{self.out} was {'left as it was' if self.out.exists() else 'not written'} (no image could be read)"


class _Printed:
    """Results on standard output: JSON lines (``--out -``), or one line per image."""

    def __init__(self, class_names: Sequence[str], as_json: bool) -> None:
        self.writer = ResultWriter("-", class_names) if as_json else None
        self.written = 0

    def write(self, r: Result) -> None:
        if self.writer is not None:
            self.writer.write(r)
        elif r.error is None:
            summary = ", ".join(f"{f.label} {f.probs[f.label]:.2f} at {f.box}" for f in r.faces) or "no face found"
            print(f"{r.source}: {summary}", flush=True)
        self.written += 1

    def close(self) -> str:
        return f"the {self.written} done were printed"


class _FrameTable:
    """One video's per-frame rows as they come: to a new CSV file (created at the first
    frame, so a video that cannot be read leaves none, and never over an existing file), or
    to standard output (CSV, or JSON lines with ``--out -``)."""

    def __init__(self, source: str, path: Path | None, fields: list[str], as_json: bool) -> None:
        self.source, self.path, self.fields, self.as_json = source, path, fields, as_json
        self.rows = 0
        self._file: Any = None

    def write(self, row: dict) -> None:
        if self._file is None:
            self._file = open(self.path, "x", newline="", encoding="utf-8") if self.path else sys.stdout  # noqa: SIM115
            self._csv = csv.DictWriter(self._file, fieldnames=self.fields, restval="")
            if not self.as_json:
                self._csv.writeheader()
        if self.as_json:
            self._file.write(json.dumps({"source": self.source, **row}, allow_nan=False) + "\n")
        else:
            self._csv.writerow({"source": self.source, **row})
        self._file.flush()
        self.rows += 1

    def close(self) -> str:
        if self._file is not None and self.path is not None:
            self._file.close()
        if not self.rows:
            return ""
        return f"{self.path} holds {self.source}'s {self.rows} frame(s) done" if self.path else \
            f"{self.source}'s {self.rows} frame(s) done were printed"


@dataclass
class _Progress:
    """What a predict command has done and kept so far, for its closing line."""

    total: int
    done: int = 0
    failed: int = 0
    current: str = ""  # the input being processed when the command stopped
    kept: list[str] = field(default_factory=list)

    def _kept(self) -> str:
        return "; ".join(k for k in self.kept if k) or "nothing was written"

    def stopped(self) -> str:
        during = f" (stopped during {self.current})" if self.current else ""
        return f"predict stopped after {self.done} of {self.total} inputs{during}; {self._kept()}"

    def failures(self) -> str:
        return f"{self.failed} of {self.total} inputs failed (each is named above); {self._kept()}"


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (``kill``, a job scheduler) stops predict as Ctrl-C does: what was written is
    kept and named, exit 130. Installed only in the main thread (signals go there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def predict_command(args: Any) -> int:
    """The CLI's ``predict``: images and folders in batches, then videos.

    Before the model is loaded, every output is named and checked (``--out`` and
    ``--annotate`` writable, no input or checkpoint overwritten, no existing file replaced
    anywhere but ``--out`` itself, ``webcam:N`` well formed): a problem there is exit 2
    with nothing computed. Output places:

    - ``--out FILE``: one line (.jsonl) or row per face (.csv) per image, written as they
      come to a hidden temporary file beside FILE that replaces FILE at the end (also when
      stopped) if at least one image could be read; else FILE is left as it was. Each
      video's per-frame table goes beside it, to ``<FILE's folder>/<video>_frames.csv``;
    - ``--out -``: JSON lines on standard output, one per image, and (without
      ``--annotate``) one per video frame;
    - without ``--out``: one line per image on stdout; each video's per-frame table goes to
      ``<DIR>/<video>_frames.csv`` with ``--annotate DIR``, else to stdout as CSV;
    - ``--annotate DIR`` (created if missing): ``<path below the input folder>/<name>_annotated.jpg``
      per image and ``<video>_annotated.mp4`` per video; names two inputs would share get
      ``-2``, ``-3``...; a file or link already there is never replaced (exit 2 instead).

    An input that fails is named on stderr and the rest go on; the command then ends with a
    ``WorkFailed`` (exit 1) saying how many failed and what was kept. Ctrl-C and SIGTERM
    end it with a ``KeyboardInterrupt`` (exit 130) saying how far it got and what was kept.
    """
    device = resolve_device(args.device)  # a bad --device is refused before any folder is made
    to_stdout = args.out == "-"
    out = Path(args.out) if args.out and not to_stdout else None
    annotate = Path(args.annotate) if args.annotate else None
    images = [i for i in args.inputs if Path(i).suffix.lower() not in _VIDEO_SUFFIXES and not i.startswith("webcam:")]
    videos = [i for i in args.inputs if i not in images]
    missing = [i for i in images if not Path(i).exists()]
    if missing:  # README's exit codes: a missing file is bad usage (2), found before the model loads
        raise FileNotFoundError(f"{missing[0]}: no such file or folder" + (
            f" (nor {len(missing) - 1} other input(s))" if len(missing) > 1 else "") + "; nothing was predicted")
    inputs, in_folders = _media_inputs(images)
    videos += [str(v) for v, _ in in_folders]  # a folder means all in it: its videos are read as one given directly
    plan = _plan_outputs(Path(args.checkpoint), inputs, videos, out, annotate)
    progress = _Progress(total=len(inputs) + len(videos))
    with _sigterm_interrupts():
        try:
            predictor = Predictor(args.checkpoint, detector=_detector(args.detector), device=device, tta=args.tta)
            if inputs:
                sink = _ResultsFile(out, predictor.class_names) if out else _Printed(predictor.class_names, to_stdout)
                _predict_images(predictor, inputs, plan.annotated, sink, progress)
            for v, (mp4, frames) in zip(videos, plan.videos, strict=True):
                _predict_video_file(predictor, v, mp4, frames, args, progress, as_json=to_stdout)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(progress.stopped()) from None
    if progress.failed:
        raise WorkFailed(progress.failures())
    return 0


def _predict_images(predictor: Predictor, inputs: list[tuple[Path, Path]], annotated: list[Path | None],
                    sink: _ResultsFile | _Printed, progress: _Progress) -> None:
    """Every image input's result to ``sink`` (closed at the end, also when stopped)."""
    start = progress.done
    try:
        for r, dest in zip(predict_files(predictor, [p for p, _ in inputs]), annotated, strict=True):
            sink.write(r)
            progress.done = start + sink.written
            if r.error:
                progress.failed += 1
                print(f"{r.source}: {r.error}", file=sys.stderr)
            elif dest is not None:
                progress.failed += not _write_annotated(r, dest)
    finally:
        progress.done = start + sink.written
        progress.kept.append(sink.close())


def _write_annotated(r: Result, dest: Path) -> bool:
    """The image with its faces drawn, to a new file ``dest`` (never over a file or through a link)."""
    import cv2

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        ok, encoded = cv2.imencode(".jpg", draw_faces(to_rgb(r.source)[:, :, ::-1], r.faces))
        if not ok:
            raise OSError("OpenCV could not encode it as JPEG")
        with open(dest, "xb") as f:
            f.write(encoded.tobytes())
    except (OSError, ValueError) as e:
        print(f"{r.source}: could not write {dest}: {e}", file=sys.stderr)
        return False
    return True


def _predict_video_file(predictor: Predictor, v: str, mp4: Path | None, frames: Path | None, args: Any,
                        progress: _Progress, *, as_json: bool) -> None:
    """One video's frames, written row by row to ``frames`` (None: stdout); a video that cannot
    be opened is named on stderr and counted as failed."""
    table = _FrameTable(v, frames, _frame_fields(predictor.class_names), as_json)
    progress.current = v
    rows = None
    try:
        rows = predict_video(predictor, _video_source(v), every=args.every, smoothing=args.smoothing, annotate=mp4,
                             max_frames=args.max_frames, on_row=table.write)
    except FileNotFoundError as e:
        progress.failed += 1
        print(f"{v}: {e}", file=sys.stderr)
    finally:
        progress.kept.append(table.close())
    progress.current, progress.done = "", progress.done + 1
    if rows is not None and frames is not None:
        print(f"{v}: {len(rows)} frames -> {frames}" + (f", {mp4}" if mp4 else ""),
              file=sys.stderr if as_json else sys.stdout)


__all__ = ["IMAGE_SUFFIXES", "Detector", "Face", "FixedBoxes", "HaarDetector", "Predictor", "Result", "ResultWriter",
           "YuNetDetector", "draw_faces", "expand_box", "iter_image_files", "make_detector", "predict_command",
           "predict_files", "predict_video", "to_rgb", "write_results"]
