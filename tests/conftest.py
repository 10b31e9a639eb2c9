"""Fixtures shared by the real-kernel test files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from normalizer.backends.priority import autogroup_nice, set_autogroup_nice


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temp dir every user can search (pytest's own tmp_path is 0700 root): for the tests run as nobody."""
    path = Path(tempfile.mkdtemp(prefix="fsnorm-test-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The live tests' tree: w/a and w/b under the watched root w, and out/ beside it (moves out and in). A test
    file that needs another tree defines its own ``tree``, which takes precedence."""
    for d in ("w/a", "w/b", "out"):
        (tmp_path / d).mkdir(parents=True)
    return tmp_path


#: The test runner's session scheduling group as the run found it (None: the kernel does not group by session).
RUNNER_GROUP = autogroup_nice()


@pytest.fixture(autouse=True)
def _session_group_as_found() -> Iterator[None]:
    """Give the test runner's session scheduling group back, as the run found it, after each test: ``fsnorm
    watch`` raises its session by default (README "Priority boost") and gives it back at exit, but a child a
    test kills with SIGKILL cannot, and one a module-scoped fixture starts (before any test's own setup) would
    otherwise be taken for the group's own value. The runner (a CI job, a developer's shell) shares that
    session; benchmarks started from the same shell afterwards would run their storm raised."""
    yield
    if RUNNER_GROUP is not None and autogroup_nice() != RUNNER_GROUP:
        with contextlib.suppress(OSError):  # not ours to write (another user), or the kernel's 100 ms limit
            set_autogroup_nice(RUNNER_GROUP)
