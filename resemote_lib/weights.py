"""Known checkpoints as records, and outputs remapped to the canonical class order by name.

In the spirit of torchvision's weights enums: one record per checkpoint the authors
release (where, under which file name, with which label order, input size and
preprocessing, and its SHA-256 once known). Nothing is downloaded: users fetch the files by
hand from the authors' folder; a file whose hash matches a record is recognised, any other
is still usable and reported as unrecognised with its hash.

``reorder`` is the one place where a model's outputs are put into another order: it
permutes the rows of the final layer by class name, which changes no number. Evaluation
uses it (metrics and predictions.csv are in the canonical order whatever order a checkpoint
was trained in); the Predictor, export and the explorer name each output by the model's
own ``class_names``, so they are right in any order.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preset
from .files import sha256_of
from .labels import CLASS_NAMES, REFERENCE_CLASS_NAMES

# The reference README: "All of the checkpoint models for FER2013, RAF-DB and AffectNet-7 can
# be found here" (a Google Drive folder). The FER2013 file name comes from the reference
# repository's issue #13 (torch.load('weights/fer2013_model.pth') ... ['model_state_dict']).
REFERENCE_FOLDER = "https://drive.google.com/drive/folders/1Daxa6d1-XFxxpg6dyxYl4V-anfiHwtqK"


@dataclass(frozen=True)
class KnownCheckpoint:
    """What a released checkpoint is, expects and means."""

    name: str  # e.g. "reference-fer2013": results of it go to results/<name>/
    dataset: str  # the dataset it was trained on (and is evaluated on by default)
    file_name: str | None  # as published; None where no public text confirms it
    source: str  # where the authors publish it (downloaded by hand)
    class_names: tuple[str, ...] = REFERENCE_CLASS_NAMES  # what its outputs mean, in order
    image_size: int = 64
    channels: int = 3  # grayscale replicated to 3 channels
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    sha256: str | None = None  # of the published file, once known
    note: str = ""

    @property
    def transform(self) -> Preset:
        """The evaluation preprocessing this checkpoint expects (after the resize to
        ``image_size``, done when images are decoded)."""
        return Preset(f"{self.name}-eval", flip=0.0, mean=self.mean, std=self.std, channels=self.channels)


KNOWN: dict[str, KnownCheckpoint] = {
    record.name: record for record in (
        KnownCheckpoint("reference-fer2013", "fer2013", "fer2013_model.pth", REFERENCE_FOLDER,
                        note="{'model_state_dict': ...}; users report 65.9-71.6% on FER2013's test split"),
        KnownCheckpoint("reference-rafdb", "rafdb", None, REFERENCE_FOLDER,
                        note="users report about 36% on RAF-DB's official test list (reference issue #50)"),
        KnownCheckpoint("reference-affectnet", "affectnet", None, REFERENCE_FOLDER),
    )
}


def identify(path: str | os.PathLike) -> tuple[KnownCheckpoint | None, str]:
    """The record whose SHA-256 matches the file (None: unrecognised), and the file's hash
    (read once per file version: evaluation identifies a file, then loads it). A version is the
    file's inode, size, mtime and ctime: a copy that keeps size and mtime (``cp -p``) over it
    still changes the ctime, which no user tool sets."""
    st = os.stat(path)
    digest = _digest(str(Path(path).resolve()), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return next((r for r in KNOWN.values() if r.sha256 == digest), None), digest


@functools.lru_cache(maxsize=16)
def _digest(path: str, version: tuple[int, ...]) -> str:
    return sha256_of(path)


def reorder(model: nn.Module, class_names: tuple[str, ...] = CLASS_NAMES) -> nn.Module:
    """``model`` with its outputs in ``class_names`` order (in place): the final layer's
    rows are permuted by name, an exact operation. ``model.class_names`` must name the
    same classes; a model of other classes (a 6-class variant exists upstream) is an error
    listing both sets."""
    current = tuple(model.class_names)
    if current == tuple(class_names):
        return model
    if sorted(current) != sorted(class_names):
        raise ValueError(f"the model's outputs are {sorted(current)} but {sorted(class_names)} are needed: "
                         f"missing {sorted(set(class_names) - set(current))}, extra "
                         f"{sorted(set(current) - set(class_names))}; it cannot be evaluated on this label set")
    order = torch.tensor([current.index(name) for name in class_names])
    last = model.fc4
    with torch.no_grad():
        last.weight.copy_(last.weight[order].clone())
        if last.bias is not None:
            last.bias.copy_(last.bias[order].clone())
    model.class_names = tuple(class_names)
    return model


def record_for(name_or_path: str | os.PathLike) -> KnownCheckpoint | None:
    """A record by its name, or by a file's hash."""
    if str(name_or_path) in KNOWN:
        return KNOWN[str(name_or_path)]
    return identify(name_or_path)[0] if Path(name_or_path).is_file() else None


__all__ = ["KNOWN", "REFERENCE_FOLDER", "KnownCheckpoint", "identify", "record_for", "reorder"]
