"""What the rescan default costs a live ``fsnorm watch`` in CPU: the same storm watched with and without
``--no-rescan``, CPU time of the fsnorm process per event read.

Each trial starts ``fsnorm watch ROOT`` (JSON to /dev/null, kernel queue raised so that nothing overflows:
this measures the shadow's upkeep, not a rescan), runs the storm workload (renaming threads across 4
directories plus threads creating, writing and deleting; ``benchmarks/workloads.py``), stops fsnorm with
SIGTERM and takes its CPU time (user + system from ``/proc/PID/stat``, from just before the storm to just before
the signal: start-up and shutdown are not counted) and the events it read (its last stderr line).
CPU time per event is less sensitive to other load on the machine than a rate; trials alternate between the
two settings. Prints the median of each and the ratio.

    .venv/bin/python -m benchmarks.rescan_cost [--trials 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (``/proc/PID/stat`` fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_storm(root: Path, seconds: float, *, threads: int = 4, noise: int = 2) -> None:
    """The storm workload (benchmarks/workloads.py) in its own process, on the four directories ``d0``..``d3``
    of ``root``, for ``seconds``; then half a second for the watcher to read the rest."""
    subprocess.run([sys.executable, "-m", "benchmarks.workloads", "storm", str(root), "--seconds", str(seconds),
                    "--threads", str(threads), "--noise", str(noise)], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    time.sleep(0.5)


def stop_watch(watcher: subprocess.Popen[bytes]) -> tuple[int, int, int]:
    """SIGTERM an ``fsnorm watch`` started with ``stderr=PIPE`` and read its closing line: (events read,
    records, overflows)."""
    watcher.send_signal(signal.SIGTERM)
    watcher.wait()
    assert watcher.stderr is not None
    err = watcher.stderr.read().decode()
    m = re.search(r"stopped: (\d+) events read, (\d+) records, (\d+) overflows", err)
    if m is None:
        raise RuntimeError(f"fsnorm watch did not report its events: {err[-300:]}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def trial(root: Path, seconds: float, rescan: bool) -> tuple[float, int]:
    """(CPU seconds of the fsnorm process, events it read) for one storm."""
    for d in range(4):
        (root / f"d{d}").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "normalizer", "watch", str(root), *([] if rescan else ["--no-rescan"])]
    with open(os.devnull, "wb") as null:
        watcher = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE, cwd=REPO)
        time.sleep(1.5)  # start-up: imports and watches
        before = cpu_seconds(watcher.pid)
        run_storm(root, seconds)
        used = cpu_seconds(watcher.pid) - before
        events, _, _ = stop_watch(watcher)
    return used, events


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args(argv)
    original = QUEUE.read_text()
    per_event: dict[bool, list[float]] = {True: [], False: []}
    events: dict[bool, list[int]] = {True: [], False: []}
    try:
        QUEUE.write_text(str(1 << 20))
        for i in range(args.trials):
            for rescan in (True, False) if i % 2 == 0 else (False, True):
                with tempfile.TemporaryDirectory(prefix="fsnorm-rescan-cost-") as tmp:
                    cpu, n = trial(Path(tmp) / "w", args.seconds, rescan)
                per_event[rescan].append(cpu / n * 1e6)
                events[rescan].append(n)
    finally:
        QUEUE.write_text(original)
    on, off = statistics.median(per_event[True]), statistics.median(per_event[False])
    print(f"fsnorm watch, storm {args.seconds} s x {args.trials} trials each, CPU per event read (median):")
    print("| setting | CPU us/event | events read (median) | vs --no-rescan |")
    print("|---|---:|---:|---:|")
    print(f"| rescan (default) | {on:.2f} | {statistics.median(events[True]):,.0f} | x{on / off:.2f} |")
    print(f"| --no-rescan | {off:.2f} | {statistics.median(events[False]):,.0f} | x1.00 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
