"""Plots of a results dict (matplotlib): used by notebooks/pairing_races.ipynb and for the README figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None  # notebooks keep their backend
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmarks.scoring import CATEGORIES  # noqa: E402

COLORS = {"fsnorm": "#1f77b4", "fsnorm-api": "#17becf", "fsnorm-fanotify": "#9467bd", "watchdog": "#d62728",
          "watchdog-full": "#ff7f0e", "pyinotify": "#2ca02c", "raw": "#7f7f7f"}
CATEGORY_COLORS = {"joined": "#2ca02c", "one_sided": "#98df8a", "split": "#ffbb78", "wrong": "#d62728",
                   "missed": "#c7c7c7"}


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "error" not in r]


def latency_cdfs(ax: Axes, results: dict[str, Any], kind: str = "joined") -> None:
    """CDF of the latency from rename syscall to user code, per subject, over all scenarios."""
    sessions = results.get("scenarios", {}).get("sessions", {})
    for subject, ses in sessions.items():
        q = ses.get(f"cdf_{kind}_ms") or []
        if not q:
            continue
        _cdf_step(ax, q, subject)
    _cdf_axes(ax, "latency, rename(2) to user code (ms, log)", "share of renames",
              f"{'joined' if kind == 'joined' else 'one-sided'} renames, scenarios")


def storm_latency_cdfs(ax: Axes, results: dict[str, Any], threads: int | None = None) -> None:
    rows = _ok(results.get("storm", {}).get("rows", []))
    if threads is None and rows:
        threads = max(r["threads"] for r in rows)
    for r in rows:
        q = r.get("cdf_joined_ms") or []
        if r["threads"] != threads or not q:
            continue
        _cdf_step(ax, q, r["subject"])
    _cdf_axes(ax, "latency of joined renames (ms, log)", "share of joined renames",
              f"storm, {threads} renaming threads")


def _cdf_step(ax: Axes, q: list[float], subject: str) -> None:
    """One subject's latency CDF from its quantiles ``q`` (ms; at least 1 µs on the log axis)."""
    ax.step([max(v, 1e-3) for v in q], [i / (len(q) - 1) for i in range(len(q))], where="post", label=subject,
            color=COLORS.get(subject))


def _cdf_axes(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _stacked(ax: Axes, labels: list[str], rows: list[dict[str, Any]], title: str) -> None:
    bottoms = [0.0] * len(rows)
    for cat in CATEGORIES:
        vals = [(r.get(cat) or 0) / r["issued"] if r.get("issued") else 0.0 for r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottoms, color=CATEGORY_COLORS[cat], label=cat, width=0.8)
        bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=6)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of renames issued")
    ax.set_title(title)


def accuracy_scenarios(ax: Axes, results: dict[str, Any]) -> None:
    """Heat map subject x scenario: share reported right (joined, or one-sided for moves in/out); the text
    names the main other outcome."""
    rows = _ok(results.get("scenarios", {}).get("rows", []))
    subjects = list(dict.fromkeys(r["subject"] for r in rows))
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    grid = [[float("nan")] * len(workloads) for _ in subjects]
    for r in rows:
        i, j = subjects.index(r["subject"]), workloads.index(r["workload"])
        right = (r["joined"] + r["one_sided"]) / r["issued"] if r["issued"] else float("nan")
        grid[i][j] = right
        other = max(("split", "wrong", "missed"), key=lambda c: r[c])
        label = f"{right:.0%}" + (f"\n{other} {r[other] / r['issued']:.0%}" if r[other] else "")
        ax.text(j, i, label, ha="center", va="center", fontsize=7, color="black")
    ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(workloads)), workloads, rotation=30, fontsize=8)
    ax.set_yticks(range(len(subjects)), subjects, fontsize=8)
    ax.set_title("scenarios: share reported right (joined / one-sided)")


def accuracy_storm(ax: Axes, results: dict[str, Any]) -> None:
    """Categories per subject and thread count in the storm."""
    rows = sorted(_ok(results.get("storm", {}).get("rows", [])), key=lambda r: (r["threads"], r["subject"]))
    _stacked(ax, [f"{r['threads']}t · {r['subject']}" for r in rows], rows, "storm")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def split_gaps(ax: Axes, results: dict[str, Any]) -> None:
    """Histogram of the gap between the read with a MOVED_FROM and the read with its MOVED_TO, for pairs whose
    TO was not queued when the FROM was read, all race runs; the default window as a line."""
    samples = [g for r in results.get("races", {}).get("runs", []) for g in r.get("gap_drained_samples_us", [])]
    window_us = results.get("window_ms_default", 20.0) * 1e3
    if samples:
        lo, hi = max(min(samples), 0.5), max(max(samples), window_us) * 1.5
        edges = [lo * (hi / lo) ** (i / 40) for i in range(41)]
        ax.hist(samples, bins=edges, color="#1f77b4")
    ax.axvline(window_us, color="#d62728", linestyle="--", label=f"default window {window_us / 1e3:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("split gap (µs, log)")
    ax.set_ylabel("pairs")
    ax.set_title(f"split pairs, TO not queued yet (n={len(samples)})")
    ax.legend(fontsize=7)


def throughput_ratios(ax: Axes, results: dict[str, Any]) -> None:
    rows = [r for r in results.get("throughput", {}).get("rows", []) if r.get("ratio_to_c")]
    ax.bar([r["subject"] for r in rows], [r["ratio_to_c"] for r in rows],
           color=[COLORS.get(r["subject"], "#333333") for r in rows])
    for i, r in enumerate(rows):  # capped: the subject kept up with the fastest the renamer could go
        label = f"{r['ratio_to_c']:.2f}" + ("\n(renamer's max)" if r.get("capped_by_renamer") else "")
        ax.text(i, r["ratio_to_c"], label, ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("sustained rate / C renamer's rate")
    ax.set_title("highest event rate without overflow")
    ax.margins(y=0.2)
    ax.tick_params(axis="x", labelrotation=30, labelsize=7)


def readme_figure(results: dict[str, Any], path: Path) -> Figure:
    """The README figure: latency CDFs (joined and one-sided) and the split-gap histogram."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=72)
    latency_cdfs(axes[0], results, "joined")
    latency_cdfs(axes[1], results, "one_sided")
    split_gaps(axes[2], results)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return fig
