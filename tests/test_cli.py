"""The ``fsnorm`` command end to end, as a user runs it: ``demo`` (the README's first command), the ``watch``
options (``--rescan``, ``--max-pending``, ``--events``, ``--format text``), a reader that goes away (``| head
-1``), and the callback runner's ``on_error``. Real subprocesses, the real kernel."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from live import stop_process, sysctl, wait_for_watches
from watchproc import FSNORM, REPO, close_watch, start_watch, stop_watch, watching

import normalizer
from normalizer.records import record_from_json

#: `fsnorm demo` (text), the temp directory written as T: what the README shows.
DEMO = """\
create      T/watched/a/report.txt
modify      T/watched/a/report.txt
close_write T/watched/a/report.txt
rename      T/watched/a/report.txt -> T/watched/a/report-final.txt
rename      T/watched/a/report-final.txt -> T/watched/b/report-final.txt
rename      T/watched/b/report-final.txt -> (unwatched) {timeout}
rename      (unwatched) -> T/watched/a/incoming.txt {unwatched}
rename      T/watched/a/album -> T/watched/a/album-2026 [dir]
move_self   T/watched/a/album-2026 [dir]
create      T/watched/a/album-2026/cover.jpg
modify      T/watched/a/album-2026/cover.jpg
close_write T/watched/a/album-2026/cover.jpg
rename      T/watched/a/album-2026 -> (unwatched) [dir] {unwatched}
rename      (unwatched) -> T/watched/b/pkg [dir] {unwatched}
create      T/watched/b/pkg/README {synthesized}
create      T/watched/b/pkg/src [dir] {synthesized}
create      T/watched/b/pkg/src/main.py {synthesized}
create      T/watched/b/pkg/setup.cfg
modify      T/watched/b/pkg/setup.cfg
close_write T/watched/b/pkg/setup.cfg
rename      T/watched/a/incoming.txt -> T/watched/b/notes.txt
create      T/watched/b/tmp.txt
modify      T/watched/b/tmp.txt
close_write T/watched/b/tmp.txt
delete      T/watched/b/tmp.txt
"""
SUMMARY = ("25 records: 8 renames (4 joined, 4 one-sided), 3 synthesized; 4 close_write, 7 create, 1 delete, "
           "4 modify, 1 move_self")


def summary_of(kinds: list[str], renames: list[tuple[bool, bool]], synthesized: int) -> str:
    """The summary line, computed here from what was printed (not by normalizer.demo.summary)."""
    joined = sum(1 for src, dst in renames if src and dst)
    rest = ", ".join(f"{n} {k}" for k, n in sorted(Counter(k for k in kinds if k != "rename").items()))
    return (f"{len(kinds)} records: {len(renames)} renames ({joined} joined, {len(renames) - joined} one-sided), "
            f"{synthesized} synthesized; {rest}")


def test_demo_prints_the_readme_records_and_a_summary_that_counts_them() -> None:
    res = subprocess.run([*FSNORM, "demo"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    *lines, last = res.stdout.splitlines()
    base = re.match(r"create +(/tmp/fsnorm-demo-[^/]+)/", lines[0])
    assert base is not None, lines[0]
    assert "\n".join(lines).replace(base.group(1), "T") + "\n" == DEMO
    kinds = [line.split()[0] for line in lines]
    renames = [("(unwatched) ->" not in line, "-> (unwatched)" not in line) for line in lines
               if line.startswith("rename")]
    assert last == summary_of(kinds, renames, sum("synthesized" in line for line in lines)) == SUMMARY
    assert not os.path.exists(base.group(1)), "the demo removes its temp tree"


def test_demo_json_prints_records_on_stdout_and_the_summary_on_stderr() -> None:
    res = subprocess.run([*FSNORM, "demo", "--format", "json"], capture_output=True, text=True, timeout=120,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr
    models = [record_from_json(line) for line in res.stdout.splitlines()]
    renames = [(bool(m.src), bool(m.dst)) for m in models if m.kind == "rename"]
    syn = sum("synthesized" in m.flags for m in models)
    assert res.stderr.strip() == summary_of([m.kind for m in models], renames, syn) == SUMMARY


def test_watch_format_text(tree: Path) -> None:
    (tree / "w/a/x").write_text("1")
    with watching([str(tree / "w"), "--format", "text", "--window", "60000"], 3) as (proc, lines):
        os.rename(tree / "w/a/x", tree / "w/b/y")
        os.mkdir(tree / "w/a/d")
        os.rename(tree / "w/b/y", tree / "out/y")  # pending until the stop
        got = [lines.next(), lines.next()]
        rest, _ = stop_watch(proc, lines)
    w = tree / "w"
    assert [line.rstrip("\n") for line in got + rest] == [
        f"rename      {w}/a/x -> {w}/b/y",
        f"create      {w}/a/d [dir]",
        f"rename      {w}/b/y -> (unwatched) {{shutdown}}",
    ]


def test_watch_events_limits_the_kinds(tree: Path) -> None:
    with watching([str(tree / "w"), "--events", "create,delete"], 3) as (proc, lines):
        (tree / "w/a/f").write_text("x")  # create, modify, close_write: only the create
        os.rename(tree / "w/a/f", tree / "w/b/g")  # not asked for
        os.unlink(tree / "w/b/g")
        os.mkdir(tree / "w/a/d")
        (tree / "w/a/d/h").write_text("y")  # the new directory is watched all the same
        got = [json.loads(lines.next()) for _ in range(4)]
        rest, _ = stop_watch(proc, lines)
    assert rest == []
    assert [(r["kind"], os.path.relpath(r["path"], tree)) for r in got] == [
        ("create", "w/a/f"), ("delete", "w/b/g"), ("create", "w/a/d"), ("create", "w/a/d/h")]


def test_watch_max_pending_evicts_the_oldest_half(tree: Path) -> None:
    for n in ("p", "q", "r"):
        (tree / f"w/a/{n}").write_text(n)
    with watching([str(tree / "w"), "--max-pending", "1", "--window", "60000", "--events", "rename"], 3) as (
            proc, lines):
        for n in ("p", "q", "r"):  # three moves out, 60 s window: only one half may wait
            os.rename(tree / f"w/a/{n}", tree / f"out/{n}")
        got = [json.loads(lines.next()) for _ in range(2)]
        rest, _ = stop_watch(proc, lines)
    w = tree / "w/a"
    assert [(r["src"], r["dst"], r["flags"]) for r in got + [json.loads(x) for x in rest]] == [
        (f"{w}/p", "", ["evicted"]), (f"{w}/q", "", ["evicted"]), (f"{w}/r", "", ["shutdown"])]


def test_watch_rescan_reports_what_the_overflow_hid(tree: Path) -> None:
    (tree / "w/a/gone").write_text("g")
    with sysctl("fs.inotify.max_queued_events", 16):  # read by the watcher's inotify_init
        proc, lines = start_watch([str(tree / "w"), "--rescan"], 3)
    try:
        stop_process(proc)  # not reading: the queue overflows
        for i in range(20):
            os.mknod(tree / f"w/b/n{i}")
        os.unlink(tree / "w/a/gone")
        os.mkdir(tree / "w/a/new")
        proc.send_signal(signal.SIGCONT)
        got = [json.loads(lines.next())]
        while got[-1]["path"] != str(tree / "w/a/new"):  # the rescan's create of the new directory
            got.append(json.loads(lines.next()))
        (tree / "w/a/new/late").write_text("")  # the rescan watched the new directory
        while got[-1]["path"] != str(tree / "w/a/new/late"):
            got.append(json.loads(lines.next()))
        stop_watch(proc, lines)
    finally:
        close_watch(proc, lines)
    brief = [(r["kind"], os.path.relpath(r["path"], tree) if r["path"] else "", r["flags"]) for r in got]
    assert brief[:17] == [*[("create", f"w/b/n{i}", []) for i in range(16)], ("overflow", "", [])]
    syn = ["synthesized"]
    # The rescan: deletes, creates, then the files changed since the last read before the overflow (here
    # every file read before it: their mtime is that recent).
    assert brief[17:] == [("delete", "w/a/gone", syn),
                          *[("create", p, syn) for p in ["w/a/new", *sorted(f"w/b/n{i}" for i in range(16, 20))]],
                          *[("modify", p, syn) for p in sorted(f"w/b/n{i}" for i in range(16))],
                          ("create", "w/a/new/late", []), ("modify", "w/a/new/late", []),
                          ("close_write", "w/a/new/late", [])][:len(brief) - 17]
    assert brief[-1] == ("create", "w/a/new/late", [])


def test_watch_into_a_pipe_whose_reader_exits(tree: Path) -> None:
    """`fsnorm watch ... | head -1`: once head has its line and exits, the next write fails with EPIPE and
    fsnorm exits quietly with status 0 (no traceback, no 'Exception ignored' from the final flush)."""
    watcher = subprocess.Popen([*FSNORM, "watch", str(tree / "w")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=REPO)
    head = subprocess.Popen(["head", "-1"], stdin=watcher.stdout, stdout=subprocess.PIPE)
    assert watcher.stdout is not None and watcher.stderr is not None
    watcher.stdout.close()  # only head reads the pipe now
    try:
        wait_for_watches(watcher.pid, 3)
        stopped = threading.Event()
        threading.Thread(target=lambda: (watcher.wait(60), stopped.set()), daemon=True).start()
        i = 0
        while not stopped.wait(0.01) and i < 5000:  # events until fsnorm notices that nobody reads
            os.mknod(tree / f"w/a/f{i}")
            i += 1
        first, _ = head.communicate(timeout=30)
        assert watcher.wait(30) == 0
        err = watcher.stderr.read().decode()
    finally:
        watcher.kill()
        head.kill()
        watcher.wait(30)
        head.wait(30)
        watcher.stderr.close()
        head.stdout.close()  # type: ignore[union-attr]
    assert first.count(b"\n") == 1 and json.loads(first)["path"] == str(tree / "w/a/f0")
    assert err == "", err


def test_runner_on_error_gets_the_callbacks_exception(tree: Path) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    class Boom(Exception):
        pass

    def callback(rec: object) -> None:
        raise Boom(rec)

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        done.set()

    runner = normalizer.run_in_thread(tree / "w", callback, on_error=on_error)
    (tree / "w/a/f").write_text("x")
    assert done.wait(30), "on_error was not called"
    runner.stop(timeout=30)
    assert not runner.running
    assert len(errors) == 1 and errors[0] is runner.error and isinstance(errors[0], Boom)
    assert errors[0].args[0].kind == "create" and errors[0].args[0].path == str(tree / "w/a/f")  # str root: str path
    assert runner.stream.source.closed


def test_a_command_without_a_loop_does_not_import_asyncio(tmp_path: Path) -> None:
    """asyncio (with ssl) is imported only where a NATS or serve loop runs (sinks/nats.py, cli/nats.py): every
    command imports those modules for their options, and asyncio was a tenth of every command's start-up."""
    code = ("import sys\nfrom normalizer.cli.main import main\ncode = main(['replay', '--quiet', sys.argv[1]])\n"
            "print(code, 'asyncio' in sys.modules, 'ssl' in sys.modules)")
    capture = Path(__file__).parent / "data" / "demo.fsncap"
    out = subprocess.run([sys.executable, "-c", code, str(capture)], capture_output=True, text=True, timeout=60)
    assert out.stdout.split()[-3:] == ["0", "False", "False"], out.stderr
