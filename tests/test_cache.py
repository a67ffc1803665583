"""The decoded-image cache (``resemote_lib/data/cache.py``): one decode per file, reused until a
file changes, rebuilt with a warning when an entry is damaged; and the decoder every loader shares,
which reads every photograph mode to the same gray level as the predictor or refuses it by name."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from resemote_lib.data import open_dataset

from . import layouts as L


def test_cache_is_reused_and_rebuilt_on_change(tmp_path, monkeypatch):
    from resemote_lib.data import cache
    root = L.write_fer2013_folders(tmp_path / "fer")
    calls = []
    real = cache.decode_items
    monkeypatch.setattr(cache, "decode_items", lambda *a, **k: calls.append(1) or real(*a, **k))
    open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    first = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    assert len(calls) == 1
    img = next((root / "test" / "angry").glob("PublicTest_*"))
    from PIL import Image
    Image.new("L", (48, 48), 255).save(img)  # changes size and mtime
    second = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    assert len(calls) == 2
    assert not torch.equal(first.images, second.images)


GRAY = 100  # the gray level each test image holds, in whatever mode it is stored


def _write_mode(path: Path, mode: str) -> Path:
    """A real file, written by PIL, whose pixels are GRAY in ``mode``."""
    from PIL import Image

    size = (8, 8)
    if mode in ("I;16", "I;16B"):  # 16-bit PNG (Pillow opens it as I;16) and big-endian 16-bit TIFF
        arr = np.full(size, GRAY * 257, np.dtype("<u2" if mode == "I;16" else ">u2"))
        img = Image.frombytes(mode, size, arr.tobytes())
    elif mode == "I":
        img = Image.fromarray(np.full(size, GRAY * 257, np.int32))
    elif mode == "F":
        img = Image.fromarray(np.full(size, GRAY / 255, np.float32))
    elif mode == "1":
        img = Image.new("1", size, 1)
    elif mode in ("P", "PA"):
        img = Image.new("L", size, GRAY).convert("RGB").convert("P")
        if mode == "PA":
            img = img.convert("PA")
    elif mode == "CMYK":
        img = Image.new("CMYK", size, (0, 0, 0, 255 - GRAY))
    elif mode == "YCbCr":
        img = Image.new("YCbCr", size, (GRAY, 128, 128))
    elif mode == "LAB":
        img = Image.new("LAB", size, (40, 128, 128))
    else:
        img = Image.new("L", size, GRAY).convert(mode)
    img.save(path)
    return path


_MODE_FILES = {"1": "png", "L": "png", "P": "png", "LA": "png", "PA": "tiff", "RGB": "png", "RGBA": "png",
               "CMYK": "jpg", "YCbCr": "tiff", "I;16": "png", "I;16B": "tiff", "I": "tiff"}


@pytest.mark.parametrize("mode", list(_MODE_FILES))
def test_every_photo_mode_decodes_to_its_gray_level(tmp_path, mode):
    from PIL import Image

    from resemote_lib.data.base import to_gray_square
    from resemote_lib.data.cache import _decode_file
    from resemote_lib.predict import to_rgb

    path = _write_mode(tmp_path / f"img.{_MODE_FILES[mode]}", mode)
    with Image.open(path) as img:
        assert img.mode == mode  # the file really is in that mode when read back
    expected = 255 if mode == "1" else GRAY
    loaded = _decode_file((path, 4, None))  # the dataset loaders' path
    assert isinstance(loaded, np.ndarray) and np.abs(loaded.astype(int) - expected).max() <= 2, (mode, loaded)
    rgb = to_rgb(path)  # the predictor's path: same pixels
    assert rgb.dtype == np.uint8 and np.abs(rgb.astype(int) - expected).max() <= 2
    assert np.array_equal(to_gray_square(Image.fromarray(rgb), 4), loaded)


def test_sixteen_bit_png_scales_instead_of_clipping(tmp_path):
    """PIL's convert("L") clips 16-bit values: a dark 16-bit face would turn white."""
    from PIL import Image

    from resemote_lib.data.cache import _decode_file

    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0..65520
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    Image.fromarray(((ramp.astype(int) + 128) // 257).astype(np.uint8)).save(tmp_path / "ramp8.png")
    a, b = _decode_file((tmp_path / "ramp16.png", 64, None)), _decode_file((tmp_path / "ramp8.png", 64, None))
    assert np.array_equal(a, b) and a.min() == 0 and a.max() == 255 and (a == 255).mean() < 0.01  # not 99.6% white


@pytest.mark.parametrize(("mode", "suffix", "message"), [
    ("F", "tiff", r"img\.tiff: PIL mode 'F' \(32-bit floating point pixels\)"),
    ("LAB", "tiff", r"img\.tiff: PIL mode 'LAB'"),
])
def test_modes_that_are_not_photographs_are_refused_by_name(tmp_path, mode, suffix, message):
    from resemote_lib.data.cache import _decode_file
    from resemote_lib.predict import to_rgb

    path = _write_mode(tmp_path / f"img.{suffix}", mode)
    with pytest.raises(ValueError, match=message):
        to_rgb(path)
    assert re.search(message, _decode_file((path, 4, None)))  # the loader excludes and reports it


def test_int32_image_outside_16_bits_is_refused(tmp_path):
    from PIL import Image

    from resemote_lib.predict import to_rgb

    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(tmp_path / "big.tiff")
    with pytest.raises(ValueError, match=r"big\.tiff: PIL mode 'I' with values 70000\.\.70000"):
        to_rgb(tmp_path / "big.tiff")


def _cache_entry(cache: Path, before: set[Path]) -> Path:
    (entry,) = set(cache.glob("*.pt")) - before
    return entry


def test_cache_is_rebuilt_when_a_file_changes_but_keeps_its_size_and_mtime(tmp_path):
    import os

    from PIL import Image

    root = L.write_fer2013_folders(tmp_path / "fer")
    first = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    victim = sorted((root / "test" / "happy").glob("PublicTest_*"))[0]
    st = victim.stat()
    Image.new("L", (48, 48), 255).save(tmp_path / "white.jpg", quality=95)
    data = (tmp_path / "white.jpg").read_bytes()
    victim.write_bytes(data[:st.st_size].ljust(st.st_size, b"\0"))  # what cp -p of another image leaves
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (victim.stat().st_size, victim.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    second = open_dataset("fer2013", root, "val", image_size=48, cache_dir=tmp_path / "c")
    i = second.ids.index(f"happy/{victim.name}")
    assert not torch.equal(first.images[i], second.images[i]) and second.images[i].float().mean() > 200


def test_cache_entry_of_the_wrong_image_size_is_rebuilt(tmp_path):
    root = L.write_fer2013_folders(tmp_path / "fer")
    cache = tmp_path / "c"
    good = open_dataset("fer2013", root, "test", image_size=48, cache_dir=cache)
    entry = _cache_entry(cache, set())
    payload = torch.load(entry, weights_only=True)
    payload["images"] = torch.zeros(len(good), 1, 32, 32, dtype=torch.uint8)  # an entry of another size
    torch.save(payload, entry)
    with pytest.warns(UserWarning, match=rf"decode cache .*{entry.name} is damaged \(images of shape "
                                         r"\(\d+, 1, 32, 32\), expected \(\d+, 1, 48, 48\) uint8\); rebuilding it"):
        again = open_dataset("fer2013", root, "test", image_size=48, cache_dir=cache)
    assert torch.equal(again.images, good.images)


@pytest.mark.parametrize("damage", ["indices", "truncated"])
def test_a_corrupt_cache_entry_is_rebuilt_with_a_warning_naming_it(tmp_path, damage):
    root = L.write_fer2013_folders(tmp_path / "fer")
    cache = tmp_path / "c"
    good = open_dataset("fer2013", root, "train", image_size=48, cache_dir=cache)
    entry = _cache_entry(cache, set())
    if damage == "indices":
        payload = torch.load(entry, weights_only=True)
        payload["keep"] = torch.tensor([0, 1, 999])
        payload["images"] = payload["images"][:3]
        torch.save(payload, entry)
    else:
        entry.write_bytes(entry.read_bytes()[:100])
    with pytest.warns(UserWarning, match=rf"decode cache .*{entry.name} is damaged .*; rebuilding it"):
        again = open_dataset("fer2013", root, "train", image_size=48, cache_dir=cache)
    assert torch.equal(again.images, good.images) and again.ids == good.ids


def test_cache_is_rebuilt_when_a_files_middle_changes_with_its_mtime(tmp_path):
    """Issue 31.3: an edit in the middle of a large file (outside the first and last 4 KiB the
    digest reads) that keeps the size but changes the mtime is seen (README: only an edit that
    keeps size and mtime may go unseen)."""
    import os

    from PIL import Image

    root = tmp_path / "faces" / "happy"
    root.mkdir(parents=True)
    bmp = root / "big.bmp"
    Image.new("L", (160, 160), 40).save(bmp)  # uncompressed: 25 KiB, the middle is pixels
    first = open_dataset("folder", root.parent, "test", image_size=48, cache_dir=tmp_path / "c")
    st = bmp.stat()
    data = bytearray(bmp.read_bytes())
    data[st.st_size // 2 - 3000:st.st_size // 2 + 3000] = b"\xff" * 6000
    bmp.write_bytes(bytes(data))
    os.utime(bmp, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    second = open_dataset("folder", root.parent, "test", image_size=48, cache_dir=tmp_path / "c")
    assert second.images.float().mean() > first.images.float().mean() + 20


def test_corrupt_image_is_excluded_reported_and_warned(tmp_path):
    root = L.write_fer2013_folders(tmp_path / "fer")
    victim = next((root / "train" / "happy").iterdir())
    victim.write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="1 unreadable image"):
        ds = open_dataset("fer2013", root, "train", image_size=48, cache_dir=tmp_path / "c")
    assert len(ds) == sum(L.FER_COUNTS["Training"]) - 1
    assert ds.report["bad_files"][0]["file"] == str(victim)
    with pytest.raises(ValueError, match="unreadable"):
        open_dataset("fer2013", root, "train", image_size=48, strict=True, cache_dir=tmp_path / "c")
