"""Soak: a long mixed storm through the live inotify source, with a fast and a slow consumer.

    python -m benchmarks.soak --minutes 10        (make soak)
    python -m benchmarks.soak --minutes 1 --json soak.json

The storm runs in segments (``benchmarks.workloads storm`` into a fresh watched subdirectory each time, so names
never repeat), while two consumer *processes* watch the same tree, each with its own inotify instance:

* **fast**: reads as fast as it can (the API iterator with ``raw_records=True``);
* **slow**: reads for ``--slow-read`` seconds, then stops reading for ``--slow-pause`` seconds, and so on: its
  kernel queue overflows and it must recover.

Each consumer accounts for every rename of the ground truth (:class:`Ledger`): joined exactly once, one-sided
with a reason (each side that was delivered), or lost in an overflow (its syscall fell in the time an ``overflow``
record stands for; see :class:`Ledger`). It reports records per second, its RSS at the start and end
(``VmRSS``, after the first and the last segment), the pending-table high-water mark
(``InotifySource.normalizer.matcher.pending_high_water``), overflow count, and anything unaccounted.
Exit status 1 if a rename is unaccounted for or wrongly joined.
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from normalizer.records import Rec

#: Why a one-sided first half may be one-sided, and a one-sided second half.
FROM_REASONS = frozenset({"timeout", "overflow", "evicted", "cookie_reused", "shutdown", "unwatched"})
TO_REASONS = frozenset({"unwatched"})
JOINED, FROM_SIDE, TO_SIDE = 1, 2, 4


def rss_kib() -> int:
    """This process's resident set size (VmRSS), in KiB."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def _storm_name(path: bytes) -> tuple[bytes, int, int] | None:
    """``(dir, thread, k)`` for a storm file ``.../d{j}/t{i}_{k}``, else None."""
    head, _, name = path.rpartition(b"/")
    if not name.startswith(b"t") or b"_" not in name:
        return None
    i, _, k = name[1:].partition(b"_")
    if not (i.isdigit() and k.isdigit()):
        return None
    return head, int(i), int(k)


@dataclass
class Ledger:
    """Accounts for the renames of one storm (``root/d0..d{n-1}``, thread ``i``'s k-th rename
    ``d[(i+k)%n]/t{i}_{k} -> d[(i+k+1)%n]/t{i}_{k+1}``), fed the records in output order.

    A rename no record shows (or shows one side of) must have been lost in an overflow. The kernel queues one
    IN_Q_OVERFLOW when its queue is full and drops events until the reader has read that very event (events
    queued behind it in the meantime can be followed by more drops, with no second overflow event). So a loss
    is *covered* by an overflow record ``o`` when the rename's syscall (its ground-truth timestamp, from the
    workload's ``--gt``) lies between the latest rename shown before ``o`` (less ``SLACK_NS`` for threads
    preempted between their timestamp and their syscall) and the read that delivered ``o``.

    Memory: one byte of state per rename, per storm."""

    root: bytes
    ndirs: int
    threads: int = 8
    seq: int = 0
    #: (output position, read time, highest rename number shown per thread) of each overflow record.
    overflows: list[tuple[int, int, tuple[int, ...]]] = field(default_factory=list)
    wrong: list[tuple[bytes, bytes]] = field(default_factory=list)
    duplicates: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    joined: int = 0
    SLACK_NS = 100_000_000

    def __post_init__(self) -> None:
        self.dirs = [self.root + b"/d%d" % j for j in range(self.ndirs)]
        self.state = [bytearray() for _ in range(self.threads)]
        self.max_k = [-1] * self.threads

    @property
    def overflow_at(self) -> list[int]:
        return [o[0] for o in self.overflows]

    def _mark(self, i: int, k: int, bit: int) -> None:
        state = self.state[i]
        if len(state) <= k:
            state.extend(bytes(k + 1 - len(state) + 4096))
        if state[k] & bit:
            self.duplicates += 1
        state[k] |= bit
        if k > self.max_k[i]:
            self.max_k[i] = k

    def _rename_index(self, path: bytes, side: int) -> tuple[int, int] | None:
        """(thread, rename number) for one side's path, checking the directory; None if not a storm file."""
        parsed = _storm_name(path)
        if parsed is None or parsed[1] >= self.threads:
            return None
        head, i, k = parsed
        if side == TO_SIDE:
            k -= 1
            if k < 0:
                return None
        want = self.dirs[(i + k + (1 if side == TO_SIDE else 0)) % self.ndirs]
        return (i, k) if head == want else None

    def add(self, rec: Rec) -> None:
        self.seq += 1
        kind = rec.kind
        if kind == "overflow":
            self.overflows.append((self.seq, rec.t_ns, tuple(self.max_k)))
            return
        if kind != "rename":
            return
        src, dst = rec.path, rec.dst
        if src and dst:
            a = self._rename_index(src, FROM_SIDE)
            b = self._rename_index(dst, TO_SIDE)
            if a is None and b is None:
                return
            if a is None or a != b:
                self.wrong.append((src, dst))
                return
            self.joined += 1
            self._mark(a[0], a[1], JOINED)
        elif src:
            a = self._rename_index(src, FROM_SIDE)
            if a is not None:
                for flag in rec.flags:
                    self.reasons[str(flag)] += 1
                if not set(rec.flags) & FROM_REASONS:
                    self.wrong.append((src, b""))
                self._mark(a[0], a[1], FROM_SIDE)
        else:
            b = self._rename_index(dst, TO_SIDE)
            if b is not None:
                for flag in rec.flags:
                    self.reasons[str(flag)] += 1
                if not set(rec.flags) & TO_REASONS:
                    self.wrong.append((b"", dst))
                self._mark(b[0], b[1], TO_SIDE)

    def account(self, counts: list[int], stamps: list[array[int]]) -> dict[str, Any]:
        """Check every rename of the ground truth: ``counts[i]`` renames by thread ``i``, ``stamps[i][k]`` the
        CLOCK_MONOTONIC time taken right before thread ``i``'s k-th rename (benchmarks.workloads ``--gt``)."""
        out = {"renames": sum(counts), "joined": 0, "one_sided": 0, "lost_in_overflow": 0, "unaccounted": 0,
               "wrong": len(self.wrong), "duplicates": self.duplicates, "reasons": dict(self.reasons)}
        windows = []
        for _, t_read, max_k in self.overflows:
            start = max((stamps[i][k] for i, k in enumerate(max_k) if 0 <= k < len(stamps[i])), default=0)
            windows.append((start - self.SLACK_NS, t_read))
        windows.sort()
        starts = [w[0] for w in windows]

        def covered(ts: int) -> bool:
            j = bisect.bisect_right(starts, ts)
            return any(windows[x][1] >= ts for x in range(j))

        for i, n in enumerate(counts):
            state = self.state[i] if i < self.threads else bytearray()
            for k in range(n):
                s = state[k] if k < len(state) else 0
                if s & JOINED:
                    out["joined"] += 1
                elif s & (FROM_SIDE | TO_SIDE) == FROM_SIDE | TO_SIDE:
                    out["one_sided"] += 1
                elif covered(stamps[i][k]):
                    out["one_sided" if s else "lost_in_overflow"] += 1
                else:
                    out["unaccounted"] += 1
        return out


def load_stamps(gt: Path) -> tuple[list[int], list[array[int]]]:
    """Per-thread rename counts and timestamps of a storm run with ``--gt gt``."""
    meta = json.loads(gt.read_text())
    flat: array[int] = array("q")
    with open(gt.with_name(meta["ts_file"]), "rb") as f:
        flat.frombytes(f.read())
    counts: list[int] = meta["renames"]
    out = []
    off = 0
    for n in counts:
        out.append(flat[off: off + n])
        off += n
    return counts, out


# -- the consumers (one process each) ----------------------------------------------------------------------


def consumer(role: str, root: str, conn: Connection, slow_read: float, slow_pause: float) -> None:
    """Watch ``root``; per segment announced on ``conn`` (``("segment", dir)``, then ``("end", counts)``),
    account the storm's renames; ``("stop", None)`` ends. Sends one report per segment and a final one."""
    import normalizer

    stream = normalizer.watch([root], raw_records=True)
    stream.open()
    source = stream.source
    ledger: Ledger | None = None
    pending_end: str | None = None
    waiting: list[bytes] = []
    records = 0
    t_read = time.monotonic()
    started = time.monotonic()
    overflows = 0
    quiet_since = time.monotonic()
    while True:
        if role == "slow" and time.monotonic() - t_read > slow_read:
            time.sleep(slow_pause)  # the consumer stops reading: events stay in the kernel queue
            t_read = time.monotonic()
        while conn.poll():
            msg, arg = conn.recv()
            if msg == "segment":
                ledger = Ledger(os.fsencode(arg), 4)
                waiting = [os.fsencode(arg) + b"/d%d" % j for j in range(4)]
            elif msg == "end":
                pending_end = arg
                quiet_since = time.monotonic()
            elif msg == "stop":
                records += len(stream.close())
                conn.send(("final", {"records": records, "seconds": time.monotonic() - started,
                                     "rss_kib": rss_kib(), "overflows": overflows,
                                     "pending_high_water": source.normalizer.matcher.pending_high_water}))
                return
        recs = stream.read(0.05)
        for rec in recs:
            if rec.kind == "overflow":
                overflows += 1
            if ledger is not None:
                ledger.add(rec)
        records += len(recs)
        if recs:
            quiet_since = time.monotonic()
        if waiting and all(source.normalizer.table.key(d) is not None for d in waiting):
            conn.send(("ready", None))  # the storm may start: this consumer watches its directories
            waiting = []
        if (pending_end is not None and ledger is not None and time.monotonic() - quiet_since > 0.5
                and source.normalizer.matcher.next_deadline() is None):
            report = ledger.account(*load_stamps(Path(pending_end)))
            report.update(rss_kib=rss_kib(), records=records, overflows=overflows,
                          pending_high_water=source.normalizer.matcher.pending_high_water)
            conn.send(("segment", report))
            ledger = None
            pending_end = None


# -- the driver --------------------------------------------------------------------------------------------


def run(minutes: float, segment_s: float, threads: int, noise: int, slow_read: float, slow_pause: float,
        base: Path) -> dict[str, Any]:
    root = base / "w"
    root.mkdir()
    ctx = mp.get_context("spawn")
    procs: dict[str, tuple[Any, Connection]] = {}
    for role in ("fast", "slow"):
        ours, theirs = ctx.Pipe()
        p = ctx.Process(target=consumer, args=(role, str(root), theirs, slow_read, slow_pause), daemon=True)
        p.start()
        procs[role] = (p, ours)
    time.sleep(1.0)  # let both set their watches
    reports: dict[str, list[dict[str, Any]]] = {"fast": [], "slow": []}
    deadline = time.monotonic() + minutes * 60
    seg = 0
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        seg_root = root / f"seg{seg}"
        seg_root.mkdir()
        for d in range(4):
            (seg_root / f"d{d}").mkdir()
        for _, conn in procs.values():
            conn.send(("segment", str(seg_root)))
        for _, conn in procs.values():
            assert conn.recv()[0] == "ready"  # both watch the new directories before the storm starts
        gt = base / f"gt{seg}.json"
        subprocess.run([sys.executable, "-m", "benchmarks.workloads", "storm", str(seg_root), "--seconds",
                        str(segment_s), "--threads", str(threads), "--noise", str(noise), "--gt", str(gt)],
                       capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent)
        for _, conn in procs.values():
            conn.send(("end", str(gt)))
        for role, (_, conn) in procs.items():
            _kind, report = conn.recv()
            report["segment"] = seg
            reports[role].append(report)
            print(f"segment {seg} {role}: {report['renames']} renames, {report['joined']} joined, "
                  f"{report['one_sided']} one-sided, {report['lost_in_overflow']} lost in overflow, "
                  f"{report['unaccounted']} unaccounted, {report['wrong']} wrong; rss {report['rss_kib']} KiB, "
                  f"overflows {report['overflows']}", flush=True)
        shutil.rmtree(seg_root)  # the deletes are records too; the next segment starts clean
        seg += 1
    finals = {}
    for role, (p, conn) in procs.items():
        conn.send(("stop", None))
        finals[role] = conn.recv()[1]
        p.join(10)
    wall = time.monotonic() - t0
    summary: dict[str, Any] = {"minutes": minutes, "segments": seg, "wall_s": round(wall, 1)}
    for role in ("fast", "slow"):
        rs = reports[role]
        fin = finals[role]
        total = {k: sum(r[k] for r in rs) for k in ("renames", "joined", "one_sided", "lost_in_overflow",
                                                    "unaccounted", "wrong", "duplicates")}
        summary[role] = {
            **total,
            "records": fin["records"],
            "records_per_s": round(fin["records"] / fin["seconds"]),
            "rss_start_kib": rs[0]["rss_kib"] if rs else None,
            "rss_end_kib": rs[-1]["rss_kib"] if rs else None,
            "rss_final_kib": fin["rss_kib"],
            "pending_high_water": fin["pending_high_water"],
            "overflows": fin["overflows"],
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--segment", type=float, default=10.0, help="seconds per storm segment")
    p.add_argument("--threads", type=int, default=2, help="renaming threads of the storm")
    p.add_argument("--noise", type=int, default=1, help="create/write/delete threads of the storm")
    p.add_argument("--slow-read", type=float, default=2.0, help="slow consumer: seconds reading")
    p.add_argument("--slow-pause", type=float, default=3.0, help="slow consumer: seconds not reading")
    p.add_argument("--json", type=Path, help="also write the summary here")
    a = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="fsnorm-soak-"))
    try:
        summary = run(a.minutes, a.segment, a.threads, a.noise, a.slow_read, a.slow_pause, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    text = json.dumps(summary, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")
    bad = any(summary[r]["unaccounted"] or summary[r]["wrong"] or summary[r]["duplicates"] for r in ("fast", "slow"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
