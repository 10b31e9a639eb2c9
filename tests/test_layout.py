"""The layout's promises: the core is sans-IO, and importing it loads no system library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "normalizer" / "core"
#: Modules that do I/O, load libraries or start work of their own: none belongs in the core.
FORBIDDEN_MODULES = {"ctypes", "select", "selectors", "fcntl", "termios", "socket", "subprocess", "threading",
                     "asyncio", "io", "mmap", "signal", "shutil", "tempfile", "pathlib", "gzip", "zlib"}
#: The only ``os`` attributes the core may use: pure conversions of names, no system call.
ALLOWED_OS = {"fsdecode", "fsencode", "fspath", "sep", "PathLike"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"from {node.module} import ...")
            if node.module.split(".")[0] == "normalizer" and not node.module.startswith(
                    ("normalizer.core", "normalizer.records", "normalizer.errors")):
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
            if not node.module.startswith(("records", "errors")):
                found.append(f"from {'.' * node.level}{node.module} import ...")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr not in ALLOWED_OS:
                found.append(f"os.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            found.append("open()")
    return [f"{path.name}:{v}" for v in found]


def test_core_does_no_io() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 8, "the core's modules were not found"
    violations = [v for m in modules for v in _violations(m)]
    assert violations == []


def test_the_checker_catches_io(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import ctypes\nimport os\nfrom ..backends import x\nos.read(0, 1)\nopen('f')\n")
    assert sorted(_violations(bad)) == ["bad.py:from ..backends import ...", "bad.py:import ctypes",
                                        "bad.py:open()", "bad.py:os.read"]


def test_core_imports_without_libc() -> None:
    """``import normalizer.core`` (and replay's modules) with ctypes made unusable: nothing loads a library."""
    code = (
        "import sys, ctypes, ctypes.util\n"
        "def boom(*a, **k): raise RuntimeError('a library was loaded')\n"
        "ctypes.CDLL = boom; ctypes.util.find_library = boom\n"
        "import normalizer.core.inotify, normalizer.core.fanotify, normalizer.core.shadow, normalizer.capture.replay\n"
        "import normalizer.formats\n"
        "assert 'normalizer.backends._inotify_sys' not in sys.modules, sorted(sys.modules)\n"
        "assert 'normalizer.backends._fanotify_sys' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
