"""The parts of the data-quality audit's figure (``plots.quality_examples`` puts them together).

Which examples of a ``data.audit.QualityReport`` to show: duplicate pairs of every (split
pair, kind), spread over the correlation range; label-conflict groups; blank images of
every reason. Each is a tile of one or two faces with a caption (splits, kind,
correlation, labels, file stems), and each kind of example a ``Section``: a titled grid of
tiles drawn into a subfigure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import SubFigure

from ..data.audit import QualityReport
from ..data.base import FaceDataset

Tile = tuple[list[np.ndarray], str]  # one or two faces, and their caption


@dataclass
class Section:
    """A titled grid of tiles, ``cols`` tiles per row."""

    tiles: list[Tile]
    title: str
    cols: int

    @property
    def height(self) -> float:
        """Inches: 1.25 per row of tiles, and the title."""
        return (len(self.tiles) + self.cols - 1) // self.cols * 1.25 + 0.35

    def draw(self, fig: SubFigure) -> None:
        """The tiles in rows of ``cols`` within ``fig``, each caption above its first image."""
        width = max(len(imgs) for imgs, _ in self.tiles)
        rows = (len(self.tiles) + self.cols - 1) // self.cols
        axes = fig.subplots(rows, self.cols * width, squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for k, (imgs, caption) in enumerate(self.tiles):
            r, c = divmod(k, self.cols)
            for j, img in enumerate(imgs):
                axes[r][c * width + j].imshow(img, cmap="gray", vmin=0, vmax=255)
            axes[r][c * width].set_title(caption, fontsize=6.5, loc="left")
        fig.suptitle(self.title, fontsize=10, x=0.01, ha="left")


def sections(report: QualityReport, splits: dict[str, FaceDataset], *, per_kind: int, conflicts: int, blanks: int,
             cols: int) -> list[Section]:
    """The figure's sections that have tiles: duplicate pairs, label conflicts, blank images
    (see ``plots.quality_examples`` for the arguments)."""
    groups = report.conflicts()
    return [section for section in (
        Section(_pair_tiles(report, splits, per_kind),
                f"duplicate pairs: {len(report.pairs):,} in all, {per_kind} per split pair and kind "
                "(spread over correlation)", cols),
        Section(_conflict_tiles(groups, splits, conflicts),
                f"label conflicts: {groups['group'].nunique() if len(groups) else 0} group(s) "
                "holding more than one label", cols),
        Section(_blank_tiles(report.blanks, splits, blanks),
                f"blank images: {len(report.blanks)} (kept out of the pair search)", cols * 2),
    ) if section.tiles]


def _pair_tiles(report: QualityReport, splits: dict[str, FaceDataset], per_kind: int) -> list[Tile]:
    """``per_kind`` pairs of every (split pair, kind) found, in the order of ``report.summary``."""
    tiles = []
    by_combo = dict(iter(report.pairs.groupby(["split_a", "split_b", "kind"], sort=False)))
    for a, b, kind in report.summary()[["split_a", "split_b", "kind"]].itertuples(index=False):
        if (a, b, kind) not in by_combo:  # summary lists every combination in order, zeros too
            continue
        for r in _spread(by_combo[(a, b, kind)], per_kind, by="correlation").itertuples():
            tiles.append(([_face(splits, a, r.index_a), _face(splits, b, r.index_b)],
                          f"{a}/{b} {kind} r={r.correlation:.3f}\n{r.label_a} | {r.label_b}\n"
                          f"{_short_id(r.id_a)} | {_short_id(r.id_b)}"))
    return tiles


def _conflict_tiles(groups: pd.DataFrame, splits: dict[str, FaceDataset], n: int) -> list[Tile]:
    """``n`` conflicting groups (of ``QualityReport.conflicts``): a member and one with another label."""
    tiles = []
    for g in _spread(groups[["group"]].drop_duplicates(), n)["group"]:
        members = groups[groups["group"] == g]
        first = members.iloc[0]
        other = members[members["label"] != first["label"]].iloc[0]
        tiles.append(([_face(splits, first["split"], first["index"]), _face(splits, other["split"], other["index"])],
                      f"group {g} ({len(members)} images)\n{first['split']} {first['label']} | "
                      f"{other['split']} {other['label']}\n{_short_id(first['id'])} | {_short_id(other['id'])}"))
    return tiles


def _blank_tiles(blanks: pd.DataFrame, splits: dict[str, FaceDataset], n: int) -> list[Tile]:
    """Up to ``n`` blank images, taken round-robin over the reasons so that every reason shows."""
    tiles = []
    by_reason = [sub for _, sub in blanks.groupby("reason", sort=True)]
    for k in range(max((len(s) for s in by_reason), default=0)):
        for sub in by_reason:
            if k < len(sub) and len(tiles) < n:
                r = sub.iloc[k]
                tiles.append(([_face(splits, r["split"], r["index"])],
                              f"{r['reason']} std={r['std']:.1f}\n{r['split']} {r['label']}\n{_short_id(r['id'])}"))
    return tiles


def _face(splits: dict[str, FaceDataset], split: str, index: int) -> np.ndarray:
    return splits[split].images[int(index), 0].numpy()


def _short_id(item_id: str) -> str:
    """``angry/Training_10118481.jpg`` -> ``Training_10118481``: captions stay one line."""
    return Path(str(item_id)).stem


def _spread(frame: pd.DataFrame, n: int, by: str | None = None) -> pd.DataFrame:
    """``n`` rows evenly spread over ``frame`` (sorted by ``by``, ascending): the weakest
    and the strongest, not only the first found."""
    if by is not None:
        frame = frame.sort_values(by, kind="stable")
    if len(frame) <= n:
        return frame
    return frame.iloc[np.unique(np.linspace(0, len(frame) - 1, n).round().astype(int))]


__all__ = ["Section", "Tile", "sections"]
