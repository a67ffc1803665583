"""The 04_explore widgets, headless: what a click changes, what a saved notebook keeps.

``tests/test_browser.py`` clicks the same widgets in a real JupyterLab; these run in a
second and need no browser, kernel or trained run (a tiny linear model stands in).
"""

from __future__ import annotations

import base64
import datetime
import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from resemote_lib import explore
from resemote_lib.data.base import FaceDataset
from resemote_lib.labels import CLASS_NAMES

pytestmark = pytest.mark.filterwarnings("error")  # a warning would show in red in the notebook

# 3 angry, 2 happy, 1 sad, 4 surprise; no disgust, fear or neutral
LABELS = [0, 0, 0, 3, 3, 5, 6, 6, 6, 6]


@pytest.fixture
def ds() -> FaceDataset:
    g = torch.Generator().manual_seed(0)
    return FaceDataset(torch.randint(0, 256, (len(LABELS), 1, 32, 32), dtype=torch.uint8, generator=g),
                       torch.tensor(LABELS), [f"face{i}.png" for i in range(len(LABELS))], name="toy", split="test",
                       layout="toy", root=None)


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 7))
    m.class_names = CLASS_NAMES
    return m


def _pngs(outputs) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(o["data"]["image/png"]))) for o in outputs
            if o["output_type"] == "display_data"]


def _view(browser) -> tuple[str, ...]:
    return tuple(o["data"]["image/png"] for o in browser.view.outputs)


def test_browser_draws_one_face_and_one_chart_and_replaces_them_once_per_change(model, ds):
    figures_before = plt.get_fignums()
    b = explore.DatasetBrowser(model, ds)
    face, chart = _pngs(b.view.outputs)
    assert b.renders == 1 and b.shown == 0
    assert face.size == (explore.FACE_PIXELS, explore.FACE_PIXELS) and chart.width > chart.height
    assert b.probs.sum() == pytest.approx(1, abs=1e-5)

    seen = {_view(b)}
    b.item_pick.value = 2
    assert (b.renders, b.shown) == (2, 2) and _view(b) not in seen
    seen.add(_view(b))
    # a new class starts at its first item: one redraw, not one for the class and one for the clamped slider
    b.class_pick.value = "surprise"
    assert (b.renders, b.shown, b.item_pick.value, b.item_pick.max) == (3, 6, 0, 3)
    assert len(b.view.outputs) == 2 and _view(b) not in seen
    b.item_pick.value = 3
    assert (b.renders, b.shown) == (4, 9)
    b.class_pick.value = "sad"  # item 3 of surprise, but sad has one image
    assert (b.renders, b.shown, b.item_pick.max) == (5, 5, 0)
    b.class_pick.value = "disgust"
    assert b.renders == 6 and b.shown is None and b.probs is None and b.snapshot() is None
    assert [o["output_type"] for o in b.view.outputs] == ["stream"]
    assert "no disgust images" in b.view.outputs[0]["text"]
    assert plt.get_fignums() == figures_before  # every figure closed: the inline backend redraws none


def test_displayed_browser_carries_a_static_image_for_saved_notebooks(model, ds):
    b = explore.DatasetBrowser(model, ds)
    bundle = b._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == b.widget.model_id
    assert not bundle["text/plain"].startswith(("VBox", "<"))
    snapshot = Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))
    face, chart = _pngs(b.view.outputs)
    assert snapshot.width > face.width + chart.width and snapshot.height == max(face.height, chart.height)
    b.class_pick.value = "disgust"
    assert "image/png" not in b._repr_mimebundle_()  # nothing to show, no stale picture


def test_upload_predictor_shows_input_and_chart_or_the_error(model):
    u = explore.UploadPredictor(model, image_size=32)
    assert u._repr_mimebundle_()["text/plain"].startswith("UploadPredictor")
    buf = io.BytesIO()
    Image.new("RGB", (50, 60), (90, 120, 200)).save(buf, format="png")
    now = datetime.datetime.now(datetime.timezone.utc)
    u.upload.value = ({"name": "me.png", "type": "image/png", "size": buf.tell(), "last_modified": now,
                       "content": memoryview(buf.getvalue())},)
    face, chart = _pngs(u.view.outputs)
    assert face.size == (explore.FACE_PIXELS, explore.FACE_PIXELS) and chart.width > chart.height
    assert u.last.sum() == pytest.approx(1, abs=1e-5)
    u.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 4, "last_modified": now,
                       "content": memoryview(b"nope")},)
    assert [o["output_type"] for o in u.view.outputs] == ["stream"]
    assert u.view.outputs[0]["text"].startswith("cannot read notes.txt")


def test_predict_image_accepts_read_only_arrays_without_a_warning(model):
    image = np.asarray(Image.new("L", (40, 40), 128))  # PIL's arrays are read-only
    assert not image.flags.writeable
    probs, seen = explore.predict_image(model, image, 32)
    assert probs.shape == (7,) and probs.sum() == pytest.approx(1, abs=1e-5) and seen.shape == (32, 32)
