"""Writing record lines to a file descriptor (stdout, a pipe, a file)."""

from __future__ import annotations

import os


def write_all(fd: int, data: bytes) -> None:
    """Write every byte: os.write may write less than asked (a pipe after SIGSTOP/SIGCONT, a full pipe
    interrupted by a signal), and a text stream's buffer can drop the rest then; this loop cannot."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
