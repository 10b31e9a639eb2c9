"""Fixtures shared by the real-kernel test files."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
