"""The latency comparison as a picture (PNG or SVG, from the file's suffix).

matplotlib is an optional extra (``pip install 'pycrid[plot]'``); without it
``--plot`` fails with one line saying so, and nothing else needs it.
"""

from __future__ import annotations

from pathlib import Path

from pycrid.tools.compare.report import Result

INSTALL_HINT = "--plot needs matplotlib: pip install 'pycrid[plot]'"


class PlotError(Exception):
    pass


def check_available() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise PlotError(INSTALL_HINT) from e


def plot(result: Result, path: Path) -> None:
    """Median latency per call, one bar per side, p95 as the error bar's top."""
    check_available()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = result.timings
    labels = [f"{t.scenario}: {t.call}" for t in rows]
    figure, axes = pyplot.subplots(figsize=(10, max(3.0, 0.3 * len(rows) + 1.5)))
    positions = range(len(rows))
    for offset, side, median, p95 in (
        (-0.2, f"A: {result.a}", [t.median_a for t in rows], [t.p95_a for t in rows]),
        (0.2, f"B: {result.b}", [t.median_b for t in rows], [t.p95_b for t in rows]),
    ):
        ms = [m * 1000 for m in median]
        upper = [(p - m) * 1000 for m, p in zip(median, p95, strict=True)]
        axes.barh(
            [i + offset for i in positions],
            ms,
            height=0.4,
            label=side,
            xerr=[[0] * len(ms), upper],
        )
    axes.set_yticks(list(positions), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("milliseconds (bar: median, whisker: p95)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
