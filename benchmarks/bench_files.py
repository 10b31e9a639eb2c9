"""What a watched file costs when its directory is busy: CPU of the watcher per workload, fsnorm beside
inotifywait on the same file, same machine, same run.

    python -m benchmarks.bench_files [--siblings N] [--writes N]

The workload (a child process, so its own CPU is not counted) writes the watched file ``--writes`` times and,
in between, churns ``--siblings`` other files in the same directory (create, write, close, rename, delete:
about seven events each), then saves the watched file atomically (a temporary file renamed over it): that
rename is the end marker every subject waits for. The same runs with no siblings give the cost of a quiet
directory.

Subjects:

* ``fsnorm file (inotify)``: ``normalizer.watch([FILE])``: the file's directory is watched and the file's
  records are picked by name in user space (inotify cannot filter by name), so every sibling event is read
  and normalized, then dropped;
* ``fsnorm file (fanotify fs)`` / ``(fanotify inode)``: the same filter on a filesystem mark (everything on the
  filesystem is read) and on an inode mark on the directory;
* ``fsnorm dir --no-recursive (inotify)``: the directory itself, every sibling record delivered (what a user
  would filter by hand without file roots);
* ``inotifywait FILE``: an inotify watch on the file's inode (the kernel filters: no sibling event is ever
  read). It follows the inode, not the path: after an atomic save it watches nothing.

Prints the watcher's CPU seconds per subject (reading until the end marker) and the ratios: busy / quiet for
each subject, and each subject / inotifywait. A measurement, never an assertion.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import normalizer
from normalizer.backends.fanotify import unavailable_reason

_WORKLOAD = r"""
import os, sys
d, siblings, writes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
f = os.path.join(d, "watched.conf")
every = max(1, siblings // max(1, writes))
w = 0
for i in range(max(siblings, writes)):
    if i < siblings:
        s = os.path.join(d, f"s{i}")
        with open(s, "w") as fh:
            fh.write("x")
        os.rename(s, s + ".b")
        os.unlink(s + ".b")
    if w < writes and (i % every == 0 or i >= siblings):
        with open(f, "a") as fh:
            fh.write("y")
        w += 1
t = os.path.join(d, ".watched.conf.tmp")
with open(t, "w") as fh:
    fh.write("saved")
os.replace(t, f)
"""


@contextlib.contextmanager
def _sysctl(name: str, value: int) -> Iterator[None]:
    """Raise a kernel queue for the run (root only; otherwise left as it is)."""
    path = Path("/proc/sys") / name.replace(".", "/")
    try:
        old = int(path.read_text())
        path.write_text(str(max(old, value)))
    except OSError:
        yield
        return
    try:
        yield
    finally:
        path.write_text(str(old))


def _workload(d: Path, siblings: int, writes: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _WORKLOAD, str(d), str(siblings), str(writes)])


def _fsnorm(d: Path, siblings: int, writes: int, paths: list[str], options: dict[str, Any]) -> tuple[float, int]:
    """CPU seconds of this process from the watch's start to the end marker, and the records delivered."""
    target = os.fsencode(d / "watched.conf")
    n = 0
    with normalizer.watch(paths, raw_records=True, **options) as stream:
        start = time.process_time()
        proc = _workload(d, siblings, writes)
        done = False
        while not done:
            for rec in stream.read(1.0):
                n += 1
                if rec.kind == "rename" and rec.dst == target:
                    done = True
        cpu = time.process_time() - start
    proc.wait()
    return cpu, n


def _inotifywait(d: Path, siblings: int, writes: int) -> tuple[float, int]:
    """CPU seconds (user + system, from wait4) of ``inotifywait -m FILE`` until it saw the file replaced."""
    proc = subprocess.Popen(["inotifywait", "-m", "-q", str(d / "watched.conf")], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    time.sleep(0.3)  # it prints "Watches established" only without -q; its watch is in place well before this
    work = _workload(d, siblings, writes)
    n = 0
    for line in proc.stdout:
        n += 1
        if b"DELETE_SELF" in line or b"IGNORED" in line:
            break
    work.wait()
    proc.terminate()
    _pid, _status, usage = os.wait4(proc.pid, 0)
    return usage.ru_utime + usage.ru_stime, n


def _subjects() -> list[tuple[str, Callable[[Path, int, int], tuple[float, int]]]]:
    def file_root(**options: Any) -> Callable[[Path, int, int], tuple[float, int]]:
        return lambda d, s, w: _fsnorm(d, s, w, [str(d / "watched.conf")], options)

    out: list[tuple[str, Callable[[Path, int, int], tuple[float, int]]]] = [
        ("fsnorm file (inotify)", file_root(backend="inotify")),
    ]
    if unavailable_reason() is None:
        out += [("fsnorm file (fanotify fs)", file_root(backend="fanotify", mark_mode="filesystem")),
                ("fsnorm file (fanotify inode)", file_root(backend="fanotify", mark_mode="inode"))]
    out.append(("fsnorm dir --no-recursive (inotify)",
                lambda d, s, w: _fsnorm(d, s, w, [str(d)], {"backend": "inotify", "recursive": False})))
    if subprocess.run(["sh", "-c", "command -v inotifywait"], capture_output=True).returncode == 0:
        out.append(("inotifywait FILE", _inotifywait))
    return out


def _once(run: Callable[[Path, int, int], tuple[float, int]], siblings: int, writes: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="fsnorm-bench-files-") as tmp:
        (Path(tmp) / "watched.conf").write_text("")
        return run(Path(tmp), siblings, writes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--siblings", type=int, default=20000, help="sibling files churned (default 20000)")
    parser.add_argument("--writes", type=int, default=200, help="writes to the watched file (default 200)")
    parser.add_argument("--trials", type=int, default=3, help="runs per subject and case; the least CPU is kept")
    args = parser.parse_args(argv)
    rows: list[tuple[str, float, int, float, int]] = []
    with _sysctl("fs.inotify.max_queued_events", 1 << 20), _sysctl("fs.fanotify.max_queued_events", 1 << 20):
        subjects = _subjects()
        _once(subjects[0][1], 100, 10)  # warm-up: imports and first-use costs are not any subject's
        for name, run in subjects:
            results = [min((_once(run, siblings, args.writes) for _ in range(args.trials)), key=lambda r: r[0])
                       for siblings in (args.siblings, 0)]
            (busy, nb), (quiet, nq) = results
            rows.append((name, busy, nb, quiet, nq))
            print(f"  {name}: busy {busy:.3f} s CPU ({nb} records/lines), quiet {quiet:.3f} s", file=sys.stderr)
    peer = next((r for r in rows if r[0].startswith("inotifywait")), None)
    print(f"\nA watched file, its directory churned by {args.siblings} other files (~{7 * args.siblings} events) "
          f"and {args.writes} writes to it; CPU of the watcher until the file's atomic save\n")
    print("| subject | busy CPU s | records | quiet CPU s | busy / quiet | busy / inotifywait |")
    print("|---|---|---|---|---|---|")
    for name, busy, nb, quiet, _nq in rows:
        vs_peer = f"x{busy / peer[1]:.1f}" if peer is not None and peer[1] > 0 else "n/a"
        ratio = f"x{busy / quiet:.1f}" if quiet > 0 else "n/a"
        print(f"| {name} | {busy:.3f} | {nb} | {quiet:.3f} | {ratio} | {vs_peer} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
