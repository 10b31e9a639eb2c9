"""Which hot path runs: the modules compiled by mypyc at install time, or the same ``.py`` files (the reference).

``setup.py`` compiles a few modules into C extensions next to their ``.py`` files and writes
``_build_info.json`` (which modules, the sha256 of each source, or why nothing was compiled). Python prefers an
extension to a ``.py`` of the same name, so the compiled path is used wherever it was built. This module runs
first on ``import normalizer`` and makes Python import the ``.py`` files of *all* compiled modules instead (they
share one runtime and expect each other compiled: all or none) when:

* ``FSNORM_PURE`` is set to anything but ``0`` (tests of the reference path, debugging, profiling);
* a compiled module's source changed since the build (an edited or merged ``.py`` in an editable install: the
  extension would run old code; ``make`` rebuilds it);
* the extensions cannot be loaded (built for another interpreter, deleted).

:func:`status` says which path is active and why, :func:`c_extensions` which hand-written C extensions run
beside it; :func:`describe` puts both in one line (``fsnorm --version``). Nothing here imports the compiled
modules or the C extensions.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

_PACKAGE_DIR = Path(__file__).resolve().parent
_ROOT = _PACKAGE_DIR.parent
_INFO = _PACKAGE_DIR / "_build_info.json"
#: The environment variable that forces the pure-Python path.
PURE_ENV = "FSNORM_PURE"


@dataclass(frozen=True, slots=True)
class Status:
    """The active hot path: ``compiled`` or not, the modules concerned, and why (a short sentence)."""

    compiled: bool
    modules: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        if self.compiled:
            return f"compiled hot path (mypyc: {len(self.modules)} modules)"
        return f"pure-Python hot path ({self.reason})"


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the ``.py`` file of each compiled module, never its extension."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self.sources = sources

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        source = self.sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _module_name(relpath: str) -> str:
    return relpath.removesuffix(".py").replace("/", ".")


def _read_info() -> dict[str, object] | None:
    try:
        info = json.loads(_INFO.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _decide(info: dict[str, object] | None) -> Status:
    if info is None:
        return Status(False, (), "no build record: installed without setup.py's compile step")
    listed = info.get("compiled")
    compiled = [str(p) for p in listed] if isinstance(listed, list) else []
    modules = tuple(_module_name(p) for p in compiled)
    if not compiled:
        return Status(False, (), f"not compiled at install: {info.get('note') or 'no reason recorded'}")
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return Status(False, modules, f"{PURE_ENV}={os.environ[PURE_ENV]}")
    sources = info.get("sources")
    for relpath in compiled:
        try:
            digest = hashlib.sha256((_ROOT / relpath).read_bytes()).hexdigest()
        except OSError:
            continue  # a wheel install may ship the extension only
        if not isinstance(sources, dict) or sources.get(relpath) != digest:
            return Status(False, modules, f"{relpath} changed since it was compiled; reinstall (make) to rebuild")
    group = str(info.get("group") or "")
    try:
        if group:
            importlib.import_module(f"{group}__mypyc")
    except ImportError as exc:
        return Status(False, modules, f"the compiled modules cannot be loaded: {exc}")
    for name in modules:
        spec = _spec_without_import(name)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return Status(False, modules, f"{name} has no compiled extension in this install")
    return Status(True, modules, "built at install")


def _spec_without_import(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of ``normalizer.x.y`` found on the package's own path, without importing ``normalizer.x``."""
    parts = name.split(".")
    directory = _ROOT.joinpath(*parts[:-1])
    return importlib.machinery.FileFinder(
        str(directory), (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES),
    ).find_spec(name)


#: The hand-written C extensions (setup.py builds each where a compiler is present; each is optional and has a
#: pure-Python reference): (module, what it does, whether ``FSNORM_PURE`` turns it off). The reader thread
#: stays on under ``FSNORM_PURE``: it changes no record, only who waits on ``read()``; ``FSNORM_READER=python``
#: selects the Python thread (normalizer/backends/reader.py).
C_EXTENSIONS: tuple[tuple[str, str, bool], ...] = (
    ("normalizer.backends._ringreader", "reader thread", False),
    ("normalizer.backends._ringreader", "inotify parser", True),
    ("normalizer.formats._jsonlines", "JSON Lines writer", True),
    ("normalizer.capture._capline", "capture batch decoder", True),
    ("normalizer.backends._fanparse", "fanotify parser", True),
)


def c_extensions() -> tuple[str, ...]:
    """What the C extensions built in this install do, as far as this process uses them (``FSNORM_PURE`` and
    ``FSNORM_READER=python`` turn some off); found on disk, not imported."""
    pure = os.environ.get(PURE_ENV, "") not in ("", "0")
    python_reader = os.environ.get("FSNORM_READER", "").lower() == "python"
    active = []
    for name, what, off_when_pure in C_EXTENSIONS:
        if (pure and off_when_pure) or (python_reader and what == "reader thread"):
            continue
        spec = _spec_without_import(name)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            active.append(what)
    return tuple(active)


def describe() -> str:
    """One line: the hot path (:func:`status`) and the C extensions in use (:func:`c_extensions`)."""
    extensions = c_extensions()
    return f"{_STATUS}; C: {', '.join(extensions) if extensions else 'none'}"


def _select() -> Status:
    info = _read_info()
    status = _decide(info)
    if not status.compiled and status.modules:
        sources = {name: _ROOT / (name.replace(".", "/") + ".py") for name in status.modules}
        loaded = [name for name in sources if name in sys.modules]
        if not loaded:
            sys.meta_path.insert(0, _SourceFinder(sources))
    return status


_STATUS = _select()


def status() -> Status:
    """The hot path this process runs (decided once, when ``normalizer`` was first imported)."""
    return _STATUS


def install_note() -> None:
    """Print one line after an install if the hot path is pure Python (nothing when it is compiled)."""
    if not _STATUS.compiled:
        print(f"fsnorm: {_STATUS}")


if __name__ == "__main__":
    print(_STATUS)
