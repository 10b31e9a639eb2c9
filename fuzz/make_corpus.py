"""Write the hand-made seed inputs of tests/corpus/ (the fuzzers' findings are added with fuzz/save.py).

    python -m fuzz.make_corpus

Each file is a capture (bytes as the reader sees them). Files named ``bug-*`` reproduce a reported bug; the
corpus test marks them ``xfail(strict=True)`` until it is fixed.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from normalizer.core import raw

CORPUS = Path(__file__).parent.parent / "tests" / "corpus"
OPTS = {"window_ns": 20_000_000, "max_wait_ns": 1_000_000_000, "max_pending": 65_536, "strict_order": True}
FROM, TO, DIR = raw.IN_MOVED_FROM, raw.IN_MOVED_TO, raw.IN_ISDIR


def header(watches: list[list[Any]] | None = None, source: str = "inotify", **options: Any) -> bytes:
    obj = {"format": "fsnorm-capture", "version": 1, "source": source, "kernel": "corpus", "host": "corpus",
           "created": "corpus", "clock": "CLOCK_MONOTONIC", "options": {**OPTS, **options},
           "watches": [[1, "/w"], [2, "/w/a"], [3, "/w/b"]] if watches is None else watches}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def line(*item: Any) -> bytes:
    return json.dumps(list(item), separators=(",", ":")).encode() + b"\n"  # ASCII: lone surrogates escaped


END = line("E", 10**12, "closed")


def cap(*lines: bytes, end: bool = True, **options: Any) -> bytes:
    return header(**options) + b"".join(lines) + (END if end else b"")


SEEDS: dict[str, bytes] = {
    "empty.fsncap": b"",
    "not-a-capture.fsncap": b"hello world\n",
    "header-only-no-end.fsncap": header(),
    "unknown-version.fsncap": header().replace(b'"version":1', b'"version":2') + END,
    "version-string.fsncap": header().replace(b'"version":1', b'"version":"1"') + END,
    "bom-header.fsncap": b"\xef\xbb\xbf" + header() + END,
    "utf16-header.fsncap": header().decode().encode("utf-16") + END,
    "lines-of-wrong-type.fsncap": cap(
        b"{}\n", b"null\n", b"[]\n", b"[1,2]\n", line("Q", 1), line("B"), line("B", "1", 1, []), line("B", 1, 2, []),
        line("B", 1, 1, {}), line("W", 1, "x", "/w/c"), line("R", 1, None), line("T", -1), line("T", 1.5),
        line("N", 1, "rename", "/w/x", 0, [], None), line("N", 1, "create", "/w/x", 0, [1], None),
        b"{not json\n", b"\x00\x01\x02\n", b"\n", line("B", 5, 1, [[1, 256, 0, "ok"]]), line("E")),
    "huge-values.fsncap": cap(
        line("B", 10**30, 0, [[2**31, 256, 0, "a"], [1, 2**32, 0, "b"], [1, 256, 2**32, "c"], [1, 256, -1, "d"],
                              [-2**31 - 1, 256, 0, "e"], [1, 256, 0, 10**300], [1, 256, 0, "x" * 100_000],
                              [1, 256, 0, "ok"]]),
        line("T", 10**30 + 1), line("W", 10**30 + 2, 2**31 - 1, "/w/big")),
    "cookies-wrap-zero-repeat.fsncap": cap(
        line("B", 1000, 0, [[1, FROM, 2**32 - 1, "a"], [1, TO, 2**32 - 1, "b"], [1, FROM, 0, "c"], [1, TO, 0, "d"],
                            [2, FROM, 7, "e"], [2, FROM, 7, "f"], [3, TO, 7, "g"], [3, TO, 7, "h"]]),
        line("B", 2000, 1, [[1, FROM, 0, "i"]]), line("T", 10**9)),
    "to-before-from.fsncap": cap(line("B", 1000, 1, [[2, TO, 5, "y"], [1, FROM, 5, "x"]]), line("T", 10**9)),
    "unknown-wd.fsncap": cap(line("B", 1000, 1, [[9, 256, 0, "f"], [9, FROM, 5, "x"], [1, TO, 5, "y"],
                                                 [9, raw.IN_IGNORED, 0, ""], [-1, 256, 0, "z"]])),
    "watch-change-in-use.fsncap": cap(
        line("B", 1000, 0, [[2, FROM, 3, "x"]]), line("W", 1001, 2, "/w/z"), line("B", 1002, 0, [[2, TO, 3, "y"]]),
        line("R", 1003, 3), line("B", 1004, 0, [[1, FROM, 4, "m"], [3, TO, 4, "n"], [3, raw.IN_IGNORED, 0, ""],
                                                [3, 256, 0, "late"]]),
        line("W", 1005, 3, "/w/a"), line("B", 1006, 1, [[3, 256, 0, "p"], [2, 256, 0, "q"]])),
    "dir-moves.fsncap": cap(
        line("B", 1000, 0, [[1, FROM | DIR, 3, "a"], [1, TO | DIR, 3, "a2"], [2, raw.IN_MOVE_SELF, 0, ""],
                            [2, 256, 0, "f"], [1, FROM | DIR, 4, "b"], [3, raw.IN_MOVE_SELF, 0, ""],
                            [3, 256, 0, "gone"], [3, raw.IN_IGNORED, 0, ""], [1, raw.IN_MOVE_SELF, 0, ""]])),
    "overflow-between-halves.fsncap": cap(line("B", 1000, 0, [[1, FROM, 3, "a"], [-1, raw.IN_Q_OVERFLOW, 0, ""],
                                                              [1, TO, 3, "b"], [1, TO, 9, "c"]])),
    "unknown-mask-bits.fsncap": cap(line("B", 1000, 1, [[1, 256 | 0x100000, 0, "f"], [1, 0, 0, "g"],
                                                        [1, 0xFFFFFFFF, 5, "h"], [1, DIR, 0, ""]])),
    "time-goes-back.fsncap": cap(line("B", 5000, 0, [[1, FROM, 3, "a"]]), line("T", 10),
                                 line("B", 20, 1, [[1, TO, 3, "b"]]), line("T", 10**9)),
    "truncated-mid-line.fsncap": cap(line("B", 1000, 1, [[1, 256, 0, "a"]]), end=False)
    + line("B", 1001, 1, [[1, 256, 0, "b"]])[:-9],
    "data-after-end.fsncap": cap(line("T", 5)) + line("T", 6) + header(),
    "two-headers-spliced.fsncap": cap(line("B", 1, 0, [[1, FROM, 3, "a"]]), end=False) + cap(
        line("B", 2, 1, [[1, TO, 3, "b"]])),
    "odd-names.fsncap": cap(line("W", 1, 4, {"b64": "L3cv/w=="}), line("B", 2, 1, [
        [4, 256, 0, {"b64": "AQIDBAUGBwgJCgsMDQ4P"}], [4, 256, 0, "\udcff\udc80"], [4, 256, 0, "new\nline"],
        [4, 256, 0, {"b64": "!!"}], [4, 256, 0, {"b64": "QQ==", "x": 1}], [4, 256, 0, "\ud800"]])),
    "fanotify-source.fsncap": header(source="fanotify") + line("F", 1, 1, [[1, 2, []], "x", [1]]) + END,
    # Known bugs (see tests/test_fuzz_corpus.py KNOWN).
    "bug-json-recursion-item.fsncap": cap(b"[" * 5000 + b"\n", line("T", 5)),
    "bug-json-recursion-header.fsncap": b"[" * 5000 + b"\n",
    "bug-header-options-window.fsncap": cap(window_ns="abc"),
    "bug-header-options-max-pending.fsncap": cap(max_pending=0),
    "bug-header-options-include.fsncap": cap(include=5),
    "bug-tree-trailing-slash.fsncap": header(watches=[[1, "/w/"]]) + line(
        "B", 1, 1, [[1, FROM | DIR, 2, ""], [1, raw.IN_MOVE_SELF, 0, ""]]) + END,
    "bug-max-pending.fsncap": cap(line("B", 1, 0, [[1, FROM, c, f"f{c}"] for c in range(10)]), max_pending=2),
    "bug-capture-names.fsncap": cap(line("B", 5, 1, [[1, 256, 0, "../../etc/passwd"], [1, 256, 0, "a\u0000b"]])),
}


def _gzip_seeds() -> dict[str, bytes]:
    good = cap(*[line("B", 1000 + i, 1, [[1, 256, 0, f"f{i}"], [1, FROM, i, "x"], [2, TO, i, "y"]])
                 for i in range(20)])
    gz = gzip.compress(good, mtime=0)
    corrupt = bytearray(gz)
    corrupt[12] ^= 0xFF
    return {
        "gzip-truncated.fsncap.gz": gz[: len(gz) * 2 // 3],
        "gzip-no-trailer.fsncap.gz": gz[:-8],
        "gzip-trailing-garbage.fsncap.gz": gz + b"garbage",
        "gzip-two-members.fsncap.gz": gz + gz,
        "bug-zlib-error.fsncap.gz": bytes(corrupt),
    }


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, data in {**SEEDS, **_gzip_seeds()}.items():
        (CORPUS / name).write_bytes(data)
    print(f"{len(SEEDS) + len(_gzip_seeds())} seeds in {CORPUS}")


if __name__ == "__main__":
    main()
