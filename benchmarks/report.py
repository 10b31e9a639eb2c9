"""Tables and the window text, from a results dict (benchmarks/run.py writes it; the notebook reads it).

Every table puts the peers beside fsnorm from the same run; ``xN`` after a number is that number divided by
fsnorm's (inotify CLI subject) in the same table. Tables are GitHub markdown, which also reads fine as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from benchmarks.scoring import merge_race

REFERENCE = "fsnorm"


def _num(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "—"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.01:
        return f"{v:.{digits}f}"
    return f"{v:.3g}"


def _ratio(v: float | None, ref: float | None) -> str:
    if v is None or ref is None or ref == 0:
        return ""
    return f" x{v / ref:.2g}" if v / ref < 10 else f" x{v / ref:,.0f}"


def _pct(n: int | None, d: int | None) -> str:
    if not d or n is None:
        return "—"
    return f"{100 * n / d:.1f}%" if n != d else "100%"


def _rate(v: float | None) -> str:
    return "—" if not v else f"{v / 1e3:,.0f}k"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ok(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if "error" not in r]


def _subjects(results: dict[str, Any], rows: Iterable[dict[str, Any]]) -> list[str]:
    present = {r["subject"] for r in rows}
    order = list(results.get("subjects", {})) or sorted(present)
    return [s for s in order if s in present]


def _sum(rows: Iterable[dict[str, Any]], key: str) -> int:
    return sum(int(r.get(key) or 0) for r in rows)


def _mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.0f}"


# --- tables -----------------------------------------------------------------------------------------------


def headline(results: dict[str, Any]) -> str:
    scn = _ok(results.get("scenarios", {}).get("rows", []))
    sessions = results.get("scenarios", {}).get("sessions", {})
    storm = _ok(results.get("storm", {}).get("rows", []))
    burst = _ok(results.get("burst", {}).get("rows", []))
    thr = {r["subject"]: r for r in results.get("throughput", {}).get("rows", []) if "error" not in r}
    subjects = _subjects(results, scn + storm + list(thr.values()))
    ref = sessions.get(REFERENCE, {})
    ref_stall = max((r.get("stall_ms") or 0 for r in scn if r["subject"] == REFERENCE), default=None)
    ref_rate = thr.get(REFERENCE, {}).get("sustained_events_per_s")
    out = []
    for s in subjects:
        mine = [r for r in scn if r["subject"] == s]
        st = [r for r in storm if r["subject"] == s]
        ses = sessions.get(s, {})
        lj, lo = ses.get("lat_joined", {}), ses.get("lat_one_sided", {})
        stall = max((r.get("stall_ms") or 0 for r in mine), default=None) if mine else None
        t = thr.get(s, {})
        rate = t.get("sustained_events_per_s")
        # wrong_join_records is per session: once for the scenario session (its rows repeat it), once per storm
        wrong = (mine[0].get("wrong_join_records", 0) if mine else 0) + _sum(st, "wrong_join_records") + \
            sum(int(r.get("wrong_join_records") or 0) for r in burst if r["subject"] == s and r["workload"] == "burst")
        rss = max((r.get("rss_kib") or 0 for r in mine + st), default=0) or None
        out.append([
            s,
            _pct(_sum(mine, "joined"), _sum(mine, "expected_both")),
            _pct(_sum(mine, "one_sided"), _sum(mine, "expected_one_sided")),
            _pct(_sum(st, "joined"), _sum(st, "issued")) if st else "—",
            str(wrong),
            f"{_num(lj.get('p50_ms'))} / {_num(lj.get('p99_ms'))}"
            f"{_ratio(lj.get('p99_ms'), ref.get('lat_joined', {}).get('p99_ms')) if s != REFERENCE else ''}",
            f"{_num(lo.get('p50_ms'))} / {_num(lo.get('p99_ms'))}",
            f"{_num(stall)}{_ratio(stall, ref_stall) if s != REFERENCE else ''}",
            f"{_rate(rate)}{' (x' + format(t['ratio_to_c'], '.2f') + ' C)' if t.get('ratio_to_c') else ''}"
            f"{_ratio(rate, ref_rate) if s != REFERENCE else ''}",
            _mib(rss),
        ])
    return table(["subject", "joined (scenarios)", "one-sided right", "joined (storm)", "wrong joins",
                  "latency joined p50 / p99 ms", "one-sided p50 / p99 ms", "longest stall ms",
                  "sustained events/s", "peak RSS MiB"], out)


def scenario_table(results: dict[str, Any]) -> str:
    rows = results.get("scenarios", {}).get("rows", [])
    good = _ok(rows)
    ref = {r["workload"]: r for r in good if r["subject"] == REFERENCE}
    out = []
    for r in good:
        lj, lo, rr = r["lat_joined"], r["lat_one_sided"], ref.get(r["workload"], {})
        out.append([r["workload"], r["subject"], str(r["issued"]), str(r["joined"]), str(r["one_sided"]),
                    str(r["split"]), str(r["wrong"]), str(r["missed"]), str(r["stray_halves"]),
                    f"{_num(lj['p50_ms'])} / {_num(lj['p99_ms'])} / {_num(lj['max_ms'])}",
                    f"{_num(lo['p50_ms'])} / {_num(lo['p99_ms'])} / {_num(lo['max_ms'])}",
                    f"{_num(r['stall_ms'])}"
                    f"{_ratio(r['stall_ms'], rr.get('stall_ms')) if r['subject'] != REFERENCE else ''}",
                    _mib(r.get("rss_kib"))])
    out += [[r["workload"], r["subject"], "error: " + r["error"][:100]] + [""] * 10 for r in rows if "error" in r]
    return table(["workload", "subject", "issued", "joined", "one-sided", "split", "wrong", "missed", "stray halves",
                  "joined p50/p99/max ms", "one-sided p50/p99/max ms", "stall ms", "RSS MiB"], out)


def storm_table(results: dict[str, Any]) -> str:
    rows = results.get("storm", {}).get("rows", [])
    good = _ok(rows)
    ref = {r["threads"]: r for r in good if r["subject"] == REFERENCE}
    out = []
    for r in sorted(good, key=lambda r: r["threads"]):
        lj, rr = r["lat_joined"], ref.get(r["threads"], {})
        vs = "" if r["subject"] == REFERENCE else _ratio(lj["p99_ms"], rr.get("lat_joined", {}).get("p99_ms"))
        out.append([f"{r['threads']}", r["subject"], f"{r['issued']:,}", _pct(r["joined"], r["issued"]),
                    str(r["split"]), str(r["wrong"]), f"{r['missed']:,}", str(r["overflow_records"]),
                    str(r.get("overflows_logged") or 0),
                    f"{_num(lj['p50_ms'])} / {_num(lj['p99_ms'])} / {_num(lj['max_ms'])}"
                    f"{vs}", _read_p99(r),
                    _halves(r), _num(r["stall_ms"]), _num(r.get("catch_up_s")), _mib(r.get("rss_kib"))])
    out += [[str(r.get("threads")), r["subject"], "error: " + r["error"][:100]] + [""] * 12 for r in rows
            if "error" in r]
    return table(["threads", "subject", "renames", "joined", "split", "wrong", "missed", "overflow records",
                  "overflows logged", "joined p50/p99/max ms", "of which read p99 ms", "both halves p50/p99/max ms",
                  "stall ms", "catch-up s", "RSS MiB"], out)


def _read_p99(row: dict[str, Any]) -> str:
    """The p99 from a joined rename to the watcher's own read of it (fsnorm's ``t_ns``): the part of the joined
    latency spent before the kernel queue was read; the rest is the watcher's work, the pipe and the consumer.
    "—" for subjects whose output does not say when they read."""
    lr = row.get("lat_joined_read") or {}
    return _num(lr.get("p99_ms")) if lr.get("n") else "—"


def _halves(row: dict[str, Any]) -> str:
    """The latency of renames delivered as two separate halves (to the later one): what a reader that does not
    pair (inotifywait, the raw reader) takes to hand over both sides, beside the pairing subjects' joined
    latency; "—" where no rename was split."""
    ls = row.get("lat_split") or {}
    if not ls.get("n"):
        return "—"
    return f"{_num(ls['p50_ms'])} / {_num(ls['p99_ms'])} / {_num(ls['max_ms'])}"


def storm_cpu_table(results: dict[str, Any]) -> str:
    """CPU seconds per million storm events (2 per rename + the noise's, benchmarks/workloads.py) and peak RSS,
    with ratios to inotifywait (the C reference) and to fsnorm, per thread count."""
    good = [r for r in _ok(results.get("storm", {}).get("rows", [])) if r.get("cpu_s") is not None and r.get("events")]

    def per_m(r: dict[str, Any]) -> float:
        return 1e6 * float(r["cpu_s"]) / float(r["events"])

    out = []
    for threads in sorted({r["threads"] for r in good}):
        rows = [r for r in good if r["threads"] == threads]
        c_ref = next((per_m(r) for r in rows if r["subject"] == "inotifywait"), None)
        f_ref = next((per_m(r) for r in rows if r["subject"] == REFERENCE), None)
        for r in rows:
            v = per_m(r)
            out.append([str(threads), r["subject"], f"{r['events']:,}", _num(r["cpu_s"]), _num(v),
                        _ratio(v, c_ref).strip() or "—", _ratio(v, f_ref).strip() or "—",
                        _num(r.get("runq_wait_s")),
                        _pct(r.get("joined"), r.get("issued")), str(r.get("overflow_records", 0)),
                        _mib(r.get("rss_kib"))])
    return table(["threads", "subject", "events", "CPU s", "CPU s / 1M events", "vs inotifywait", "vs fsnorm",
                  "run-queue wait s", "joined", "overflow records", "peak RSS MiB"], out)


def burst_table(results: dict[str, Any]) -> str:
    rows = _ok(results.get("burst", {}).get("rows", []))
    out = []
    for s in _subjects(results, rows):
        b = next((r for r in rows if r["subject"] == s and r["workload"] == "burst"), None)
        a = next((r for r in rows if r["subject"] == s and r["workload"] == "after_overflow"), None)
        if b is None or a is None:
            continue
        out.append([s, f"{b['issued']:,}", f"{b['joined']:,}", str(b["split"]), str(b["wrong"]), f"{b['missed']:,}",
                    str(b["overflow_records"]), str(b.get("overflows_logged") or 0),
                    f"{b['records_after_overflow']:,}" if b["overflow_records"] else "— (no signal)",
                    f"{a['joined']}/{a['issued']}",
                    _num(a["lat_joined"]["p50_ms"]), str(b.get("corrupt_lines", 0))])
    return table(["subject", "renames in burst", "joined", "split", "wrong", "missed", "overflow records seen",
                  "overflows logged", "records after overflow", "joined after recovery", "after: p50 ms",
                  "damaged lines"], out)


def race_table(results: dict[str, Any]) -> str:
    runs = results.get("races", {}).get("runs", [])
    out = []
    for r in runs:
        g, a = r["gap_drained_us"], r["gap_us"]
        lost = r["lost_at_window_ms"]
        out.append([str(r["threads"]), str(r["noise"]), f"{r['pairs']:,}", f"{100 * r['between_share']:.2f}%",
                    str(r["between_max"]), f"{100 * r['split_share']:.3f}%", f"{_num(a['p50'])} / {_num(a['max'])}",
                    f"{100 * r['split_drained_share']:.3f}%", f"{_num(g['p50'])} / {_num(g['p99'])} / {_num(g['max'])}",
                    " / ".join(str(lost.get(k, "—")) for k in ("0.1", "1", "5", "20"))])
    return table(["threads", "noise", "pairs", "events between halves", "max between", "split across reads",
                  "split gap p50/max µs", "split, queue drained", "drained gap p50/p99/max µs",
                  "lost at 0.1 / 1 / 5 / 20 ms"], out)


def orphan_table(results: dict[str, Any]) -> str:
    r = results.get("burst", {}).get("raw_overflow_race")
    if not r:
        return "(no raw burst run)"
    return table(["events", "overflows", "pairs", "orphan FROMs", "… just before an overflow", "orphan TOs",
                  "… just after an overflow"],
                 [[f"{r['events']:,}", str(r["overflows"]), f"{r['pairs']:,}", str(r["orphan_from"]),
                   str(r["orphan_from_near_overflow"]), str(r["orphan_to"]), str(r["orphan_to_near_overflow"])]])


def throughput_table(results: dict[str, Any]) -> str:
    thr = results.get("throughput", {})
    if not thr:
        return "(not run)"
    out = []
    for r in thr.get("rows", []):
        if "error" in r:
            out.append([r["subject"], "error: " + r["error"][:100], "", "", "", ""])
            continue
        capped = " (renamer's max)" if r.get("capped_by_renamer") else ""
        out.append([r["subject"], _rate(r.get("sustained_events_per_s")) + capped,
                    _num(r.get("ratio_to_c")), _num(r.get("ratio_to_fsnorm")),
                    _rate(r.get("first_failure_events_per_s")), str(len(r["trials"]))])
    c = thr.get("c_flat", {})
    head = (f"C renamer on this machine: {_rate(c.get('events_per_s'))} events/s flat out with an inotify watch and a "
            f"C reader ({c.get('overflows', 0)} overflows), {_rate(thr.get('c_flat_nowatch', {}).get('events_per_s'))}"
            f" events/s without any watch; sustain trials {thr.get('sustain_seconds')} s each.\n\n")
    return head + table(["subject", "sustained events/s", "x C renamer", "x fsnorm", "first failure", "trials"], out)


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out.append((prefix, f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"))
    elif isinstance(value, str) and len(value) < 80:
        out.append((prefix, value))


def matcher_table(results: dict[str, Any]) -> str:
    m = results.get("matcher", {})
    if not m.get("results"):
        return f"({m.get('note') or m.get('error') or 'not run'})"
    pairs: list[tuple[str, str]] = []
    _flatten("", m["results"], pairs)
    return table(["benchmarks/bench_matcher.py", "value"], [[k, v] for k, v in pairs])


# --- the window -------------------------------------------------------------------------------------------


def window_text(results: dict[str, Any]) -> str:
    runs = results.get("races", {}).get("runs", [])
    window = results.get("window_ms_default", 20.0)
    if not runs:
        return "(no race statistics in this run)"
    m = merge_race(runs)
    threads = sorted({r["threads"] for r in runs})
    noise = sorted({r["noise"] for r in runs})
    pairs = m["pairs"] or 1
    lost = m["lost_at_window_ms"]
    gap_max_ms = m["gap_drained_max_us"] / 1e3
    scn = _ok(results.get("scenarios", {}).get("rows", []))
    move_out = {r["subject"]: r for r in scn if r["workload"] == "move_out"}
    ours = move_out.get(REFERENCE, {}).get("lat_one_sided", {})
    wd = move_out.get("watchdog-full", move_out.get("watchdog", {}))
    wd_lat = (wd.get("lat_one_sided", {}).get("p50_ms") or wd.get("stall_ms")) if wd else None
    burst = results.get("burst", {}).get("raw_overflow_race") or {}
    text = [
        f"**Why the default window is {window:g} ms.** Across {m['runs']} storm runs on this machine "
        f"({', '.join(map(str, threads))} renaming threads x {', '.join(map(str, noise))} noise threads, "
        f"{results.get('races', {}).get('seconds')} s each) the raw reader saw {m['pairs']:,} rename pairs.",
        f"{m['between']:,} of them ({100 * m['between'] / pairs:.2f}%) had other events between the two halves "
        f"(at most {m['between_max']}): a matcher must look past neighbours, not only at the next event.",
        f"{m['split']:,} ({100 * m['split'] / pairs:.3f}%) came in two different reads; in {m['split_drained']:,} "
        f"({100 * m['split_drained'] / pairs:.3f}%) the queue was empty right after the read that delivered the "
        f"MOVED_FROM, so the MOVED_TO was not even queued yet: only these need waiting, and no read size can "
        f"avoid them.",
    ]
    if m["split_drained"]:
        text.append(
            f"For those, the time from the read with the FROM to the read with the TO was at most "
            f"{m['gap_drained_max_us']:,.0f} µs (p99 of the sampled gaps {_num(m['gap_drained_p99_us'])} µs). "
            f"A window of 0.1 / 1 / 5 / 20 ms would have turned {lost.get('0.1', 0)} / {lost.get('1', 0)} / "
            f"{lost.get('5', 0)} / {lost.get('20', 0)} of these pairs into two one-sided renames "
            f"(an upper bound: the reader's own wake-up is part of each gap).")
    ratio = f"{window / gap_max_ms:.0f}x the largest gap measured here" if gap_max_ms > 0 else \
        "far above any gap this run could measure"
    text.append(
        f"{window:g} ms is {ratio}, and the window only starts counting once the queue has been seen empty, so "
        f"under load (when splits happen) it costs nothing; it is also the whole price of a move out of the tree: "
        f"fsnorm reported those after p50 {_num(ours.get('p50_ms'))} ms"
        + (f", where watchdog holds every lone MOVED_FROM for 500 ms (measured p50 {_num(wd_lat)} ms)"
           if wd_lat else "") + ".")
    if burst:
        text.append(
            f"Overflow is the other way to lose a half: in the burst run the raw stream had {burst['overflows']} "
            f"overflow(s), {burst['orphan_from_near_overflow']} orphan MOVED_FROM just before one and "
            f"{burst['orphan_to_near_overflow']} orphan MOVED_TO just after one (of {burst['orphan_from']} / "
            f"{burst['orphan_to']} orphans in all); fsnorm flags those records `overflow` / `after_overflow` "
            f"instead of waiting for them.")
    return " ".join(text)


# --- whole report -----------------------------------------------------------------------------------------


def _header(results: dict[str, Any]) -> str:
    m, v = results.get("machine", {}), results.get("versions", {})
    skipped = [f"{k} ({s['note']})" for k, s in results.get("subjects", {}).items() if not s.get("available")]
    lines = [
        f"Configuration `{results.get('config')}` ({results.get('command') or 'python -m benchmarks.run'}), "
        f"{results.get('created')}, {results.get('elapsed_s', 0):.0f} s.",
        f"Machine: Linux {m.get('kernel')} {m.get('arch')}, {m.get('cpu')} x {m.get('cpus')}, {m.get('mem_total')}, "
        f"{m.get('os')}; work dir on {m.get('work_fs')}; fs.inotify.max_queued_events={m.get('max_queued_events')}; "
        f"load average {', '.join(f'{x:.2f}' for x in m.get('loadavg_start', []))} at start.",
        f"Versions: Python {v.get('python')}, fsnorm {v.get('fsnorm')}, watchdog {v.get('watchdog')}, "
        f"pyinotify {v.get('pyinotify')}, {v.get('gcc')}; fsnorm's reader: {v.get('fsnorm_reader', 'none')}.",
    ]
    if skipped:
        lines.append("Skipped subjects: " + "; ".join(skipped) + ".")
    return "\n".join(lines)


def sections(results: dict[str, Any]) -> list[tuple[str, str]]:
    out = [("Headline", headline(results))]
    if "scenarios" in results:
        s = results["scenarios"]
        out.append((f"Scenarios ({s['ops']} ops each, {s['pace_ms']} ms apart)", scenario_table(results)))
    if "storm" in results:
        s = results["storm"]
        out.append((f"Storm ({s['seconds']} s, {s['noise']} noise threads)", storm_table(results)))
        out.append((f"Storm CPU per million events ({s['seconds']} s, {s['noise']} noise threads)",
                    storm_cpu_table(results)))
    if "burst" in results:
        b = results["burst"]
        out.append((f"Burst: reader stopped {b.get('cycles', 1)}x {b['stall_s']} s during a {b['seconds']} s flood of "
                    f"{b['threads']} renaming threads + 1 noise thread, "
                    f"then {b['after_ops']} paced renames", burst_table(results)))
        out.append(("Orphan halves around overflows (raw stream of the burst)", orphan_table(results)))
    if "races" in results:
        out.append(("Race statistics of the raw kernel stream", race_table(results)))
        out.append(("The window", window_text(results)))
    if "throughput" in results:
        out.append(("Throughput: highest paced rate without overflow", throughput_table(results)))
    if "matcher" in results:
        out.append(("Replay throughput (benchmarks/bench_matcher.py)", matcher_table(results)))
    if results.get("nats", {}).get("table"):
        out.append(("Records on NATS JetStream (benchmarks/bench_nats.py)", results["nats"]["table"]))
    return out


def markdown(results: dict[str, Any]) -> str:
    parts = [f"# fsnorm pairing-race benchmark: `{results.get('config')}`", _header(results)]
    for title, body in sections(results):
        parts.append(f"## {title}\n\n{body}")
    return "\n\n".join(parts) + "\n"


def text(results: dict[str, Any]) -> str:
    parts = [_header(results)]
    for title, body in sections(results):
        parts.append(f"== {title}\n{body}")
    return "\n\n".join(parts)
