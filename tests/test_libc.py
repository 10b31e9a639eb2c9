"""The C library is loaded without a subprocess (normalizer/backends/_libc.py), and what it loads works.

``ctypes.util.find_library("c")`` ran ``/sbin/ldconfig -p`` at every start, once per binding. The import and
the first calls run in a fresh interpreter (here the bindings are imported already) under an audit hook that
fails on any process start, with ``find_library`` made to fail too; a control case shows the hook catches
``find_library``'s own subprocess.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from normalizer.backends import _libc
from normalizer.errors import SourceError

IS_ROOT = os.geteuid() == 0

#: Set up in the fresh interpreter before anything of fsnorm is imported.
TRAPS = textwrap.dedent("""
    import ctypes.util, json, os, sys
    SPAWNS = {"subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec", "os.spawn", "os.system"}
    def hook(event, args):
        if event in SPAWNS:
            raise RuntimeError(f"a process was started: {event} {args!r:.200}")
    real_find_library = ctypes.util.find_library
    def no_find_library(*a, **k):
        raise RuntimeError("ctypes.util.find_library was called")
    ctypes.util.find_library = no_find_library
    sys.addaudithook(hook)
""")


def _run(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = TRAPS + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code, os.fsdecode(tmp_path)], capture_output=True, text=True,
                          timeout=60)


def test_the_trap_catches_find_library(tmp_path: Path) -> None:
    """The control: the old way (find_library runs ldconfig) fails under the hook."""
    out = _run("real_find_library('c')\n", tmp_path)
    assert out.returncode != 0
    assert "a process was started: subprocess.Popen" in out.stderr


def test_inotify_loads_without_a_process_and_works(tmp_path: Path) -> None:
    """Import the binding and the source, then inotify_init1, inotify_add_watch, an event, inotify_rm_watch."""
    out = _run("""
        import normalizer.backends.inotify
        from normalizer.backends._inotify_sys import InotifyFD
        from normalizer.core.raw import IN_CREATE
        d = os.fsencode(sys.argv[1])
        with InotifyFD() as ino:
            wd = ino.add_watch(d, IN_CREATE)
            os.mkdir(d + b"/sub")
            events = ino.read_events()
            removed = ino.rm_watch(wd)
        print(json.dumps({"wd": wd, "names": [(e[0] == wd, e[3].decode()) for e in events], "removed": removed}))
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["wd"] >= 1 and got["names"] == [[True, "sub"]] and got["removed"] is True


@pytest.mark.skipif(not IS_ROOT, reason="needs root (fanotify_init with FAN_REPORT_FID)")
def test_fanotify_loads_without_a_process_and_works(tmp_path: Path) -> None:
    """Import the binding and the source, then fanotify_init, fanotify_mark and an event with its name."""
    out = _run("""
        import normalizer.backends.fanotify
        from normalizer.backends._fanotify_sys import FAN_CREATE, FAN_ONDIR, FanotifyFD
        d = os.fsencode(sys.argv[1])
        with FanotifyFD() as fa:
            fa.mark(d, FAN_CREATE | FAN_ONDIR)
            os.mkdir(d + b"/sub")
            events = fa.read_events()
        print(json.dumps([[e.mask, e.dfid_name.name.decode()] for e in events if e.dfid_name is not None]))
    """, tmp_path)
    assert out.returncode == 0, out.stderr
    from normalizer.backends._fanotify_sys import FAN_CREATE, FAN_ONDIR
    assert json.loads(out.stdout) == [[FAN_CREATE | FAN_ONDIR, "sub"]]


def _fake_cdll(exports: dict[str | None, set[str] | None]) -> object:
    """A stand-in for ctypes.CDLL: each name loads as an object with these attributes, or fails (None)."""

    def cdll(name: str | None, use_errno: bool = False) -> object:
        assert use_errno  # errno is read after every failed call: it must be kept
        functions = exports[name]
        if functions is None:
            raise OSError(f"{name}: cannot open shared object file")
        return type("Lib", (), {"name": name, **dict.fromkeys(functions, 1)})()

    return cdll


def _name(lib: object) -> str | None:
    name: str | None = getattr(lib, "name")  # noqa: B009  (the fake's attribute, unknown to the type)
    return name


def test_the_first_candidate_with_the_function_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes, "CDLL", _fake_cdll({None: {"getpid"}, "libc.so.6": {"inotify_init1"}}))
    assert _name(_libc.load_libc("inotify_init1")) == "libc.so.6"
    assert _name(_libc.load_libc("getpid")) is None
    # None has it: the first that loaded (the caller names the missing function where it needs it).
    assert _name(_libc.load_libc("fanotify_init")) is None


def test_a_candidate_that_does_not_load_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes, "CDLL", _fake_cdll({None: None, "libc.so.6": {"getpid"}}))
    assert _name(_libc.load_libc("inotify_init1")) == "libc.so.6"


def test_nothing_loadable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes, "CDLL", _fake_cdll({None: None, "libc.so.6": None}))
    with pytest.raises(SourceError, match=r"^cannot load the C library \(the process itself: None: cannot open "
                                          r"shared object file; libc\.so\.6: libc\.so\.6: cannot open"):
        _libc.load_libc("inotify_init1")


def test_the_real_candidates_have_the_functions() -> None:
    """What is found here has both bindings' functions, and a call reaches the kernel."""
    lib = _libc.load_libc("inotify_init1")
    assert hasattr(lib, "inotify_init1") and hasattr(lib, "fanotify_init") and hasattr(lib, "open_by_handle_at")
    fd = lib.inotify_init1(os.O_CLOEXEC)
    assert fd >= 0
    os.close(fd)
