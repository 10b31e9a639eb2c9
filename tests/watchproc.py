"""``fsnorm watch`` as a real child process, for the CLI tests: started and waited for until its watches are in
place (so the test's first change is seen), stdout read line by line with a bound, stopped with SIGTERM and held
to a clean exit, killed and its pipes closed whatever happened."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from live import Lines, wait_for_watches

REPO = Path(__file__).resolve().parent.parent
FSNORM = [sys.executable, "-m", "normalizer"]


def start_watch(args: Sequence[str | bytes], watches: int) -> tuple[subprocess.Popen[str], Lines]:
    """``fsnorm watch ARGS`` (str or raw-bytes arguments, passed as bytes), returned once it holds ``watches``
    inotify watches. Pair with ``close_watch`` in a finally (or use ``watching``)."""
    cmd = [os.fsencode(a) for a in (*FSNORM, "watch", *args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    lines = Lines(proc.stdout)
    try:
        wait_for_watches(proc.pid, watches)
    except BaseException:
        close_watch(proc, lines)
        raise
    return proc, lines


def close_watch(proc: subprocess.Popen[str], lines: Lines) -> None:
    """Kill (a no-op after ``stop_watch``), reap, and close the pipes (not left to the GC: ResourceWarning)."""
    proc.kill()
    proc.wait(30)
    if proc.stderr is not None:
        proc.stderr.close()
    if proc.stdout is not None and lines.ended(5):  # not pulled from under the reader thread
        proc.stdout.close()


@contextlib.contextmanager
def watching(args: Sequence[str | bytes], watches: int) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """``start_watch`` for the block, ``close_watch`` after it."""
    proc, lines = start_watch(args, watches)
    try:
        yield proc, lines
    finally:
        close_watch(proc, lines)


def stop_watch(proc: subprocess.Popen[str], lines: Lines, timeout: float = 30.0) -> tuple[list[str], str]:
    """SIGTERM, then every line not read yet and stderr (each within ``timeout`` seconds); the exit must be
    clean (0, no traceback)."""
    proc.send_signal(signal.SIGTERM)
    rest = lines.rest(timeout)  # the reader thread saw the end: stdout can be closed
    proc.wait(timeout)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.returncode == 0 and "Traceback" not in err, err
    return rest, err
