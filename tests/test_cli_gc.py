"""``fsnorm watch`` and ``replay`` keep the cyclic garbage collector out of the way (cli/main.py ``_tune_gc``): the tree
``open`` built is frozen and the young generation's threshold raised, in the command's process only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import gc, json, os, signal, sys, threading
    from normalizer.cli.main import GC_THRESHOLDS, main
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
        from normalizer.cli.main import GC_THRESHOLDS, main
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
