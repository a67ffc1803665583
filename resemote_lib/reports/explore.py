"""Interactive exploration widgets for ``04_explore.ipynb`` (ipywidgets).

Kept in the library so that tests reach them: building a widget and changing its values
headless exercises the same code a person clicks through in JupyterLab.

Each widget draws into one ``Output`` widget whose content is *replaced* (its ``outputs``
set in one state update, never appended to), so a change shows each image once, in place,
and sends nothing to the kernel's display channel (JupyterLab's log console stays quiet).
Figures become PNG bytes and are closed at once: nothing is left for matplotlib's inline
backend to draw a second time, and it works the same under ``MPLBACKEND=Agg``.

Displayed (``display(browser)``), a widget's output bundle also carries a static fallback
(``image/png`` or a plain-text note): JupyterLab with a live kernel renders the widget; a
saved or papermill-executed notebook, which has no kernel behind its widgets, shows the
fallback instead of ``VBox(children=...)``.

The rest of the notebook's numbers come from here too: what the explored network variant has
(``describe_variant``; ``runs.pick_run`` chooses the run), the model's predictions on a split
(``predictions``), the most confused class pairs (``confused_pairs``), the most confident
errors (``errors``), a few faces per class (``sample_faces``) and their maps (``cams``).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from ..data.base import FaceDataset, to_gray_square
from ..inference import predict_logits, preprocess_of
from ..model import VARIANTS
from . import plots
from .explain import has_se, layer_cam

FACE_PIXELS = 144  # faces are shown enlarged to this side (nearest neighbour: the pixels the model sees)


# --- which network ---------------------------------------------------------------------------

def describe_variant(model: torch.nn.Module, name: str) -> str:
    """What the network variant ``name`` has, and what the notebook can show of it."""
    se, blocks = has_se(model), int(getattr(model, "res_blocks", 0))
    parts = ["the convolutional stem (three conv stages)", *(["the SE block"] if se else []),
             *([f"{blocks} residual blocks"] if blocks else []), "the head"]
    missing = [what for what, there in (("no SE block", se), ("no residual blocks", blocks)) if not there]
    lean = " (lean form)" if VARIANTS.get(name, {}).get("lean") else ""
    text = f"`{name}`{lean} has " + ", ".join(parts[:-1]) + f" and {parts[-1]}"
    text += f"; {' and '.join(missing)}." if missing else "."
    if not se:
        text += (" Without an SE block there are no channel gates to show, so that figure is skipped; LayerCAM "
                 "still works, on the stem's output (the last map with spatial detail).")
    return text


# --- predictions on a split ----------------------------------------------------------------

def predictions(model: torch.nn.Module, ds: FaceDataset, device: str | torch.device = "cpu",
                batch_size: int = 256) -> pd.DataFrame:
    """One row per item of ``ds``: ``index``, ``id``, ``true`` and ``predicted`` (class
    indices), ``confidence`` (the predicted class's probability), ``true_prob``, ``correct``."""
    probs = predict_logits(model, ds.images, batch_size=batch_size, device=device,
                           preprocess=preprocess_of(model)).softmax(1).cpu().numpy()
    y, pred = ds.labels.numpy(), probs.argmax(1)
    return pd.DataFrame({"index": np.arange(len(ds)), "id": list(ds.ids), "true": y, "predicted": pred,
                         "confidence": probs.max(1), "true_prob": probs[np.arange(len(ds)), y],
                         "correct": y == pred})


def confusion(preds: pd.DataFrame, num_classes: int) -> np.ndarray:
    """Counts, rows true, columns predicted, from ``predictions``."""
    flat = preds["true"].to_numpy() * num_classes + preds["predicted"].to_numpy()
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def confused_pairs(confusion: np.ndarray, class_names: list[str] | tuple[str, ...], top: int = 8) -> pd.DataFrame:
    """The ``top`` off-diagonal cells of a confusion matrix (rows true), largest first: how many
    faces of ``true`` went to ``predicted``, as a % of the true class and of all errors."""
    counts = np.asarray(confusion)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    total_errors, per_class = off.sum(), counts.sum(axis=1)
    cells = sorted(((int(off[t, p]), t, p) for t in range(len(off)) for p in range(len(off)) if off[t, p]),
                   key=lambda c: (-c[0], c[1], c[2]))
    return pd.DataFrame([{"true": class_names[t], "predicted": class_names[p], "faces": n,
                          "% of the true class": round(100 * n / per_class[t], 1),
                          "% of all errors": round(100 * n / total_errors, 1)} for n, t, p in cells[:top]],
                        columns=["true", "predicted", "faces", "% of the true class", "% of all errors"],
                        index=pd.RangeIndex(1, min(top, len(cells)) + 1, name="rank"))


def errors(preds: pd.DataFrame, n: int = 24) -> pd.DataFrame:
    """The ``n`` wrong predictions the model was most confident about, most confident first."""
    return preds[~preds["correct"]].sort_values("confidence", ascending=False, kind="stable").head(n)


def sample_faces(preds: pd.DataFrame, per_class: int = 3, seed: int = 0) -> pd.DataFrame:
    """``per_class`` random items of each true class (fewer where a class has fewer), by class."""
    rng = np.random.default_rng(seed)
    picked = [group.iloc[np.sort(rng.choice(len(group), size=min(per_class, len(group)), replace=False))]
              for _, group in preds.groupby("true", sort=True)]
    return pd.concat(picked) if picked else preds.head(0)


def cams(model: torch.nn.Module, ds: FaceDataset, indices: list[int] | pd.Series,
         device: str | torch.device = "cpu") -> list[np.ndarray]:
    """LayerCAM (``explain.layer_cam``, of the predicted class) of each item of ``indices``."""
    preprocess = preprocess_of(model)
    return [layer_cam(model, preprocess(ds.images[int(i)]).to(device))[0] for i in indices]


def predict_image(model: torch.nn.Module, image: np.ndarray | Image.Image, image_size: int,
                  device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities for one face crop, and the uint8 input it saw."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    gray = to_gray_square(pil, image_size)
    # torch.tensor copies: PIL's array is read-only, and torch.from_numpy warns about that.
    logits = predict_logits(model, torch.tensor(gray)[None, None], device=device, preprocess=preprocess_of(model))
    return logits.softmax(1)[0].cpu().numpy(), gray


def face_png(image: np.ndarray, pixels: int = FACE_PIXELS) -> bytes:
    """A grayscale uint8 face as PNG bytes, enlarged to ``pixels`` square without smoothing."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((pixels, pixels), Image.Resampling.NEAREST).save(
        buf, format="png")
    return buf.getvalue()


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` as PNG bytes; the figure is closed (never drawn again by the inline backend)."""
    return plots.png(fig, dpi)


def side_by_side(*pngs: bytes, gap: int = 12) -> bytes:
    """PNG images pasted left to right on white, vertically centred, as one PNG."""
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    height = max(im.height for im in images)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for im in images:
        canvas.paste(im, (x, (height - im.height) // 2))
        x += im.width + gap
    buf = io.BytesIO()
    canvas.save(buf, format="png")
    return buf.getvalue()


def _png_output(png: bytes, text: str) -> dict[str, Any]:
    """One ``display_data`` output (the nbformat dict an ``Output`` widget holds) for a PNG."""
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}}


def _text_output(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text + "\n"}


def _bundle(widget: widgets.Widget, text: str, png: bytes | None = None, **kwargs: Any) -> dict[str, Any]:
    """The widget's own display bundle, with a readable ``text/plain`` and an optional static PNG."""
    data = dict(widget._repr_mimebundle_(**kwargs) or {})
    data["text/plain"] = text
    if png is not None:
        data["image/png"] = base64.b64encode(png).decode("ascii")
    return data


class DatasetBrowser:
    """Pick a class and an item of a split; shows the face and the model's probabilities.

    The view holds exactly two images, replaced together at each change: the face (as the
    model sees it) and a bar chart of the 7 probabilities (the predicted class in red).
    ``renders`` counts the redraws: one per change of class or item.
    """

    def __init__(self, model: torch.nn.Module, ds: FaceDataset, device: str | torch.device = "cpu") -> None:
        self.model, self.ds, self.device = model, ds, device
        self.class_pick = widgets.Dropdown(options=list(ds.class_names), description="class")
        self.item_pick = widgets.IntSlider(min=0, max=0, description="item")
        self.view = widgets.Output()
        self.shown: int | None = None
        self.probs: np.ndarray | None = None
        self.renders = 0
        self._pngs: tuple[bytes, bytes] | None = None
        self._adjusting = False
        self._fit_slider()
        self.class_pick.observe(self._on_class, "value")
        self.item_pick.observe(self._on_item, "value")
        self.widget = widgets.VBox([widgets.HBox([self.class_pick, self.item_pick]), self.view])
        self.update()

    def indices(self) -> list[int]:
        """Indices (into the split) of the items of the selected class."""
        k = self.ds.class_names.index(self.class_pick.value)
        return np.flatnonzero(self.ds.labels.numpy() == k).tolist()

    def _fit_slider(self) -> None:
        # Value first, then max: lowering max below the value would clamp it and fire a second redraw.
        self._adjusting = True
        try:
            self.item_pick.value = 0
            self.item_pick.max = max(0, len(self.indices()) - 1)
        finally:
            self._adjusting = False

    def _on_class(self, _change: object = None) -> None:
        self._fit_slider()
        self.update()

    def _on_item(self, _change: object = None) -> None:
        if not self._adjusting:
            self.update()

    def update(self, _change: object = None) -> None:
        """Redraw the view for the current class and item (its content replaced, once)."""
        idx = self.indices()
        self.shown = idx[min(self.item_pick.value, len(idx) - 1)] if idx else None
        self.renders += 1
        if self.shown is None:
            self.probs, self._pngs = None, None
            self.view.outputs = (_text_output(f"no {self.class_pick.value} images in the {self.ds.split} split"),)
            return
        image = self.ds.images[self.shown, 0].numpy()
        self.probs, _ = predict_image(self.model, image, self.ds.image_size, self.device)
        true = self.ds.class_names[int(self.ds.labels[self.shown])]
        title = f"{self.ds.split} #{self.shown} ({self.item_pick.value + 1}/{len(idx)} {true}): {self.ds.ids[self.shown]}"
        self._pngs = (face_png(image), figure_png(plots.probability_bars(self.probs, self.model.class_names,
                                                                         title=title[:70])))
        self.view.outputs = (_png_output(self._pngs[0], f"face: {title}"),
                             _png_output(self._pngs[1], "probabilities: " + ", ".join(
                                 f"{n} {p:.3f}" for n, p in zip(self.model.class_names, self.probs, strict=True))))

    def snapshot(self) -> bytes | None:
        """The current view (face and probabilities) as one PNG; None when the class is empty."""
        return side_by_side(*self._pngs) if self._pngs else None

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        text = (f"DatasetBrowser over {self.ds.name} {self.ds.split} ({len(self.ds)} images); showing "
                f"{self.class_pick.value} #{self.shown}. Browsing needs a live kernel; the image is this selection.")
        return _bundle(self.widget, text, self.snapshot(), **kwargs)


class UploadPredictor:
    """Upload an image (a face crop); shows what the model sees and its probabilities."""

    def __init__(self, model: torch.nn.Module, image_size: int, device: str | torch.device = "cpu") -> None:
        self.model, self.image_size, self.device = model, image_size, device
        self.upload = widgets.FileUpload(accept="image/*", multiple=False)
        self.view = widgets.Output()
        self.last: np.ndarray | None = None
        self.upload.observe(self.update, "value")
        self.widget = widgets.VBox([self.upload, self.view])

    def predict_bytes(self, content: bytes, name: str = "upload") -> np.ndarray:
        """Probabilities for an encoded image; the view shows the model's input and the chart."""
        with Image.open(io.BytesIO(content)) as img:
            probs, gray = predict_image(self.model, img.convert("RGB"), self.image_size, self.device)
        self.last = probs
        chart = figure_png(plots.probability_bars(probs, self.model.class_names, title=f"{name[:50]}: model input"))
        self.view.outputs = (_png_output(face_png(gray), f"model input for {name}"),
                             _png_output(chart, "probabilities: " + ", ".join(
                                 f"{n} {p:.3f}" for n, p in zip(self.model.class_names, probs, strict=True))))
        return probs

    def update(self, _change: object = None) -> None:
        for item in self.upload.value:
            name = item.get("name", "upload")
            try:
                self.predict_bytes(bytes(item["content"]), name)
            except Exception as e:  # a non-image upload is reported, not raised into the UI
                self.view.outputs = (_text_output(f"cannot read {name}: {e}"),)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return _bundle(self.widget, "UploadPredictor: uploading an image needs this notebook open in JupyterLab "
                                    "with a live kernel.", **kwargs)


__all__ = ["DatasetBrowser", "UploadPredictor", "cams", "confused_pairs", "confusion",
           "describe_variant", "errors", "face_png", "figure_png", "predict_image", "predictions",
           "sample_faces", "side_by_side"]
