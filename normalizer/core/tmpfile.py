"""Unnamed temporary files: the ``#<inode>`` name the kernel reports them by is no path.

``open(dir, O_TMPFILE)`` makes a file with no name in ``dir`` (QSaveFile, some databases and editors write
this way, then ``linkat`` it into place). Its dentry is called ``#<inode number>`` inside the kernel, and both
inotify and fanotify report the file's ``open``, ``modify``, ``attrib``, ``access`` and ``close_*`` events on
that name in ``dir`` -- before the ``linkat`` and after it, when the fd that wrote it is the same (measured on
Linux 6.x, tests/test_truth.py). Nobody can ever see or open ``dir/#<inode>``; the ``linkat`` itself arrives as
a ``create`` of the real name (the content written before it is there by then).

So an event of those kinds on a non-directory named ``#`` + digits is dropped and counted, unless that name is
known to be real in this session: a file created, moved in or found by a scan under it (and not deleted or
moved away since). The one case this cannot tell: a file literally named ``#<digits>`` that existed before
watching started and was never seen created, moved or scanned; its events are counted as a temporary file's.
"""

from __future__ import annotations


def is_tmpfile_name(name: bytes) -> bool:
    """True for a name of the kernel's ``#<inode>`` form."""
    return name[:1] == b"#" and name[1:].isdigit()


class TmpfileNames:
    """The ``#<digits>`` paths known to be real, and how many tmpfile events were dropped."""

    __slots__ = ("dropped", "real")

    def __init__(self) -> None:
        self.real: set[bytes] = set()
        #: Events of unnamed temporary files dropped (the count a caller may report).
        self.dropped = 0

    def appeared(self, path: bytes, name: bytes) -> None:
        """A file ``name`` appeared at ``path`` by create, move in or scan: the name is real."""
        if is_tmpfile_name(name):
            self.real.add(path)

    def gone(self, path: bytes) -> None:
        self.real.discard(path)

    def drop(self, path: bytes, name: bytes) -> bool:
        """True (and counted) if an open/modify/attrib/access/close event on ``path`` is a tmpfile's."""
        if not is_tmpfile_name(name) or path in self.real:
            return False
        self.dropped += 1
        return True
