"""The C library for the ctypes bindings (:mod:`._inotify_sys`, :mod:`._fanotify_sys`), loaded without a subprocess.

``ctypes.util.find_library("c")`` runs ``/sbin/ldconfig -p`` in a subprocess on Linux (and ``gcc``/``ld`` when
that finds nothing): a scheduler trace of ``fsnorm watch`` showed two ldconfig children, 34 ms, at every start,
one per binding. It is not needed: the interpreter is linked against the C library, so ``CDLL(None)``
(``dlopen(NULL)``: the symbols already loaded, glibc's or musl's) has its functions, and glibc's soname
``libc.so.6`` is tried next for an interpreter that exports too little. Neither spawns anything.
"""

from __future__ import annotations

import ctypes

from normalizer.errors import SourceError

#: What is tried, in order: the symbols the process has loaded already, then glibc by its soname.
CANDIDATES: tuple[str | None, ...] = (None, "libc.so.6")


def load_libc(wanted: str) -> ctypes.CDLL:
    """The first candidate that exports ``wanted``; if none does, the first that loaded at all (the caller says
    which function is missing where it needs it). :class:`SourceError` naming what was tried if nothing loaded (a
    ctypes without ``dlopen``)."""
    loaded: ctypes.CDLL | None = None
    failures: list[str] = []
    for name in CANDIDATES:
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            failures.append(f"{name or 'the process itself'}: {exc}")
            continue
        if hasattr(lib, wanted):
            return lib
        loaded = loaded or lib
    if loaded is None:
        raise SourceError(f"cannot load the C library ({'; '.join(failures)})")
    return loaded
