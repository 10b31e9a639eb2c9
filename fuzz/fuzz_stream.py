"""atheris harness: the sans-IO normalizer and matcher on structured random stream items.

    python -m fuzz.fuzz_stream [libFuzzer options] [corpus dirs]

The bytes are decoded by :func:`fuzz.checks.decode_stream` into options, a watch table and stream items (any
wd, mask, cookie and name; watch-table changes for wds in use; ticks; time going back), then checked by
:func:`fuzz.checks.check_stream` (well-formed records, max_pending kept, nothing left after close, capture and
replay give the same records).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["normalizer", "fuzz"]):
    from fuzz import checks
    from fuzz.runner import guard


def one_input(data: bytes) -> None:
    guard("stream", data, lambda: checks.check_stream(checks.decode_stream(data)))


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
