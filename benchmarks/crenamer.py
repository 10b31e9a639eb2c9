"""Build and run the C renamer (benchmarks/c/renamer.c) with the machine's gcc, into a build directory that the
caller owns (a temporary directory: binaries are never committed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "c" / "renamer.c"


def gcc_version() -> str | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    out = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else None


def build(build_dir: Path) -> Path:
    """Compile renamer.c into ``build_dir``; return the binary. Raises RuntimeError without gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found: the C renamer cannot be built")
    build_dir.mkdir(parents=True, exist_ok=True)
    exe = build_dir / "renamer"
    subprocess.run([gcc, "-O2", "-Wall", "-pthread", "-o", str(exe), str(SOURCE)], check=True,
                   capture_output=True, text=True)
    return exe


def flat(exe: Path, directory: Path, seconds: float, *, watch: bool = True) -> dict[str, Any]:
    """Renames flat out for ``seconds`` (with its own inotify watch and C reader unless ``watch=False``)."""
    directory.mkdir(parents=True, exist_ok=True)
    args = [str(exe), "flat", str(directory), f"{seconds}"] + ([] if watch else ["nowatch"])
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def setup(exe: Path, directory: Path) -> None:
    """Create the renamer's directories and files (before a watcher starts, so it watches them all)."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(exe), "setup", str(directory)], check=True, capture_output=True, text=True, timeout=60)


def paced_command(exe: Path, directory: Path, seconds: float, renames_per_s: float) -> list[str]:
    return [str(exe), "paced", str(directory), f"{seconds}", f"{renames_per_s}"]
