"""Study figures: a log x axis is ticked at the swept values, with their labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from contrastkit.sweep.aggregate import PointStats  # noqa: E402
from contrastkit.sweep.report import _label_swept_values  # noqa: E402
from contrastkit.sweep.spec import Plot  # noqa: E402


def _point(tau: float) -> PointStats:
    return PointStats(
        stage="validation",
        variant="",
        point={"objective.params.temperature": tau},
        seeds=[0],
        failed=[],
        mean={"acc": 0.5},
        std={"acc": None},
        values={"acc": [0.5]},
    )


def test_log_axis_ticks_are_the_swept_values():
    fig, ax = plt.subplots()
    taus = [0.05, 0.1, 0.2, 0.3, 1.0]
    ax.plot(taus, [1, 2, 3, 4, 5])
    ax.set_xscale("log")
    plot = Plot(kind="line", x="objective.params.temperature", y="acc", logx=True)
    _label_swept_values(ax, plot, [_point(t) for t in reversed(taus)])
    fig.canvas.draw()
    assert list(ax.get_xticks()) == taus
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.05", "0.1", "0.2", "0.3", "1"]
    assert not ax.xaxis.get_minor_ticks() or not ax.xaxis.get_minorticklocs().size
    plt.close(fig)
