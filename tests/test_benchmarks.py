"""The benchmark code: scoring is exact on known records, the readers read what the subjects write, the ground
truth round-trips, and the whole benchmark (tiny configuration) plus the notebook run. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.model import Read, Record, Truth, TruthMarker, TruthRename
from benchmarks.outputs import read_raw, records
from benchmarks.scoring import cdf_ms, percentile, race_stats, rename_units, score, summarize_ns
from benchmarks.subjects import RAW_HEADER
from benchmarks.workloads import dirs, expected_renames, load_truth, run, scenarios
from normalizer.backends._inotify_sys import pack_events
from normalizer.core import raw

REPO = Path(__file__).resolve().parent.parent
MS = 1_000_000


def test_percentile_is_nearest_rank() -> None:
    vals = [10, 20, 30, 40]
    assert [percentile(vals, q) for q in (0, 25, 50, 51, 99, 100)] == [10, 10, 20, 30, 40, 40]
    assert summarize_ns([3 * MS, 1 * MS, 2 * MS]) == {"n": 3, "p50_ms": 2.0, "p99_ms": 3.0, "max_ms": 3.0}
    assert summarize_ns([]) == {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    assert cdf_ms([1 * MS, 2 * MS], points=3) == [1.0, 1.0, 2.0]


def _known_session() -> tuple[Truth, list[Record]]:
    t = 1_000 * MS
    renames = [
        TruthRename("w", "/r/a", "/r/b", t),            # joined 1 ms later
        TruthRename("w", "/r/c", "/r/d", t),            # two bare halves: split
        TruthRename("w", "/r/e", "/r/f", t),            # joined with the wrong destination: wrong
        TruthRename("w", "/r/g", "/r/h", t),            # nothing: missed
        TruthRename("w", "/r/l", "/r/m", t),            # pyinotify style: FROM half, then joined: joined + stray
        TruthRename("w", "/r/n", "/r/o", t),            # delete + create: split
        TruthRename("out", "/r/i", "", t),              # one-sided rename record, 20 ms: one-sided
        TruthRename("out", "/r/k", "", t),              # bare FROM half, 3 ms: one-sided
        TruthRename("in", "", "/r/j", t),               # reported as a create: split
        TruthRename("in", "", "/r/p", t),               # nothing: missed
    ]
    markers = [TruthMarker("w", "/r/m1", t), TruthMarker("w", "/r/m2", t), TruthMarker("out", "/r/m3", t)]
    recs = [
        Record(t + 1 * MS, "rename", "/r/a", "/r/b"),
        Record(t + 2 * MS, "from", "/r/c"),
        Record(t + 2 * MS, "to", "", "/r/d"),
        Record(t + 2 * MS, "rename", "/r/e", "/r/zz"),
        Record(t + 2 * MS, "from", "/r/l"),
        Record(t + 4 * MS, "rename", "/r/l", "/r/m"),
        Record(t + 4 * MS, "delete", "/r/n"),
        Record(t + 4 * MS, "create", "/r/o"),
        Record(t + 5 * MS, "create", "/r/m1"),
        Record(t + 20 * MS, "rename", "/r/i", "", "timeout"),
        Record(t + 3 * MS, "from", "/r/k"),
        Record(t + 21 * MS, "create", "/r/m3"),
        Record(t + 30 * MS, "overflow", ""),
        Record(t + 31 * MS, "create", "/r/j"),
        Record(t + 32 * MS, "rename", "/r/a", "/r/b"),   # the same rename reported twice
        Record(t + 33 * MS, "rename", "/r/x", "/r/y"),   # unrelated paths (e.g. watchdog's sub-moves): ignored
    ]
    return Truth(renames, markers), recs


def test_score_counts_every_category_exactly() -> None:
    truth, recs = _known_session()
    result = score(truth, recs)
    w, out, inn = (result["workloads"][k] for k in ("w", "out", "in"))
    counts = ("issued", "expected_both", "expected_one_sided", "joined", "one_sided", "split", "wrong", "missed",
              "stray_halves", "markers", "markers_seen")
    assert {k: w[k] for k in counts} == {"issued": 6, "expected_both": 6, "expected_one_sided": 0, "joined": 2,
                                        "one_sided": 0, "split": 2, "wrong": 1, "missed": 1, "stray_halves": 1,
                                        "markers": 2, "markers_seen": 1}
    assert {k: out[k] for k in counts} == {"issued": 2, "expected_both": 0, "expected_one_sided": 2, "joined": 0,
                                          "one_sided": 2, "split": 0, "wrong": 0, "missed": 0, "stray_halves": 0,
                                          "markers": 1, "markers_seen": 1}
    assert {k: inn[k] for k in counts} == {"issued": 2, "expected_both": 0, "expected_one_sided": 2, "joined": 0,
                                          "one_sided": 0, "split": 1, "wrong": 0, "missed": 1, "stray_halves": 0,
                                          "markers": 0, "markers_seen": 0}
    for row in (w, out, inn):
        assert sum(row[c] for c in ("joined", "one_sided", "split", "wrong", "missed")) == row["issued"]
    assert w["lat_joined"] == {"n": 2, "p50_ms": 1.0, "p99_ms": 4.0, "max_ms": 4.0}
    assert out["lat_one_sided"] == {"n": 2, "p50_ms": 3.0, "p99_ms": 20.0, "max_ms": 20.0}
    # the two split renames, to their later half: c -> d (2 ms), n -> o as delete + create (4 ms)
    assert w["lat_split"] == {"n": 2, "p50_ms": 2.0, "p99_ms": 4.0, "max_ms": 4.0}
    assert out["lat_split"]["n"] == 0 and inn["lat_split"]["n"] == 0  # one-sided renames have no second half
    assert w["stall_ms"] == 5.0 and out["stall_ms"] == 21.0 and inn["stall_ms"] is None
    assert result["session"] == result["session"] | {
        "records": 16, "overflow_records": 1, "records_after_overflow": 3, "wrong_join_records": 1,
        "duplicate_records": 1, "corrupt_lines": 0}
    assert result["session"]["lat_joined"] == {"n": 2, "p50_ms": 1.0, "p99_ms": 4.0, "max_ms": 4.0}
    assert result["session"]["lat_markers"]["max_ms"] == 21.0
    assert w["lat_joined_read"]["n"] == 0  # nothing in these records says when the watcher read


def test_the_joined_latency_splits_at_the_watchers_own_read_where_its_json_says_when(tmp_path: Path) -> None:
    """fsnorm's JSON Lines carry the read time (``t_ns``) under the harness's stamp (``#t``): the storm table's
    "of which read" column is rename -> that read, in the rename's own order."""
    t = 1_000_000_000
    truth = Truth([TruthRename("w", "/r/a", "/r/b", t), TruthRename("w", "/r/a", "/r/b", t + 10 * MS),
                   TruthRename("w", "/r/c", "/r/d", t)], [])
    out = tmp_path / "subject.out"
    lines = [f"#{t + 30 * MS}",
             json.dumps({"kind": "rename", "src": "/r/a", "dst": "/r/b", "t_ns": t + 2 * MS}),
             json.dumps({"kind": "rename", "src": "/r/c", "dst": "/r/d", "t_ns": t + 3 * MS}),
             f"#{t + 40 * MS}",
             json.dumps({"kind": "rename", "src": "/r/a", "dst": "/r/b", "t_ns": t + 16 * MS})]
    out.write_text("\n".join(lines) + "\n")
    w = score(truth, records(out, "jsonl"))["workloads"]["w"]
    assert w["joined"] == 3
    assert sorted_lat(w["lat_joined"]) == (3, 30.0)  # delivered 30, 30 and 30 ms after each rename
    assert sorted_lat(w["lat_joined_read"]) == (3, 6.0)  # read 2, 3 and 6 ms after


def test_the_iterators_tsv_carries_the_read_time_in_a_sixth_column(tmp_path: Path) -> None:
    t = 1_000_000_000
    out = tmp_path / "subject.out"
    out.write_text(f"{t + 9 * MS}\trename\t/r/a\t/r/b\t\t{t + 4 * MS}\n{t + 9 * MS}\tcreate\t/r/c\t\t\n")
    got = list(records(out, "tsv"))
    assert [(r.kind, r.read_ns) for r in got] == [("rename", t + 4 * MS), ("create", None)]
    w = score(Truth([TruthRename("w", "/r/a", "/r/b", t)], []), got)["workloads"]["w"]
    assert sorted_lat(w["lat_joined"]) == (1, 9.0) and sorted_lat(w["lat_joined_read"]) == (1, 4.0)


def sorted_lat(summary: dict[str, float | int | None]) -> tuple[object, object]:
    return summary["n"], summary["max_ms"]


def test_rename_units() -> None:
    recs = [Record(1, "rename", "/a", "/b"), Record(2, "rename", "/a", ""), Record(3, "from", "/c"),
            Record(4, "to", "", "/d"), Record(5, "overflow", ""), Record(6, "create", "/e")]
    assert rename_units(recs) == {"records": 6, "joined": 1, "halves": 3, "overflows": 1, "merged": 0}


def _frm(c: int, name: bytes = b"f") -> raw.InotifyEvent:
    return (1, raw.IN_MOVED_FROM, c, name)


def _to(c: int, name: bytes = b"g") -> raw.InotifyEvent:
    return (2, raw.IN_MOVED_TO, c, name)


OVERFLOW: raw.InotifyEvent = (-1, raw.IN_Q_OVERFLOW, 0, b"")


def test_race_stats_exact() -> None:
    us = 1_000
    reads = [
        Read(1_000 * us, 0, [_frm(1), (1, raw.IN_MODIFY, 0, b"x"), _to(1), _frm(2)]),  # 1 between; 2 split
        Read(1_500 * us, 4096, [_to(2), _frm(3)]),  # 2: gap 500 us, the queue was drained after its FROM's read
        Read(1_600 * us, 0, [_to(3), _frm(4), OVERFLOW]),  # 3: gap 100 us, not drained; 4 orphaned by overflow
        Read(1_700 * us, 0, [_to(5), _frm(6), _frm(7), _to(7)]),  # 5 orphan TO after overflow; 6 never completed
    ]
    s = race_stats(reads)
    assert (s["events"], s["reads"], s["pairs"]) == (13, 4, 4)
    assert (s["between"], s["between_max"], s["between_hist"]) == (1, 1, {"1": 1})
    assert s["between_kinds"] == {"modify": 1}
    assert (s["split"], s["split_drained"]) == (2, 1)
    assert s["gap_us"] == {"p50": 100.0, "p90": 500.0, "p99": 500.0, "max": 500.0}
    assert s["gap_drained_us"]["max"] == 500.0 and s["gap_drained_samples_us"] == [500.0]
    assert s["lost_at_window_ms"] == {"0": 1, "0.1": 1, "1": 0, "5": 0, "20": 0}
    assert s["overflows"] == 1
    assert (s["orphan_from"], s["orphan_from_near_overflow"]) == (2, 1)
    assert (s["orphan_to"], s["orphan_to_near_overflow"]) == (1, 1)


def test_readers_read_what_subjects_write(tmp_path: Path) -> None:
    tsv = tmp_path / "a.tsv"
    tsv.write_text("5\trename\t/r/a\t/r/b\t\n6\tcreate\t/r/c\t\tdir\n")
    assert list(records(tsv, "tsv")) == [Record(5, "rename", "/r/a", "/r/b", ""),
                                         Record(6, "create", "/r/c", "", "dir")]
    jl = tmp_path / "a.jsonl"
    jl.write_text('#7\n{"kind":"rename","src":"/r/a","dst":"","flags":["timeout"]}\n'
                  '#9\n{"kind":"overflow","path":"","flags":[]}\n{"kind":"create","path":"/r/c","flags":[]}\n'
                  '{"kind":"create","pa{"kind":"create","path":"/r/d","flags":[]}\n')
    assert list(records(jl, "jsonl")) == [Record(7, "rename", "/r/a", "", "timeout"), Record(9, "overflow", ""),
                                          Record(9, "create", "/r/c"), Record(9, "corrupt", "")]
    dump = tmp_path / "a.raw"
    first = pack_events([_frm(1, b"x"), (1, raw.IN_CREATE, 0, b"n")])
    second = pack_events([_to(1, b"y"), OVERFLOW])
    dump.write_bytes(RAW_HEADER.pack(11, 0, len(first)) + first + RAW_HEADER.pack(12, 32, len(second)) + second)
    Path(f"{dump}.wds.json").write_text(json.dumps({"1": "/r/a", "2": "/r/b"}))
    assert [r.t_ns for r in read_raw(dump)] == [11, 12] and [r.pending for r in read_raw(dump)] == [0, 32]
    assert list(records(dump, "rawdump")) == [Record(11, "from", "/r/a/x"), Record(11, "create", "/r/a/n"),
                                              Record(12, "to", "", "/r/b/y"), Record(12, "overflow", "")]


def test_a_child_subjects_lines_carry_the_time_of_the_read_that_brought_them(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every child subject is stamped alike: when a read of its stdout returned, not when this process had
    parsed the lines before it (inotifywait's lines were stamped one by one after parsing, so a large read's
    last lines carried the harness's own parsing time; fsnorm's chunks never did)."""
    from benchmarks import subjects

    reads = [(b"CREATE|/r/a\nMOVED_FROM|/r/x\nMOVED_TO|/r/", 100), (b"y\nDELETE,ISDIR|/r/d\n", 250)]

    def pump(self: subjects.ChildSubject, ctl: subjects.Control, cmd: list[str], out_path: Path,
             on_data: object) -> dict[str, object]:
        assert callable(on_data)
        for data, t in reads:
            on_data(data, t)
        return {}

    monkeypatch.setattr(subjects.ChildSubject, "pump", pump)
    out = tmp_path / "iw.tsv"
    stats = subjects.Inotifywait().run(subjects.Control(str(tmp_path), "end"), out)
    assert stats["records"] == 4
    assert list(records(out, "tsv")) == [Record(100, "create", "/r/a"), Record(100, "from", "/r/x"),
                                         Record(250, "to", "", "/r/y"), Record(250, "delete", "/r/d")]


def test_sched_now_counts_the_watchers_threads_cpu_and_run_queue_wait() -> None:
    """The run-queue wait beside the CPU time (benchmarks/README.md, "The storm's tail"): the counters of every
    thread of the watcher, summed, and they only grow."""
    from benchmarks.subjects import FsnormApi

    subject = FsnormApi()
    first = subject.sched_now()
    if first is None:
        pytest.skip("this kernel keeps no /proc/PID/task/TID/schedstat")
    end = time.process_time() + 0.05
    while time.process_time() < end:  # burn 50 ms of CPU in this process (of CPU, not wall: a busy machine
        pass                           # may give a 50 ms wall-clock loop less than the 20 ms checked below)
    second = subject.sched_now()
    assert second is not None
    # timeslices (the third) only grow: a busy loop that was never switched out adds none
    assert second[0] - first[0] > 0.02 and second[1] >= first[1] >= 0 and second[2] >= first[2] > 0


def test_storm_ground_truth_round_trips(tmp_path: Path) -> None:
    root = tmp_path / "w"
    result = run(root, seconds=0.1, threads=2, noise=1, seed=3, gt=tmp_path / "gt.json")
    truth = load_truth(tmp_path / "gt.json")
    counts = result["renames"]
    assert isinstance(counts, list) and sum(counts) == len(truth.renames) > 0
    assert {(g.src, g.dst) for g in truth.renames} == expected_renames(root, counts, 4)
    assert all(g.workload == "storm" and g.t_ns > 0 for g in truth.renames)
    first = [g.t_ns for g in truth.renames[: counts[0]]]
    assert first == sorted(first)
    names = {str(d) for d in dirs(root, 4)}
    assert truth.markers and all(os.path.dirname(m.path) in names for m in truth.markers)


def test_scenarios_ground_truth(tmp_path: Path) -> None:
    scenarios(tmp_path, phase="prepare", ops=2)
    scenarios(tmp_path, phase="run", ops=2, pace_ms=0.1, pause_ms=0, gt=tmp_path / "gt.json")
    truth = load_truth(tmp_path / "gt.json")
    by = {w: [g for g in truth.renames if g.workload == w] for w in {g.workload for g in truth.renames}}
    assert {w: len(v) for w, v in by.items()} == {"within": 2, "across": 2, "move_out": 2, "move_in": 2,
                                                  "dir_rename": 2, "onto_existing": 2, "chain": 8, "exchange": 4}
    assert all(g.dst == "" for g in by["move_out"]) and all(g.src == "" for g in by["move_in"])
    assert len(truth.markers) == 16
    assert (tmp_path / "w/b/E0/sub/f2").exists() and (tmp_path / "out/o1").exists()


@pytest.mark.timeout(240)
def test_tiny_benchmark_runs_and_the_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "results"
    res = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", "--out", str(out), "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=200, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Headline" in res.stdout
    results = json.loads((out / "tiny.json").read_text())
    assert (out / "tiny.png").stat().st_size > 1000
    assert results["machine"]["kernel"] and results["versions"]["watchdog"]
    available = [s for s, v in results["subjects"].items() if v["available"]]
    assert {"fsnorm", "watchdog", "pyinotify", "raw"} <= set(available)
    rows = results["scenarios"]["rows"]
    assert not [r for r in rows if "error" in r], [r["error"] for r in rows if "error" in r]
    assert {r["subject"] for r in rows} == set(available) & set(results["settings"]["scenario_subjects"])
    for r in rows + results["storm"]["rows"] + results["burst"]["rows"]:
        assert "error" not in r, r
        assert sum(r[c] for c in ("joined", "one_sided", "split", "wrong", "missed")) == r["issued"] > 0
    if os.path.exists("/proc/self/schedstat"):  # the watcher's run-queue wait beside its CPU time
        assert all(r["runq_wait_s"] >= 0 and r["timeslices"] > 0 for r in results["storm"]["rows"])
    assert results["races"]["runs"] and results["races"]["runs"][0]["pairs"] > 0
    assert results["throughput"]["c_flat"]["renames"] > 0 and results["throughput"]["rows"][0]["trials"]

    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(REPO / "notebooks" / "pairing_races.ipynb", as_version=4)
    monkeypatch.setenv("FSNORM_BENCH_RESULTS", str(out / "tiny.json"))
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) >= 4
