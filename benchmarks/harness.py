"""Running one subject session: start the subject in its own process (and process group), wait until it
watches, run workload processes, end with the sentinel file, stop it and collect its stats."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


_LIVE: weakref.WeakSet[SubjectProcess] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    """Subjects run in their own session, so an interrupted run would leave them watching: end them."""
    for sp in list(_LIVE):
        if sp.proc.poll() is None:
            sp.kill()


class SubjectError(RuntimeError):
    """The subject could not start or did not behave (its stderr tail is in the message)."""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return env


def run_workload(args: list[str], *, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``python -m benchmarks.workloads ARGS`` to completion; its JSON result.

    The workload gets a session of its own, as each subject does (SubjectProcess): where the kernel schedules
    by session (autogroup), the storm then competes with the watcher from a group at the default priority,
    whatever the session that started the benchmark was left at (a watcher killed with SIGKILL cannot give back
    the priority boost it gave its session: README "Priority boost")."""
    res = subprocess.run([sys.executable, "-m", "benchmarks.workloads", *args], cwd=REPO, env=child_env(),
                         capture_output=True, text=True, timeout=timeout, check=False, start_new_session=True)
    if res.returncode != 0:
        raise RuntimeError(f"workload {args[:2]} failed: {res.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


def start_workload(args: list[str]) -> subprocess.Popen[str]:
    """:func:`run_workload` started in the background (its own session too)."""
    return subprocess.Popen([sys.executable, "-m", "benchmarks.workloads", *args], cwd=REPO, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish_workload(proc: subprocess.Popen[str], timeout: float = 600.0) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"workload failed: {err.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


class SubjectProcess:
    """One subject in its own process group. Use :meth:`start`, then the workload, then :meth:`finish`."""

    def __init__(self, name: str, root: Path, out: Path, *, window_ms: float | None = None) -> None:
        self.name = name
        self.root = root
        self.out = out
        self.sentinel = f"fsbench-end-{uuid.uuid4().hex[:12]}"
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stats: dict[str, Any] = {}
        self.errors: list[str] = []
        #: Seconds a subject gets to exit after SIGTERM.
        self.stop_timeout = 60.0
        args = [sys.executable, "-m", "benchmarks.subjects", name, str(root), str(out), "--sentinel", self.sentinel]
        if window_ms is not None:
            args += ["--window-ms", f"{window_ms}"]
        self._stderr_path = Path(f"{out}.harness-stderr")
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=err,
                                         text=True, start_new_session=True)
        _LIVE.add(self)
        threading.Thread(target=self._pump, daemon=True, name=f"lines-{name}").start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _wait_for(self, word: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return False
            if line is None:
                return False
            if line.startswith("error"):
                self.errors.append(line[6:])
            elif line.startswith("stats "):
                self.stats = json.loads(line[6:])
                if word == "stats":
                    return True
            elif line == word:
                return True

    def stderr_tail(self) -> str:
        """The end of the subject's stderr and, for CLI subjects, of its fsnorm child's."""
        tails = []
        for path in (self._stderr_path, Path(f"{self.out}.stderr")):
            with contextlib.suppress(OSError):
                tails.append(path.read_text(errors="replace").strip()[-1500:])
        return " ".join(t for t in tails if t)

    def start(self, timeout: float = 30.0) -> None:
        if not self._wait_for("ready", timeout):
            self.kill()
            raise SubjectError(f"{self.name} did not start: {'; '.join(self.errors)} {self.stderr_tail()}".strip())

    def pause(self) -> None:
        """SIGSTOP the subject's process group (the reader stops reading; the kernel queue fills)."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        """Create the sentinel, wait until the subject delivered it (``caught_up``), stop it, return its stats
        with ``caught_up`` and ``catch_up_s`` (time from the first sentinel to the delivery of one)."""
        t0 = time.monotonic()
        caught_up = False
        attempt = 0
        while not caught_up and time.monotonic() - t0 < timeout:
            # A sentinel created while the subject's queue is full is dropped by the kernel: retry with new names.
            attempt += 1
            path = self.root / f"{self.sentinel}-{attempt}"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            caught_up = self._wait_for("end", min(1.0, max(0.0, timeout - (time.monotonic() - t0))))
        catch_up = time.monotonic() - t0
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        if not self._wait_for("stats", self.stop_timeout):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGUSR1)  # stacks of every thread to its stderr
            time.sleep(0.5)
            self.kill()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
        stats = dict(self.stats)
        stats.update(caught_up=caught_up, catch_up_s=catch_up, errors=self.errors)
        if not stats.get("fmt"):
            raise SubjectError(f"{self.name} gave no stats (exit {self.proc.returncode}, caught up {caught_up}): "
                               f"{'; '.join(self.errors)} {self.stderr_tail()}")
        return stats

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
