"""The tests' kernel settings (tests/live.py ``sysctl``) are changed one at a time on the machine: a second test
run that wants the same setting waits until the first has restored it, so it never reads the first run's
temporary value as the one to restore."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from live import sysctl, sysctl_lock

SETTING = "fs.inotify.max_queued_events"
PATH = Path("/proc/sys/fs/inotify/max_queued_events")

HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from live import sysctl
    with sysctl(sys.argv[2], int(sys.argv[3])):
        print("set", flush=True)
        time.sleep(float(sys.argv[4]))
""")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change a kernel setting")


def test_a_second_run_waits_for_the_first_to_restore_the_setting() -> None:
    real = int(PATH.read_text())
    temporary = real + 7
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(Path(__file__).parent), SETTING, str(temporary),
                               "1.0"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "set\n"
        assert int(PATH.read_text()) == temporary  # the other run's change is in force now
        with sysctl(SETTING, real + 3) as original:
            # Without the lock this would read real + 7, and restore it at the end of the block.
            assert original == real
    finally:
        holder.wait(timeout=30)
    assert int(PATH.read_text()) == real


@pytest.mark.timeout(20)  # a lock that waited for itself would hang: fail fast instead
def test_the_lock_is_reentrant_in_a_process() -> None:
    """Nested blocks (a setting changed inside another's block) do not wait for themselves."""
    real = int(PATH.read_text())
    with sysctl_lock(), sysctl(SETTING, real + 1), sysctl(SETTING, real + 2) as inner:
        assert inner == real + 1 and int(PATH.read_text()) == real + 2
    assert int(PATH.read_text()) == real
