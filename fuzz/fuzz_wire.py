"""atheris harness: the wire protocol's frame decoder, client session and subscription-path check on any bytes.

    python -m fuzz.fuzz_wire [libFuzzer options] [corpus dirs]

See fuzz/wire_checks.py for what must hold. A crash is saved by libFuzzer; add it to the replayed corpus with
``cp CRASH tests/corpus/wire/NAME``.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["normalizer", "fuzz"]):
    from fuzz import wire_checks
    from fuzz.runner import guard


def one_input(data: bytes) -> None:
    guard("wire", data, lambda: wire_checks.check_wire(data))


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
