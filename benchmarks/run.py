"""Pairing-race benchmarks: fsnorm beside watchdog, pyinotify and a raw reader, on real kernel workloads.

    python -m benchmarks.run --quick          # make bench: a few minutes
    python -m benchmarks.run --full           # make bench-full
    python -m benchmarks.run --tiny --out DIR # the configuration the tests run

Every subject runs in its own process, watching before the workload starts (benchmarks/subjects.py); every
workload runs in its own process and logs its own ground truth (benchmarks/workloads.py). Sections:

* ``scenarios``: paced renames of each kind, each followed by an unrelated create (stall measurement);
* ``storm``: N renamer threads + noise threads, per subject and thread count;
* ``races``: the raw kernel stream per thread count and noise level (race statistics, window justification);
* ``burst``: the subject is stopped (SIGSTOP) during a rename flood, so the queue overflows, resumed, stopped
  again (``burst_cycles`` overflows); then paced renames follow to see whether it recovered;
* ``throughput``: the C renamer's flat-out event rate on this machine, and the highest paced rate each
  subject sustains without overflow, as a ratio to it;
* ``matcher``: benchmarks/bench_matcher.py ``main(quick)`` when that module exists (replay throughput).

Writes ``<out>/<config>.json`` (machine, kernel, versions, every number) and ``<config>.png`` (the README
figure), and prints the tables (GitHub markdown) and the window text. Numbers are measurements, never
assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import crenamer, report
from benchmarks.harness import (
    REPO,
    SubjectError,
    SubjectProcess,
    child_env,
    finish_workload,
    run_workload,
    start_workload,
)
from benchmarks.model import Truth
from benchmarks.outputs import read_raw, records
from benchmarks.scoring import race_stats, rename_units, score
from benchmarks.subjects import SUBJECTS, max_queued_events
from benchmarks.workloads import SCENARIOS, dirs, load_truth

ALL_SUBJECTS = ("fsnorm", "fsnorm-api", "fsnorm-fanotify", "watchdog", "watchdog-full", "pyinotify", "raw",
                "inotifywait")
#: The storm's subjects (#12 targets): fsnorm's three ways in (the CLI with and without its default priority
#: boost, the iterator without and with one), the peers, the raw reader and the C reference.
STORM_SUBJECTS = ("fsnorm", "fsnorm-noboost", "fsnorm-fanotify", "fsnorm-api", "fsnorm-api-boost", "watchdog",
                  "pyinotify", "raw", "inotifywait")
PEERS = ("fsnorm", "fsnorm-fanotify", "watchdog", "watchdog-full", "pyinotify", "raw")
SECTIONS = ("scenarios", "storm", "races", "burst", "throughput", "matcher", "nats")
DEFAULT_OUT = REPO / "benchmarks" / "results"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Config:
    name: str
    scenario_ops: int = 30
    scenario_pace_ms: float = 2.0
    #: Longer than watchdog's 0.5 s hold of a lone MOVED_FROM, so one scenario's stalls do not leak into the next.
    scenario_pause_ms: float = 600.0
    scenario_subjects: tuple[str, ...] = ALL_SUBJECTS
    storm_threads: tuple[int, ...] = (4, 8)
    storm_noise: int = 2
    storm_seconds: float = 3.0
    storm_subjects: tuple[str, ...] = STORM_SUBJECTS
    race_threads: tuple[int, ...] = (1, 2, 4, 8)
    race_noise: tuple[int, ...] = (0, 2)
    race_seconds: float = 0.8
    burst_threads: int = 4
    burst_seconds: float = 1.2
    burst_stall_s: float = 0.25
    #: Stop/resume cycles of the reader during the flood (each one overflows the queue once).
    burst_cycles: int = 2
    burst_gap_s: float = 0.15
    after_ops: int = 100
    burst_subjects: tuple[str, ...] = PEERS
    c_seconds: float = 1.0
    sustain_subjects: tuple[str, ...] = ("fsnorm", "fsnorm-fanotify", "watchdog", "pyinotify", "raw")
    sustain_seconds: float = 1.0
    sustain_start: float = 40_000.0  # events/s
    sustain_factor: float = 2.0
    sustain_trials: int = 5
    sustain_precision: float = 1.25  # stop bisecting when first failure / best pass is below this
    matcher: bool = True
    nats: bool = True
    seed: int = 1
    notes: tuple[str, ...] = field(default=())


CONFIGS: dict[str, Config] = {
    "tiny": Config(
        name="tiny", scenario_ops=3, scenario_pace_ms=1.0, scenario_pause_ms=20.0,
        storm_threads=(2,), storm_noise=1, storm_seconds=0.3, storm_subjects=("fsnorm", "raw"),
        race_threads=(2,), race_noise=(1,), race_seconds=0.3,
        burst_threads=2, burst_seconds=0.4, burst_stall_s=0.2, burst_cycles=1, after_ops=4,
        burst_subjects=("fsnorm", "raw"),
        c_seconds=0.2, sustain_subjects=("fsnorm",), sustain_seconds=0.3, sustain_start=20_000.0,
        sustain_trials=1, matcher=False, nats=False,
    ),
    "quick": Config(name="quick"),
    "full": Config(
        name="full", scenario_ops=200, storm_threads=(1, 2, 4, 8), storm_seconds=3.0, storm_subjects=ALL_SUBJECTS,
        race_noise=(0, 1, 2, 4), race_seconds=3.0, burst_seconds=2.0, burst_stall_s=0.3, burst_cycles=3, after_ops=300,
        burst_subjects=ALL_SUBJECTS, c_seconds=3.0,
        sustain_subjects=("fsnorm", "fsnorm-api", "fsnorm-fanotify", "watchdog", "watchdog-full", "pyinotify", "raw"),
        sustain_seconds=3.0, sustain_trials=8, sustain_precision=1.12,
    ),
}


class Context:
    """Where sessions put their trees and outputs, which subjects can run, and the progress log."""

    def __init__(self, cfg: Config, work: Path, available: dict[str, str | None], quiet: bool = False) -> None:
        self.cfg = cfg
        self.work = work
        self.available = available
        self.quiet = quiet
        self._n = 0

    def fresh(self, stem: str) -> Path:
        self._n += 1
        path = self.work / f"{self._n:03d}-{stem}"
        path.mkdir(parents=True)
        return path

    def log(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def subjects(self, wanted: tuple[str, ...]) -> list[str]:
        return [s for s in wanted if self.available.get(s) is None]


def _rss(stats: dict[str, Any]) -> int | None:
    """The watching process's peak RSS: the fsnorm child for CLI subjects, else the subject process."""
    value = stats.get("child_rss_kib", stats.get("rss_kib"))
    return int(value) if value is not None else None


_SESSION_KEYS = ("records", "overflow_records", "records_after_overflow", "wrong_join_records",
                 "duplicate_records", "corrupt_lines")


def _session_fields(stats: dict[str, Any], session: dict[str, Any]) -> dict[str, Any]:
    """What a row carries about its whole session (counts only; the session CDFs are kept once, elsewhere)."""
    return {"rss_kib": _rss(stats), "caught_up": stats.get("caught_up"), "catch_up_s": stats.get("catch_up_s"),
            "max_queued_events": stats.get("max_queued_events"), "overflows_logged": stats.get("overflows_logged"),
            **{k: session[k] for k in _SESSION_KEYS}}


def _error_row(subject: str, workload: str, exc: Exception, **extra: Any) -> dict[str, Any]:
    return {"subject": subject, "workload": workload, "error": f"{type(exc).__name__}: {exc}"[:800], **extra}


def _cleanup(*paths: Path) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()


def _retry(ctx: Context, fn: Callable[..., _T], *args: Any, attempts: int = 3) -> _T:
    """Run a session; if its subject fails to start or stop (other users of this machine may hold a sysctl
    such as fs.inotify.max_user_watches low for a moment), try again with fresh directories."""
    for attempt in range(1, attempts + 1):
        try:
            return fn(ctx, *args)
        except SubjectError as exc:
            if attempt == attempts:
                raise
            ctx.log(f"  retrying after: {str(exc)[:300]}")
            time.sleep(2.0)
    raise AssertionError("unreachable")


# --- sections ---------------------------------------------------------------------------------------------


def scenario_session(ctx: Context, subject: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every scenario under ``subject`` in one session: a row per scenario, and the session summary."""
    cfg = ctx.cfg
    base = ctx.fresh(f"scenarios-{subject}")
    common = ["--ops", str(cfg.scenario_ops), "--seed", str(cfg.seed)]
    run_workload(["scenarios", str(base), "--phase", "prepare", *common])
    out, gt = base / "subject.out", base / "gt.json"
    t0 = time.monotonic()
    sp = SubjectProcess(subject, base / "w", out)
    sp.start()
    try:
        run_workload(["scenarios", str(base), "--phase", "run", *common, "--pace-ms", str(cfg.scenario_pace_ms),
                      "--pause-ms", str(cfg.scenario_pause_ms), "--gt", str(gt)])
    finally:
        stats = sp.finish(timeout=30)
    sc = score(load_truth(gt), records(out, stats["fmt"]))
    ctx.log(f"  scenarios  {subject:16s} {time.monotonic() - t0:5.1f} s")
    rows = []
    for label in SCENARIOS:
        rows.append({"subject": subject, "workload": label, **sc["workloads"].get(label, {}),
                     **_session_fields(stats, sc["session"])})
    _cleanup(base)
    session = {"subject": subject, **sc["session"], "rss_kib": _rss(stats), "caught_up": stats.get("caught_up")}
    return rows, session


def storm_session(ctx: Context, subject: str, threads: int, noise: int, seconds: float
                  ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One storm under ``subject``: its score row, and the race statistics when the subject is the raw reader."""
    base = ctx.fresh(f"storm-{subject}-{threads}t{noise}n")
    root = base / "w"
    for d in dirs(root, 4):
        d.mkdir(parents=True)
    out, gt = base / "subject.out", base / "gt.json"
    t0 = time.monotonic()
    sp = SubjectProcess(subject, root, out)
    sp.start()
    try:
        wl = run_workload(["storm", str(root), "--threads", str(threads), "--noise", str(noise), "--seconds",
                           str(seconds), "--seed", str(ctx.cfg.seed), "--gt", str(gt)])
    finally:
        stats = sp.finish(timeout=max(30.0, 10 * seconds))
    truth = load_truth(gt)
    sc = score(truth, records(out, stats["fmt"]))
    row = {"subject": subject, "workload": "storm", "threads": threads, "noise": noise, "seconds": seconds,
           "workload_seconds": wl.get("seconds"), "noise_ops": wl.get("noise_ops"), "events": wl.get("events"),
           "cpu_s": stats.get("cpu_s"), "runq_wait_s": stats.get("runq_wait_s"), "timeslices": stats.get("timeslices"),
           **sc["workloads"].get("storm", {}), **_session_fields(stats, sc["session"])}
    race = None
    if stats["fmt"] == "rawdump":
        race = {"threads": threads, "noise": noise, "seconds": seconds, **race_stats(read_raw(out))}
    ctx.log(f"  storm      {subject:16s} {threads}t/{noise}n {time.monotonic() - t0:5.1f} s "
            f"({row.get('issued', 0)} renames, {row.get('joined', 0)} joined)")
    _cleanup(base)
    return row, race


def burst_session(ctx: Context, subject: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    cfg = ctx.cfg
    base = ctx.fresh(f"burst-{subject}")
    root = base / "w"
    for d in dirs(root, 4):
        d.mkdir(parents=True)
    after = ["--only", "within", "--ops", str(cfg.after_ops), "--tag", "after_", "--seed", str(cfg.seed)]
    run_workload(["scenarios", str(base), "--phase", "prepare", *after])
    out, gt1, gt2 = base / "subject.out", base / "gt-burst.json", base / "gt-after.json"
    t0 = time.monotonic()
    sp = SubjectProcess(subject, root, out)
    sp.start()
    try:
        sp.pause()
        try:
            proc = start_workload(["storm", str(root), "--threads", str(cfg.burst_threads), "--noise", "1",
                                   "--seconds", str(cfg.burst_seconds), "--seed", str(cfg.seed), "--announce",
                                   "--label", "burst", "--gt", str(gt1)])
            assert proc.stdout is not None
            proc.stdout.readline()  # "started"
            time.sleep(cfg.burst_stall_s)
        finally:
            sp.resume()
        for _ in range(cfg.burst_cycles - 1):
            time.sleep(cfg.burst_gap_s)
            sp.pause()
            try:
                time.sleep(cfg.burst_stall_s)
            finally:
                sp.resume()
        wl = finish_workload(proc)
        time.sleep(0.3)
        run_workload(["scenarios", str(base), "--phase", "run", *after, "--label", "after_overflow",
                      "--pace-ms", "1", "--gt", str(gt2)])
    finally:
        stats = sp.finish(timeout=max(30.0, 10 * cfg.burst_seconds))
    t1, t2 = load_truth(gt1), load_truth(gt2)
    sc = score(Truth(t1.renames + t2.renames, t1.markers + t2.markers), records(out, stats["fmt"]))
    rows = [{"subject": subject, "workload": label, "threads": cfg.burst_threads, "stall_s": cfg.burst_stall_s,
             "workload_seconds": wl.get("seconds"), **sc["workloads"].get(label, {}),
             **_session_fields(stats, sc["session"])} for label in ("burst", "after_overflow")]
    race = race_stats(read_raw(out)) if stats["fmt"] == "rawdump" else None
    ctx.log(f"  burst      {subject:16s} {time.monotonic() - t0:5.1f} s "
            f"(overflow records {sc['session']['overflow_records']})")
    _cleanup(base)
    return rows, race


def section_scenarios(ctx: Context) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    sessions: dict[str, dict[str, Any]] = {}
    for subject in ctx.subjects(ctx.cfg.scenario_subjects):
        try:
            got, sessions[subject] = _retry(ctx, scenario_session, subject)
            rows += got
        except (SubjectError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            ctx.log(f"  scenarios  {subject}: FAILED {exc}")
            rows.append(_error_row(subject, "scenarios", exc))
    return {"ops": ctx.cfg.scenario_ops, "pace_ms": ctx.cfg.scenario_pace_ms,
            "pause_ms": ctx.cfg.scenario_pause_ms, "rows": rows, "sessions": sessions}


def section_storm(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    rows: list[dict[str, Any]] = []
    for threads in cfg.storm_threads:
        for subject in ctx.subjects(cfg.storm_subjects):
            try:
                row, _race = _retry(ctx, storm_session, subject, threads, cfg.storm_noise, cfg.storm_seconds)
                rows.append(row)
            except (SubjectError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                ctx.log(f"  storm      {subject}: FAILED {exc}")
                rows.append(_error_row(subject, "storm", exc, threads=threads, noise=cfg.storm_noise))
    return {"seconds": cfg.storm_seconds, "noise": cfg.storm_noise, "rows": rows}


def section_races(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    runs: list[dict[str, Any]] = []
    for noise in cfg.race_noise:
        for threads in cfg.race_threads:
            try:
                _row, race = _retry(ctx, storm_session, "raw", threads, noise, cfg.race_seconds)
            except (SubjectError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                ctx.log(f"  races      {threads}t/{noise}n: FAILED {exc}")
                continue
            if race is not None:
                runs.append(race)
    return {"seconds": cfg.race_seconds, "runs": runs}


def section_burst(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    rows: list[dict[str, Any]] = []
    raw_race: dict[str, Any] | None = None
    for subject in ctx.subjects(cfg.burst_subjects):
        try:
            got, race = _retry(ctx, burst_session, subject)
            rows += got
            raw_race = race or raw_race
        except (SubjectError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            ctx.log(f"  burst      {subject}: FAILED {exc}")
            rows.append(_error_row(subject, "burst", exc))
    return {"threads": cfg.burst_threads, "seconds": cfg.burst_seconds, "stall_s": cfg.burst_stall_s,
            "cycles": cfg.burst_cycles,
            "after_ops": cfg.after_ops, "rows": rows, "raw_overflow_race": raw_race}


def sustain_trial(ctx: Context, subject: str, exe: Path, events_per_s: float, seconds: float) -> dict[str, Any]:
    base = ctx.fresh(f"sustain-{subject}")
    d = base / "w" / "a"
    crenamer.setup(exe, d)
    out = base / "subject.out"
    sp = SubjectProcess(subject, base / "w", out)
    sp.start()
    try:
        res = subprocess.run(crenamer.paced_command(exe, d, seconds, events_per_s / 2), capture_output=True,
                             text=True, check=True, timeout=seconds + 60, start_new_session=True)  # as run_workload
    finally:
        stats = sp.finish(timeout=max(15.0, 5 * seconds))
    c = json.loads(res.stdout)
    units = rename_units(records(out, stats["fmt"]))
    delivered = units["joined"] + units["halves"] / 2
    overflows = units["overflows"] + int(stats.get("overflows_logged") or 0)
    allowance = SUBJECTS[subject].hold_s + 0.25 + 0.1 * seconds  # backlog left when the renamer stopped
    ok = bool(stats["caught_up"]) and overflows == 0 and delivered >= c["renames"] and \
        stats["catch_up_s"] <= allowance
    _cleanup(base)
    return {"target_events_per_s": events_per_s, "achieved_events_per_s": c["events_per_s"],
            "renames": c["renames"], "delivered": delivered, "overflows": overflows,
            "merged": units["merged"], "catch_up_s": stats["catch_up_s"], "rss_kib": _rss(stats), "ok": ok}


def sustain_search(ctx: Context, subject: str, exe: Path) -> dict[str, Any]:
    """Geometric steps up from ``sustain_start`` until a trial fails, then bisection (geometric mean)."""
    cfg = ctx.cfg
    trials: list[dict[str, Any]] = []
    best = 0.0
    fail: float | None = None
    capped = False
    rate = cfg.sustain_start
    for _ in range(cfg.sustain_trials):
        t = _retry(ctx, sustain_trial, subject, exe, rate, cfg.sustain_seconds)
        trials.append(t)
        ctx.log(f"  sustain    {subject:16s} {rate / 1e3:7.1f}k events/s target, "
                f"{t['achieved_events_per_s'] / 1e3:7.1f}k achieved: {'ok' if t['ok'] else 'FAILED'}")
        if t["ok"]:
            best = max(best, t["achieved_events_per_s"])
            if t["achieved_events_per_s"] < 0.9 * rate:
                capped = True  # the renamer could not go faster while this subject watched
                break
        else:
            fail = rate if fail is None else min(fail, rate)
        if fail is None:
            rate *= cfg.sustain_factor
        elif best <= 0:
            rate /= cfg.sustain_factor
        else:
            if fail / best < cfg.sustain_precision:
                break
            rate = (best * fail) ** 0.5
    return {"subject": subject, "sustained_events_per_s": best or None, "first_failure_events_per_s": fail,
            "capped_by_renamer": capped, "trials": trials}


def section_throughput(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    exe = crenamer.build(ctx.work / "build")
    flat = crenamer.flat(exe, ctx.fresh("c-flat") / "d", cfg.c_seconds, watch=True)
    flat_nowatch = crenamer.flat(exe, ctx.fresh("c-flat-nowatch") / "d", cfg.c_seconds, watch=False)
    ctx.log(f"  C renamer  {flat['events_per_s'] / 1e3:.1f}k events/s with an inotify watch and a C reader, "
            f"{flat_nowatch['events_per_s'] / 1e3:.1f}k without a watch")
    rows: list[dict[str, Any]] = []
    for subject in ctx.subjects(cfg.sustain_subjects):
        try:
            rows.append(sustain_search(ctx, subject, exe))
        except (SubjectError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            ctx.log(f"  sustain    {subject}: FAILED {exc}")
            rows.append({"subject": subject, "error": f"{type(exc).__name__}: {exc}"[:800]})
    c_rate = flat["events_per_s"]
    ours = next((r.get("sustained_events_per_s") for r in rows if r["subject"] == "fsnorm"), None)
    for r in rows:
        rate = r.get("sustained_events_per_s")
        r["ratio_to_c"] = rate / c_rate if rate and c_rate else None
        r["ratio_to_fsnorm"] = rate / ours if rate and ours else None
    return {"c_flat": flat, "c_flat_nowatch": flat_nowatch, "c_events_per_s": c_rate,
            "sustain_seconds": cfg.sustain_seconds, "rows": rows, "gcc": crenamer.gcc_version()}


def section_matcher(ctx: Context) -> dict[str, Any]:
    """benchmarks/bench_matcher.py ``main(quick) -> dict`` (the lead's replay benchmark), in a child process."""
    if not ctx.cfg.matcher:
        return {"available": None, "note": f"not run in the {ctx.cfg.name} configuration"}
    if importlib.util.find_spec("benchmarks.bench_matcher") is None:
        return {"available": False, "note": "benchmarks/bench_matcher.py does not exist yet"}
    quick = ctx.cfg.name != "full"
    out = ctx.work / "matcher.json"
    code = ("import json, sys\nfrom benchmarks.bench_matcher import main\n"
            f"result = main(quick={quick})\n"
            "json.dump(result, open(sys.argv[1], 'w'), default=str)\n")
    res = subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO, env=child_env(), check=False,
                         stdout=sys.stderr)
    if res.returncode != 0 or not out.exists():
        return {"available": True, "quick": quick, "error": f"bench_matcher.main exited {res.returncode}"}
    return {"available": True, "quick": quick, "results": json.loads(out.read_text())}


def section_nats(ctx: Context) -> dict[str, Any]:
    """benchmarks/bench_nats.py (publish rate and rename -> consumer latency on NATS JetStream, ~25 s), in a
    child process; its markdown table is kept for the report."""
    if not ctx.cfg.nats:
        return {"available": None, "note": f"not run in the {ctx.cfg.name} configuration"}
    if importlib.util.find_spec("nats") is None:
        return {"available": False, "note": "nats-py is not installed (pip install -e '.[dev]')"}
    res = subprocess.run([sys.executable, "-m", "benchmarks.bench_nats"], cwd=REPO, env=child_env(), check=False,
                         stdout=subprocess.PIPE, text=True)
    sys.stderr.write(res.stdout)
    if res.returncode != 0:
        return {"available": True, "error": f"bench_nats exited {res.returncode}"}
    return {"available": True, "table": res.stdout}


SECTION_FUNCS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "scenarios": section_scenarios, "storm": section_storm, "races": section_races, "burst": section_burst,
    "throughput": section_throughput, "matcher": section_matcher,
    "nats": section_nats,
}


# --- machine and versions ---------------------------------------------------------------------------------


def _first(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip().strip('"')
    return None


def _fs_type(path: Path) -> str | None:
    best: tuple[int, str] | None = None
    target = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and (target == parts[1] or target.startswith(parts[1].rstrip("/") + "/")) and \
                    (best is None or len(parts[1]) > best[0]):
                best = (len(parts[1]), parts[2])
    return best[1] if best else None


def machine_info(work: Path) -> dict[str, Any]:
    mem_kib = _first("/proc/meminfo", "MemTotal")
    return {
        "kernel": platform.release(), "kernel_version": platform.version(), "arch": platform.machine(),
        "cpu": _first("/proc/cpuinfo", "model name"), "cpus": os.cpu_count(),
        "mem_total": mem_kib, "os": _first("/etc/os-release", "PRETTY_NAME"),
        "work_fs": _fs_type(work), "max_queued_events": max_queued_events(),
        "loadavg_start": os.getloadavg(), "euid": os.geteuid(),
    }


def versions() -> dict[str, str | None]:
    def v(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"python": platform.python_version(), "python_impl": platform.python_implementation(),
            "python_executable": sys.executable, "fsnorm": v("fsnorm"), "watchdog": v("watchdog"),
            "pyinotify": v("pyinotify"), "pydantic": v("pydantic"), "gcc": crenamer.gcc_version(),
            "fsnorm_reader": _reader_kind()}


def _reader_kind() -> str:
    """Which reader thread fsnorm's subjects run with (FSNORM_READER is inherited by the subjects)."""
    try:
        from normalizer.backends.reader import reader_kind
    except ImportError:
        return "none (this fsnorm has no reader thread)"
    return f"{reader_kind()} thread"


def availability() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, cls in SUBJECTS.items():
        try:
            out[name] = cls.unavailable()
        except Exception as exc:  # an import that fails in an unexpected way: skip the subject, say why
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


# --- main -------------------------------------------------------------------------------------------------


def run(cfg: Config, *, out_dir: Path, sections: tuple[str, ...] = SECTIONS, work: Path | None = None,
        keep: bool = False, quiet: bool = False, command: str = "") -> dict[str, Any]:
    """Run the configuration; write ``<out_dir>/<cfg.name>.json`` and ``.png``; return the results."""
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix=f"fsnorm-bench-{cfg.name}-")) if work is None else work
    work.mkdir(parents=True, exist_ok=True)
    avail = availability()
    ctx = Context(cfg, work, avail, quiet=quiet)
    started = time.time()
    results: dict[str, Any] = {
        "config": cfg.name, "settings": asdict(cfg), "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(work), "versions": versions(),
        "subjects": {name: {"description": SUBJECTS[name].description, "available": avail[name] is None,
                            "note": avail[name]} for name in ALL_SUBJECTS},
        "window_ms_default": _default_window_ms(),
    }
    try:
        for section in sections:
            ctx.log(f"[{section}]")
            t0 = time.monotonic()
            results[section] = SECTION_FUNCS[section](ctx)
            results[section]["elapsed_s"] = time.monotonic() - t0
    finally:
        if own_work and not keep:
            shutil.rmtree(work, ignore_errors=True)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["elapsed_s"] = time.time() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{cfg.name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    with contextlib.suppress(ImportError):
        from benchmarks import plots

        plots.readme_figure(results, out_dir / f"{cfg.name}.png")
    return results


def _default_window_ms() -> float:
    from normalizer.core.matcher import DEFAULT_WINDOW_NS

    return DEFAULT_WINDOW_NS / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    for name in CONFIGS:
        size.add_argument(f"--{name}", dest="config", action="store_const", const=name)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory (default benchmarks/results)")
    p.add_argument("--work", type=Path, help="directory for the watched trees and raw outputs (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--subjects", help="comma-separated subset of subjects (all sections)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = p.parse_args(argv)
    cfg = CONFIGS[a.config or "quick"]
    sections = tuple(s for s in a.sections.split(",") if s)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown sections {unknown}")
    if a.subjects:
        only = {s for s in a.subjects.split(",") if s}

        def keep(names: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(s for s in names if s in only)

        cfg = replace(cfg, scenario_subjects=keep(cfg.scenario_subjects), storm_subjects=keep(cfg.storm_subjects),
                      burst_subjects=keep(cfg.burst_subjects), sustain_subjects=keep(cfg.sustain_subjects))
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    results = run(cfg, out_dir=a.out, sections=sections, work=a.work, keep=a.keep, quiet=a.quiet,
                  command=command.strip())
    print(report.text(results))
    print(f"\nresults: {a.out / (cfg.name + '.json')} (+ .png); {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
