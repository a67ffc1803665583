"""Images as the model's inputs see them: RGB uint8 arrays from files, PIL images and arrays.

Colour order is explicit: the reference's inference scripts feed OpenCV's BGR pixels as RGB;
here a NumPy array must say which it is. Files are decoded as the dataset loaders decode them
(``data.base.to_8bit``: 16-bit PNGs scaled, unusual PIL modes refused by name), turned upright
by their EXIF orientation as photo viewers show them. A path that is not a regular file (a
FIFO, a device) is never opened: reading it could block for ever.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data.base import upright

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def to_rgb(image: str | os.PathLike | Image.Image | np.ndarray, color: str | None = None) -> np.ndarray:
    """An RGB uint8 array from a path, a PIL image or an array whose colour order is given.

    Files and PIL images are turned by their EXIF orientation (``data.base.upright``, which
    evaluation reads them with too): a phone stores a portrait photo sideways with a tag
    saying so, and the model must see the face upright. A path that is not a regular file
    (a FIFO, a device) is refused before it is opened, since reading it could block for ever.

    Args:
        color: for 3-channel arrays, ``"rgb"`` or ``"bgr"`` (OpenCV); required, since the
            two cannot be told apart from the pixels.
    """
    if isinstance(image, str | os.PathLike):
        kind = file_type(Path(image))
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


def file_type(path: Path) -> str:
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


def read_image(path: Path) -> tuple[np.ndarray | None, str | None]:
    """An image file's RGB pixels, or why there are none (never opens a FIFO: it could block)."""
    kind = file_type(path)
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


__all__ = ["VIDEO_SUFFIXES", "file_type", "read_image", "to_rgb"]
