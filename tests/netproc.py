"""Real processes for the remote fsnotify tests: ``fsnorm serve`` and ``fsnorm subscribe``, plus a collector that
subscribes with the library in a thread."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from normalizer.remote import subscribe

ROOT = Path(__file__).parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Proc:
    """A child process whose stdout and stderr lines are collected by threads."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.p = subprocess.Popen([sys.executable, "-m", "normalizer", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=_env())
        self.out: list[bytes] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(self.p.stdout, self.out), daemon=True),
                         threading.Thread(target=self._pump, args=(self.p.stderr, None), daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, stream: Any, into: list[bytes] | None) -> None:
        for line in stream:
            if into is not None:
                into.append(line)
            else:
                self.err.append(line.decode(errors="replace").rstrip("\n"))

    def wait_err(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.err):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.p.poll() is not None and not any(t.is_alive() for t in self._threads[1:]):
                break
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} on stderr of {self.args}: {self.err}")

    def wait_started(self, pattern: str) -> re.Match[str]:
        """``wait_err`` for the line that says the process is up; a process that never says it is killed (not
        left running behind the failed test)."""
        try:
            return self.wait_err(pattern)
        except BaseException:
            self.kill()
            raise

    def wait_lines(self, n: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while len(self.out) < n and time.monotonic() < end:
            time.sleep(0.02)
        assert len(self.out) >= n, f"{len(self.out)} lines, wanted {n}"

    def finish(self, timeout: float = 30.0) -> int:
        code = self.p.wait(timeout)
        for t in self._threads:
            t.join(5)
        for stream in (self.p.stdout, self.p.stderr):
            if stream is not None and not any(t.is_alive() for t in self._threads):
                stream.close()  # read to the end by the threads: closed here, not by the GC (ResourceWarning)
        return code

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.p.send_signal(sig)

    def stop(self) -> int:
        self.signal(signal.SIGTERM)
        return self.finish()

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.finish()

    def records(self) -> list[dict[str, Any]]:
        """The complete JSON lines printed so far."""
        return [json.loads(line) for line in self.out if line.endswith(b"\n")]


class Server(Proc):
    def __init__(self, sock: Path, roots: list[str], *extra: str) -> None:
        super().__init__(["serve", *roots, "--listen", f"unix:{sock}", *extra])
        m = self.wait_started(r"\(epoch (\d+)\) on (.*)$")
        self.epoch = int(m.group(1))
        self.addresses = m.group(2).split()
        self.addr = f"unix:{sock}"


@contextlib.contextmanager
def serving(tmp_path: Path, *extra: str, sock: str = "s.sock") -> Iterator[tuple[Server, Path]]:
    """``fsnorm serve`` of ``tmp_path/data`` (made if missing) on ``unix:tmp_path/<sock>``, stopped with SIGTERM
    when the block ends (a no-op if the test already stopped or killed it): yields (server, data dir)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    srv = Server(tmp_path / sock, [str(data)], *extra)
    try:
        yield srv, data
    finally:
        srv.stop()


class Subscriber(Proc):
    def __init__(self, addr: str, *extra: str) -> None:
        super().__init__(["subscribe", addr, *extra])
        self.wait_started(r"subscribed to")


class Collector:
    """A library subscriber (blocking iterator) in a thread: records (pydantic models) in ``records``."""

    def __init__(self, addr: str, **kwargs: Any) -> None:
        self.records: list[Any] = []
        self.error: BaseException | None = None
        self.sub = subscribe(addr, **kwargs).connect()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for rec in self.sub:
                self.records.append(rec)
        except BaseException as exc:
            self.error = exc
        finally:
            self.sub.close()  # the stream ended: hang up here rather than leave the socket to the GC

    def join(self, timeout: float = 60.0) -> list[Any]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "subscriber did not see the end of the stream"
        assert self.error is None, self.error
        return self.records


def quiet(collector: Collector, *, idle: float = 0.5, limit: float = 60.0) -> None:
    """Wait until ``collector`` got nothing new for ``idle`` seconds (the server has sent what it has)."""
    end = time.monotonic() + limit
    n, since = -1, time.monotonic()
    while time.monotonic() < end:
        if len(collector.records) != n:
            n, since = len(collector.records), time.monotonic()
        elif time.monotonic() - since >= idle:
            return
        time.sleep(0.05)


_STORM = """
import os, sys
d, start, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(start, start + n):
    a, b = os.path.join(d, f"s{i}"), os.path.join(d, f"t{i}")
    with open(a, "w") as f:
        f.write("x")
    os.rename(a, b)
    os.unlink(b)
"""


def storm(directory: Path, n: int, start: int = 0) -> None:
    """n x (create+write, rename, delete) in another process (so this one's threads keep reading)."""
    subprocess.run([sys.executable, "-c", _STORM, str(directory), str(start), str(n)], check=True, timeout=300)
