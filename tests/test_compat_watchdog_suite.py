"""watchdog's own emitter tests, run against normalizer.compat.watchdog (docs/watchdog-compat.md).

The watchdog 7.1.0 sdist is downloaded from the package registry at test time (cached), its ``tests/`` unpacked
into a temp dir, and ``test_emitter.py`` + ``test_inotify_emitter.py`` run in a subprocess with the plugin
tests/compat_plugins/fsnorm_watchdog_plugin.py, which swaps their emitter and observer for fsnorm's. The outcome
must equal the expected-failure and expected-skip tables of docs/watchdog-compat.md exactly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

VERSION = "7.1.0"
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "watchdog-compat.md"
PLUGINS = Path(__file__).resolve().parent / "compat_plugins"
SUITE = ["tests/test_emitter.py", "tests/test_inotify_emitter.py"]
SHARDS = 4


def _cache_dir() -> Path:
    base = os.environ.get("FSNORM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fsnorm")
    path = Path(base) / f"watchdog-{VERSION}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sdist() -> Path:
    """The sdist, downloaded once with pip (skip, with pip's words, if the registry cannot be reached)."""
    cache = _cache_dir()
    found = sorted(cache.glob(f"watchdog-{VERSION}.tar.gz"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
           f"watchdog=={VERSION}", "-d", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    found = sorted(cache.glob(f"watchdog-{VERSION}.tar.gz"))
    if proc.returncode != 0 or not found:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        pytest.skip(f"the watchdog {VERSION} sdist could not be downloaded from the package registry "
                    f"({' '.join(cmd[2:])}): {tail}")
    return found[0]


def _unpack(sdist: Path, dest: Path) -> None:
    """Extract the sdist's regular files and directories only (no links, nothing outside ``dest``)."""
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(dest.resolve()):
                continue
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None
            target.write_bytes(src.read())


def _doc_table(heading: str) -> dict[str, str]:
    """The ``| `test id` | reason |`` rows under ``heading`` in docs/watchdog-compat.md."""
    text = DOC.read_text()
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| `([^`]+)` \| (.+) \|$", section, re.M)}


def _outcomes(junit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(junit).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        test_id = f"{module}.py::{case.get('name')}"
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                state = "failed"
            elif child.tag == "skipped":
                state = "skipped"
        out[test_id] = state
    return out


def test_doc_tables_are_parsed() -> None:
    """The tables the suite is checked against are read from the doc (a broken table would make the suite
    check vacuous)."""
    failures = _doc_table("#### Expected failures")
    assert len(failures) >= 1 and all(k.startswith("tests/test_") and v for k, v in failures.items())
    assert _doc_table("#### Expected skips")


@pytest.mark.timeout(1200)
def test_watchdog_own_emitter_suite(tmp_path: Path) -> None:
    sdist = _sdist()
    _unpack(sdist, tmp_path)
    tree = tmp_path / f"watchdog-{VERSION}"
    assert (tree / "tests" / "test_emitter.py").is_file()
    # -o pythonpath= : test the installed watchdog (what fsnorm[watchdog] installs), not the sdist's src/.
    cmd = [sys.executable, "-m", "pytest", "-p", "fsnorm_watchdog_plugin", "-p", "no:cacheprovider",
           "-o", "addopts=", "-o", "pythonpath=", "-q", *SUITE]
    # SHARDS processes side by side, each every SHARDS-th test: most of the suite's time is its tests waiting
    # two seconds for events that must not come, which costs no CPU. Every test still runs, once, as written.
    procs = []
    for i in range(SHARDS):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), str(ROOT)]),
                   FSNORM_WATCHDOG_REPORT=str(tmp_path / f"fsnorm-report-{i}.json"),
                   FSNORM_WATCHDOG_SHARD=f"{i}/{SHARDS}")
        own = [f"--junitxml={tmp_path / f'junit-{i}.xml'}", f"--basetemp={tmp_path / f'tmp-{i}'}"]
        procs.append(subprocess.Popen([*cmd, *own], cwd=tree, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=1100)[0] for p in procs]
    log = "\n".join(text[-6000 // SHARDS:] for text in logs)
    outcomes: dict[str, str] = {}
    started = {"emitters": 0, "observers": 0}
    for i in range(SHARDS):
        junit = tmp_path / f"junit-{i}.xml"
        assert junit.is_file(), log
        shard = _outcomes(junit)
        assert not shard.keys() & outcomes.keys(), "a test ran in two shards"
        outcomes.update(shard)
        report = json.loads((tmp_path / f"fsnorm-report-{i}.json").read_text())
        started = {k: started[k] + report[k] for k in started}
    assert started["emitters"] > 0 and started["observers"] > 0, started  # fsnorm's, not watchdog's, ran

    failed = {t for t, s in outcomes.items() if s == "failed"}
    skipped = {t for t, s in outcomes.items() if s == "skipped"}
    expected_failed = set(_doc_table("#### Expected failures"))
    expected_skipped = set(_doc_table("#### Expected skips"))
    moves = {t for t in outcomes if re.search(r"move|rename|case_change|lifecyle", t)}
    assert not (moves & failed), f"move/rename tests failed: {sorted(moves & failed)}\n{log}"
    assert failed - expected_failed == set(), f"unexpected failures: {sorted(failed - expected_failed)}\n{log}"
    assert expected_failed - failed == set(), f"expected failures that did not fail (update the doc): " \
                                              f"{sorted(expected_failed - failed)}"
    assert skipped == expected_skipped, (sorted(skipped), sorted(expected_skipped))
    assert len(outcomes) == 44, sorted(outcomes)  # the whole of both files ran
