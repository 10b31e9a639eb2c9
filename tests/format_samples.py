"""Known records for the output-format tests: every kind, one-sided renames, overflow, directories, fanotify
fields and names that are not UTF-8. Also a hypothesis strategy for arbitrary records."""

from __future__ import annotations

from hypothesis import strategies as st

from normalizer.core.fanotify import FanRec
from normalizer.records import Rec

BAD = b"caf\xe9-\xff.txt"  # Latin-1 bytes: not valid UTF-8
T = 5_000_123_456_789  # a CLOCK_MONOTONIC ns value
OFFSET = 1_796_000_000_000_000_000 - 4_000_000_000_000  # wall = T + OFFSET, late 2026


def samples() -> dict[str, Rec]:
    return {
        "create": Rec("create", b"/srv/w/a/new.txt", False, T, 0x100),
        "create_dir": Rec("create", b"/srv/w/a/sub", True, T, 0x40000100),
        "synthesized_create": Rec("create", b"/srv/w/b/pkg/README", False, T, 0x100, flags=("synthesized",)),
        "delete": Rec("delete", b"/srv/w/a/old.txt", False, T, 0x200),
        "delete_dir": Rec("delete", b"/srv/w/a/sub", True, T, 0x40000200),
        "modify": Rec("modify", b"/srv/w/a/x", False, T, 0x2),
        "attrib": Rec("attrib", b"/srv/w/a/x", False, T, 0x4),
        "close_write": Rec("close_write", b"/srv/w/a/x", False, T, 0x8),
        "close_nowrite": Rec("close_nowrite", b"/srv/w/a/x", False, T, 0x10),
        "open": Rec("open", b"/srv/w/a/x", False, T, 0x20),
        "access": Rec("access", b"/srv/w/a/x", False, T, 0x1),
        "delete_self": Rec("delete_self", b"/srv/w/a/sub", True, T, 0x400),
        "move_self": Rec("move_self", b"/srv/w/a/sub", True, T, 0x800),
        "unmount": Rec("unmount", b"/srv/w/mnt", True, T, 0x2000),
        "rename": Rec("rename", b"/srv/w/a/x", False, T, 0xC0, cookie=4242, dst=b"/srv/w/b/y"),
        "rename_dir": Rec("rename", b"/srv/w/a/album", True, T, 0x400000C0, cookie=77, dst=b"/srv/w/a/album-2026"),
        "rename_out": Rec("rename", b"/srv/w/a/x", False, T, 0x40, cookie=5, flags=("timeout",)),
        "rename_in": Rec("rename", b"", False, T, 0x80, cookie=6, dst=b"/srv/w/a/in.txt", flags=("unwatched",)),
        "rename_out_dir": Rec("rename", b"/srv/w/a/d", True, T, 0x40000040, cookie=7, flags=("unwatched",)),
        "rename_bad_names": Rec("rename", b"/srv/w/" + BAD, False, T, 0xC0, cookie=8, dst=b"/srv/w/\xff/" + BAD),
        "create_bad_name": Rec("create", b"/srv/w/" + BAD, False, T, 0x100),
        "overflow": Rec("overflow", b"", False, T, 0x4000),
        "after_overflow": Rec("rename", b"", False, T, 0x80, cookie=9, dst=b"/srv/w/z", flags=("after_overflow",)),
        "watch_end": Rec.note("watch_end", b"/srv/w/a/sub", True, T, 0x8000, message="watch ended (IN_IGNORED)"),
        "error": Rec.note("error", b"/srv/w/locked", True, T, 0, message="cannot watch: permission denied"),
        "unknown": Rec.note("unknown", b"/srv/w/a/q", False, T, 0x1000000, message="unknown mask bits",
                            flags=("unknown_mask",)),
        "fanotify_rename": FanRec("rename", b"/srv/w/a/x", False, T, 0x10000000, b"/srv/w/b/y", (), 4321,
                                  "0a0b0c"),
        "fanotify_create_merged": FanRec("create", b"/srv/w/a/n", False, T, 0x100, b"", ("merged",), 99, "ff"),
        "fanotify_pid0": FanRec("modify", b"/srv/w/a/n", False, T, 0x2, b"", (), 0, None),
    }


_KINDS = ["create", "delete", "modify", "attrib", "close_write", "close_nowrite", "open", "access", "delete_self",
          "move_self", "unmount", "overflow", "watch_end", "error", "unknown"]
_name = st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b)
_path = st.lists(_name, min_size=1, max_size=4).map(lambda parts: b"/" + b"/".join(parts))
_flags = st.lists(st.sampled_from(["unwatched", "timeout", "overflow", "synthesized", "merged"]), max_size=2,
                  unique=True).map(tuple)


@st.composite
def records(draw: st.DrawFn) -> Rec:
    """Any record the normalizers can produce, with arbitrary name bytes."""
    t = draw(st.integers(min_value=0, max_value=10**15))
    mask = draw(st.integers(min_value=0, max_value=2**32 - 1))
    is_dir = draw(st.booleans())
    flags = draw(_flags)
    if draw(st.booleans()):
        src, dst = draw(st.sampled_from(["both", "from", "to"])), b""
        a, b = draw(_path), draw(_path)
        src_path, dst = (a, b) if src == "both" else (a, b"") if src == "from" else (b"", b)
        rec = Rec("rename", src_path, is_dir, t, mask, cookie=draw(st.integers(0, 2**32 - 1)), dst=dst,
                  flags=flags)
    else:
        kind = draw(st.sampled_from(_KINDS))
        path = b"" if kind == "overflow" else draw(_path)
        message = draw(st.one_of(st.none(), st.text(max_size=20))) if kind in ("error", "watch_end") else None
        rec = Rec.note(kind, path, is_dir, t, mask, flags=flags, message=message)
    if draw(st.booleans()):
        rec.source = "fanotify"
        rec.pid = draw(st.integers(min_value=0, max_value=2**22))
        rec.object_id = draw(st.one_of(st.none(), st.binary(min_size=1, max_size=8).map(bytes.hex)))
    return rec
