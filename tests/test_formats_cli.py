"""The formats through the real command: ``fsnorm watch --format ecs|ocsf|TEMPLATE`` on a live tree (one test
per format), ``fsnorm replay`` of the same session, ``--help``, and the wall clock of a capture."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from format_samples import BAD
from test_formats_ecs import ecs_problems
from test_formats_ocsf import errors as ocsf_errors

from normalizer.backends.fanotify import unavailable_reason
from normalizer.capture.log import CaptureHeader, CaptureReader
from normalizer.cli.formatting import _offset_from_created, capture_context

FSNORM = [sys.executable, "-m", "normalizer"]


def _watch(tree: Path, *options: str, capture: Path | None = None) -> subprocess.Popen[bytes]:
    cap = ["--capture", str(capture)] if capture else []
    return subprocess.Popen([*FSNORM, "watch", str(tree / "w"), *cap, *options], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _wait_ready(proc: subprocess.Popen[bytes], poke: Path) -> bytes:
    """Write ``poke`` until fsnorm reports it (it is watching then); return that first output chunk."""
    os.set_blocking(proc.stdout.fileno(), False)  # type: ignore[union-attr]
    end = time.monotonic() + 20
    while time.monotonic() < end:
        poke.write_text("x")
        time.sleep(0.1)
        chunk = proc.stdout.read()  # type: ignore[union-attr]
        if chunk:
            return chunk
    raise AssertionError("fsnorm watch never reported anything")


def _stop(proc: subprocess.Popen[bytes]) -> tuple[bytes, str]:
    proc.send_signal(signal.SIGTERM)
    os.set_blocking(proc.stdout.fileno(), True)  # type: ignore[union-attr]
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err
    return out, err.decode()


def _session(tree: Path, *options: str, workload: Callable[[Path], None], capture: Path | None = None) -> bytes:
    """Everything ``fsnorm watch w OPTIONS`` printed for ``workload``: started, ready (tree/w/a/ready reported),
    the workload, half a second for the window (100 ms where given) to pass, then SIGTERM and a clean exit."""
    proc = _watch(tree, *options, capture=capture)
    first = b""
    try:
        first = _wait_ready(proc, tree / "w/a/ready")
        workload(tree)
        time.sleep(0.5)
    finally:
        out, _ = _stop(proc)
    return first + out


def _workload(tree: Path) -> None:
    os.rename(tree / "w/a/ready", tree / "w/b/moved")      # joined rename
    os.rename(tree / "w/b/moved", tree / "out/gone")       # move out of the tree
    (tree / "out/bad").write_bytes(b"x")
    os.rename(tree / "out/bad", tree / "w/a" / os.fsdecode(BAD))  # move in, a name that is not UTF-8


def _docs(out: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_watch_ecs_live_and_replay(tree: Path) -> None:
    cap = tree / "s.fsncap"
    before = time.time()
    docs = _docs(_session(tree, "--format", "ecs", "--window", "100", workload=_workload, capture=cap))
    after = time.time()
    assert docs and all(ecs_problems(d) == [] for d in docs)
    for d in docs:
        stamp = datetime.datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00")).timestamp()
        assert before - 1 <= stamp <= after + 1  # wall-clock time of this run, not monotonic time
    renames = [d for d in docs if d["event"]["action"] == "rename"]
    assert [r["fsnorm"]["rename"] for r in renames] == ["both", "from", "to"]
    assert renames[0]["file"]["path"] == str(tree / "w/b/moved")
    assert renames[0]["file"]["Ext"]["original"]["path"] == str(tree / "w/a/ready")
    assert renames[1]["file"]["Ext"]["original"]["path"] == str(tree / "w/b/moved") and "path" not in renames[1][
        "file"]
    assert renames[2]["fsnorm"]["dst_b64"]
    # Replay of the capture: the same documents; the wall clock comes from the capture's header, which may
    # differ from the live session's per-read re-sampling by a few microseconds.
    res = subprocess.run([*FSNORM, "replay", str(cap), "--format", "ecs"], capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    replayed = _docs(res.stdout)
    assert [_no_time(d) for d in replayed] == [_no_time(d) for d in docs]
    for live, again in zip(docs, replayed, strict=True):
        t_live, t_again = (datetime.datetime.fromisoformat(x["@timestamp"].replace("Z", "+00:00"))
                           for x in (live, again))
        assert abs((t_live - t_again).total_seconds()) < 0.01


def _no_time(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "@timestamp"}


def test_watch_ocsf_live(tree: Path) -> None:
    events = _docs(_session(tree, "--format", "ocsf", "--window", "100", workload=_workload))
    assert events and all(ocsf_errors(e) == [] for e in events)
    renames = [e for e in events if e["activity_id"] == 5]
    assert [e["unmapped"]["fsnorm"]["rename"] for e in renames] == ["both", "from", "to"]
    assert (renames[0]["file"]["path"], renames[0]["file_result"]["path"]) == (
        str(tree / "w/a/ready"), str(tree / "w/b/moved"))
    assert all(abs(e["time"] / 1000 - time.time()) < 120 for e in events)


def test_watch_template_live_writes_raw_bytes_and_nul_separated_records(tree: Path) -> None:
    out = _session(tree, "--format", "%e %w%f -> %W%F%0", "--no-newline", "--window", "100", workload=_workload)
    records = out.split(b"\0")
    assert records[-1] == b"" and b"\n" not in out
    w = str(tree / "w").encode()
    assert b"MOVED_FROM,MOVED_TO " + w + b"/a/ready -> " + w + b"/b/moved" in records
    assert b"MOVED_FROM " + w + b"/b/moved -> " in records
    assert b"MOVED_TO " + w + b"/a/" + BAD + b" -> " + w + b"/a/" + BAD in records


def test_help_documents_every_format() -> None:
    for command in ("watch", "replay", "demo"):
        res = subprocess.run([*FSNORM, command, "--help"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0
        text = " ".join(res.stdout.split())
        for word in ("json", "text", "ecs", "ocsf", "%w", "%f", "%e", "%Xe", "%c", "%T", "%W%F", "%0",
                     "--timefmt", "--no-newline", "MOVED_FROM,MOVED_TO"):
            assert word in text, (command, word)


def test_bad_format_options_are_one_line_errors(tree: Path) -> None:
    res = subprocess.run([*FSNORM, "watch", str(tree / "w"), "--format", "ecs", "--no-newline"],
                         capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stderr.strip()) == (1, "fsnorm: error: --no-newline is for a --format template "
                                                       "only")
    res = subprocess.run([*FSNORM, "watch", str(tree / "w"), "--format", "%T %w%f"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and "--timefmt was not given" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run([*FSNORM, "replay", "x", "--format", "yaml"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "unknown format 'yaml'" in res.stderr


def test_capture_header_keeps_the_wall_clock_offset(tmp_path: Path) -> None:
    header = CaptureHeader()
    assert header.wall_offset_ns is not None
    assert abs(header.wall_offset_ns - (time.time_ns() - time.monotonic_ns())) < 1_000_000_000
    assert CaptureHeader.from_json(header.to_json()).wall_offset_ns == header.wall_offset_ns
    old = header.to_json()
    del old["wall_offset_ns"]
    assert CaptureHeader.from_json(old).wall_offset_ns is None
    with pytest.raises(ValueError, match="wall_offset_ns"):
        CaptureHeader.from_json({**old, "wall_offset_ns": "soon"})


def test_replay_of_an_old_capture_takes_the_time_from_created() -> None:
    created = "2026-11-25T10:00:00+0100"
    first = type("Item", (), {"t_ns": 5_000_000_000})()
    offset = _offset_from_created(created, first)
    wall = datetime.datetime.fromtimestamp((5_000_000_000 + offset) / 1e9, tz=datetime.UTC)
    assert wall == datetime.datetime(2026, 11, 25, 9, 0, tzinfo=datetime.UTC)


def test_replay_context_of_a_capture_without_the_offset() -> None:
    """tests/data/demo.fsncap predates ``wall_offset_ns``: its first item is placed at its ``created`` time."""
    cap = Path(__file__).parent / "data" / "demo.fsncap"
    with CaptureReader(cap) as reader:
        header, first = reader.header, next(iter(reader))
    assert header.wall_offset_ns is None
    ctx = capture_context(str(cap), "%F")
    created = datetime.datetime.strptime(header.created, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    assert (ctx.host, ctx.timefmt, ctx.clock.follow) == (header.host, "%F", False)
    assert ctx.clock.wall_ns(first.t_ns) == int(created * 1_000_000_000)


def test_replay_context_of_an_unreadable_capture_is_this_host_now(tmp_path: Path) -> None:
    bad = tmp_path / "bad.fsncap"
    bad.write_text("not a capture\n")
    ctx = capture_context(str(bad), None)
    assert abs(ctx.clock.wall_ns(time.monotonic_ns()) - time.time_ns()) < 1_000_000_000


@pytest.mark.skipif(os.geteuid() != 0 or unavailable_reason() is not None,
                    reason=f"fanotify FAN_RENAME as root needed ({unavailable_reason()})")
def test_watch_fanotify_ecs_and_ocsf_name_the_renaming_process(tree: Path) -> None:
    for fmt in ("ecs", "ocsf"):
        docs = _docs(_session(tree, "--backend", "fanotify", "--format", fmt,
                              workload=lambda t: os.rename(t / "w/a/ready", t / "w/b/moved")))
        if fmt == "ecs":
            rename = next(d for d in docs if d["event"]["action"] == "rename")
            assert ecs_problems(rename) == [] and rename["process"]["pid"] == os.getpid()
            assert rename["file"]["path"] == str(tree / "w/b/moved")
        else:
            rename = next(d for d in docs if d["activity_id"] == 5)
            assert ocsf_errors(rename) == [] and rename["actor"]["process"]["pid"] == os.getpid()
            assert rename["file_result"]["path"] == str(tree / "w/b/moved")
        os.rename(tree / "w/b/moved", tree / "w/a/ready")
