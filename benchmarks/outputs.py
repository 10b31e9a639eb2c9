"""Readers of what the subjects wrote (see benchmarks/subjects.py for the three formats), into the common
:class:`~benchmarks.model.Record` form and, for the raw reader, into :class:`~benchmarks.model.Read` batches."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from benchmarks.model import Read, Record
from benchmarks.subjects import RAW_HEADER
from normalizer.backends._inotify_sys import parse_events
from normalizer.core import raw

_RAW_KINDS = ((raw.IN_CREATE, "create"), (raw.IN_DELETE, "delete"), (raw.IN_MODIFY, "modify"),
              (raw.IN_CLOSE_WRITE, "close_write"), (raw.IN_ATTRIB, "attrib"), (raw.IN_DELETE_SELF, "delete_self"),
              (raw.IN_MOVE_SELF, "move_self"), (raw.IN_IGNORED, "watch_end"))


def read_raw(path: Path) -> Iterator[Read]:
    """The reads of a ``rawdump`` file, in order."""
    size = RAW_HEADER.size
    with open(path, "rb") as f:
        data = f.read()
    off = 0
    end = len(data)
    while off + size <= end:
        t, pending, n = RAW_HEADER.unpack_from(data, off)
        off += size
        yield Read(t, pending, parse_events(data[off:off + n]))
        off += n


def raw_records(path: Path) -> Iterator[Record]:
    """The raw reader's events as records: halves stay halves (``from`` / ``to``), nothing is paired."""
    wds = {int(k): v for k, v in json.loads(Path(f"{path}.wds.json").read_text()).items()}
    fsdecode = os.fsdecode
    for read in read_raw(path):
        t = read.t_ns
        for wd, mask, _cookie, name in read.events:
            if mask & raw.IN_Q_OVERFLOW:
                yield Record(t, "overflow", "")
                continue
            base = wds.get(wd, "?")
            where = f"{base}/{fsdecode(name)}" if name else base
            if mask & raw.IN_MOVED_FROM:
                yield Record(t, "from", where)
            elif mask & raw.IN_MOVED_TO:
                yield Record(t, "to", "", where)
            else:
                yield Record(t, next((k for bit, k in _RAW_KINDS if mask & bit), "other"), where)


def tsv_records(path: Path) -> Iterator[Record]:
    """``t kind src dst flags`` lines, and a sixth column where the subject knows when the watcher read the
    event (the iterator: the record's ``t_ns``)."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            t, kind, src, dst, flags, *read = line.rstrip("\n").split("\t")
            yield Record(int(t), kind, src, dst, flags, int(read[0]) if read else None)


def jsonl_records(path: Path) -> Iterator[Record]:
    """fsnorm's JSON Lines, each stamped with the time of the chunk that carried it (``#t_ns`` lines)."""
    t = 0
    loads = json.loads
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                t = int(line[1:])
                continue
            try:
                rec = loads(line)
            except ValueError:
                # Damaged line (fsnorm's stdout lost bytes: see benchmarks/README.md, "Findings"): counted by
                # the scoring as ``corrupt_lines``, never guessed at.
                yield Record(t, "corrupt", "")
                continue
            flags = ",".join(rec.get("flags") or ())
            read_ns = rec.get("t_ns")
            if rec["kind"] == "rename":
                yield Record(t, "rename", rec["src"], rec["dst"], flags, read_ns)
            else:
                yield Record(t, rec["kind"], rec.get("path", ""), "", flags, read_ns)


def records(path: Path, fmt: str) -> Iterator[Record]:
    if fmt == "tsv":
        return tsv_records(path)
    if fmt == "jsonl":
        return jsonl_records(path)
    if fmt == "rawdump":
        return raw_records(path)
    raise ValueError(f"unknown subject output format {fmt!r}")
