"""A split decoded once into a uint8 tensor, cached on disk, and wrapped as a ``FaceDataset``.

``build_dataset`` decodes what a family lists (``base.Items``) to grayscale uint8 at the
target size, caches that tensor on disk under a key made of the items (ids, labels, files,
face boxes, face detector), and wraps it as ``FaceDataset``. Each cache entry records a
digest of what its pixels came from (every file's size and mtime with its first and last
4 KiB, or the in-memory pixels): an entry whose files changed, even keeping size and mtime
(``cp -p``, ``rsync -a``, unzip) unless only in the middle of a large file, or whose tensor
has the wrong shape, or that is damaged, is rebuilt. Files are decoded as ``predict`` reads
a photo (``base.upright``: EXIF orientation applied, then ``base.to_8bit``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .. import paths
from ..files import atomic_torch_save
from ..progress import tqdm
from .base import Box, FaceDataset, FaceLocator, Items, to_gray_square, upright
from .transforms import EVAL, TRAIN

log = logging.getLogger(__name__)
CACHE_VERSION = 3  # bump when decoding changes, so old caches are not reused (3: EXIF orientation)


def _cache_key(name: str, layout: str, split: str, image_size: int, items: Items) -> str:
    """Which items, decoded how: ids, labels, files, boxes, face detector (not their bytes:
    ``content_digest`` checks those when the entry is read)."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, name, layout, split, image_size]).encode())
    h.update(json.dumps([items.ids, items.labels]).encode())
    h.update(json.dumps(items.boxes or []).encode())
    h.update(json.dumps([str(f) for f in items.files or []]).encode())
    h.update(json.dumps(items.locate.key if items.locate is not None else None).encode())
    return h.hexdigest()[:24]


_EDGE = 4096  # bytes read from each end of a file for its digest


def file_digest(path: Path) -> bytes:
    """A file's size and mtime with its first and last 4 KiB: the whole file below 8 KiB (a
    FER2013 JPEG is ~1.5 KB), and for larger ones what a re-encode or a different image
    changes; an edit in the middle shows in the mtime (only one that keeps size and mtime
    stays unseen).

    Plain ``os`` calls, one thread: on FER2013's 28,709 training files this costs what the
    ``stat`` of each file did (about 0.6 s warm); a thread pool was 5x slower.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b"missing"
    try:
        st = os.fstat(fd)
        size = st.st_size
        data = os.read(fd, 2 * _EDGE) if size <= 2 * _EDGE else os.read(fd, _EDGE) + os.pread(fd, _EDGE, size - _EDGE)
    except OSError:
        return b"unreadable"
    finally:
        os.close(fd)
    return size.to_bytes(8, "little") + st.st_mtime_ns.to_bytes(16, "little", signed=True) + data


def content_digest(items: Items) -> str:
    """A digest of what the items' pixels come from: the in-memory pixels, or every
    file's ``file_digest``. Unlike size and mtime, it changes when a copy keeps those."""
    h = hashlib.sha256()
    if items.pixels is not None:
        h.update(repr(items.pixels.shape).encode())
        h.update(np.ascontiguousarray(items.pixels).data)
    for f in items.files or []:
        data = file_digest(f)
        h.update(len(data).to_bytes(4, "little") + data)
    return h.hexdigest()


def _decode_file(args: tuple[Path, int, Box | None]) -> np.ndarray | str:
    """A file made gray and square: upright (EXIF) when whole, as stored when cropped to a box
    (the box is given in the stored pixels' coordinates)."""
    path, size, box = args
    try:
        with Image.open(path) as img:
            img.load()
            return to_gray_square(img if box is not None else upright(img, path), size, box, source=path)
    except Exception as e:  # PIL raises many types on corrupt data; we report, not crash
        return f"{type(e).__name__}: {e}"


NO_FACE = None  # what ``_decode_face`` returns for a photo in which the detector found no face


def _decode_face(args: tuple[Path, int, FaceLocator]) -> np.ndarray | str | None:
    """The face ``locate`` finds in a whole photo, cropped as the Predictor crops it (from
    the RGB image), then made gray and square; ``NO_FACE`` when it finds none."""
    path, size, locate = args
    try:
        with Image.open(path) as img:
            img.load()
            rgb = np.asarray(upright(img, path).convert("RGB"))
        box = locate(rgb)
        if box is None:
            return NO_FACE
        x, y, w, h = box
        return to_gray_square(Image.fromarray(rgb[y:y + h, x:x + w]), size)
    except Exception as e:  # as _decode_file: reported, not a crash
        return f"{type(e).__name__}: {e}"


@dataclass
class Decoded:
    """What decoding a split gives, and what its cache entry holds."""

    images: Tensor  # uint8 (len(keep), 1, S, S)
    keep: list[int]  # the items decoded, as indices into the listing
    bad: list[dict]  # unreadable files: {"id", "file", "error"}
    no_face: list[dict]  # photos in which the face detector found no face: {"id", "file"}


def decode_items(items: Items, image_size: int, *, desc: str = "decode") -> Decoded:
    """Decode every item (cropping each file's face when ``items.locate`` is set)."""
    n = len(items.ids)
    out = np.zeros((n, image_size, image_size), dtype=np.uint8)
    bad: list[dict] = []
    no_face: list[dict] = []
    keep: list[int] = []
    if items.pixels is not None:
        for i in range(n):
            out[i] = to_gray_square(Image.fromarray(items.pixels[i]), image_size)
        keep = list(range(n))
    else:
        assert items.files is not None
        if items.locate is not None:
            decode, jobs = _decode_face, [(f, image_size, items.locate) for f in items.files]
        else:
            boxes = items.boxes or [None] * n
            decode, jobs = _decode_file, [(f, image_size, b) for f, b in zip(items.files, boxes, strict=True)]
        workers = min(8, (os.cpu_count() or 1) * 2)
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(decode, jobs, chunksize=64)
            for i, res in enumerate(tqdm(results, total=n, desc=desc, unit="img", leave=False, disable=n < 500)):
                if isinstance(res, str):
                    bad.append({"id": items.ids[i], "file": str(items.files[i]), "error": res})
                elif res is NO_FACE:
                    no_face.append({"id": items.ids[i], "file": str(items.files[i])})
                else:
                    out[i] = res
                    keep.append(i)
    images = torch.from_numpy(out[keep]).unsqueeze(1).contiguous()
    return Decoded(images, keep, bad, no_face)


def _read_entry(cache_file: Path, n: int, image_size: int, content: str) -> Decoded | None:
    """The cache entry, if it is sound and its files are unchanged; else None (rebuild).

    A damaged entry (unreadable, wrong image size, indices outside the split) is a warning
    naming it; changed files are a log line (rebuilding is the point of the digest).
    """
    if not cache_file.is_file():
        return None
    try:
        entry = torch.load(cache_file, map_location="cpu", weights_only=True)
        decoded = Decoded(entry["images"], entry["keep"].tolist(), json.loads(entry["bad"]),
                          json.loads(entry["no_face"]))
        problem = _entry_problem(decoded, n, image_size)
        fresh = entry["content"] == content
    except Exception as e:  # a damaged cache is rebuilt, not trusted
        problem, fresh = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}", True
    if problem:
        warnings.warn(f"decode cache {cache_file} is damaged ({problem}); rebuilding it", stacklevel=4)
        return None
    if not fresh:
        log.info("decode cache %s: its files changed since it was written; decoding them again", cache_file)
        return None
    return decoded


def _entry_problem(decoded: Decoded, n: int, image_size: int) -> str | None:
    """What is wrong with a cache entry's contents, or None."""
    images, keep = decoded.images, decoded.keep
    expected = (len(keep), 1, image_size, image_size)
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or tuple(images.shape) != expected:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        return f"images of shape {shape}, expected {expected} uint8"
    k = np.asarray(keep, dtype=np.int64)
    if k.size and (k.min() < 0 or k.max() >= n or (np.diff(k) <= 0).any()):
        return f"item indices outside the split's {n} items, or out of order"
    if not isinstance(decoded.bad, list) or not isinstance(decoded.no_face, list):
        return "malformed lists of excluded files"
    return None


def build_dataset(
    items: Items,
    *,
    name: str,
    layout: str,
    split: str,
    root: Path,
    image_size: int,
    train: bool,
    strict: bool = False,
    cache_dir: Path | None = None,
) -> FaceDataset:
    """Decode (or load from cache) ``items`` and wrap them as a ``FaceDataset``."""
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.CACHE / "datasets"
    key = _cache_key(name, layout, split, image_size, items)
    cache_file = cache_dir / f"{name}-{split}-{image_size}-{key}.pt"
    content = content_digest(items)
    decoded = _read_entry(cache_file, len(items.ids), image_size, content)
    if decoded is None:
        decoded = decode_items(items, image_size, desc=f"{name}/{split}")
        entry = {"images": decoded.images, "keep": torch.tensor(decoded.keep, dtype=torch.int64),
                 "bad": json.dumps(decoded.bad), "no_face": json.dumps(decoded.no_face), "content": content}
        try:
            atomic_torch_save(entry, cache_file)
        except OSError as e:  # a read-only cache dir costs speed, not correctness
            log.warning("could not write cache %s: %s", cache_file, e)
    report = dict(items.report)
    report["bad_files"] = decoded.bad
    report["n_listed"] = len(items.ids)
    bad = decoded.bad
    if bad:
        msg = (f"{name}/{split}: {len(bad)} unreadable image(s) excluded, e.g. {bad[0]['file']} "
               f"({bad[0]['error']}); the full list is in dataset.report['bad_files']")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, stacklevel=3)
    if items.locate is not None:
        report["no_face"] = len(decoded.no_face)
        report["no_face_files"] = [x["file"] for x in decoded.no_face]
        if decoded.no_face:
            warnings.warn(f"{name}/{split}: no face found in {len(decoded.no_face)} of {len(items.ids)} image(s), "
                          f"excluded, e.g. {decoded.no_face[0]['file']}; the list is in "
                          "dataset.report['no_face_files']", stacklevel=3)
    labels = torch.tensor([items.labels[i] for i in decoded.keep], dtype=torch.int64)
    ids = [items.ids[i] for i in decoded.keep]
    return FaceDataset(decoded.images, labels, ids, name=name, split=split, layout=layout, root=root,
                       transform=TRAIN if train else EVAL, report=report)


__all__ = ["CACHE_VERSION", "Decoded", "build_dataset", "content_digest", "decode_items", "file_digest"]
