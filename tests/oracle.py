"""The oracle: the tree rebuilt from fsnorm's records must equal the real tree.

What a user of a watcher relies on is not one scenario's records but this: start from the tree as it was
scanned, apply every record in order, and you hold the tree as it is. This module checks exactly that, on the
real kernel, for any program of filesystem operations:

* an **operation language** (small frozen dataclasses, JSON round-trip for the corpus): create, write, mkdir,
  ``mkdir -p`` + file, rm, ``rm -r``, rename within and across directories and onto an existing entry, moves out
  of the tree (to a sibling directory nobody watches) and into it (with content), ``renameat2(RENAME_EXCHANGE)``
  of files and of directories, a top-level directory renamed away and back, symlinks, ``O_TMPFILE`` + ``linkat``,
  and ``Pump`` (read what is queued now, so the watch of a new directory can land between two operations);
* :func:`run_program` applies a program while a live source (inotify or fanotify) watches ``<base>/w``, reads
  until everything is read (:func:`live.drain`: quiet and nothing pending), closes the source and keeps every
  record; :func:`run_command` does the same around programs nobody here wrote (git, tar, unzip ...);
* :func:`rebuild` replays the records over the initial tree and collects every record that could not be true
  (a rename whose ``src`` is not in the rebuilt tree, a create under a missing directory, a delete of nothing,
  an ``error``, ``unresolved``...). An ``overflow`` record is accepted as what it is: events after the
  kernel's queue filled were lost, and the rescan that follows it reports what differs from what the records
  said as ``synthesized`` records, which are held to the same rules as any other (a delete of an entry the
  rebuilt tree does not have is untrue even there), so the tree must come out right all the same;
* :func:`compare` diffs the rebuilt tree against a walk of the real one: entries missing, phantom entries,
  wrong types; :class:`Verdict` prints all of it with the records, readable in a failing test.

One ambiguity is the kernel's, not fsnorm's: for inotify, ``renameat2(a, b, RENAME_EXCHANGE)`` of two files
gives exactly the events of ``mv a b`` (over an existing ``b``) followed by ``mv b a``: two joined renames
``a -> b``, ``b -> a``, and no event for the file replaced. Likewise an exchange of ``X`` with an entry outside
the watched part gives ``-> X`` then ``X ->``, exactly what a move in onto ``X`` followed by a move out of ``X``
gives; and since inotify coalesces identical adjacent events without comparing cookies, a rename onto ``X``
right before such an exchange swallows the exchange's ``MOVED_TO X``, leaving ``... -> X`` then ``X ->`` (the
README lists this coalescing among the kernel's limits); the same coalescing can swallow the ``MOVED_FROM Y`` of
an exchange of X and Y behind an identical one, leaving ``-> X`` then ``X -> Y``, also read both ways. Where a
rename is followed by its mirror (``a -> b``
then ``b -> a`` onto an entry the rebuilt tree holds, or ``... -> X`` then ``X ->``), the rebuilder
follows both readings and accepts the program if either ends in the real tree with no untrue record. fanotify
tells the two apart by the moved objects' handles (``object_id``): they differ for an exchange and are the same
object for a move and back, so there only one reading is followed.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from live import drain, exchange

from normalizer.api import make_source
from normalizer.errors import WatchLimitError
from normalizer.records import Rec

# -----------------------------------------------------------------------------------------------------------
# The operation language. Paths are relative to the watched root ``<base>/w``, '/'-separated; ``out`` names
# are relative to the unwatched sibling ``<base>/out``.


@dataclass(frozen=True)
class Op:
    """One step of a program. ``kind`` names it in JSON, in KNOWN_BROKEN gates and in failure messages."""

    kind: ClassVar[str] = ""

    def apply(self, w: Path, out: Path) -> None:
        raise NotImplementedError

    def model(self, m: Model) -> bool:
        """Do to the oracle's model what :meth:`apply` does to the kernel; False if the kernel refuses it."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"op": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class CreateFile(Op):
    kind: ClassVar[str] = "create"
    path: str
    data: str = ""

    def apply(self, w: Path, out: Path) -> None:
        with open(w / self.path, "x") as f:
            f.write(self.data)

    def model(self, m: Model) -> bool:
        return m.add(self.path, "f")


@dataclass(frozen=True)
class Write(Op):
    """Append to an existing file (open, write, close: modify + close_write)."""

    kind: ClassVar[str] = "write"
    path: str
    data: str = "x"

    def apply(self, w: Path, out: Path) -> None:
        with open(w / self.path, "a") as f:
            f.write(self.data)

    def model(self, m: Model) -> bool:
        return m.t.get(self.path) == "f"


@dataclass(frozen=True)
class Mkdir(Op):
    kind: ClassVar[str] = "mkdir"
    path: str

    def apply(self, w: Path, out: Path) -> None:
        os.mkdir(w / self.path)

    def model(self, m: Model) -> bool:
        return m.add(self.path, "d")


@dataclass(frozen=True)
class MakeDeep(Op):
    """``mkdir -p path`` and a file at its bottom, at once (the watcher sees the top directory appear)."""

    kind: ClassVar[str] = "mkdir_p"
    path: str
    file: str = "f"

    def apply(self, w: Path, out: Path) -> None:
        os.makedirs(w / self.path)
        (w / self.path / self.file).write_text("deep")

    def model(self, m: Model) -> bool:
        parts = self.path.split("/")
        prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        if self.path in m.t or any(m.t.get(p, "d") != "d" for p in prefixes):
            return False
        m.t.update(dict.fromkeys(prefixes, "d"))
        m.t[f"{self.path}/{self.file}"] = "f"
        return True


@dataclass(frozen=True)
class Remove(Op):
    """``rm`` of a file or symlink."""

    kind: ClassVar[str] = "rm"
    path: str

    def apply(self, w: Path, out: Path) -> None:
        os.unlink(w / self.path)

    def model(self, m: Model) -> bool:
        return m.t.get(self.path) in ("f", "l") and bool(m.take(self.path))


@dataclass(frozen=True)
class RemoveTree(Op):
    """``rm -r`` of a directory."""

    kind: ClassVar[str] = "rm_r"
    path: str

    def apply(self, w: Path, out: Path) -> None:
        target = w / self.path
        if target.is_symlink() or not target.is_dir():
            raise NotADirectoryError(20, "not a directory", str(target))
        shutil.rmtree(target)

    def model(self, m: Model) -> bool:
        return m.t.get(self.path) == "d" and bool(m.take(self.path))


@dataclass(frozen=True)
class Rename(Op):
    """rename(2) inside the tree: within a directory, across directories, or onto an existing entry."""

    kind: ClassVar[str] = "rename"
    src: str
    dst: str

    def apply(self, w: Path, out: Path) -> None:
        os.rename(w / self.src, w / self.dst)

    def model(self, m: Model) -> bool:
        if not m.can_land(self.src, self.dst):
            return False
        m.put(self.dst, m.take(self.src))
        return True


@dataclass(frozen=True)
class MoveOut(Op):
    """rename(2) from the tree to the unwatched sibling directory."""

    kind: ClassVar[str] = "move_out"
    src: str
    name: str

    def apply(self, w: Path, out: Path) -> None:
        target = out / self.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.rename(w / self.src, target)

    def model(self, m: Model) -> bool:
        return bool(m.take(self.src))


@dataclass(frozen=True)
class MoveIn(Op):
    """Make a file or a populated directory outside the tree, then rename(2) it in (onto ``dst``)."""

    kind: ClassVar[str] = "move_in"
    dst: str
    is_dir: bool = False

    def apply(self, w: Path, out: Path) -> None:
        staged = out / ".incoming"
        if staged.is_dir():
            shutil.rmtree(staged)
        if self.is_dir:
            (staged / "sub").mkdir(parents=True)
            (staged / "one").write_text("1")
            (staged / "sub" / "two").write_text("2")
        else:
            staged.write_text("moved in")
        os.rename(staged, w / self.dst)

    def model(self, m: Model) -> bool:
        kind = m.t.get(self.dst)
        if not _parent_ok(m.tree(), self.dst) or (
                kind is not None and ((kind == "d") != self.is_dir or (self.is_dir and m.children(self.dst)))):
            return False
        m.put(self.dst, {"": "d", "/sub": "d", "/one": "f", "/sub/two": "f"} if self.is_dir else {"": "f"})
        return True


@dataclass(frozen=True)
class Exchange(Op):
    """renameat2(a, b, RENAME_EXCHANGE). ``kind`` says whether a directory takes part (gated separately)."""

    kind: ClassVar[str] = "exchange"
    a: str
    b: str
    dirs: bool = False

    def apply(self, w: Path, out: Path) -> None:
        exchange(w / self.a, w / self.b)

    def model(self, m: Model) -> bool:
        a, b = self.a, self.b
        if a not in m.t or b not in m.t or a == b or a.startswith(b + "/") or b.startswith(a + "/"):
            return False
        sub_a, sub_b = m.take(a), m.take(b)
        m.put(b, sub_a)
        m.put(a, sub_b)
        return True

    @property
    def gate(self) -> str:
        return "exchange_dirs" if self.dirs else "exchange_files"


@dataclass(frozen=True)
class AwayAndBack(Op):
    """A top-level directory renamed away and back, a file inside it renamed after each move (#9 item 3)."""

    kind: ClassVar[str] = "away_back"
    top: str
    away: str
    file: str = ""

    def apply(self, w: Path, out: Path) -> None:
        os.rename(w / self.top, w / self.away)
        if self.file:
            os.rename(w / self.away / self.file, w / self.away / (self.file + ".r"))
        os.rename(w / self.away, w / self.top)
        if self.file:
            os.rename(w / self.top / (self.file + ".r"), w / self.top / self.file)

    def model(self, m: Model) -> bool:
        t = m.t
        if t.get(self.top) != "d" or "/" in self.top or self.away in t or "/" in self.away:
            return False
        file = f"{self.top}/{self.file}"
        return not self.file or (t.get(file) in ("f", "l") and f"{file}.r" not in t)


@dataclass(frozen=True)
class Symlink(Op):
    kind: ClassVar[str] = "symlink"
    path: str
    target: str

    def apply(self, w: Path, out: Path) -> None:
        os.symlink(self.target, w / self.path)

    def model(self, m: Model) -> bool:
        return m.add(self.path, "l")


_O_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000)
_AT_FDCWD = -100
_AT_SYMLINK_FOLLOW = 0x400
_libc = ctypes.CDLL(None, use_errno=True)
_linkat = _libc.linkat
_linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]


def link_fd(fd: int, dst: Path) -> None:
    """linkat(/proc/self/fd/N, dst, AT_SYMLINK_FOLLOW): give an O_TMPFILE file its name (os.link does not
    follow the magic link here and fails with EXDEV)."""
    if _linkat(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD, bytes(dst), _AT_SYMLINK_FOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(dst))


@dataclass(frozen=True)
class TmpFile(Op):
    """A file written unnamed (``open(dir, O_TMPFILE)``) and linked into place (QSaveFile; #9 item 7)."""

    kind: ClassVar[str] = "tmpfile"
    dir: str
    name: str

    def apply(self, w: Path, out: Path) -> None:
        fd = os.open(w / self.dir if self.dir else w, _O_TMPFILE | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"tmp")
            link_fd(fd, w / self.dir / self.name)
        finally:
            os.close(fd)

    def model(self, m: Model) -> bool:
        return m.add("/".join(x for x in (self.dir, self.name) if x), "f")


@dataclass(frozen=True)
class Pump(Op):
    """Read what is queued now, without waiting: the next operations happen after fsnorm acted on it (watched
    a new directory, scanned it), which is how a real reader interleaves with a busy writer."""

    kind: ClassVar[str] = "pump"

    def apply(self, w: Path, out: Path) -> None:  # the runner handles it
        pass

    def model(self, m: Model) -> bool:
        return True


@dataclass(frozen=True)
class Noise(Op):
    """``count`` new files outside the tree, on its filesystem (in ``out/.noise``, distinct names: the kernel
    merges none of their events). A filesystem mark reports them, so fsnorm's reads fill up with events it drops:
    a read may then deliver only the start of what the program did, the rest staying queued behind the noise
    (what another process writing on the filesystem does, but at the program's own points). Nothing for
    inode marks or inotify."""

    kind: ClassVar[str] = "noise"
    count: int

    def apply(self, w: Path, out: Path) -> None:
        where = out / ".noise"
        where.mkdir(exist_ok=True)
        first = len(os.listdir(where))
        for i in range(first, first + self.count):
            os.mknod(where / f"n{i}")

    def model(self, m: Model) -> bool:
        return True


OPS: dict[str, type[Op]] = {c.kind: c for c in (CreateFile, Write, Mkdir, MakeDeep, Remove, RemoveTree, Rename,
                                                  MoveOut, MoveIn, Exchange, AwayAndBack, Symlink, TmpFile, Pump,
                                                  Noise)}


def gate_of(op: Op) -> str:
    """The name KNOWN_BROKEN gates an operation by (its kind; exchanges: of files or of directories)."""
    return op.gate if isinstance(op, Exchange) else op.kind


#: The tree every program starts from (directories end in '/'), under ``<base>/w``.
INITIAL: tuple[str, ...] = ("d0/", "d0/f0", "d1/", "d2/", "d2/e/", "d2/e/f1", "f2")


@dataclass(frozen=True)
class Program:
    ops: tuple[Op, ...]
    initial: tuple[str, ...] = INITIAL

    def to_json(self) -> dict[str, Any]:
        return {"initial": list(self.initial), "ops": [op.to_json() for op in self.ops]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Program:
        ops = []
        for item in data["ops"]:
            args = dict(item)
            ops.append(OPS[args.pop("op")](**args))
        return cls(tuple(ops), tuple(data.get("initial", INITIAL)))

    def __str__(self) -> str:
        return "\n".join(f"  {i:2d}. {op!r}" for i, op in enumerate(self.ops))


# -----------------------------------------------------------------------------------------------------------
# Trees: relative path -> is_dir. Records carry only "directory or not", so that is the type compared.

Tree = dict[str, bool]


def walk(root: Path) -> Tree:
    """The real tree under ``root`` (symlinks are not followed: they are entries, not directories)."""
    tree: Tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            path = name if rel == "." else f"{rel}/{name}"
            tree[path] = os.path.isdir(os.path.join(dirpath, name)) and not os.path.islink(
                os.path.join(dirpath, name))
    return tree


def make_tree(w: Path, out: Path, entries: Iterable[str]) -> None:
    w.mkdir(parents=True)
    out.mkdir(parents=True)
    for entry in entries:
        if entry.endswith("/"):
            (w / entry).mkdir(parents=True, exist_ok=True)
        else:
            (w / entry).write_text(entry)


# -----------------------------------------------------------------------------------------------------------
# Running on the real kernel.


@dataclass
class Run:
    """What one run produced: the tree before, every record, the tree after, and what the kernel refused."""

    backend: str
    initial: Tree
    records: list[Rec]
    final: Tree
    skipped: list[str] = field(default_factory=list)
    ops: int = 0
    #: Kernel limits found lowered (by another process) around the run: its overflow/error records are void.
    lowered: list[str] = field(default_factory=list)


#: Kernel limits other tests on a shared machine lower for a while, and the least a small program needs.
LIMITS = {"fs/inotify/max_queued_events": 16384, "fs/inotify/max_user_watches": 8192,
          "fs/inotify/max_user_instances": 128, "fs/fanotify/max_queued_events": 16384}


def lowered_limits() -> list[str]:
    """The limits now below what a run needs (a source reads its queue size when it is created)."""
    out = []
    for name, need in LIMITS.items():
        with contextlib.suppress(OSError, ValueError):
            value = int(Path("/proc/sys", name).read_text())
            if value < need:
                out.append(f"{name.replace('/', '.')}={value}")
    return out


class EnvironmentTrouble(RuntimeError):
    """The run was spoiled by something outside the program (on a shared machine, another process lowered
    ``fs.inotify.max_user_watches`` for a while): the example is discarded, not failed."""


#: How long to wait for another process to restore a kernel limit it lowered (its test's duration).
LIMIT_PATIENCE = 60.0


def open_source(w: Path, backend: str) -> Any:
    """The live source, open. On a shared machine another process may have lowered an inotify limit for a
    while (tests of limits do): wait for it to be restored, then try again."""
    end = time.monotonic() + LIMIT_PATIENCE
    while True:
        source = make_source([w], backend=backend)  # type: ignore[arg-type]
        try:
            opened = source.open()
            break
        except WatchLimitError as exc:  # max_user_watches / max_user_instances lowered by another process
            if time.monotonic() > end:
                raise EnvironmentTrouble(str(exc)) from exc
            while lowered_limits() and time.monotonic() < end:
                time.sleep(0.2)
            time.sleep(0.2)
    if opened:
        source.close()
        text = "; ".join(f"{r.kind} {os.fsdecode(r.path)}: {r.message}" for r in opened)
        if "max_user_watches" in text:
            raise EnvironmentTrouble(text)
        raise AssertionError(f"opening the watch gave records: {text}")
    return source


def run_program(program: Program, backend: str, base: Path) -> Run:
    """Apply ``program`` under ``<base>/w`` while ``backend`` watches it; read everything; close; walk."""
    w, out = base / "w", base / "out"
    make_tree(w, out, program.initial)
    initial = walk(w)
    lowered = lowered_limits()
    source = open_source(w, backend)
    records: list[Rec] = []
    skipped: list[str] = []
    try:
        for op in program.ops:
            if isinstance(op, Pump):
                records.extend(source.read(0))
                continue
            try:
                op.apply(w, out)
            except OSError as exc:  # a shrunk program may ask for the impossible: the kernel did nothing
                skipped.append(f"{op!r}: {exc.strerror}")
        records.extend(drain(source))
    finally:
        records.extend(source.close())
    return Run(backend, initial, records, walk(w), skipped, len(program.ops), lowered + lowered_limits())


def run_command(argvs: Sequence[Sequence[str]], backend: str, w: Path, *, cwd: Path,
                env: dict[str, str] | None = None) -> Run:
    """Run real programs (one after the other, each must succeed) while ``backend`` watches ``w``, reading
    while they run (they may produce more than a kernel queue holds)."""
    initial = walk(w)
    source = open_source(w, backend)
    records: list[Rec] = []
    try:
        for argv in argvs:
            proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            while proc.poll() is None:
                records.extend(source.read(0.05))
            output = proc.communicate()[0]
            if proc.returncode != 0:
                raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {output.decode(errors='replace')}")
        records.extend(drain(source))
    finally:
        records.extend(source.close())
    return Run(backend, initial, records, walk(w), [], len(argvs))


# -----------------------------------------------------------------------------------------------------------
# Rebuilding the tree from the records.

#: Kinds that describe an entry that must exist when the record comes (not the tree's shape).
_EXISTING_KINDS = frozenset({"modify", "attrib", "close_write", "close_nowrite", "open", "access"})
#: Kinds that never appear in a quiet, small run unless something went wrong.
_FAILURE_KINDS = frozenset({"error", "unknown", "unmount"})
#: Kinds that say only that something was lost, and that the records after them make up for (module docstring).
_LOSS_KINDS = frozenset({"overflow"})
#: How many readings of ambiguous exchanges the rebuilder follows at most.
MAX_READINGS = 64


@dataclass
class Reading:
    """One interpretation of the records: the tree it builds, the records it found untrue, and the record
    indices it already accounted for (the second rename of an exchange)."""

    tree: Tree
    problems: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    skip: frozenset[int] = frozenset()

    def fork(self) -> Reading:
        return Reading(dict(self.tree), list(self.problems), list(self.choices), self.skip)


def _subtree(tree: Tree, path: str) -> list[str]:
    prefix = path + "/"
    return [p for p in tree if p == path or p.startswith(prefix)]


def _remove(tree: Tree, path: str) -> None:
    for p in _subtree(tree, path):
        del tree[p]


def _move(tree: Tree, src: str, dst: str) -> None:
    moved = {dst + p[len(src):]: tree[p] for p in _subtree(tree, src)}
    _remove(tree, src)
    _remove(tree, dst)
    tree.update(moved)


def _swap(tree: Tree, a: str, b: str) -> None:
    sub_a = {b + p[len(a):]: tree[p] for p in _subtree(tree, a)}
    sub_b = {a + p[len(b):]: tree[p] for p in _subtree(tree, b)}
    _remove(tree, a)
    _remove(tree, b)
    tree.update(sub_a)
    tree.update(sub_b)


def _parent_ok(tree: Tree, path: str) -> bool:
    head = path.rpartition("/")[0]
    return not head or tree.get(head) is True


def _kind(is_dir: bool) -> str:
    return "directory" if is_dir else "file"


class Rebuilder:
    """Applies records to readings of the tree (module docstring: why there can be more than one)."""

    def __init__(self, root: Path, initial: Tree) -> None:
        self.root = os.fsencode(root)
        self.prefix = self.root + b"/"
        self.readings = [Reading(dict(initial))]

    def rel(self, path: bytes) -> str | None:
        """The record's path relative to the root; '' for the root itself; None outside the tree."""
        if path == self.root:
            return ""
        if path.startswith(self.prefix):
            return os.fsdecode(path[len(self.prefix):])
        return None

    def feed(self, records: Sequence[Rec]) -> None:
        for i, rec in enumerate(records):
            out: list[Reading] = []
            for reading in self.readings:
                if i in reading.skip:
                    out.append(reading)
                elif rec.kind == "rename":
                    out.extend(self._rename(reading, records, i, rec))
                else:
                    self._event(reading, i, rec)
                    out.append(reading)
            self.readings = out[:MAX_READINGS]

    def _event(self, reading: Reading, i: int, rec: Rec) -> None:
        tree = reading.tree
        where = f"record {i} {_show(rec, self.root)}"
        say = reading.problems.append
        if rec.kind in _FAILURE_KINDS:
            say(f"{where}: {rec.kind} record ({rec.message or 'no message'})")
            return
        if rec.kind in _LOSS_KINDS:
            return  # the rescan's synthesized records after it are checked like any other
        if "unresolved" in rec.flags:
            say(f"{where}: unresolved (fsnorm could not name the directory)")
        path = self.rel(rec.path)
        if path is None:
            say(f"{where}: path outside the watched tree")
            return
        if rec.kind in ("delete_self", "move_self", "watch_end"):
            # The parent's delete/rename record tells the tree's story; only the root's own end matters.
            if path == "" and rec.kind in ("delete_self", "watch_end"):
                tree.clear()
            return
        if rec.kind == "create":
            if not _parent_ok(tree, path):
                say(f"{where}: created under a directory the rebuilt tree does not have")
            elif path in tree:
                say(f"{where}: created where the rebuilt tree already has an entry (no delete came)")
            tree[path] = rec.is_dir
        elif rec.kind == "delete":
            if path not in tree:
                say(f"{where}: deletes an entry the rebuilt tree does not have")
            elif tree[path] != rec.is_dir:
                say(f"{where}: deletes a {_kind(tree[path])} reported as {_kind(rec.is_dir)}")
            _remove(tree, path)
        elif rec.kind in _EXISTING_KINDS and path and path not in tree:
            say(f"{where}: {rec.kind} of an entry the rebuilt tree does not have")

    @staticmethod
    def _mirror(records: Sequence[Rec], i: int, rec: Rec) -> int | None:
        """The index of the rename right after ``records[i]`` (past records that do not change the tree's
        shape: fanotify may put a merged ``attrib``/``move_self``/``delete_self`` of a moved directory between
        the two renames of an exchange; core/shadow.py pairs them the same way) if it is its mirror."""
        for j in range(i + 1, len(records)):
            nxt = records[j]
            if nxt.kind not in ("rename", "create", "delete"):
                continue
            if nxt.kind == "rename" and nxt.path == rec.dst and nxt.dst == rec.path:
                return j
            return None
        return None

    def _rename(self, reading: Reading, records: Sequence[Rec], i: int, rec: Rec) -> list[Reading]:
        tree, say = reading.tree, reading.problems.append
        where = f"record {i} {_show(rec, self.root)}"
        src = self.rel(rec.path) if rec.path else None
        dst = self.rel(rec.dst) if rec.dst else None
        if (rec.path and src is None) or (rec.dst and dst is None) or "" in (src, dst):
            say(f"{where}: rename side outside the watched tree or of the root itself")
            return [reading]
        # "... -> X" then "X ->" may be an exchange of X with the outside: what leaves X is then what was there
        # before the arrival, of its own type; the type is checked in the plain reading only (below).
        arrival = self._arrival(records, i, rec) if src is not None and dst is None else None
        mismatch = src is not None and src in tree and tree[src] != rec.is_dir
        if src is not None:
            if src not in tree:
                say(f"{where}: its src is not in the rebuilt tree")
            elif mismatch and arrival is None:
                say(f"{where}: moves a {_kind(tree[src])} reported as {_kind(rec.is_dir)}")
        if dst is not None and not _parent_ok(tree, dst):
            say(f"{where}: its dst's directory is not in the rebuilt tree")
        out = [reading]
        if src is not None and dst is not None:
            j = self._mirror(records, i, rec) if src in tree and dst in tree else None
            certain = None if j is None else self._exchange_certain(rec, records[j])
            if j is not None and certain is not False:
                swapped = reading.fork() if certain is None else reading
                _swap(swapped.tree, src, dst)
                swapped.choices.append(f"records {i} and {j} read as one RENAME_EXCHANGE")
                swapped.skip = swapped.skip | {j}
                out = [swapped] if certain else [reading, swapped]
                if certain:
                    return out
            _move(tree, src, dst)
        elif src is not None:
            h = arrival
            certain = None if h is None else self._exchange_certain(records[h], rec)
            if h is not None and certain is not False:
                # "... -> X" then "X ->": X may still hold what arrived (an exchange with the outside).
                kept = reading.fork() if certain is None else reading
                _remove(kept.tree, src)
                kept.tree[src] = records[h].is_dir
                kept.choices.append(f"records {h} and {i} read as a RENAME_EXCHANGE with the outside")
                if certain:
                    return [kept]
                out = [reading, kept]
            if mismatch and h is not None and src is not None:  # the plain reading: a move out of what arrived
                say(f"{where}: moves a {_kind(tree[src])} reported as {_kind(rec.is_dir)}")
            _remove(tree, src)
        elif dst is not None:
            j = self._coalesced_exchange(records, i, rec, tree)
            if j is not None:  # "-> X" then "X -> Y": maybe X <-> Y whose MOVED_FROM Y the kernel coalesced
                swapped = reading.fork()
                _swap(swapped.tree, dst, self.rel(records[j].dst) or "")
                swapped.choices.append(f"records {i} and {j} read as one RENAME_EXCHANGE (MOVED_FROM coalesced)")
                swapped.skip = swapped.skip | {j}
                out = [reading, swapped]
            _remove(tree, dst)
            tree[dst] = rec.is_dir
        return out

    def _coalesced_exchange(self, records: Sequence[Rec], i: int, rec: Rec, tree: Tree) -> int | None:
        """For a dst-only ``-> X`` at ``i`` (inotify): the index of the next rename if it is ``X -> Y`` and
        the pair can be ``renameat2(X, Y, RENAME_EXCHANGE)`` whose ``MOVED_FROM Y`` the kernel coalesced
        into an identical one just before it (same wd, mask and name, cookie not compared: two exchanges of
        one name back to back; README, Limits): X and Y in the tree with the types the two records say."""
        if rec.object_id:
            return None
        x = self.rel(rec.dst)
        if not x or x not in tree:
            return None
        j = None
        for k in range(i + 1, len(records)):
            nxt = records[k]
            if nxt.kind in ("rename", "create", "delete"):
                j = k if nxt.kind == "rename" and nxt.path == rec.dst and nxt.dst else None
                break
        if j is None:
            return None
        y = self.rel(records[j].dst)
        if not y or y not in tree or tree[x] != records[j].is_dir or tree[y] != rec.is_dir:
            return None
        return j

    @staticmethod
    def _arrival(records: Sequence[Rec], i: int, rec: Rec) -> int | None:
        """For a src-only ``X ->`` at ``i``: the index of the rename just before it (past move_self records) if
        that one brought something to X. An exchange of X with an entry outside gives ``-> X`` then ``X ->``;
        and inotify coalesces identical adjacent events without comparing cookies, so a ``MOVED_TO X`` just
        after another one (``a -> X`` or ``-> X``) vanishes into it, leaving the same pair."""
        for h in range(i - 1, -1, -1):
            prev = records[h]
            if prev.kind == "move_self":
                continue
            if prev.kind == "rename" and prev.dst == rec.path:
                return h
            return None
        return None

    @staticmethod
    def _exchange_certain(rec: Rec, mirror: Rec) -> bool | None:
        """True: certainly an exchange; False: certainly a move and back (the same object moved twice);
        None: the stream cannot tell (inotify has no object ids)."""
        if rec.object_id and mirror.object_id:
            return rec.object_id != mirror.object_id
        return None


def _show(rec: Rec, root: bytes) -> str:
    def short(p: bytes) -> str:
        if not p:
            return "(unwatched)"
        return os.fsdecode(p[len(root) + 1:]) if p.startswith(root + b"/") else os.fsdecode(p) or "(root)"

    where = f"{short(rec.path)} -> {short(rec.dst)}" if rec.kind == "rename" else short(rec.path)
    extra = "".join(f" {{{f}}}" for f in rec.flags) + (" [dir]" if rec.is_dir else "")
    return f"{rec.kind} {where}{extra}"


# -----------------------------------------------------------------------------------------------------------
# The verdict.


@dataclass
class Verdict:
    run: Run
    reading: Reading
    missing: list[str]
    phantom: list[str]
    wrong_type: list[str]
    root: bytes
    readings: int = 1

    @property
    def ok(self) -> bool:
        return not (self.missing or self.phantom or self.wrong_type or self.reading.problems)

    def __str__(self) -> str:
        lines = [f"{self.run.backend}: the tree rebuilt from {len(self.run.records)} records differs from the "
                 "real tree" if not self.ok else f"{self.run.backend}: rebuilt tree equals the real tree"]
        for title, items in (("missing (real, not rebuilt)", self.missing),
                             ("phantom (rebuilt, not real)", self.phantom),
                             ("wrong type", self.wrong_type), ("untrue records", self.reading.problems)):
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  {x}" for x in items[:30])
                if len(items) > 30:
                    lines.append(f"  ... {len(items) - 30} more")
        if self.reading.choices:
            lines.append(f"reading ({self.readings} considered): " + "; ".join(self.reading.choices))
        if self.run.skipped:
            lines.append("operations the kernel refused: " + "; ".join(self.run.skipped))
        lines.append("records:")
        lines.extend(f"  {i:3d}. {_show(r, self.root)}" for i, r in enumerate(self.run.records[:200]))
        return "\n".join(lines)


def compare(tree: Tree, real: Tree) -> tuple[list[str], list[str], list[str]]:
    missing = sorted(p for p in real if p not in tree)
    phantom = sorted(p for p in tree if p not in real)
    wrong = sorted(f"{p}: rebuilt {'dir' if tree[p] else 'file'}, real {'dir' if real[p] else 'file'}"
                   for p in real if p in tree and tree[p] != real[p])
    return missing, phantom, wrong


def judge(run: Run, root: Path) -> Verdict:
    """Rebuild from ``run``'s records and compare with the real tree; the best reading if there are several."""
    rebuilder = Rebuilder(root, run.initial)
    rebuilder.feed(run.records)
    verdicts = []
    for reading in rebuilder.readings:
        missing, phantom, wrong = compare(reading.tree, run.final)
        verdicts.append(Verdict(run, reading, missing, phantom, wrong, os.fsencode(root),
                                len(rebuilder.readings)))
    return min(verdicts, key=lambda v: (not v.ok, len(v.missing) + len(v.phantom) + len(v.wrong_type)
                                        + len(v.reading.problems)))


class Model:
    """The oracle's own model of what a program does (path -> "f" file, "d" directory, "l" symlink): the
    generator draws only operations the kernel accepts from it, and :func:`model_tree` checks the harness
    (a wrong operation must not pass as a watcher's fault)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.t: dict[str, str] = {}
        for entry in entries:
            path = entry.rstrip("/")
            parts = path.split("/")
            for k in range(1, len(parts)):
                self.t["/".join(parts[:k])] = "d"
            self.t[path] = "d" if entry.endswith("/") else "f"

    def tree(self) -> Tree:
        return {p: k == "d" for p, k in self.t.items()}

    def dirs(self) -> list[str]:
        return sorted(p for p, k in self.t.items() if k == "d")

    def entries(self) -> list[str]:
        return sorted(self.t)

    def children(self, path: str) -> list[str]:
        return [p for p in self.t if p.rpartition("/")[0] == path]

    def can_land(self, src: str, dst: str) -> bool:
        """rename(src, dst) is accepted: dst's directory exists and is not inside src; a directory only
        replaces an empty directory, a non-directory only a non-directory."""
        if src not in self.t or src == dst or not _parent_ok(self.tree(), dst):
            return False
        if dst.startswith(src + "/"):
            return False
        if dst in self.t:
            if src.startswith(dst + "/"):
                return False
            if (self.t[src] == "d") != (self.t[dst] == "d"):
                return False
            if self.t[dst] == "d" and self.children(dst):
                return False
        return True

    def take(self, path: str) -> dict[str, str]:
        """Remove ``path``'s subtree; return it relative to ``path`` ('' for ``path`` itself)."""
        sub = {p: self.t.pop(p) for p in _subtree(self.tree(), path)}
        return {p[len(path):]: k for p, k in sub.items()}

    def put(self, path: str, sub: dict[str, str]) -> None:
        """Place a subtree (as :meth:`take` returns it) at ``path``, replacing what was there."""
        if path in self.t:
            self.take(path)
        for rest, k in sub.items():
            self.t[path + rest] = k

    def add(self, path: str, kind: str) -> bool:
        """A new entry (create, mkdir, symlink): refused where one exists or its directory does not."""
        if path in self.t or not _parent_ok(self.tree(), path):
            return False
        self.t[path] = kind
        return True

    def apply(self, op: Op) -> bool:
        """Apply ``op`` to the model (each operation says how: :meth:`Op.model`); False if refused."""
        return op.model(self)


def model_tree(program: Program) -> Tree | None:
    """What ``program`` leaves by the model, or None if the model rejects one of its operations (a shrunk
    program can hold operations the kernel refuses)."""
    model = Model(program.initial)
    for op in program.ops:
        if not model.apply(op):
            return None
    return model.tree()


def save(program: Program, backend: str, directory: Path, note: str) -> Path:
    """Write a failing program to the corpus (named by its content: saving it twice is one file)."""
    data = {"backend": backend, "note": note, **program.to_json()}
    text = json.dumps(data, indent=1, sort_keys=True)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{backend}-{hashlib.sha1(text.encode()).hexdigest()[:12]}.json"
    path.write_text(text + "\n")
    return path
