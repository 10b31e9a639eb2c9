"""``fsnorm stats``: every figure checked on captures whose content the test knows (hand-built, and made on the
real kernel by the test's own workload), damaged captures, the CLI's formats, plots and progress bar, the
notebook, and memory that does not grow with the number of events."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import random
import struct
import subprocess
import sys
import termios
import threading
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import MS, ev, frm, to
from live import sysctl
from race_oracle import Read
from race_oracle import race_stats as oracle_race_stats

from benchmarks.workloads import dirs
from normalizer.backends.fanotify import FanotifySource
from normalizer.backends.inotify import InotifySource
from normalizer.capture.log import CaptureHeader, CaptureReader, CaptureWriter
from normalizer.capture.replay import replay
from normalizer.capture.stats import CaptureStats, capture_stats
from normalizer.cli.main import main
from normalizer.core import raw
from normalizer.records import Rec

REPO = Path(__file__).resolve().parent.parent
OVERFLOW: raw.InotifyEvent = (-1, raw.IN_Q_OVERFLOW, 0, b"")


def _b(t_ms: float, *events: raw.InotifyEvent, drained: bool = True, backlog: int | None = 0) -> raw.InotifyBatch:
    return raw.InotifyBatch(int(t_ms * MS), drained, list(events), backlog, 0)


def known_items() -> list[raw.AnyStreamItem]:
    """Reads with known races; the comments say what each figure must count."""
    return [
        _b(1000, frm(1, 1, b"x"), ev(1, raw.IN_MODIFY, b"m"), to(2, 1, b"y"), frm(1, 2, b"p")),  # 1 between
        _b(1000.5, to(2, 2, b"q"), frm(1, 3, b"r"), drained=False, backlog=4096),  # pair 2 split: 500 us, drained
        _b(1000.6, to(2, 3, b"s"), frm(1, 4, b"t"), OVERFLOW),  # pair 3 split: 100 us, not drained; FROM 4 orphan
        _b(1000.7, to(2, 5, b"u"), frm(1, 6, b"v"), frm(1, 7, b"w"), to(2, 7, b"z")),  # TO 5 orphan after overflow
        _b(2500, *(ev(2, raw.IN_CREATE, b"c%d" % i) for i in range(4)), drained=False, backlog=8192),  # second 1
        _b(4200, ev(1, raw.IN_ATTRIB, b"x2")),  # second 3 (second 2 is idle)
        raw.Tick(4300 * MS),
    ]


def write_capture(path: Path, items: list[raw.AnyStreamItem], *, end: bool = True) -> Path:
    w = CaptureWriter(path, CaptureHeader(options={"window_ns": 20 * MS}, watches=[(1, b"/w/a"), (2, b"/w/b")]))
    for item in items:
        w.write(item)
    if end:
        w.close()
    else:
        w.abort()
    return path


@pytest.fixture
def known(tmp_path: Path) -> Path:
    return write_capture(tmp_path / "known.fsncap", known_items())


def test_every_figure_of_a_hand_built_capture(known: Path) -> None:
    s = capture_stats(known)
    assert s["read"] == {"complete": True, "ended_cleanly": True, "issues": 0, "issue_list": [], "stopped_at": None,
                         "items": {"InotifyBatch": 6, "Tick": 1}}
    v = s["volume"]
    assert (v["events"], v["reads"], v["duration_s"]) == (18, 6, pytest.approx(3.3))
    # Per second: 13 events in second 0, 4 in second 1, none in second 2, 1 in second 3.
    assert (v["seconds"], v["events_per_s_peak"], v["events_per_s_p99"]) == (4, 13, 13.0)
    assert v["event_kinds"] == {"moved_from": 6, "moved_to": 5, "create": 4, "modify": 1, "overflow": 1,
                                "attrib": 1}
    # Pairs 1, 2, 3 and 7 are joined; FROM 4 (overflow), TO 5 and FROM 6 are one-sided.
    records = list(replay(known))
    assert v["records"] == len(records)
    assert v["record_kinds"] == dict(Counter(r.kind for r in records).most_common())
    ren = v["renames"]
    assert (ren["records"], ren["joined"], ren["one_sided"], ren["merged"]) == (7, 4, 3, 0)
    reasons = Counter(next((f for f in ("unwatched", "timeout", "overflow") if f in r.flags), "none")
                      for r in records if r.kind == "rename" and not (r.path and r.dst))
    assert ren["one_sided_by_reason"] == dict(reasons.most_common())
    assert ren["one_sided_by_reason"]["overflow"] == 1
    assert ren["after_overflow"] == sum(1 for r in records if r.kind == "rename" and "after_overflow" in r.flags) > 0

    r = s["races"]
    assert (r["events"], r["reads"], r["pairs"]) == (18, 6, 4)
    assert (r["between"], r["between_max"], r["between_hist"], r["between_kinds"]) == (1, 1, {"1": 1}, {"modify": 1})
    assert (r["split"], r["split_drained"]) == (2, 1)
    assert r["gap_us"] == {"p50": 100.0, "p90": 500.0, "p99": 500.0, "max": 500.0}
    assert r["gap_drained_us"] == {"p50": 500.0, "p90": 500.0, "p99": 500.0, "max": 500.0}
    assert r["lost_at_window_ms"] == {"0.1": 1, "1": 0, "5": 0, "20": 0, "50": 0}
    assert (r["overflows"], r["orphan_from"], r["orphan_from_near_overflow"]) == (1, 2, 1)
    assert (r["orphan_to"], r["orphan_to_near_overflow"]) == (1, 1)

    q = s["queue"]
    assert (q["backlog_unit"], q["backlog_max"], q["backlog_p99"], q["backlog_p50"]) == ("bytes", 8192, 8192, 0)
    assert (q["reads_not_drained"], q["overflows"], q["one_sided_by_overflow"]) == (2, 1, 1)
    assert q["overflow_at"] == [{"t_s": pytest.approx(0.0006), "event": 8, "backlog": 0}]

    # Records per directory: /w/a has 6 rename sides + modify + attrib, /w/b 5 rename sides + 4 creates.
    assert s["top_dirs"] == {"by_events": [("/w/b", 9), ("/w/a", 8)], "by_renames": [("/w/a", 6), ("/w/b", 5)],
                             "max_undercount": 0}
    series = s["series"]
    assert sum(series["events"]) == 18 and sum(series["overflows"]) == 1 and max(series["backlog_max"]) == 8192


def _oracle_reads(path: Path) -> list[Read]:
    with CaptureReader(path) as reader:
        return [Read(i.t_ns, 0 if i.drained else 1, list(i.events)) for i in reader if isinstance(i, raw.InotifyBatch)]


def _same_races(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert {k: got[k] for k in want} == want


def test_races_equal_the_list_based_reference_on_random_streams() -> None:
    """Hypothesis-free but seeded over many shapes: the streaming counter against the old list-based code."""
    from normalizer.core.races import race_stats

    for seed in range(60):
        rng = random.Random(seed)
        reads: list[Read] = []
        t = 10**9
        cookie = 0
        open_cookies: list[int] = []
        for _ in range(rng.randrange(1, 40)):
            t += rng.choice((0, 1, 50, 1000, 200_000, 3 * MS, 30 * MS))
            events: list[raw.InotifyEvent] = []
            for _ in range(rng.randrange(0, 30)):
                x = rng.random()
                if x < 0.3:
                    cookie += 1
                    open_cookies.append(cookie)
                    events.append(frm(1, cookie, b"a"))
                elif x < 0.6 and open_cookies:
                    events.append(to(2, open_cookies.pop(rng.randrange(len(open_cookies))), b"b"))
                elif x < 0.62:
                    events.append(to(2, 10**6 + rng.randrange(100), b"b"))  # never had a FROM
                elif x < 0.64:
                    events.append(frm(1, rng.choice(open_cookies) if open_cookies else 1, b"a"))  # cookie reuse
                elif x < 0.66:
                    events.append(OVERFLOW)
                else:
                    events.append(ev(1, rng.choice((raw.IN_CREATE, raw.IN_MODIFY, raw.IN_ATTRIB)), b"n"))
            reads.append(Read(t, rng.choice((0, 0, 16)), events))
        want = oracle_race_stats(reads)
        got = race_stats((r.t_ns, r.pending == 0, r.events) for r in reads)
        _same_races(got, want)


# -- captures made on the real kernel ------------------------------------------------------------------------


@pytest.fixture
def tree(public_tmp: Path) -> Path:
    for d in ("w/a", "w/b", "out"):
        (public_tmp / d).mkdir(parents=True)
    return public_tmp


def _read_until(src: InotifySource | FanotifySource, done: threading.Event) -> list[Rec]:
    out: list[Rec] = []
    while not done.is_set():
        out += src.read(0.005)
    for _ in range(40):
        got = src.read(0.05)
        out += got
        if not got and src.normalizer.matcher.next_deadline() is None:
            break
    return out


def test_inotify_capture_with_known_renames(tree: Path) -> None:
    """A workload the test knows exactly: 20 files made in a, 10 moved a -> b, 3 moved out, 2 moved in."""
    cap = tree / "known.fsncap"
    for i in range(5):
        (tree / f"out/o{i}").write_text("o")
    src = InotifySource([tree / "w"], capture=cap)
    src.open()
    try:
        for i in range(20):
            os.mknod(tree / f"w/a/f{i}")
        for i in range(10):
            os.rename(tree / f"w/a/f{i}", tree / f"w/b/g{i}")
        for i in range(10, 13):
            os.rename(tree / f"w/a/f{i}", tree / f"out/f{i}")
        for i in range(2):
            os.rename(tree / f"out/o{i}", tree / f"w/b/o{i}")
        done = threading.Event()
        done.set()
        live = _read_until(src, done)
    finally:
        live += src.close()
    s = capture_stats(cap)
    a, b = str(tree / "w/a"), str(tree / "w/b")
    assert s["read"]["complete"] and s["source"] == "inotify"
    v = s["volume"]
    assert v["event_kinds"] == {"create": 20, "moved_from": 13, "moved_to": 12}
    assert v["events"] == 45 and v["records"] == len(live)
    assert v["renames"] | {"one_sided_by_reason": None} == {
        "records": 15, "joined": 10, "one_sided": 5, "one_sided_by_reason": None, "after_overflow": 0,
        "merged": 0, "kernel_paired": None}
    # Moved out: a lone FROM is only known one-sided once the window passed; moved in: a TO without a FROM.
    assert v["renames"]["one_sided_by_reason"] == {"timeout": 3, "unwatched": 2}
    r = s["races"]
    assert (r["pairs"], r["orphan_from"], r["orphan_to"], r["overflows"]) == (10, 3, 2, 0)
    assert (r["between"], r["orphan_from_near_overflow"], r["orphan_to_near_overflow"]) == (0, 0, 0)
    _same_races(r, oracle_race_stats(_oracle_reads(cap)))
    assert s["queue"]["overflows"] == 0
    assert s["top_dirs"]["by_renames"] == [(a, 13), (b, 12)]
    assert s["top_dirs"]["by_events"] == [(a, 33), (b, 12)]
    assert v["events_per_s_peak"] == max(Counter(
        (t - _first_t(cap)) // 10**9 for t in _event_times(cap)).values())


def _first_t(path: Path) -> int:
    with CaptureReader(path) as reader:
        return next(iter(reader)).t_ns


def _event_times(path: Path) -> list[int]:
    with CaptureReader(path) as reader:
        return [i.t_ns for i in reader if isinstance(i, raw.InotifyBatch) for _ in i.events]


def _workload(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", *args, "--gt", str(root / "gt.json")],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)


def _truth_dirs(root: Path) -> Counter[str]:
    """Renames per directory from the workload's ground truth (a rename within one directory counts once)."""
    from benchmarks.workloads import load_truth

    c: Counter[str] = Counter()
    for g in load_truth(root / "gt.json").renames:
        for d in {os.path.dirname(g.src), os.path.dirname(g.dst)}:
            c[d] += 1
    return c


def test_inotify_storm_races_match_the_reference_and_the_ground_truth(tree: Path) -> None:
    """Two threads renaming while two make noise, read as it happens: real races; every race figure equals the
    list-based reference on the same reads, and the renames equal what the workload says it did."""
    root = tree / "w/s"
    root.mkdir()
    cap = tree / "storm.fsncap"
    for d in dirs(root, 4):
        d.mkdir()
    with sysctl("fs.inotify.max_queued_events", 1 << 20):
        src = InotifySource([tree / "w"], capture=cap)
        src.open()
    done = threading.Event()
    try:
        proc = _workload(tree, "storm", str(root), "--seconds", "0.6", "--threads", "2", "--noise", "2")
        threading.Thread(target=lambda: (proc.wait(), done.set()), daemon=True).start()
        _read_until(src, done)
        out, _ = proc.communicate(timeout=60)
    finally:
        src.close()
    issued = sum(json.loads(out)["renames"])
    s = capture_stats(cap)
    r = s["races"]
    _same_races(r, oracle_race_stats(_oracle_reads(cap)))
    assert r["overflows"] == 0
    assert r["pairs"] == issued == s["volume"]["renames"]["joined"]
    assert (r["orphan_from"], r["orphan_to"]) == (0, 0)
    truth = _truth_dirs(tree)
    assert s["top_dirs"]["by_renames"] == truth.most_common(10) or \
        sorted(s["top_dirs"]["by_renames"]) == sorted(truth.most_common(10))


def test_inotify_forced_overflow_places_and_orphans(tree: Path) -> None:
    """Queue limit 1024, 4 x 512 renames without reading: overflows where the reference finds them, orphan
    halves around them as the reference counts, one-sided renames flagged overflow as replay makes them."""
    root = tree / "w/s"
    root.mkdir()
    cap = tree / "burst.fsncap"
    for d in dirs(root, 4):
        d.mkdir()
    with sysctl("fs.inotify.max_queued_events", 1024):
        src = InotifySource([tree / "w"], capture=cap, read_buffer=0)  # no reader thread: nothing reads
        src.open()
    try:
        proc = _workload(tree, "burst", str(root), "--threads", "4", "--renames", "512")
        proc.communicate(timeout=120)
        done = threading.Event()
        done.set()
        _read_until(src, done)
    finally:
        src.close()
    s = capture_stats(cap)
    reads = _oracle_reads(cap)
    ref = oracle_race_stats(reads)
    _same_races(s["races"], ref)
    assert s["queue"]["overflows"] == ref["overflows"] >= 1
    where = [i for i, e in enumerate(e for rd in reads for e in rd.events) if e[1] & raw.IN_Q_OVERFLOW]
    assert [p["event"] for p in s["queue"]["overflow_at"]] == where
    records = list(replay(cap))
    assert s["queue"]["one_sided_by_overflow"] == sum(
        1 for r in records if r.kind == "rename" and not (r.path and r.dst) and "overflow" in r.flags)
    assert s["queue"]["backlog_max"] >= max((rd.pending for rd in reads), default=0)


def test_fanotify_capture_counts_kernel_paired_renames(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap = tree / "fan.fsncap"
    for i in range(5):
        os.mknod(tree / f"w/a/f{i}")
    src = FanotifySource([tree / "w"], mark_mode="inode", capture=cap)
    src.open()
    try:
        for i in range(5):
            os.rename(tree / f"w/a/f{i}", tree / f"w/b/g{i}")
        os.mknod(tree / "w/b/new")
        done = threading.Event()
        done.set()
        live = _read_until(src, done)
    finally:
        live += src.close()
    s = capture_stats(cap)
    assert s["source"] == "fanotify" and s["races"] is None and s["read"]["complete"]
    v = s["volume"]
    assert v["event_kinds"] == {"rename": 5, "create": 1}
    assert (v["renames"]["kernel_paired"], v["renames"]["joined"], v["renames"]["one_sided"]) == (5, 5, 0)
    assert v["records"] == len(live)
    assert s["queue"]["backlog_unit"] == "events" and s["queue"]["overflows"] == 0
    a, b = str(tree / "w/a"), str(tree / "w/b")
    assert s["top_dirs"]["by_renames"] == [(a, 5), (b, 5)]
    assert s["top_dirs"]["by_events"] == [(b, 6), (a, 5)]
    assert main(["stats", str(cap)]) == 0
    text = capsys.readouterr().out
    assert "rename pairs (raw)               n/a (fanotify)" in text
    assert "  paired by the kernel  5" in text and "backlog after a read max         0 events" in text


# -- damaged captures ------------------------------------------------------------------------------------------


def test_truncated_capture_reports_what_it_read_and_where_it_stopped(known: Path, tmp_path: Path) -> None:
    data = known.read_bytes()
    lines = data.splitlines(keepends=True)
    cut = tmp_path / "cut.fsncap"
    cut.write_bytes(b"".join(lines[:5]) + lines[5][:20])  # header, 4 reads, half of the 5th
    s = capture_stats(cut)
    assert s["volume"]["events"] == 13 and s["races"]["pairs"] == 4
    assert not s["read"]["complete"] and not s["read"]["ended_cleanly"]
    assert s["read"]["issues"] == 2 and "truncated last line" in s["read"]["issue_list"][0]
    assert s["read"]["stopped_at"]["line"] == 7 and s["read"]["stopped_at"]["offset"] == len(cut.read_bytes())


def test_corrupt_line_is_skipped_and_counted(known: Path, tmp_path: Path) -> None:
    lines = known.read_bytes().splitlines(keepends=True)
    bad = tmp_path / "bad.fsncap"
    bad.write_bytes(b"".join([*lines[:2], b'["B", oops\n', *lines[3:]]))
    s = capture_stats(bad)
    assert s["volume"]["events"] == 16  # the second read (2 events) is lost
    assert s["read"]["ended_cleanly"] and not s["read"]["complete"] and s["read"]["stopped_at"] is None
    assert s["read"]["issues"] == 1 and s["read"]["issue_list"][0].startswith("line 3 ")


def test_truncated_gzip_capture(known: Path, tmp_path: Path) -> None:
    gz = tmp_path / "c.fsncap.gz"
    gz.write_bytes(gzip.compress(known.read_bytes())[:-30])
    s = capture_stats(gz)
    assert not s["read"]["complete"] and s["read"]["stopped_at"] is not None
    assert 0 < s["volume"]["events"] <= 18


def test_cli_damaged_and_unreadable_captures(known: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = known.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.fsncap"
    cut.write_bytes(b"".join(lines[:3]))
    junk = tmp_path / "junk.fsncap"
    junk.write_text("hello\n")
    code = main(["stats", "--format", "json", str(known), str(cut), str(junk), str(tmp_path / "missing")])
    out, err = capsys.readouterr()
    assert code == 1
    got = json.loads(out)["captures"]
    assert [c["capture"] for c in got] == [str(known), str(cut)]
    assert got[1]["volume"]["events"] == 6
    assert f"{cut}: line 4 " in err and "no end marker" in err
    assert f"{junk}: line 1, byte offset 0: bad capture header" in err or "not an fsnorm capture" in err
    assert "cannot open capture" in err and "Traceback" not in err


# -- the CLI ---------------------------------------------------------------------------------------------------


def test_cli_text_and_markdown_side_by_side(known: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = write_capture(tmp_path / "other.fsncap", known_items()[:2])
    assert main(["stats", str(known), str(other)]) == 0
    text = capsys.readouterr().out
    assert "== pairing races (raw reads)" in text
    row = next(line for line in text.splitlines() if line.startswith("rename pairs (raw)"))
    assert row.split()[-2:] == ["4", "2"]  # the first two reads hold pairs 1 and 2
    row = next(line for line in text.splitlines() if line.startswith("split by a 0.1 ms window"))
    assert row.split()[-2:] == ["1", "1"]
    assert main(["stats", "--format", "markdown", str(known)]) == 0
    md = capsys.readouterr().out
    assert "### queue pressure" in md and f"| figure | {known} |" in md
    assert "| overflows | 1 |" in md and "| #1 | /w/b (9) |" in md


def test_window_override_changes_the_records_not_the_races(known: Path) -> None:
    """A zero window splits the one pair whose TO was not queued when its FROM was read (lost at 0.1 ms)."""
    a = capture_stats(known)
    b = capture_stats(known, window_ns=0)
    assert a["races"] == b["races"] and a["races"]["lost_at_window_ms"]["0.1"] == 1
    assert (a["window_ms"], b["window_ms"]) == (20.0, 0.0)
    assert b["volume"]["records"] == len(list(replay(known, window_ns=0))) == a["volume"]["records"] + 1
    assert b["volume"]["renames"]["joined"] == a["volume"]["renames"]["joined"] - 1
    assert b["volume"]["renames"]["one_sided"] == a["volume"]["renames"]["one_sided"] + 2
    assert main(["stats", "--window", "0", "--format", "json", str(known)]) == 0


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_cli_plot(known: Path, tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / f"p.{suffix}"
    assert main(["stats", "--plot", str(out), str(known), str(known)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in data[:2000]
    assert "plot written" in capsys.readouterr().err


def test_cli_plot_needs_png_or_svg(known: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--plot", str(tmp_path / "p.jpg"), str(known)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "--plot writes .png or .svg files, not 'p.jpg'" in err


def test_cli_plot_without_matplotlib_says_what_to_install(known: Path, tmp_path: Path) -> None:
    """matplotlib hidden by a module that fails to import (the one thing here that is not the real setup)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "matplotlib.py").write_text("raise ImportError('hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": f"{hide}{os.pathsep}{REPO}"}
    res = subprocess.run([sys.executable, "-m", "normalizer", "stats", "--plot", str(tmp_path / "p.png"),
                          str(known)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert res.returncode == 1
    assert "fsnorm[plot]" in res.stderr and "Traceback" not in res.stderr and res.stdout == ""


def _run_on_pty(args: list[str], out_file: Path) -> tuple[int, bytes, bytes]:
    """Run ``python -m normalizer ARGS`` with stderr on a pseudo-terminal and stdout to ``out_file``;
    (status, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    with open(out_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "normalizer", *args], stdout=out, stderr=slave, cwd=REPO)
    os.close(slave)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        proc.wait(timeout=120)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out_file.read_bytes(), seen


@pytest.mark.parametrize("command", ["replay", "stats"])
def test_progress_bar_only_on_a_terminal_and_not_with_quiet(tmp_path: Path, command: str) -> None:
    from benchmarks.synthetic import DIRS, batches

    cap = tmp_path / "big.fsncap"
    w = CaptureWriter(cap, CaptureHeader(watches=DIRS))
    for b in batches(60_000, batch=64):
        w.write(b)
    w.close()
    code, out, tty = _run_on_pty([command, str(cap)], tmp_path / "out")
    assert code == 0 and out
    assert f"{command}:".encode() in tty and b"events/s" in tty and b"B/s" in tty
    code, out_quiet, tty_quiet = _run_on_pty([command, "--quiet", str(cap)], tmp_path / "out")
    assert code == 0 and out_quiet == out and tty_quiet == b""
    piped = subprocess.run([sys.executable, "-m", "normalizer", command, str(cap)], capture_output=True, cwd=REPO,
                           timeout=120, check=False)
    assert piped.returncode == 0 and piped.stdout == out and piped.stderr == b""


# -- bounded memory ----------------------------------------------------------------------------------------------


def _synthetic(n: int, seed: int = 7) -> Iterator[tuple[raw.InotifyBatch, list[Rec]]]:
    """n events in reads of about 64, made on the fly: rename pairs (a third split across reads), lone FROMs,
    noise, an overflow every 1,000 reads; a record per 8 events, each in a new directory (far more distinct
    directories than the top-K keeps)."""
    rng = random.Random(seed)
    cookie = 0
    t = 10**9
    pending: list[int] = []
    k = reads = 0
    while k < n:
        t += rng.choice((1000, 20_000, 2 * MS))
        events: list[raw.InotifyEvent] = [to(2, c, b"t") for c in pending]
        pending = []
        while len(events) < 64:
            x = rng.random()
            cookie += 1
            if x < 0.2:
                events += [frm(1, cookie, b"f"), to(2, cookie, b"t")]
            elif x < 0.3:
                events.append(frm(1, cookie, b"f"))
                pending.append(cookie)
            elif x < 0.31:
                events.append(frm(1, cookie, b"lone"))
            else:
                events.append(ev(1, raw.IN_MODIFY, b"m"))
        reads += 1
        if reads % 1000 == 0:
            events.append(OVERFLOW)
        recs = [Rec("modify", b"/d%d/f" % (k + i), False, t, raw.IN_MODIFY) for i in range(0, len(events), 8)]
        k += len(events)
        yield raw.InotifyBatch(t, rng.random() < 0.5, events, rng.randrange(1, 1 << 16), 0), recs


def _peak(n: int) -> tuple[int, dict[str, Any]]:
    """Peak traced memory of CaptureStats over n synthetic events (small exact limits, top-K and table of
    waiting halves, so that both sizes measured are past them)."""
    tracemalloc.start()
    try:
        stats = CaptureStats(CaptureHeader(), exact_limit=2048, top_capacity=256, max_waiting=512)
        for batch, recs in _synthetic(n):
            stats.feed(batch)
            stats.records_from(recs)
        res = stats.result()
        return tracemalloc.get_traced_memory()[1], res
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_events() -> None:
    """Four times the events must not cost more memory: nothing is kept per event (benchmarks/bench_stats.py
    measures millions of events with the default limits)."""
    small, res_small = _peak(100_000)
    large, res_large = _peak(400_000)
    assert res_large["volume"]["events"] >= 4 * res_small["volume"]["events"] - 1000
    assert res_small["races"]["split"] > 2048 and not res_small["races"]["gap_exact"]  # sketches folded
    assert res_small["top_dirs"]["max_undercount"] > 0  # far more directories than counters
    assert res_small["races"]["orphan_from"] > 512  # more lone halves than the table holds
    assert res_large["queue"]["overflows"] > res_small["queue"]["overflows"] > 0
    assert large < small * 1.1 + 64 * 1024, (small, large)


# -- the notebook ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_your_capture_notebook_executes(known: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    res = subprocess.run([sys.executable, "-m", "normalizer", "stats", "--format", "json", str(known), str(known)],
                         capture_output=True, text=True, cwd=REPO, timeout=60, check=True)
    js = tmp_path / "stats.json"
    js.write_text(res.stdout)
    nb = nbformat.read(REPO / "notebooks" / "your_capture.ipynb", as_version=4)
    monkeypatch.setenv("FSNORM_STATS_JSON", str(js))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 3
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "pairs: 4" in text


def test_bench_stats_runs_tiny() -> None:
    """The make-bench entry on a tiny size (no timing asserted): it prints both speeds and both memories."""
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_stats", "--events", "5000", "--memory-events",
                          "20000", "--repeat", "1"], capture_output=True, text=True, cwd=REPO, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "replay (records only):" in res.stdout and "of fsnorm replay's" in res.stdout
    assert "peak memory of stats + normalizer" in res.stdout


def test_overflow_places_are_listed_once_up_to_their_bound(tmp_path: Path) -> None:
    """150 overflows, three per read: the first 100 listed, in order, each once; all counted."""
    items: list[raw.AnyStreamItem] = [_b(1000 + i, ev(1, raw.IN_CREATE, b"c"), OVERFLOW, OVERFLOW, OVERFLOW)
                                      for i in range(50)]
    s = capture_stats(write_capture(tmp_path / "o.fsncap", items))
    q = s["queue"]
    assert q["overflows"] == s["races"]["overflows"] == 150
    assert [p["event"] for p in q["overflow_at"]] == [4 * (i // 3) + 1 + i % 3 for i in range(100)]
