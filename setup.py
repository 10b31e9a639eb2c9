"""Build: the hot path compiled with mypyc where this machine can, pure Python everywhere else.

Everything else about the project is in pyproject.toml. The modules in ``COMPILED`` are compiled from the very
same ``.py`` files (they are ``mypy --strict`` clean) into C extensions next to them; Python imports an extension
before a ``.py`` of the same name, and :mod:`normalizer._compiled` decides at import time which one is used
(``FSNORM_PURE=1`` forces the ``.py``; docs/compiled.md). The build writes ``normalizer/_build_info.json``
(what was compiled, from which sources, or why nothing was), which ``fsnorm --version`` reports.

Beside it, three plain C extensions (``optional=True``): the reader thread and the inotify parser
(``normalizer/backends/_ringreader.c``; where it cannot be built fsnorm uses the Python reader thread,
normalizer.backends.reader, and the Python parser), the JSON Lines writer of ``fsnorm watch``
(``normalizer/formats/_jsonlines.c``; else ``rec_to_json`` per record, normalizer.formats.fastjson) and the
fanotify read parser (``normalizer/backends/_fanparse.c``; else ``_parse_fast``, normalizer.backends.fanotify).

No compiler, no Python headers, no mypyc, or a compile error: the install still succeeds, pure Python, and says
so in one line (``FSNORM_PURE_BUILD=1`` skips the compilation on purpose).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
#: The compiled hot path: stream items, the record, the matcher, the inotify and fanotify normalizers, the JSON
#: writer, the capture reader and replay. A small, stable set: every other module stays Python and works with
#: these compiled or not.
COMPILED = [
    "normalizer/core/raw.py",
    "normalizer/core/rec.py",
    "normalizer/core/matcher.py",
    "normalizer/core/inotify.py",
    "normalizer/core/shadow.py",
    "normalizer/core/fanotify.py",
    "normalizer/formats/jsonl.py",
    "normalizer/capture/log.py",
    "normalizer/capture/replay.py",
]
#: The mypyc runtime shared by the compiled modules, one extension inside the package.
GROUP = "normalizer._hotpath"
INFO = HERE / "normalizer" / "_build_info.json"


def _say(message: str) -> None:
    print(f"fsnorm: {message}", file=sys.stderr)


def _write_info(compiled: list[str], note: str) -> None:
    sources = {path: hashlib.sha256((HERE / path).read_bytes()).hexdigest() for path in compiled}
    text = json.dumps({"compiled": compiled, "group": GROUP, "sources": sources, "note": note}, indent=1)
    if not INFO.exists() or INFO.read_text() != text + "\n":
        INFO.write_text(text + "\n")


def _missing_toolchain() -> str | None:
    """Why C extensions cannot be built here, or None."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc} not found)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers ({include}/Python.h; Debian: apt-get install python3-dev)"
    return None


def _pure(reason: str) -> list[Any]:
    _say(f"installing the pure-Python hot path: {reason}")
    _write_info([], reason)
    return []


def ext_modules() -> list[Any]:
    if os.environ.get("FSNORM_PURE_BUILD", "") not in ("", "0"):
        return _pure("FSNORM_PURE_BUILD is set")
    why = _missing_toolchain()
    if why is not None:
        return _pure(why)
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        return _pure(f"mypyc is not available ({exc})")
    try:
        exts = mypycify(COMPILED, opt_level="3", group_name=GROUP)
    except (Exception, SystemExit) as exc:  # mypyc reports type errors by exiting
        return _pure(f"mypyc could not compile the hot path ({exc!r})")
    _write_info(COMPILED, "")
    return list(exts)


class BuildExtOrPure(build_ext):
    """``build_ext`` that falls back to the pure-Python modules (one line saying why) if compiling fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, a vanished compiler: never fail the install
            self._fallback(exc)

    def _fallback(self, exc: BaseException) -> None:
        self.extensions = []
        for ext in self.distribution.ext_modules or []:
            built = Path(self.get_ext_fullpath(ext.name))
            if self.inplace and built.exists():
                built.unlink()
        _pure(f"compiling failed ({str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r})")


#: The reader thread and inotify parser; it and the capture line decoder build the event tuple with the header.
EVENT_H = ["normalizer/_cevent.h"]
READER = Extension("normalizer.backends._ringreader", ["normalizer/backends/_ringreader.c"], depends=EVENT_H,
                   optional=True, extra_compile_args=["-O2", "-Wall", "-std=gnu11"])
#: The JSON Lines writer of a read's records (normalizer.formats.fastjson), also plain C and optional.
JSONLINES = Extension("normalizer.formats._jsonlines", ["normalizer/formats/_jsonlines.c"], optional=True,
                      extra_compile_args=["-O2", "-Wall", "-std=gnu11"])

#: The capture reader's common batch line (normalizer.capture.fastline), plain C and optional.
CAPLINE = Extension("normalizer.capture._capline", ["normalizer/capture/_capline.c"], depends=EVENT_H,
                    optional=True, extra_compile_args=["-O2", "-Wall", "-std=gnu11"])
#: The fanotify read buffer parser (normalizer.backends.fanotify.parse_batch), plain C and optional.
FANPARSE = Extension("normalizer.backends._fanparse", ["normalizer/backends/_fanparse.c"], optional=True,
                     extra_compile_args=["-O2", "-Wall", "-std=gnu11"])


def all_ext_modules() -> list[Any]:
    """The hot path (or nothing) and, wherever a toolchain is, the hand-written C extensions (each optional)."""
    exts = ext_modules()
    return exts + ([READER, JSONLINES, CAPLINE, FANPARSE] if _missing_toolchain() is None else [])


setup(ext_modules=all_ext_modules(), cmdclass={"build_ext": BuildExtOrPure})
