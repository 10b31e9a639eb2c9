"""``fsnorm stats CAPTURE...``: how racy a captured workload is, side by side for several captures.

Text (default), Markdown tables, or the full JSON (``--format json``: what notebooks/your_capture.ipynb loads);
``--plot FILE.png|.svg`` draws the figures (matplotlib, ``fsnorm[plot]``). A damaged capture is read as far as
it can be: its column says where reading stopped, its issues go to stderr, and the exit status is 1 (as for
``fsnorm replay``). A capture that cannot be read at all (no header) is reported and left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ..capture.log import CaptureIssue
from ..core.races import WINDOWS_MS
from ..errors import CaptureError

FORMATS = ("text", "json", "markdown")


def add_parser(sub: Any) -> None:
    """Register ``stats`` on the ``fsnorm`` subcommand parser."""
    p = sub.add_parser("stats", help="volume, pairing races, queue pressure and hot directories of captures",
                       description="Statistics of capture logs (fsnorm capture / watch --capture): volume, "
                       "pairing races (as the benchmark measures them), queue pressure, the top directories; "
                       "several captures side by side.")
    p.add_argument("captures", nargs="+", metavar="CAPTURE", help="capture files (.fsncap, optionally gzipped)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text (default), json (everything, for notebooks and scripts) or markdown tables")
    p.add_argument("--plot", metavar="FILE", help="also draw events/s, split gaps and backlog to FILE "
                   "(.png or .svg; needs matplotlib: pip install 'fsnorm[plot]')")
    p.add_argument("--window", type=float, metavar="MS", help="replay the records with this one-sided move "
                   "window (milliseconds) instead of the capture's own")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it is drawn only when stderr is a "
                   "terminal anyway)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..capture.stats import capture_stats
    from .progress import Progress, open_capture, wanted

    if args.window is not None and args.window < 0:
        _warn("error: --window must be >= 0")
        return 2
    if args.plot:  # fail before the long read, not after it
        from ..capture.plot import check_target

        check_target(args.plot)
    opened = []
    failed = False
    for path in args.captures:
        try:
            opened.append((path, *open_capture(path)))
        except CaptureError as exc:
            _warn(f"error: {exc}")
            failed = True
    progress = Progress(sum(size for _p, _f, size in opened), enabled=wanted(args.quiet), desc="stats")
    results: list[dict[str, Any]] = []
    window_ns = None if args.window is None else int(args.window * 1_000_000)
    try:
        for path, f, size in opened:
            progress.track(f, size)

            def on_issue(issue: CaptureIssue, path: str = path) -> None:
                _warn(f"{path}: {issue}")

            try:
                with f:
                    res = capture_stats(f, name=path, window_ns=window_ns, on_issue=on_issue, on_item=progress.item)
            except CaptureError as exc:
                _warn(f"error: {path}: {exc}")
                failed = True
                continue
            failed = failed or bool(res["read"]["issues"])
            results.append(res)
    finally:
        progress.close()
    if not results:
        return 1
    if args.format == "json":
        json.dump({"captures": results}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(results, markdown=args.format == "markdown"))
    sys.stdout.flush()
    if args.plot:
        from ..capture.plot import plot

        plot(results, args.plot)
        _warn(f"plot written to {args.plot}")
    return 1 if failed else 0


def _warn(message: str) -> None:
    print(f"fsnorm: {message}", file=sys.stderr, flush=True)


# -- rendering ----------------------------------------------------------------------------------------------


def _n(v: float | int | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, int) or digits == 0:
        return f"{round(v):,}"
    return f"{v:,.{digits}f}"


def _pct(part: int, whole: int) -> str:
    return f"{part:,} ({100 * part / whole:.2f}%)" if whole else f"{part:,}"


def _ms(us: float | None) -> str:
    return "-" if us is None else f"{us / 1e3:.3f}"


def _kinds(d: dict[str, int], k: int = 6) -> str:
    items = list(d.items())
    text = ", ".join(f"{name} {n:,}" for name, n in items[:k])
    return text + (f", +{len(items) - k} more" if len(items) > k else "") if items else "-"


def _read(r: dict[str, Any]) -> str:
    read = r["read"]
    if read["complete"]:
        return "complete"
    stop = read["stopped_at"]
    where = f"stopped at line {stop['line']} (byte offset {stop['offset']})" if stop else "ended cleanly"
    return f"{where}; {read['issues']} issue(s)"


def _gap(g: dict[str, float | None]) -> str:
    return f"{_ms(g['p50'])} / {_ms(g['p99'])} / {_ms(g['max'])}"


def _races(f: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    def get(r: dict[str, Any]) -> str:
        return f(r["races"]) if r.get("races") else "n/a (fanotify)"
    return get


def _overflow_places(r: dict[str, Any]) -> str:
    q = r["queue"]
    if not q["overflows"]:
        return "-"
    places = ", ".join(f"{p['t_s']:.2f} s (event {p['event']:,})" for p in q["overflow_at"][:3])
    more = q["overflows"] - min(3, len(q["overflow_at"]))
    return places + (f", +{more} more" if more > 0 else "")


Row = tuple[str, Callable[[dict[str, Any]], str]]


def sections(results: list[dict[str, Any]]) -> list[tuple[str, list[Row]]]:
    """The figures, by section: (label, value of one capture's result)."""
    with_races = [r["races"] for r in results if r.get("races")]
    windows = list(with_races[0]["lost_at_window_ms"]) if with_races else [f"{w:g}" for w in WINDOWS_MS]
    capture: list[Row] = [
        ("source", lambda r: r["source"]), ("host", lambda r: r["host"] or "-"),
        ("kernel", lambda r: r["kernel"] or "-"), ("created", lambda r: r["created"] or "-"),
        ("read", _read), ("window (ms)", lambda r: f"{r['window_ms']:g}"),
    ]
    volume: list[Row] = [
        ("duration (s)", lambda r: _n(r["volume"]["duration_s"], 2)),
        ("events", lambda r: _n(r["volume"]["events"])), ("reads", lambda r: _n(r["volume"]["reads"])),
        ("records", lambda r: _n(r["volume"]["records"])),
        ("events/s mean", lambda r: _n(r["volume"]["events_per_s_mean"])),
        ("events/s peak (1 s)", lambda r: _n(r["volume"]["events_per_s_peak"])),
        ("events/s p99 (1 s)", lambda r: _n(r["volume"]["events_per_s_p99"])),
        ("event kinds", lambda r: _kinds(r["volume"]["event_kinds"])),
        ("record kinds", lambda r: _kinds(r["volume"]["record_kinds"])),
        ("rename records", lambda r: _n(r["volume"]["renames"]["records"])),
        ("  joined", lambda r: _n(r["volume"]["renames"]["joined"])),
        ("  one-sided", lambda r: _n(r["volume"]["renames"]["one_sided"])),
        ("  one-sided by reason", lambda r: _kinds(r["volume"]["renames"]["one_sided_by_reason"])),
        ("  after an overflow", lambda r: _n(r["volume"]["renames"]["after_overflow"])),
        ("  merged by the kernel", lambda r: _n(r["volume"]["renames"]["merged"])),
        ("  paired by the kernel", lambda r: _n(r["volume"]["renames"]["kernel_paired"])),
    ]
    races: list[Row] = [
        ("rename pairs (raw)", _races(lambda s: _n(s["pairs"]))),
        ("with events between halves", _races(lambda s: _pct(s["between"], s["pairs"]))),
        ("  most events between", _races(lambda s: _n(s["between_max"]))),
        ("split across reads", _races(lambda s: _pct(s["split"], s["pairs"]))),
        ("  queue empty after 1st half", _races(lambda s: _pct(s["split_drained"], s["pairs"]))),
        ("split gap p50/p99/max (ms)", _races(lambda s: _gap(s["gap_us"]))),
        ("  queue empty: p50/p99/max (ms)", _races(lambda s: _gap(s["gap_drained_us"]))),
    ]
    for w in windows:
        races.append((f"split by a {w} ms window", _races(_lost(w))))
    queue: list[Row] = [
        ("backlog after a read max", lambda r: f"{_n(r['queue']['backlog_max'])} {r['queue']['backlog_unit']}"),
        ("backlog after a read p99", lambda r: f"{_n(r['queue']['backlog_p99'])} {r['queue']['backlog_unit']}"),
        ("reads leaving events queued", lambda r: _pct(r["queue"]["reads_not_drained"], r["volume"]["reads"])),
        ("overflows", lambda r: _n(r["queue"]["overflows"])),
        ("  where", _overflow_places),
        ("orphan FROMs / near an overflow",
         _races(lambda s: f"{s['orphan_from']:,} / {s['orphan_from_near_overflow']:,}")),
        ("orphan TOs / near an overflow", _races(lambda s: f"{s['orphan_to']:,} / {s['orphan_to_near_overflow']:,}")),
        ("one-sided renames by overflow", lambda r: _n(r["queue"]["one_sided_by_overflow"])),
        ("records after an overflow", lambda r: _n(r["queue"]["after_overflow"])),
    ]
    top_e: list[Row] = []
    top_r: list[Row] = []
    for key, rows in (("by_events", top_e), ("by_renames", top_r)):
        for i in range(max(len(r["top_dirs"][key]) for r in results)):
            rows.append((f"#{i + 1}", _top(key, i)))
    return [("capture", capture), ("volume", volume), ("pairing races (raw reads)", races),
            ("queue pressure", queue), ("top directories by records", top_e),
            ("top directories by renames", top_r)]


def _lost(w: str) -> Callable[[dict[str, Any]], str]:
    def get(s: dict[str, Any]) -> str:
        return _n(s["lost_at_window_ms"].get(w))
    return get


def _top(key: str, i: int) -> Callable[[dict[str, Any]], str]:
    def get(r: dict[str, Any]) -> str:
        entries = r["top_dirs"][key]
        if i >= len(entries):
            return ""
        d, n = entries[i]
        return f"{d} ({n:,})"
    return get


def render(results: list[dict[str, Any]], *, markdown: bool = False) -> str:
    """Text (aligned columns) or Markdown (one table per section), one column per capture."""
    names = [str(r["capture"]) for r in results]
    out: list[str] = []
    for title, rows in sections(results):
        if not rows:
            continue
        table = [[label, *(get(r) for r in results)] for label, get in rows]
        if markdown:
            out.append(f"### {title}\n")
            out.append("| figure | " + " | ".join(names) + " |")
            out.append("|---|" + "---:|" * len(names))
            out.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in table)
        else:
            out.append(f"== {title}")
            head = ["", *names] if len(results) > 1 else None
            widths = [max(len(row[i]) for row in [*table, *([head] if head else [])])
                      for i in range(len(table[0]))]
            if head:
                out.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(head)).rstrip())
            out.extend("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in table)
        out.append("")
    return "\n".join(out)
