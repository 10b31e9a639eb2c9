"""The oracle as a property: for any program of filesystem operations run on the real kernel while fsnorm
watches, the tree rebuilt from the records equals the real tree, and every record was true when it came
(tests/oracle.py says exactly what is checked). Both backends.

* ``test_oracle_programs``: hypothesis programs, bounded for ``make test`` (``ORACLE_EXAMPLES`` per backend,
  default 60; ``ORACLE_MAX_OPS`` operations at most, default 14). With ``ORACLE_SECONDS`` set (``make fuzz``),
  it keeps generating fresh programs for that long per backend, saves every failure and prints how many programs
  and operations ran (``ORACLE_STATS``: also appended to that file); fanotify's programs then also make noise
  outside the tree (``noise``: a read may stop in the middle of the program's events).
* ``test_oracle_corpus``: every program that ever failed (tests/corpus/oracle/*.json), replayed on its backend.
  A program whose failure is a reported bug being fixed elsewhere is ``xfail(strict=True)`` while its operation
  (or a gate the file names under ``"gates"``) is gated in :data:`KNOWN_BROKEN`; a bug found here and not
  fixed yet is an ``"xfail": "<reason>"`` key in its file (none today: the merged delete of
  fanotify-778437a1bfd0 and fanotify-c4a4b3fdf974 is placed after its file's renames now; every file's
  ``note`` says what failed and how it was fixed). A failure that depends on the interleaving and is not fixed
  yet has a ``"race": "<reason>"`` key instead (a non-strict xfail: its replay usually passes).

A failing hypothesis example is shrunk to a minimal program and saved to the corpus before the test fails.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from oracle import (
    AwayAndBack,
    CreateFile,
    EnvironmentTrouble,
    Exchange,
    MakeDeep,
    Mkdir,
    Model,
    MoveIn,
    MoveOut,
    Noise,
    Op,
    Program,
    Pump,
    Remove,
    RemoveTree,
    Rename,
    Symlink,
    TmpFile,
    Write,
    gate_of,
    judge,
    model_tree,
    run_program,
    save,
)

from normalizer.backends.fanotify import unavailable_reason

CORPUS = Path(__file__).parent / "corpus" / "oracle"
BACKENDS = ["inotify", "fanotify"]

#: Operations that hit bugs of issue #9 being fixed on other branches: still generated on the backends not
#: listed, and kept out of the generator on these, so the property stays green meanwhile. Corpus programs using
#: them are strict xfails. Empty these sets after merging the fixes.
KNOWN_BROKEN: dict[str, dict[str, str]] = {
    # #9 items 1, 2 and 7 (exchanges, O_TMPFILE names) and item 3 (fanotify: a directory renamed away and
    # back, or twice, before a read) are fixed: nothing is gated. A gate's name is an operation's kind (or
    # "dir_renamed_twice_unread": no read is forced after a rename of a directory).
    "inotify": {},
    "fanotify": {},
}

#: How often each operation is drawn (pump: a read between operations; noise: files created outside the tree,
#: which a filesystem mark reads and drops, so that a read may stop in the middle of the program's events).
WEIGHTS: dict[str, int] = {
    "create": 4, "write": 2, "mkdir": 3, "mkdir_p": 2, "rm": 2, "rm_r": 2, "rename": 6, "move_out": 2,
    "move_in": 3, "exchange_files": 2, "exchange_dirs": 2, "away_back": 2, "symlink": 1, "tmpfile": 1, "pump": 3,
    "noise": 1,
}
NAMES = ("a", "b", "c", "d0", "f2")
#: The long run (``ORACLE_SECONDS`` set, ``make fuzz``): the generator also draws ``noise``.
LONG_RUN = bool(float(os.environ.get("ORACLE_SECONDS", "0")))
#: Operations per program at most (``ORACLE_MAX_OPS``: longer programs in the long run).
MAX_OPS = int(os.environ.get("ORACLE_MAX_OPS", "14"))


def _skip_unless(backend: str) -> None:
    if backend == "fanotify":
        reason = unavailable_reason()
        if reason is not None:
            pytest.skip(f"fanotify: {reason}")
        if os.geteuid() != 0:
            pytest.skip("the fanotify oracle runs as root (filesystem mark)")


# -----------------------------------------------------------------------------------------------------------
# The generator: draws operations the model says the kernel accepts.

def _pick(draw: st.DrawFn, items: list[str]) -> str | None:
    return draw(st.sampled_from(items)) if items else None


def _new_path(draw: st.DrawFn, model: Model) -> str:
    parent = draw(st.sampled_from(["", *model.dirs()]))
    name = draw(st.sampled_from(NAMES))
    return f"{parent}/{name}" if parent else name


def _rename(draw: st.DrawFn, model: Model) -> Op | None:
    src = _pick(draw, model.entries())
    if src is None:
        return None
    how = draw(st.sampled_from(["within", "across", "onto"]))
    if how == "within":
        head = src.rpartition("/")[0]
        name = draw(st.sampled_from(NAMES))
        dst = f"{head}/{name}" if head else name
    elif how == "across":
        dst = _new_path(draw, model)
    else:
        dst = _pick(draw, [p for p in model.entries() if p != src]) or src
    return Rename(src, dst) if model.can_land(src, dst) else None


def _exchange(draw: st.DrawFn, model: Model, dirs: bool) -> Op | None:
    kinds = model.t
    pool = [p for p in kinds if (kinds[p] == "d") == dirs] if not dirs else model.dirs()
    a = _pick(draw, pool)
    b = _pick(draw, model.entries() if dirs else pool)
    if a is None or b is None or a == b or a.startswith(b + "/") or b.startswith(a + "/"):
        return None
    return Exchange(a, b, dirs=dirs or kinds[b] == "d")


def _away_back(draw: st.DrawFn, model: Model) -> Op | None:
    top = _pick(draw, [p for p in model.dirs() if "/" not in p])
    if top is None:
        return None
    files = [p.rpartition("/")[2] for p, k in model.t.items() if p.rpartition("/")[0] == top and k == "f"]
    file = draw(st.sampled_from(["", *files]))
    return AwayAndBack(top, top + "b", file)


def _build(draw: st.DrawFn, kind: str, model: Model) -> Op | None:
    files = [p for p, k in model.t.items() if k == "f"]
    if kind == "create":
        return CreateFile(_new_path(draw, model), draw(st.sampled_from(["", "data"])))
    if kind == "write":
        path = _pick(draw, sorted(files))
        return Write(path) if path else None
    if kind == "mkdir":
        return Mkdir(_new_path(draw, model))
    if kind == "mkdir_p":
        return MakeDeep(_new_path(draw, model) + "/" + draw(st.sampled_from(["p/q", "p", "p/q/r"])))
    if kind == "rm":
        path = _pick(draw, sorted(p for p, k in model.t.items() if k != "d"))
        return Remove(path) if path else None
    if kind == "rm_r":
        path = _pick(draw, model.dirs())
        return RemoveTree(path) if path else None
    if kind == "rename":
        return _rename(draw, model)
    if kind == "move_out":
        path = _pick(draw, model.entries())
        return MoveOut(path, draw(st.sampled_from(NAMES))) if path else None
    if kind == "move_in":
        return MoveIn(_new_path(draw, model), is_dir=draw(st.booleans()))
    if kind in ("exchange_files", "exchange_dirs"):
        return _exchange(draw, model, kind == "exchange_dirs")
    if kind == "away_back":
        return _away_back(draw, model)
    if kind == "symlink":
        return Symlink(_new_path(draw, model), draw(st.sampled_from(["d0", "../out", "nowhere", "f2"])))
    if kind == "tmpfile":
        path = _new_path(draw, model)
        head, _, name = path.rpartition("/")
        return TmpFile(head, name)
    if kind == "noise":
        return Noise(draw(st.sampled_from([200, 700, 1500])))
    return Pump()


def _moves_dir(op: Op | None, model: Model) -> bool:
    if isinstance(op, Rename):
        return model.t.get(op.src) == "d"
    if isinstance(op, Exchange):
        return "d" in (model.t.get(op.a), model.t.get(op.b))
    return False


@st.composite
def programs(draw: st.DrawFn, backend: str) -> Program:
    broken = KNOWN_BROKEN.get(backend, {})
    # Noise only for fanotify (a filesystem mark sees it; for inotify it is only a pause between operations),
    # and only in the long run: it finds fanotify's listing races (README Limits, corpus fanotify-0b143c5b0900:
    # 1 of 843 programs in two short runs), which would make the bounded run of ``make test`` flaky.
    kinds = [k for k, weight in WEIGHTS.items() if k not in broken
             and (k != "noise" or (backend == "fanotify" and LONG_RUN)) for _ in range(weight)]
    model = Model(Program(()).initial)
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, MAX_OPS))):
        op = _build(draw, draw(st.sampled_from(kinds)), model)
        moves_dir = _moves_dir(op, model)
        if op is not None and gate_of(op) not in broken and model.apply(op):
            ops.append(op)
            if moves_dir and "dir_renamed_twice_unread" in broken:
                ops.append(Pump())
    return Program(tuple(ops))


# -----------------------------------------------------------------------------------------------------------
# The check.


class Tally:
    """Programs and operations run, per backend (printed by the long run)."""

    programs: dict[str, int] = {b: 0 for b in BACKENDS}  # noqa: RUF012
    ops: dict[str, int] = {b: 0 for b in BACKENDS}  # noqa: RUF012
    records: dict[str, int] = {b: 0 for b in BACKENDS}  # noqa: RUF012
    environment: dict[str, int] = {b: 0 for b in BACKENDS}  # noqa: RUF012


class OracleFailure(AssertionError):
    """The oracle's verdict on a program, with its first cause in one line (the corpus file's note)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


def check(program: Program, backend: str) -> None:
    """Run ``program`` under ``backend`` and assert the oracle's verdict (and the harness's own model)."""
    with tempfile.TemporaryDirectory(prefix="fsnorm-oracle-") as base:
        run = run_program(program, backend, Path(base))
        verdict = judge(run, Path(base) / "w")
    trouble = [r for r in run.records if r.kind in ("overflow", "error")]
    if trouble and run.lowered:
        raise EnvironmentTrouble(f"{trouble[0].kind} while another process had lowered {', '.join(run.lowered)}")
    Tally.programs[backend] += 1
    Tally.ops[backend] += len(program.ops)
    Tally.records[backend] += len(run.records)
    expected = model_tree(program)
    assert expected is None or expected == run.final, (
        f"oracle harness: its model disagrees with the kernel\nprogram:\n{program}\nmodel: {expected}\n"
        f"real: {run.final}")
    if not verdict.ok:
        first = (verdict.reading.problems + [f"missing {p}" for p in verdict.missing]
                 + [f"phantom {p}" for p in verdict.phantom] + verdict.wrong_type)[0]
        raise OracleFailure(f"program:\n{program}\n{verdict}", first)


def _examples() -> int:
    return int(os.environ.get("ORACLE_EXAMPLES", "60"))


def _explore(backend: str, examples: int) -> None:
    """One hypothesis run of ``examples`` programs; a failure is shrunk, saved to the corpus, and raised. A
    failure hypothesis could not reproduce (flaky: a race) is saved and raised with what the failing run saw."""
    failed: list[tuple[Program, str, str]] = []

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
              phases=[Phase.generate, Phase.shrink])
    @given(programs(backend))
    def prop(program: Program) -> None:
        try:
            check(program, backend)
        except EnvironmentTrouble:
            Tally.environment[backend] += 1
            reject()  # not the program's doing (another process lowered a limit): not an example
        except Exception as exc:
            cause = getattr(exc, "cause", f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}")
            failed.append((program, cause, f"{type(exc).__name__}: {exc}"))
            raise

    try:
        prop()
    except Exception as exc:
        if not failed:
            raise
        program, cause, text = failed[-1]  # hypothesis replays the minimal example last
        flaky = "" if isinstance(exc, AssertionError) else f"FLAKY ({type(exc).__name__}): "
        path = save(program, backend, CORPUS, (flaky + cause)[:300])
        raise AssertionError(f"{flaky}saved as {path.relative_to(CORPUS.parent.parent.parent)}\n{text}") from None


@pytest.mark.timeout(0)
@pytest.mark.parametrize("backend", BACKENDS)
def test_oracle_programs(backend: str) -> None:
    _skip_unless(backend)
    seconds = float(os.environ.get("ORACLE_SECONDS", "0"))
    if not seconds:
        _explore(backend, _examples())
        assert Tally.programs[backend] >= _examples()
        return
    # The long run (make fuzz): fresh programs until the time is up; every failure saved, the run goes on.
    end = time.monotonic() + seconds
    failures: list[str] = []
    rounds = 0
    start = time.monotonic()
    while time.monotonic() < end:
        rounds += 1
        try:
            _explore(backend, _examples())
        except Exception as exc:  # a failure (saved) or a flaky one (hypothesis): counted, the run goes on
            failures.append(f"{type(exc).__name__}: {exc}")
    summary = (f"oracle long run, {backend}: {Tally.programs[backend]} programs, {Tally.ops[backend]} operations, "
               f"{Tally.records[backend]} records in {time.monotonic() - start:.0f} s ({rounds} rounds); "
               f"{len(failures)} failure(s); {Tally.environment[backend]} run(s) spoiled by the environment")
    print(summary)
    stats = os.environ.get("ORACLE_STATS")
    if stats:
        with open(stats, "a") as f:
            f.write(summary + "\n")
    assert not failures, "\n\n".join(failures)


# -----------------------------------------------------------------------------------------------------------
# The corpus: every program that ever failed, replayed.


def corpus() -> list[object]:
    params: list[object] = []
    for path in sorted(CORPUS.glob("*.json")):
        data = json.loads(path.read_text())
        program = Program.from_json(data)
        backend = data["backend"]
        gates = {gate_of(op) for op in program.ops} | set(data.get("gates", []))
        reasons = sorted({KNOWN_BROKEN.get(backend, {})[g] for g in gates if g in KNOWN_BROKEN.get(backend, {})})
        if data.get("xfail"):
            reasons.append(data["xfail"])
        marks = [pytest.mark.xfail(strict=True, reason="; ".join(reasons))] if reasons else []
        if data.get("race"):  # a known unfixed race: the program fails only in some interleavings
            marks = [pytest.mark.xfail(strict=False, reason=f"race, not fixed: {data['race']}")]
        params.append(pytest.param(backend, program, marks=marks, id=path.stem))
    return params


@pytest.mark.parametrize(("backend", "program"), corpus())
def test_oracle_corpus(backend: str, program: Program) -> None:
    _skip_unless(backend)
    check(program, backend)


def test_corpus_programs_round_trip() -> None:
    """Every corpus file parses, names a backend, and survives JSON -> Program -> JSON."""
    files = sorted(CORPUS.glob("*.json"))
    assert files, "the oracle corpus is missing"
    for path in files:
        data = json.loads(path.read_text())
        assert data["backend"] in BACKENDS
        program = Program.from_json(data)
        assert program.ops
        assert Program.from_json(program.to_json()) == program
