"""The compiled hot path (mypyc, setup.py) against the pure-Python one, in the same run, as ratios.

Each measure runs in a fresh child process per path (``FSNORM_PURE=1`` for the pure one), alternating
compiled / pure ``rounds`` times, and keeps each path's best: the machine is shared, and alternating gives
both paths the same chances. Rates are events per second of *CPU time* of the child (``time.process_time``),
which a busy neighbour disturbs much less than wall time; the wall-clock rates are kept in the JSON too.

* ``matcher``: synthetic raw inotify events -> records (benchmarks/synthetic.py; 40% rename halves), counted a
  feed at a time and let go, as a consumer does (``bench_matcher.count_matcher``);
* ``matcher+json``: the same plus each feed's JSON Lines through the CLI's writer (``Output.encode``), with the CLI's
  collector settings;
* ``replay e2e``: a capture file on disk -> reader -> normalizer -> JSON Lines bytes in 1024-record chunks
  (what ``fsnorm replay`` does minus the write to stdout, with the command's collector settings).

Targets (issue #12): replay end to end >= 3,000,000 events/s, matcher alone >= 5,000,000 events/s.

With ``--instructions`` it also counts the CPU instructions per event of each measure and path under
valgrind's callgrind (when valgrind is installed): a count that does not depend on the machine's load, the
difference between a run with the measure and one without it, on 50,000 events.

    python -m benchmarks.bench_hotpath [--events N] [--rounds K] [--json FILE] [--instructions]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"matcher": 5_000_000, "replay e2e": 3_000_000}
MEASURES = ("matcher", "matcher+json", "replay e2e")


def _child(events: int, repeat: int) -> dict[str, Any]:
    """Run in the child: every measure, best of ``repeat``, CPU and wall time."""
    from benchmarks.bench_matcher import _write_capture, count_matcher, run_matcher_json, run_replay_json
    from benchmarks.synthetic import batches
    from normalizer import _compiled

    stream = batches(events)
    out: dict[str, Any] = {"status": str(_compiled.status()), "compiled": _compiled.status().compiled}
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "s.fsncap"
        _write_capture(stream, capture)
        fns: dict[str, Callable[[], object]] = {
            "matcher": lambda: count_matcher(stream),
            "matcher+json": lambda: run_matcher_json(stream),
            "replay e2e": lambda: run_replay_json(capture),
        }
        for name, fn in fns.items():
            cpu = wall = float("inf")
            for _ in range(repeat):
                c0, w0 = time.process_time(), time.perf_counter()
                fn()
                cpu, wall = min(cpu, time.process_time() - c0), min(wall, time.perf_counter() - w0)
            out[name] = {"cpu_events_per_s": events / cpu, "wall_events_per_s": events / wall}
    return out


def _run_child(pure: bool, events: int, repeat: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "FSNORM_PURE"}
    if pure:
        env["FSNORM_PURE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    code = (f"import json\nfrom benchmarks.bench_hotpath import _child\n"
            f"print(json.dumps(_child({events}, {repeat})))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, capture_output=True,
                         text=True)
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


def _work(what: str, events: int) -> None:
    """Child of :func:`instructions`: build the inputs, then run ``what`` (or nothing: the baseline) once.

    Every module a measure imports is imported before, by the baseline too: ``run_replay_json`` imports the
    CLI's output module on its first call, which cost about 3,700 instructions per event of 50,000 when only
    the measured run imported it (the replay counts before 2026-12-02 06:30 UTC include it)."""
    import normalizer.cli.formatting  # noqa: F401 - imported by run_replay_json: not part of the measure
    from benchmarks.bench_matcher import _write_capture, count_matcher, run_matcher_json, run_replay_json
    from benchmarks.synthetic import batches

    stream = batches(events)
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "s.fsncap"
        _write_capture(stream, capture)
        if what == "matcher":
            count_matcher(stream)
        elif what == "matcher+json":
            run_matcher_json(stream)
        elif what == "replay e2e":
            run_replay_json(capture)


def instructions(events: int = 50_000) -> dict[str, dict[str, int]] | None:
    """Instructions per event, per path and measure (callgrind), or None without valgrind."""
    if shutil.which("valgrind") is None:
        return None
    out: dict[str, dict[str, int]] = {}
    for path in ("compiled", "pure"):
        env = {k: v for k, v in os.environ.items() if k != "FSNORM_PURE"}
        if path == "pure":
            env["FSNORM_PURE"] = "1"
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        # A fixed hash seed: with a random one the counts of one tree vary by up to ~8% between runs (set and
        # dict layouts, and so the points where the garbage collector runs, change with it).
        env["PYTHONHASHSEED"] = "0"

        def count(what: str, env: dict[str, str] = env) -> int:
            code = f"from benchmarks.bench_hotpath import _work\n_work({what!r}, {events})"
            res = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                                  "-c", code], cwd=REPO, env=env, check=True, capture_output=True, text=True)
            match = re.search(r"refs:\s+([\d,]+)", res.stderr)
            assert match is not None, res.stderr[-500:]
            return int(match.group(1).replace(",", ""))

        base = count("")
        out[path] = {name: (count(name) - base) // events for name in MEASURES}
    return out


def compare(events: int = 300_000, rounds: int = 2, repeat: int = 3) -> dict[str, Any]:
    """Both paths, alternating, best per path; ``ratio`` = compiled / pure."""
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for path in ("compiled", "pure"):
            run = _run_child(path == "pure", events, repeat)
            slot = best.setdefault(path, {"status": run["status"], "compiled": run["compiled"]})
            for name in MEASURES:
                for key, rate in run[name].items():
                    slot.setdefault(name, {}).setdefault(key, 0.0)
                    slot[name][key] = max(slot[name][key], rate)
    results: dict[str, Any] = {"events": events, "rounds": rounds, "repeat": repeat, "paths": best,
                               "targets": TARGETS}
    results["ratio"] = {name: best["compiled"][name]["cpu_events_per_s"] / best["pure"][name]["cpu_events_per_s"]
                        for name in MEASURES}
    return results


def render(results: dict[str, Any]) -> str:
    paths = results["paths"]
    lines = [f"\nHot path: compiled vs pure Python, same run ({results['events']:,} synthetic events, CPU time, "
             f"best of {results['rounds']} x {results['repeat']} per path)",
             f"compiled child: {paths['compiled']['status']}; pure child: {paths['pure']['status']}",
             f"{'measure':<14} {'compiled ev/s':>14} {'pure ev/s':>12} {'compiled/pure':>14} {'target':>11} "
             f"{'compiled/target':>16}"]
    for name in MEASURES:
        c, p = paths["compiled"][name]["cpu_events_per_s"], paths["pure"][name]["cpu_events_per_s"]
        target = TARGETS.get(name)
        lines.append(f"{name:<14} {c:>14,.0f} {p:>12,.0f} {c / p:>13.2f}x "
                     f"{'' if target is None else f'{target:,}':>11} "
                     f"{'' if target is None else f'{c / target:.2f}x':>16}")
    counts = results.get("instructions")
    if counts:
        lines.append("CPU instructions per event (callgrind, load-independent): " + "; ".join(
            f"{name} {counts['compiled'][name]:,} compiled / {counts['pure'][name]:,} pure "
            f"({counts['pure'][name] / counts['compiled'][name]:.2f}x fewer)" for name in MEASURES))
    if not paths["compiled"]["compiled"]:
        lines.append("note: no compiled path in this install; both columns measure the pure path")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=300_000, help="synthetic events per measure (default 300000)")
    p.add_argument("--rounds", type=int, default=2, help="compiled/pure child pairs, alternating (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each measure per child, best kept (default 3)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    p.add_argument("--instructions", action="store_true",
                   help="also count instructions per event under valgrind's callgrind (about 2 minutes)")
    a = p.parse_args(argv)
    results = compare(a.events, a.rounds, a.repeat)
    if a.instructions:
        results["instructions"] = instructions()
    print(render(results))
    if a.json is not None:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
