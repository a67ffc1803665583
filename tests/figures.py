"""Helpers of the figure tests (test_plots.py, test_ablation_figures.py): what overlaps what in
a drawn figure, and the colours its legend shows."""

from __future__ import annotations

from matplotlib.colors import to_rgba


def boxes_overlap(a, b) -> bool:
    """Whether two matplotlib ``Bbox``es (display coordinates) overlap."""
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def legend_clear_of_bars(fig) -> list[str]:
    """The bars of ``fig``'s first axes that its legend covers, in words (none: an empty list)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    return [f"bar at x={p.get_x():.2f} h={p.get_height():.1f}" for p in ax.patches
            if p.get_height() > 0 and boxes_overlap(legend, p.get_window_extent(renderer))]


def legend_colours(fig) -> dict[str, tuple]:
    """``{entry: RGBA}`` of the legend of ``fig``'s first axes."""
    legend = fig.axes[0].get_legend()
    return {t.get_text(): to_rgba(h.get_facecolor()) for t, h in zip(legend.get_texts(), legend.legend_handles,
                                                                   strict=True)}
