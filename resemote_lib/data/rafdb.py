"""RAF-DB basic (Li et al., 2017): the official release and the Kaggle release.

No official validation split exists: val is a stratified, seeded hold-out of the
official training list (``val_fraction``, default 10%), disjoint from train; test is the
official test list.
"""

from __future__ import annotations

from pathlib import Path

from ..labels import RAFDB_CODES
from .base import Items, read_csv_rows, stratified_split

LAYOUTS = {
    "rafdb-official": "basic/EmoLabel/list_patition_label.txt + basic/Image/aligned/",
    "rafdb-kaggle": "train_labels.csv, test_labels.csv + DATASET/{train,test}/<1..7>/ (shuvoalok/raf-db-dataset)",
}
_LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"


def detect(folder: Path) -> str | None:
    if (folder / _LABEL_FILE).is_file():
        return "rafdb-official"
    if (folder / "basic" / _LABEL_FILE).is_file():
        return "rafdb-official"
    if (folder / "train_labels.csv").is_file() and (folder / "DATASET").is_dir():
        return "rafdb-kaggle"
    return None


def _code(value: str, where: str) -> int:
    try:
        code = int(value)
    except ValueError:
        raise ValueError(f"{where}: label {value!r} is not an integer") from None
    if code not in RAFDB_CODES:
        raise ValueError(f"{where}: unknown label code {code} (expected 1..7)")
    return RAFDB_CODES[code]


def _read_official(base: Path) -> dict[str, list[tuple[str, int]]]:
    """{"train": [(name, label)], "test": [...]} from list_patition_label.txt."""
    path = base / _LABEL_FILE
    out: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}, line {line_no}: expected '<image> <label>', got {line!r}")
        name, label = parts
        part = name.split("_", 1)[0]
        if part not in out:
            raise ValueError(f"{path}, line {line_no}: image {name!r} is neither train_* nor test_*")
        out[part].append((name, _code(label, f"{path}, line {line_no}")))
    return out


def _read_kaggle(root: Path, part: str) -> list[tuple[str, int]]:
    path = root / f"{part}_labels.csv"
    return [(row[0].strip(), _code(row[1].strip(), where)) for where, row in read_csv_rows(path, ["image", "label"])]


def list_items(root: Path, layout: str, split: str, *, val_fraction: float = 0.1, seed: int = 0,
               **_: object) -> Items:
    part = "test" if split == "test" else "train"
    if layout == "rafdb-official":
        base = root if (root / _LABEL_FILE).is_file() else root / "basic"
        rows = _read_official(base)[part]
        aligned = base / "Image" / "aligned"
        files = [aligned / f"{Path(name).stem}_aligned.jpg" for name, _ in rows]
        sources = [base / _LABEL_FILE]
    else:
        rows = _read_kaggle(root, part)
        # The CSV is the ground truth; the image sits in the folder named by its label code.
        code_of = {v: k for k, v in RAFDB_CODES.items()}
        files = [root / "DATASET" / part / str(code_of[y]) / name for name, y in rows]
        sources = [root / f"{part}_labels.csv"]
    ids = [name for name, _ in rows]
    labels = [y for _, y in rows]
    report: dict[str, object] = {"source": str(sources[0]), "rule": f"official {part} list"}
    if part == "train":
        val_idx, train_idx = stratified_split(labels, (val_fraction,), seed)
        keep = val_idx if split == "val" else train_idx
        ids, labels, files = [ids[i] for i in keep], [labels[i] for i in keep], [files[i] for i in keep]
        report.update(val_fraction=val_fraction, seed=seed, val_from="official train list, stratified",
                      rule=f"{'stratified seeded hold-out' if split == 'val' else 'rest'} of the official train list")
    return Items(ids=ids, labels=labels, files=files, sources=sources, report=report)


__all__ = ["LAYOUTS", "detect", "list_items"]
