"""The data-quality audit's figure (resemote_lib/reports/audit_figure.py, put together by
``plots.quality_examples``): every split pair and kind, label conflicts and blanks, captioned."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from resemote_lib.data.audit import QualityReport, quality_report
from resemote_lib.data.duplicates import BLANK_COLUMNS, PAIR_COLUMNS
from resemote_lib.reports import audit_figure, plots

from .planted import hand_built_splits


def test_quality_examples_figure_covers_every_combination():
    splits = hand_built_splits()
    report = quality_report(splits, use_cache=False)
    fig = plots.quality_examples(report, splits, per_kind=2)
    titles = "\n".join(ax.get_title(loc="left") for ax in fig.get_axes())
    for r in report.summary().query("pairs > 0").itertuples():
        assert f"{r.split_a}/{r.split_b} {r.kind} r=" in titles
    assert "angry | happy" in titles  # labels in the captions
    assert titles.count("group ") == 2 and "blank std=0.0" in titles
    assert {s.get_suptitle().split(":")[0] for s in fig.subfigs} == {
        "duplicate pairs", "label conflicts", "blank images"}
    plt.close(fig)
    empty = QualityReport(pd.DataFrame(columns=PAIR_COLUMNS), pd.DataFrame(columns=BLANK_COLUMNS),
                          {}, {}, 0.0)
    plt.close(plots.quality_examples(empty, {}))


def test_the_figure_has_one_section_per_kind_of_finding():
    splits = hand_built_splits()
    parts = audit_figure.sections(quality_report(splits, use_cache=False), splits, per_kind=2, conflicts=4,
                                  blanks=8, cols=4)
    assert [part.title.split(":")[0] for part in parts] == ["duplicate pairs", "label conflicts", "blank images"]
    assert [len(part.tiles) for part in parts[1:]] == [2, 3]  # two conflict groups; three blanks
    assert all(len(imgs) == 2 for imgs, _ in parts[0].tiles)  # a pair: both faces side by side
    empty = QualityReport(pd.DataFrame(columns=PAIR_COLUMNS), pd.DataFrame(columns=BLANK_COLUMNS), {}, {}, 0.0)
    assert audit_figure.sections(empty, {}, per_kind=2, conflicts=4, blanks=8, cols=4) == []
