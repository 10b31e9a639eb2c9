"""Write the wire fuzzer's seed corpus to tests/corpus/wire/: the spec's test vectors as one stream, each vector,
and hostile shapes (huge length, truncation, garbage, unknown frames, names with '/' ...).

    python -m fuzz.make_wire_corpus
"""

from __future__ import annotations

import re
from pathlib import Path

from normalizer.net import wire

ROOT = Path(__file__).parent.parent
OUT = ROOT / "tests" / "corpus" / "wire"


def vectors() -> dict[str, bytes]:
    text = (ROOT / "docs" / "wire-protocol.md").read_text().split("## Test vectors", 1)[1]
    out = {}
    for section in text.split("\n### `")[1:]:
        name = section.split("`", 1)[0]
        hexa = re.search(r"```hex\n(.*?)```", section, re.S)
        assert hexa is not None
        out[name] = bytes.fromhex(hexa.group(1).replace("\n", ""))
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    vec = vectors()
    seeds: dict[str, bytes] = {f"vector-{k}": b"\x00" + v for k, v in vec.items()}
    stream = b"".join(vec.values())
    seeds["all-vectors-bytewise"] = b"\x00" + stream
    seeds["all-vectors-chunked"] = b"\x05" + stream
    seeds["huge-length"] = b"\x00" + wire.HEADER.pack(0xFFFFFFFF, wire.T_RECORD, 0) + b"x" * 64
    seeds["max-length-truncated"] = b"\x01" + wire.HEADER.pack(wire.MAX_BODY, wire.T_RECORD, 0) + b"\0" * 100
    seeds["http-request"] = b"\x02GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    rec = vec["record-rename"]
    seeds["record-cut-in-body"] = b"\x00" + wire.HEADER.pack(40, wire.T_RECORD, 0) + rec[8:48]
    seeds["name-with-slash"] = b"\x00" + rec.replace(b"\x05a.txt", b"\x05a/txt")
    seeds["subscribe-dotdot"] = b"\x00" + vec["hello"] + wire.encode(wire.Subscribe(b"data/../../etc"))
    seeds["subscribe-absolute"] = b"\x00" + wire.encode(wire.Subscribe(b"/etc/passwd"))
    seeds["welcome-then-record-no-subscribed"] = b"\x00" + vec["welcome"] + rec
    seeds["error-first"] = b"\x00" + vec["error"]
    for name, data in seeds.items():
        (OUT / name).write_bytes(data)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
