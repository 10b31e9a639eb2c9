"""Turn a fuzzer input into a corpus file under tests/corpus/ (what tests/test_fuzz_corpus.py replays).

    python -m fuzz.save capture CRASH_FILE NAME      # the capture bytes the input built (fuzz_capture.build)
    python -m fuzz.save stream CRASH_FILE NAME       # the structured stream, written as a readable capture

Corpus files are captures: the reader and replay take them as they are, and those that read cleanly are also
fed to the normalizer directly as structured streams.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fuzz import checks

CORPUS = Path(__file__).parent.parent / "tests" / "corpus"


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("capture", "stream"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, src, name = argv
    data = Path(src).read_bytes()
    if kind == "capture":
        from fuzz.fuzz_capture import build

        out = build(data)
    else:
        out = checks.stream_to_capture(checks.decode_stream(data))
    target = CORPUS / name
    target.write_bytes(out)
    print(f"{target}: {len(out)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
