"""Interactive exploration widgets for ``04_explore.ipynb`` (ipywidgets).

Kept in the library so that tests reach them: building a widget and changing its values
headless exercises the same code a person clicks through in JupyterLab.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import display
from PIL import Image

from . import plots
from .data.base import FaceDataset, to_gray_square
from .inference import predict_logits


def predict_image(model: torch.nn.Module, image: np.ndarray | Image.Image, image_size: int,
                  device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities for one face crop, and the uint8 input it saw."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    gray = to_gray_square(pil, image_size)
    logits = predict_logits(model, torch.from_numpy(gray)[None, None], device=device)
    return logits.softmax(1)[0].cpu().numpy(), gray


class DatasetBrowser:
    """Pick a class and an item; shows the face and the model's 7 probabilities."""

    def __init__(self, model: torch.nn.Module, ds: FaceDataset, device: str | torch.device = "cpu") -> None:
        self.model, self.ds, self.device = model, ds, device
        self.class_pick = widgets.Dropdown(options=list(ds.class_names), description="class")
        self.item_pick = widgets.IntSlider(min=0, max=0, description="item")
        self.view = widgets.Output()
        self.shown: int | None = None
        self.class_pick.observe(self.update, "value")
        self.item_pick.observe(self.update, "value")
        self.widget = widgets.VBox([widgets.HBox([self.class_pick, self.item_pick]), self.view])
        self.update()

    def indices(self) -> list[int]:
        k = self.ds.class_names.index(self.class_pick.value)
        return np.flatnonzero(self.ds.labels.numpy() == k).tolist()

    def update(self, _change: object = None) -> None:
        idx = self.indices()
        self.item_pick.max = max(0, len(idx) - 1)
        self.shown = idx[min(self.item_pick.value, len(idx) - 1)] if idx else None
        with self.view:
            self.view.clear_output(wait=True)
            if self.shown is None:
                print(f"no {self.class_pick.value} images in this split")
                return
            image = self.ds.images[self.shown, 0].numpy()
            probs, _ = predict_image(self.model, image, self.ds.image_size, self.device)
            display(plots.image_pairs([(image, image, f"{self.ds.split} #{self.shown}: {self.ds.ids[self.shown]}")],
                                      max_pairs=1))
            display(plots.probability_bars(probs, self.model.class_names))


class UploadPredictor:
    """Upload an image (a face crop); shows what the model sees and its probabilities."""

    def __init__(self, model: torch.nn.Module, image_size: int, device: str | torch.device = "cpu") -> None:
        self.model, self.image_size, self.device = model, image_size, device
        self.upload = widgets.FileUpload(accept="image/*", multiple=False)
        self.view = widgets.Output()
        self.last: np.ndarray | None = None
        self.upload.observe(self.update, "value")
        self.widget = widgets.VBox([self.upload, self.view])

    def predict_bytes(self, content: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(content)) as img:
            probs, gray = predict_image(self.model, img.convert("RGB"), self.image_size, self.device)
        self.last = probs
        with self.view:
            self.view.clear_output(wait=True)
            display(plots.image_pairs([(gray, gray, "model input")], max_pairs=1))
            display(plots.probability_bars(probs, self.model.class_names))
        return probs

    def update(self, _change: object = None) -> None:
        for item in self.upload.value:
            try:
                self.predict_bytes(bytes(item["content"]))
            except Exception as e:  # a non-image upload is reported, not raised into the UI
                with self.view:
                    self.view.clear_output()
                    print(f"cannot read {item.get('name', 'upload')}: {e}")


__all__ = ["DatasetBrowser", "UploadPredictor", "predict_image"]
