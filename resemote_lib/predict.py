"""Use a trained model on real photos, folders, videos and a webcam.

``Predictor`` finds faces (OpenCV's bundled Haar cascade by default, fully offline; YuNet
with a model file you provide; boxes computed elsewhere; or ``detector=None`` for images
that are already face crops), crops each with a margin, applies exactly the evaluation
preprocessing, and returns per face its box, the probabilities keyed by class name
(calibrated with the checkpoint's temperature when it has one), the top label and the
detector's score. Colour order is explicit: the reference's inference scripts feed
OpenCV's BGR pixels as RGB; here a NumPy array must say which it is. Files are decoded
as the dataset loaders decode them (``data.base.to_8bit``: 16-bit PNGs scaled, unusual
PIL modes refused by name).

``predict_command`` (the CLI's ``predict``) checks every output it will write before it
loads the model (exit 2 with nothing computed), writes results as they come, and never
replaces an existing file in the ``--annotate`` folder.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .checkpoint import check_temperature, file_kind, load_model
from .data.base import IMAGE_SUFFIXES, is_hidden, to_8bit, to_gray_square
from .device import resolve_device
from .inference import predict_logits
from .model import ResEmoteNet

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

    Args:
        color: for 3-channel arrays, ``"rgb"`` or ``"bgr"`` (OpenCV); required, since the
            two cannot be told apart from the pixels.
    """
    if isinstance(image, str | os.PathLike):
        with Image.open(image) as img:
            return np.asarray(to_8bit(img, image).convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(to_8bit(image).convert("RGB"))
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


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """Grow ``box`` by ``margin`` of its size on each side, clipped to the image."""
    x, y, w, h = box
    dx, dy = round(w * margin), round(h * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(width, x + w + dx), min(height, y + h + dy)
    return x0, y0, x1 - x0, y1 - y0


class Predictor:
    """Faces and their emotions in images.

    Args:
        model_or_checkpoint: a ``ResEmoteNet`` (with ``class_names``) or a checkpoint path.
        detector: ``"auto"`` (Haar cascade), ``None`` (images are face crops), a
            ``YuNetDetector``, ``FixedBoxes`` or any callable ``rgb -> [(box, score)]``.
        device: ``auto``, ``cpu``, ``cuda``, ``mps``.
        tta: average each face with its mirror image.
        margin: crop margin around each detected box, as a fraction of its size.
        temperature: softmax temperature (a finite number > 0); default the checkpoint's
            fitted one, else 1.
    """

    def __init__(self, model_or_checkpoint: ResEmoteNet | str | os.PathLike, detector: str | Detector | None = "auto",
                 device: str = "auto", tta: bool = False, margin: float = 0.15,
                 temperature: float | None = None, image_size: int | None = None) -> None:
        self.device = resolve_device(device)
        model = model_or_checkpoint
        if not isinstance(model, torch.nn.Module):
            model = load_model(model, device=self.device)
        self.model = model.to(self.device).eval()
        self.class_names = tuple(getattr(model, "class_names", ()))
        if len(self.class_names) != model.fc4.out_features:
            raise ValueError("the model needs a class_names attribute naming its outputs")
        meta = getattr(model, "checkpoint_meta", {}) or {}
        self.temperature = check_temperature(temperature if temperature is not None else meta.get("temperature", 1.0),
                                             "Predictor" if temperature is not None else "the model's checkpoint_meta")
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
        return (sum(probs) / len(probs)).cpu().numpy()

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

    def predict_many(self, inputs: Iterable[str | os.PathLike], *, batch_size: int = 32,
                     progress: bool = False) -> Iterator[Result]:
        """Files and folders (recursively), in batches; a missing or unreadable file is
        reported in its ``Result.error``, and the rest go on."""
        from tqdm.auto import tqdm

        files = list(iter_image_files(inputs))
        bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress)
        for start in range(0, len(files), batch_size):
            readable, results = [], {}
            for path in files[start:start + batch_size]:
                try:
                    readable.append((path, to_rgb(path)))
                except FileNotFoundError:
                    results[path] = Result(source=str(path), error="file not found")
                except (UnidentifiedImageError, OSError, ValueError) as e:
                    results[path] = Result(source=str(path), error=f"not a readable image: {type(e).__name__}: {e}")
            for (path, _), r in zip(readable, self.predict_batch([rgb for _, rgb in readable], "rgb"), strict=True):
                r.source = str(path)
                results[path] = r
            yield from (results[p] for p in files[start:start + batch_size])
            bar.update(len(files[start:start + batch_size]))
        bar.close()

    def predict_video(self, source: str | int, *, every: int = 1, smoothing: float = 0.0,
                      annotate: str | os.PathLike | None = None, max_frames: int | None = None,
                      on_row: Callable[[dict], None] | None = None) -> list[dict]:
        """Per-frame predictions of a video file or a webcam index.

        Args:
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
                    faces = self.faces(to_rgb(bgr, "bgr"))
                    if faces:
                        main = max(faces, key=lambda f: f.box[2] * f.box[3])
                        p = np.array([main.probs[n] for n in self.class_names])
                        ema = p if ema is None or smoothing == 0 else smoothing * ema + (1 - smoothing) * p
                        smoothed = dict(zip(self.class_names, np.round(ema, 6).tolist(), strict=True))
                        rows.append({"frame": frame_no, "time_s": frame_no / fps, "faces": len(faces),
                                     "box": list(main.box), "label": self.class_names[int(ema.argmax())],
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
    (recursively; hidden files and folders such as macOS ``._*`` copies are skipped)."""
    for path, _ in _image_inputs(inputs):
        yield path


def _image_inputs(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """``(file, name)`` per image: ``name`` is the path below the folder it was found in,
    or the file's own name for a file given directly."""
    out = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            hidden = [p for p in found if any(is_hidden(Path(part)) for part in p.relative_to(path).parts)]
            if hidden:
                log.info("%s: skipping %d hidden file(s) (macOS ._* copies...), e.g. %s", path, len(hidden), hidden[0])
            out += [(p, p.relative_to(path)) for p in found if p not in set(hidden)]
        else:
            out.append((path, Path(path.name)))
    return out


class ResultWriter:
    """Results written as they come, flushed after each: ``.csv`` one row per face, else
    ``.jsonl`` one line per input. A run that stops half-way keeps what it computed."""

    def __init__(self, path: str | os.PathLike, class_names: Sequence[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.names = list(class_names)
        self.is_csv = self.path.suffix.lower() == ".csv"
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
            self._file.write(json.dumps(r.to_dict()) + "\n")
        self._file.flush()

    def close(self) -> None:
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


def _plan_outputs(checkpoint: Path, images: list[tuple[Path, Path]], videos: list[str], out: Path | None,
                  annotate: Path | None) -> _Outputs:
    """Name every output, and refuse (before any work) what would fail or destroy a file."""
    taken: set[Path] = set()
    if out is not None:
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name (results.jsonl or results.csv)")
        if out.exists():
            inputs = [checkpoint, *(p for p, _ in images)]
            if any(p.exists() and os.path.samefile(p, out) for p in inputs):
                raise ValueError(f"--out {out} is one of the inputs; writing results there would destroy it")
            if file_kind(out) not in ("other", "empty"):
                raise FileExistsError(f"--out {out} is an existing PyTorch file; refusing to replace it with "
                                      "results: choose another name (results.jsonl or results.csv)")
            if not os.access(out, os.W_OK):
                raise PermissionError(f"--out {out} exists and is not writable; choose another name or make it "
                                      "writable. Nothing was computed")
        _check_writable_folder(out.parent, f"--out {out}")
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
    ours = [p for p in annotated + [p for pair in planned_videos for p in pair]
            if p is not None and annotate is not None and p.resolve().is_relative_to(annotate.resolve())]
    existing = [p for p in ours if p.exists()]
    if existing:
        raise FileExistsError(f"--annotate {annotate}: {len(existing)} of the files this command would write already "
                              f"exist, e.g. {existing[0]}; nothing was replaced. Choose an empty folder, or delete them")
    return _Outputs(annotated, planned_videos)


def _frame_fields(class_names: Sequence[str]) -> list[str]:
    return ["source", "frame", "time_s", "faces", "box", "label", *[f"p_{n}" for n in class_names]]


def predict_command(args: Any) -> int:
    """The CLI's ``predict``: images and folders in batches, then videos; exit 1 if any input failed.

    Before the model is loaded, every output is named and checked (``--out`` and
    ``--annotate`` writable, no input or checkpoint overwritten, no existing annotated
    file replaced): a problem there is exit 2 with nothing computed. Results are written
    as they are computed. Output places:

    - ``--out FILE``: one line (.jsonl) or row per face (.csv) per image; each video's
      per-frame table goes beside it, to ``<FILE's folder>/<video>_frames.csv``;
    - without ``--out``: one line per image on stdout; each video's per-frame table goes to
      ``<DIR>/<video>_frames.csv`` with ``--annotate DIR``, else to stdout as CSV;
    - ``--annotate DIR`` (created if missing): ``<path below the input folder>/<name>_annotated.jpg``
      per image and ``<video>_annotated.mp4`` per video; names two inputs would share get
      ``-2``, ``-3``...; a file already there is never replaced (exit 2 instead).
    """
    images = [i for i in args.inputs if Path(i).suffix.lower() not in _VIDEO_SUFFIXES and not i.startswith("webcam:")]
    videos = [i for i in args.inputs if i not in images]
    out = Path(args.out) if args.out else None
    annotate = Path(args.annotate) if args.annotate else None
    inputs = _image_inputs(images)
    plan = _plan_outputs(Path(args.checkpoint), inputs, videos, out, annotate)
    predictor = Predictor(args.checkpoint, detector=_detector(args.detector), device=args.device, tta=args.tta)
    failed = 0
    writer = ResultWriter(out, predictor.class_names) if out is not None else None
    try:
        results = predictor.predict_many([p for p, _ in inputs])
        for r, annotated in zip(results, plan.annotated, strict=True):
            if writer is not None:
                writer.write(r)
            if r.error:
                failed += 1
                print(f"{r.source}: {r.error}", file=sys.stderr)
                continue
            if writer is None:
                summary = ", ".join(f"{f.label} {f.probs[f.label]:.2f} at {f.box}" for f in r.faces) or "no face found"
                print(f"{r.source}: {summary}", flush=True)
            if annotated is not None:
                failed += not _write_annotated(r, annotated)
    finally:
        if writer is not None:
            writer.close()
    for v, (mp4, frames) in zip(videos, plan.videos, strict=True):
        failed += not _predict_video(predictor, v, mp4, frames, args)
    return 1 if failed else 0


def _write_annotated(r: Result, dest: Path) -> bool:
    import cv2

    dest.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(dest), draw_faces(to_rgb(r.source)[:, :, ::-1], r.faces)):
        print(f"{r.source}: could not write {dest}", file=sys.stderr)
        return False
    return True


def _predict_video(predictor: Predictor, v: str, mp4: Path | None, frames: Path | None, args: Any) -> bool:
    """One video's frames, written row by row to ``frames`` (None: stdout); False if it failed."""
    source = int(v.split(":", 1)[1]) if v.startswith("webcam:") else v
    fields = _frame_fields(predictor.class_names)
    table: dict[str, Any] = {}

    def on_row(row: dict) -> None:
        if not table:  # opened at the first frame: a video that cannot be read leaves no file
            f = open(frames, "w", newline="", encoding="utf-8") if frames is not None else sys.stdout  # noqa: SIM115
            table.update(file=f, csv=csv.DictWriter(f, fieldnames=fields, restval=""))
            table["csv"].writeheader()
        table["csv"].writerow({"source": v, **row})
        table["file"].flush()

    try:
        rows = predictor.predict_video(source, every=args.every, smoothing=args.smoothing, annotate=mp4,
                                       max_frames=args.max_frames, on_row=on_row)
    except FileNotFoundError as e:
        print(f"{v}: {e}", file=sys.stderr)
        return False
    finally:
        if table and frames is not None:
            table["file"].close()
    if frames is not None:
        print(f"{v}: {len(rows)} frames -> {frames}" + (f", {mp4}" if mp4 else ""))
    return True


__all__ = ["IMAGE_SUFFIXES", "Detector", "Face", "FixedBoxes", "HaarDetector", "Predictor", "Result", "ResultWriter",
           "YuNetDetector", "draw_faces", "expand_box", "iter_image_files", "make_detector", "predict_command", "to_rgb",
           "write_results"]
