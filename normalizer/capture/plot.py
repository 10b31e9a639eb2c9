"""Figures of ``fsnorm stats`` results (``--plot``): events per second over time with the overflows marked, the
split-gap histogram with the window candidates, and the kernel queue's backlog over time; one line per capture.

matplotlib is an optional extra (``pip install 'fsnorm[plot]'``); without it :func:`plot` raises
:class:`PlotUnavailable`, which the CLI prints as one line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import FsnormError


class PlotUnavailable(FsnormError):
    """--plot was asked for, but matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib, which is not installed: "
                              "pip install 'fsnorm[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_target(path: str | os.PathLike[str]) -> None:
    """Raise before any work if ``path`` is not a .png/.svg name or matplotlib is missing."""
    name = os.fspath(path)
    if not name.lower().endswith((".png", ".svg")):
        raise FsnormError(f"--plot writes .png or .svg files, not {os.path.basename(name)!r}")
    _pyplot()


def plot(results: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, dpi: int = 80) -> None:
    """Write the three panels for the captures' results to ``path`` (.png or .svg, by its suffix)."""
    check_target(path)
    plt = _pyplot()
    fig, (ax_rate, ax_gap, ax_backlog) = plt.subplots(3, 1, figsize=(8, 8.5), constrained_layout=True)
    try:
        for res in results:
            _rate(ax_rate, res)
            _backlog(ax_backlog, res)
        _gaps(ax_gap, results)
        ax_rate.set_title("events per second (overflows marked x)")
        ax_rate.set_xlabel("seconds since the capture started")
        ax_rate.set_ylabel("events/s")
        ax_backlog.set_title("kernel queue backlog after each read (max per bin)")
        ax_backlog.set_xlabel("seconds since the capture started")
        units = {r["queue"]["backlog_unit"] for r in results}
        ax_backlog.set_ylabel(" / ".join(sorted(units)))
        ax_backlog.set_ylim(bottom=0, top=max(1.0, ax_backlog.get_ylim()[1]))
        for ax in (ax_rate, ax_backlog):
            if len(results) > 1:
                ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def _label(res: dict[str, Any]) -> str:
    return os.path.basename(str(res.get("capture", ""))) or "capture"


def _times(series: dict[str, Any], n: int) -> list[float]:
    width = float(series["bin_s"])
    return [i * width for i in range(n)]


def _rate(ax: Any, res: dict[str, Any]) -> None:
    series = res["series"]
    counts = series["events"]
    width = float(series["bin_s"])
    xs = _times(series, len(counts))
    line = ax.plot(xs, [c / width for c in counts], drawstyle="steps-post", label=_label(res))
    marks = [(x, c / width) for x, c, o in zip(xs, counts, series["overflows"], strict=False) if o]
    if marks:
        ax.plot([m[0] for m in marks], [m[1] for m in marks], "x", color=line[0].get_color(), markersize=9)


def _backlog(ax: Any, res: dict[str, Any]) -> None:
    series = res["series"]
    values = series["backlog_max"]
    ax.plot(_times(series, len(values)), values, drawstyle="steps-post", label=_label(res))


def _gaps(ax: Any, results: Sequence[dict[str, Any]]) -> None:
    """Split gaps (queue seen empty after the FROM's read), in ms, log-spaced bins; the windows as lines."""
    ax.set_title("renames split across reads, queue empty after the 1st half: gap (windows dashed)")
    ax.set_xlabel("gap (ms, log scale)")
    ax.set_ylabel("pairs")
    ax.set_xscale("log")
    windows: list[float] = []
    any_gap = False
    for res in results:
        races = res.get("races")
        if not races:
            continue
        windows = [float(w) for w in races["lost_at_window_ms"]]
        samples = [g / 1e3 for g in races["gap_drained_samples_us"] if g > 0]
        if samples:
            any_gap = True
            lo, hi = min(samples), max(samples)
            edges = [lo * (hi / lo) ** (i / 30) for i in range(31)] if hi > lo else [lo / 2, lo * 2]
            # The samples are every gap, or evenly spaced quantiles of many: each stands for n / len of them.
            weight = races["split_drained"] / len(races["gap_drained_samples_us"])
            ax.hist(samples, bins=edges, weights=[weight] * len(samples), alpha=0.6, label=_label(res))
    if not any_gap:
        ax.text(0.5, 0.5, "no pair was split with the queue empty (or no inotify capture)",
                transform=ax.transAxes, ha="center", va="center")
        ax.set_xlim(0.01, 100)
    for w in windows:
        ax.axvline(w, color="grey", linestyle="--", linewidth=1)
        ax.text(w, 1.0, f" {w:g} ms", transform=ax.get_xaxis_transform(), fontsize="small", va="top",
                rotation=90)
    if any_gap and len(results) > 1:
        ax.legend(fontsize="small")
