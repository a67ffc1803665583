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
"""

from __future__ import annotations

import base64
import io
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from . import plots
from .data.base import FaceDataset, to_gray_square
from .inference import predict_logits

FACE_PIXELS = 144  # faces are shown enlarged to this side (nearest neighbour: the pixels the model sees)


def predict_image(model: torch.nn.Module, image: np.ndarray | Image.Image, image_size: int,
                  device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities for one face crop, and the uint8 input it saw."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    gray = to_gray_square(pil, image_size)
    # torch.tensor copies: PIL's array is read-only, and torch.from_numpy warns about that.
    logits = predict_logits(model, torch.tensor(gray)[None, None], device=device)
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


__all__ = ["DatasetBrowser", "UploadPredictor", "face_png", "figure_png", "predict_image", "side_by_side"]
