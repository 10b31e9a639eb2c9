#!/usr/bin/env bash
# Run the fsnorm fuzzers (atheris: capture reader, normalizer, wire protocol) side by side for SECONDS (default 300) each; print their stats.
#   bash fuzz/run.sh [SECONDS]        (make fuzz)
# Working corpora live in fuzz/work/ (not committed), seeded from tests/corpus/. A new crash stops its fuzzer
# and is saved as fuzz/work/crash-*; add it to the corpus with `python -m fuzz.save capture|stream FILE NAME`
# (wire: `cp FILE tests/corpus/wire/NAME`).
# Known bugs (fuzz/checks.py KNOWN_BUGS) are counted, not fatal, unless FSNORM_FUZZ_STRICT=1.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-300}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p fuzz/work/capture fuzz/work/stream fuzz/work/wire
cp tests/corpus/wire/* fuzz/work/wire/
# Seeds: corpus captures, fed as-is to the capture fuzzer (mode byte 0xff = raw bytes).
for f in tests/corpus/*; do
  [ -f "$f" ] || continue  # subfolders (oracle programs, wire frames) are not captures
  printf '\xff' | cat - "$f" > "fuzz/work/capture/seed-$(basename "$f")"
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
common=(-max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1)
"$PY" -m fuzz.fuzz_capture "${common[@]}" -artifact_prefix=fuzz/work/crash-capture- fuzz/work/capture \
  > fuzz/work/capture.log 2>&1 &
cap=$!
"$PY" -m fuzz.fuzz_stream "${common[@]}" -max_len=4096 -artifact_prefix=fuzz/work/crash-stream- fuzz/work/stream \
  > fuzz/work/stream.log 2>&1 &
str=$!
"$PY" -m fuzz.fuzz_wire "${common[@]}" -max_len=70000 -artifact_prefix=fuzz/work/crash-wire- fuzz/work/wire \
  > fuzz/work/wire.log 2>&1 &
wir=$!
status=0
wait "$cap" || status=1
wait "$str" || status=1
wait "$wir" || status=1
for h in capture stream wire; do
  echo "== $h: $(grep -E '^Done [0-9]+ runs' fuzz/work/$h.log || echo 'did not finish')"
  grep -E '^#[0-9]+ +DONE' "fuzz/work/$h.log" | tail -1 || true
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "fuzz/work/$h.log" || true
  echo "   corpus: $(ls fuzz/work/$h | wc -l) inputs; known bugs hit: $(ls fuzz/work/known/$h 2>/dev/null | tr '\n' ' ')"
  grep -E '^==[0-9]+== ERROR|Uncaught Python exception' -A 12 "fuzz/work/$h.log" | head -30 || true
done
exit $status
