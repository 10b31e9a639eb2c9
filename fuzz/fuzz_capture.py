"""atheris harness: the capture reader (and replay) on random bytes, truncated, spliced and gzip-damaged captures.

    python -m fuzz.fuzz_capture [libFuzzer options] [corpus dirs]

The first byte picks how the rest becomes a capture (see :func:`build`); every input must end in records and/or
typed problems naming their place (fuzz/checks.py). Bugs already reported (``checks.KNOWN_BUGS``) do not stop
the run unless ``FSNORM_FUZZ_STRICT=1``; they are counted and one input per bug is kept in ``fuzz/work/known``.
"""

from __future__ import annotations

import gzip
import sys

import atheris

with atheris.instrument_imports(include=["normalizer", "fuzz"]):
    from fuzz import checks
    from fuzz.runner import guard


def _cut(data: bytes, at: bytes) -> bytes:
    """``data`` cut at a position taken from two fuzz bytes (0: not cut)."""
    pos = int.from_bytes(at[:2].ljust(2, b"\0"), "little")
    return data if pos == 0 else data[: pos % (len(data) + 1)]


def build(data: bytes) -> bytes:
    """Mode 0: the bytes as they are. 1: a valid capture of a structured stream, cut. 2: two captures spliced
    line by line. 3: a gzip capture, cut and with one byte flipped. 4: a valid capture with one line replaced by
    the fuzz bytes."""
    if not data:
        return data
    mode, rest = data[0] % 8, data[1:]
    if mode >= 5:
        return rest
    if mode == 1:
        return _cut(checks.stream_to_capture(checks.decode_stream(rest[2:])), rest[:2])
    if mode == 2:
        half = len(rest) // 2
        a = checks.stream_to_capture(checks.decode_stream(rest[:half])).splitlines(keepends=True)
        b = checks.stream_to_capture(checks.decode_stream(rest[half:])).splitlines(keepends=True)
        picks = rest[:16]
        out: list[bytes] = []
        for i in range(max(len(a), len(b))):
            src = a if (picks[i % len(picks)] if picks else 0) & (1 << (i % 8)) else b
            if i < len(src):
                out.append(src[i])
        return b"".join(out)
    if mode == 3:
        body = gzip.compress(checks.stream_to_capture(checks.decode_stream(rest[4:])), mtime=0)
        body = _cut(body, rest[:2])
        if body and len(rest) > 3 and rest[2]:
            pos = rest[3] % len(body)
            body = body[:pos] + bytes([body[pos] ^ rest[2]]) + body[pos + 1:]
        return body
    if mode == 4:
        lines = checks.stream_to_capture(checks.decode_stream(rest[:64])).splitlines(keepends=True)
        at = (rest[0] if rest else 0) % len(lines)
        lines[at] = rest[64:] + b"\n"
        return b"".join(lines)
    return rest


def one_input(data: bytes) -> None:
    guard("capture", data, lambda: checks.check_capture(build(data)))


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
