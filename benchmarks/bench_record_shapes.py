"""Which shape for the public ``normalizer.Record``? Construction and field-read cost of the candidates, same run.

The record is built once per record the API yields, so its construction cost bounds the iterator's speed
(#12 item 3: >= 300,000 records/s). Candidates, all 16 fields, all immutable except the reference:

* ``NamedTuple(kw)``: a ``typing.NamedTuple`` called with keywords (what a user writes);
* ``NamedTuple(new)``: the same class built with ``tuple.__new__(cls, values)`` (what the hot path can do);
* ``slots+guard``: a ``__slots__`` class whose ``__setattr__`` raises; ``__init__`` sets through
  ``object.__setattr__``;
* ``dataclass(frozen, slots)``: ``@dataclass(frozen=True, slots=True)``;
* ``slots (mutable)``: a plain ``__slots__`` class, no guard: the reference, not a candidate.

    python -m benchmarks.bench_record_shapes [--n N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

_FIELDS = ("kind", "path", "src", "dst", "is_dir", "reason", "flags", "cookie", "t_ns", "mask", "source", "pid",
           "object_id", "message", "seq", "epoch")
_EMPTY: frozenset[str] = frozenset()


class NT(NamedTuple):
    kind: str
    path: bytes
    src: bytes | None = None
    dst: bytes | None = None
    is_dir: bool = False
    reason: str | None = None
    flags: frozenset[str] = _EMPTY
    cookie: int | None = None
    t_ns: int = 0
    mask: int = 0
    source: str = "inotify"
    pid: int | None = None
    object_id: str | None = None
    message: str | None = None
    seq: int | None = None
    epoch: int | None = None


class Guarded:
    __slots__ = _FIELDS

    def __init__(self, kind: str, path: bytes, src: bytes | None, dst: bytes | None, is_dir: bool,
                 reason: str | None, flags: frozenset[str], cookie: int | None, t_ns: int, mask: int,
                 source: str, pid: int | None, object_id: str | None, message: str | None, seq: int | None,
                 epoch: int | None) -> None:
        s = object.__setattr__
        s(self, "kind", kind)
        s(self, "path", path)
        s(self, "src", src)
        s(self, "dst", dst)
        s(self, "is_dir", is_dir)
        s(self, "reason", reason)
        s(self, "flags", flags)
        s(self, "cookie", cookie)
        s(self, "t_ns", t_ns)
        s(self, "mask", mask)
        s(self, "source", source)
        s(self, "pid", pid)
        s(self, "object_id", object_id)
        s(self, "message", message)
        s(self, "seq", seq)
        s(self, "epoch", epoch)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Record is immutable: cannot set {name!r}")


@dataclass(frozen=True, slots=True)
class DC:
    kind: str
    path: bytes
    src: bytes | None
    dst: bytes | None
    is_dir: bool
    reason: str | None
    flags: frozenset[str]
    cookie: int | None
    t_ns: int
    mask: int
    source: str
    pid: int | None
    object_id: str | None
    message: str | None
    seq: int | None
    epoch: int | None


class Mutable:
    __slots__ = _FIELDS

    def __init__(self, kind: str, path: bytes, src: bytes | None, dst: bytes | None, is_dir: bool,
                 reason: str | None, flags: frozenset[str], cookie: int | None, t_ns: int, mask: int,
                 source: str, pid: int | None, object_id: str | None, message: str | None, seq: int | None,
                 epoch: int | None) -> None:
        self.kind = kind
        self.path = path
        self.src = src
        self.dst = dst
        self.is_dir = is_dir
        self.reason = reason
        self.flags = flags
        self.cookie = cookie
        self.t_ns = t_ns
        self.mask = mask
        self.source = source
        self.pid = pid
        self.object_id = object_id
        self.message = message
        self.seq = seq
        self.epoch = epoch


_VALUES = ("create", b"/w/a/file.txt", None, None, False, None, _EMPTY, None, 123456789, 0x100, "inotify", None,
           None, None, None, None)


def _time(fn: Callable[[int], object], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n


def _build_nt_kw(n: int) -> None:
    v = _VALUES
    for _ in range(n):
        NT(kind=v[0], path=v[1], src=v[2], dst=v[3], is_dir=v[4], reason=v[5], flags=v[6], cookie=v[7],
           t_ns=v[8], mask=v[9], source=v[10], pid=v[11], object_id=v[12], message=v[13], seq=v[14],
           epoch=v[15])


def _build_nt_new(n: int) -> None:
    v = _VALUES
    new = tuple.__new__
    for _ in range(n):
        new(NT, (v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14],
                 v[15]))


def _builder(cls: Callable[..., object]) -> Callable[[int], None]:
    def build(n: int) -> None:
        v = _VALUES
        for _ in range(n):
            cls(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14],
                v[15])
    return build


def _reader(obj: object) -> Callable[[int], None]:
    def read(n: int) -> None:
        r = obj
        for _ in range(n):
            r.kind, r.path, r.is_dir, r.flags, r.t_ns  # type: ignore[attr-defined]  # noqa: B018
    return read


def _immutable(obj: object) -> bool:
    try:
        obj.kind = "x"  # type: ignore[attr-defined]
    except AttributeError:
        return not hasattr(obj, "__dict__")
    return False


def main(n: int = 300_000, repeat: int = 5) -> dict[str, dict[str, float]]:
    shapes: list[tuple[str, Callable[[int], None], object]] = [
        ("NamedTuple(kw)", _build_nt_kw, NT(*_VALUES)),
        ("NamedTuple(new)", _build_nt_new, NT(*_VALUES)),
        ("slots+guard", _builder(Guarded), Guarded(*_VALUES)),
        ("dataclass(frozen, slots)", _builder(DC), DC(*_VALUES)),
        ("slots (mutable)", _builder(Mutable), Mutable(*_VALUES)),
    ]
    out: dict[str, dict[str, float]] = {}
    for name, build, sample in shapes:
        out[name] = {"build_ns": _time(build, n, repeat) * 1e9, "read5_ns": _time(_reader(sample), n, repeat) * 1e9,
                     "immutable": float(_immutable(sample))}
    base = out["NamedTuple(new)"]["build_ns"]
    print(f"\nRecord shapes: 16 fields, best of {repeat} x {n:,}")
    print(f"{'shape':<26} {'build ns':>9} {'vs NamedTuple(new)':>19} {'5 reads ns':>11} {'immutable':>10}")
    for name, r in out.items():
        print(f"{name:<26} {r['build_ns']:>9.0f} {r['build_ns'] / base:>18.2f}x {r['read5_ns']:>11.0f} "
              f"{'yes' if r['immutable'] else 'no':>10}")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=300_000)
    main(p.parse_args().n)
