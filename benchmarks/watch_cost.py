"""Where ``fsnorm watch`` spends its CPU on a storm: CPU per event, events per read, and (optionally) a profile.

Each trial starts ``fsnorm watch ROOT`` (JSON Lines into a pipe that a ``cat > /dev/null`` child drains, as a
daemon's consumer would; default kernel queue), waits for its start-up, runs the storm workload
(``benchmarks/workloads.py``: renaming threads across 4 directories plus noise threads creating, writing and
deleting), stops fsnorm with SIGTERM and reports, for the storm only (start-up and shutdown not counted):

* the CPU time of the fsnorm process (user + system, ``/proc/PID/stat``) per event it read (its last stderr
  line), in microseconds;
* its read and write system calls (``/proc/PID/io`` ``syscr`` / ``syscw``: reads of the inotify fd, of the
  reader thread's eventfd and of the wake pipe; writes of record lines), hence events per read;
* its overflows.

Variants (``--variants``, comma-separated; each is one trial per round, rounds alternate their order):
``default``; ``no-rescan`` (``--no-rescan``: no shadow tree); ``pure`` (``FSNORM_PURE=1``); ``direct``
(``--read-buffer 0``: no reader thread); ``python-reader`` (``FSNORM_READER=python``); ``fanotify``
(``--backend fanotify``: one filesystem mark when run as root) and ``fanotify-pure`` (the same with
``FSNORM_PURE=1``).

``--py-spy DIR`` records each variant's first trial with py-spy (``pip install py-spy``; Python frames only:
compiled functions count in the Python line that called them; it samples wall time, so a write blocked on a
full pipe counts too) as a collapsed-stack file per variant, and prints the top frames by self time
(functions and lines) and by inclusive time; ``--perf DIR`` records ``perf record -g`` data per variant instead
(C level: the compiled modules' functions by their mypyc names, CPython's own, the kernel's; CPU time only).

    .venv/bin/python -m benchmarks.watch_cost [--trials 3] [--seconds 2] [--threads 4] [--noise 2]
        [--variants default,no-rescan,pure] [--py-spy DIR] [--perf DIR] [--repo OTHER_TREE]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.rescan_cost import cpu_seconds, run_storm, stop_watch

REPO = Path(__file__).resolve().parent.parent
QUEUE = Path("/proc/sys/fs/inotify/max_queued_events")
VARIANTS: dict[str, tuple[list[str], dict[str, str]]] = {
    "default": ([], {}),
    "no-rescan": (["--no-rescan"], {}),
    "pure": ([], {"FSNORM_PURE": "1"}),
    "direct": (["--read-buffer", "0"], {}),
    "python-reader": ([], {"FSNORM_READER": "python"}),
    "fanotify": (["--backend", "fanotify"], {}),
    "fanotify-pure": (["--backend", "fanotify"], {"FSNORM_PURE": "1"}),
}


def io_calls(pid: int) -> tuple[int, int]:
    """(read-type, write-type) system calls of a process so far (``/proc/PID/io``)."""
    values = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(values["syscr"]), int(values["syscw"])


@dataclass
class Trial:
    variant: str
    cpu_s: float
    events: int
    records: int
    overflows: int
    reads: int
    writes: int
    load: float
    queue: int

    @property
    def us_per_event(self) -> float:
        return self.cpu_s / max(1, self.events) * 1e6

    @property
    def events_per_read(self) -> float:
        return self.events / max(1, self.reads)


def _profiler(kind: str | None, out: Path | None, pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
    if kind is None or out is None:
        return None
    if kind == "py-spy":
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        cmd = [exe, "record", "--nonblocking", "--rate", "250", "--format", "raw", "-o", str(out),
               "--pid", str(pid), "--duration", str(int(seconds + 0.999))]
    else:
        cmd = ["perf", "record", "-g", "-F", "499", "-o", str(out), "-p", str(pid), "--", "sleep",
               str(seconds)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def trial(root: Path, variant: str, args: argparse.Namespace, profile: Path | None) -> Trial:
    """One storm under one variant of ``fsnorm watch``."""
    for d in range(4):
        (root / f"d{d}").mkdir(parents=True, exist_ok=True)
    extra, env_add = VARIANTS[variant]
    cmd = [args.python, "-m", "normalizer", "watch", str(root), *extra]
    env = {**os.environ, **env_add}
    queue = int(QUEUE.read_text())  # the limit the fd gets at its creation (another test suite may lower it)
    with open(os.devnull, "wb") as null:
        sink = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=null)
        assert sink.stdin is not None
        watcher = subprocess.Popen(cmd, stdout=sink.stdin, stderr=subprocess.PIPE, cwd=args.repo, env=env)
        sink.stdin.close()
        time.sleep(args.startup)  # start-up: imports and watches
        prof = _profiler(args.profiler, profile, watcher.pid, args.seconds)
        load = os.getloadavg()[0]
        before, (r0, w0) = cpu_seconds(watcher.pid), io_calls(watcher.pid)
        run_storm(root, args.seconds, threads=args.threads, noise=args.noise)
        used, (r1, w1) = cpu_seconds(watcher.pid) - before, io_calls(watcher.pid)
        if prof is not None:
            prof.wait()
        events, records, overflows = stop_watch(watcher)
        sink.wait()
    return Trial(variant, used, events, records, overflows, r1 - r0, w1 - w0, load, queue)


def top_frames(raw: Path, n: int = 25) -> str:
    """The top frames of a py-spy raw (collapsed) file, by self and by inclusive samples."""
    self_n: collections.Counter[str] = collections.Counter()
    self_line: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        k = int(count)
        total += k
        raw_frames = stack.split(";")
        frames = [re.sub(r" \((.*?):\d+\)$", r" (\1)", f) for f in raw_frames]
        self_n[frames[-1]] += k
        self_line[raw_frames[-1]] += k
        for f in set(frames):
            incl[f] += k
    lines = [f"{total} samples", "self:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_n.most_common(n)]
    lines.append("self, by line:")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in self_line.most_common(n)]
    lines.append("inclusive:")
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(n)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--noise", type=int, default=2)
    ap.add_argument("--startup", type=float, default=1.5)
    ap.add_argument("--variants", default="default,no-rescan,pure")
    ap.add_argument("--repo", type=Path, default=REPO,
                    help="the fsnorm tree to measure (e.g. an export of main with its own .venv; default: this one)")
    ap.add_argument("--py-spy", type=Path, dest="py_spy", help="record a py-spy profile per variant into DIR")
    ap.add_argument("--perf", type=Path, help="record a perf profile per variant into DIR")
    args = ap.parse_args(argv)
    venv_python = args.repo / ".venv" / "bin" / "python"
    args.python = str(venv_python) if args.repo != REPO and venv_python.exists() else sys.executable
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    args.profiler = "py-spy" if args.py_spy else "perf" if args.perf else None
    prof_dir: Path | None = args.py_spy or args.perf
    if prof_dir is not None:
        prof_dir.mkdir(parents=True, exist_ok=True)
    results: list[Trial] = []
    for i in range(args.trials):
        for variant in variants if i % 2 == 0 else reversed(variants):
            profile = None
            if prof_dir is not None and i == 0:
                profile = prof_dir / f"{variant}.{'txt' if args.profiler == 'py-spy' else 'perf.data'}"
            with tempfile.TemporaryDirectory(prefix="fsnorm-watch-cost-") as tmp:
                t = trial(Path(tmp) / "w", variant, args, profile)
            results.append(t)
            print(f"  {variant}: {t.us_per_event:.2f} us/event, {t.events:,} events, {t.events_per_read:.1f} "
                  f"events/read, {t.writes:,} writes, {t.overflows} overflows, load {t.load:.1f}, "
                  f"max_queued_events {t.queue}",
                  file=sys.stderr, flush=True)
    print(f"fsnorm watch from {args.repo}, storm {args.seconds} s ({args.threads} renaming + {args.noise} noise "
          f"threads), {args.trials} trials per variant, medians:")
    queues = sorted({t.queue for t in results})
    print(f"fs.inotify.max_queued_events during the trials: {', '.join(map(str, queues))}"
          + ("" if queues == [16384] else " (NOT the default 16384: another process changed it; overflows differ)"))
    print("| variant | CPU us/event | events read | events/read | records/write | overflows | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        ts = [t for t in results if t.variant == v]
        print(f"| {v} | {statistics.median(t.us_per_event for t in ts):.2f} "
              f"| {statistics.median(t.events for t in ts):,.0f} "
              f"| {statistics.median(t.events_per_read for t in ts):.1f} "
              f"| {statistics.median(t.records / max(1, t.writes) for t in ts):.1f} "
              f"| {sum(t.overflows for t in ts)} | {statistics.median(t.load for t in ts):.1f} |")
    if args.profiler == "py-spy" and prof_dir is not None:
        for v in variants:
            path = prof_dir / f"{v}.txt"
            if path.exists():
                print(f"\n### py-spy, {v}\n```\n{top_frames(path)}\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
