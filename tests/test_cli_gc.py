"""``fsnorm watch`` and ``replay`` keep the cyclic garbage collector out of the way (cli/tuning.py
``tune_gc``): the tree ``open`` built is frozen and the young generation's threshold raised, in the command's
process only; and the allocator keeps its freed output buffers (``tune_malloc``)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import gc, json, os, signal, sys, threading
    from normalizer.cli.main import main
    from normalizer.cli.tuning import GC_THRESHOLDS
    before = (gc.get_threshold(), gc.get_freeze_count())
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    code = main(["watch", sys.argv[1], "--format", "json"])
    print(json.dumps({"code": code, "before": before, "after": [gc.get_threshold(), gc.get_freeze_count()],
                      "wanted": GC_THRESHOLDS}), file=sys.stderr)
""")


def test_watch_freezes_what_open_built_and_raises_the_threshold(tmp_path: Path) -> None:
    for i in range(50):
        (tmp_path / f"d{i}").mkdir()
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=60)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report["code"] == 0
    assert tuple(report["before"][0]) == (700, 10, 10) and report["before"][1] == 0  # Python's defaults
    assert tuple(report["after"][0]) == tuple(report["wanted"]) and report["after"][0][0] > 700
    assert report["after"][1] > 1000  # the objects open() built (and everything before) are frozen


def test_the_library_leaves_the_collector_alone(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import gc, sys, normalizer
        with normalizer.watch(sys.argv[1]) as stream:
            stream.read(0.2)
        print(gc.get_threshold(), gc.get_freeze_count())
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["(700,", "10,", "10)", "0"], out.stderr


def test_replay_tunes_the_collector_and_prints_what_replay_gives(tmp_path: Path) -> None:
    """``fsnorm replay`` runs with the same collector settings (a quarter of a million-event replay's time was
    the collector) and still prints, record for record, the library's ``replay`` of the same capture."""
    capture = Path(__file__).parent / "data" / "demo.fsncap"
    code = textwrap.dedent("""
        import gc, json, sys
        from normalizer.cli.main import main
        from normalizer.cli.tuning import GC_THRESHOLDS
        code = main(["replay", sys.argv[1], "--quiet"])
        print(json.dumps({"code": code, "after": gc.get_threshold(), "wanted": GC_THRESHOLDS}), file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", code, str(capture)], capture_output=True, timeout=60)
    report = json.loads(proc.stderr.decode().strip().splitlines()[-1])
    assert report["code"] == 0 and tuple(report["after"]) == tuple(report["wanted"])
    from normalizer.capture.replay import replay, replay_chunks
    from normalizer.formats.jsonl import rec_to_json

    chunks = list(replay_chunks(capture))
    assert chunks and all(chunks)  # a list per feed that gave records, never an empty one
    expected = [rec_to_json(r) for r in replay(capture)]
    assert [rec_to_json(r) for chunk in chunks for r in chunk] == expected
    assert proc.stdout.decode().splitlines() == expected


FAULTS = textwrap.dedent("""
    import json, os, resource, sys
    from benchmarks.bench_matcher import _Counter
    from normalizer.capture.replay import replay_chunks
    from normalizer.cli.formatting import build_output
    from normalizer.cli.main import emit
    from normalizer.cli.tuning import tune_malloc
    import argparse
    tuned = tune_malloc() if sys.argv[2] == "tune" else None
    output = build_output(argparse.Namespace(format="json"))
    emit(replay_chunks(sys.argv[1]), output, _Counter())  # warm up: imports, caches, the heap's first growth
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    emit(replay_chunks(sys.argv[1]), output, _Counter())  # what fsnorm replay does, minus the writes to stdout
    print(json.dumps({"tuned": tuned, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
""")


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200,000 synthetic inotify events (benchmarks/synthetic.py): about 35 MB of JSON Lines once replayed."""
    from benchmarks.bench_matcher import _write_capture
    from benchmarks.synthetic import batches

    path = tmp_path_factory.mktemp("tuning") / "s.fsncap"
    _write_capture(batches(200_000), path)
    return path


def _faults(capture: Path, mode: str, env: dict[str, str] | None = None) -> dict[str, object]:
    run_env = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}  # glibc's malloc
    run_env.update(env or {})
    run_env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), run_env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", FAULTS, str(capture), mode], capture_output=True, text=True,
                         timeout=120, env=run_env)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    assert isinstance(result["faults"], int)
    return result


GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")


@GLIBC
def test_the_tuned_allocator_keeps_the_output_buffers(capture: Path) -> None:
    """Replaying 200,000 events writes about 35 MB of JSON Lines in 1,024-record chunks. At glibc's starting
    thresholds every chunk's buffer is fresh pages from the kernel; tuned, the heap keeps the freed buffer for
    the next chunk: a handful of faults in all (0-3 seen).

    The baseline holds glibc's starting thresholds (128 KiB) with its own variables. Left to adjust themselves
    they depend on what the process freed before: 2,300-7,000 faults in a plain child, 0 in one under the
    suite's coverage tracing (the README's numbers are of plain processes). This is a test of the tuning, not
    of glibc's heuristics."""
    default = _faults(capture, "default", {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"})
    tuned = _faults(capture, "tune")
    assert tuned["tuned"] is True
    assert isinstance(default["faults"], int) and isinstance(tuned["faults"], int)
    assert tuned["faults"] < 100, tuned
    assert default["faults"] > 10 * max(tuned["faults"], 10), (default, tuned)  # the cost removed was there


@GLIBC
def test_the_users_own_allocator_settings_are_left_alone(capture: Path) -> None:
    report = _faults(capture, "tune", {"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert report["tuned"] is False
    assert isinstance(report["faults"], int) and report["faults"] > 1_000, report  # glibc's, as the user set it
    assert _faults(capture, "tune", {"MALLOC_MMAP_MAX_": "65536"})["tuned"] is False
    assert _faults(capture, "tune", {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=131072"})["tuned"] is False
