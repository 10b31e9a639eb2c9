"""The oracle around real programs nobody here wrote: git (init, commits, clone, checkout across history, gc),
tar, unzip, cp -a, sed -i, an editor's atomic save (a temp file renamed over; vim/ex), rm -rf. Each runs in
the watched tree while fsnorm reads; then the tree rebuilt from the records must equal the real tree, and every
record must have been true (tests/oracle.py). Both backends. The Debian packages are installed by .ci/run.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from oracle import judge, run_command

from normalizer.backends.fanotify import unavailable_reason

BACKENDS = ["inotify", "fanotify"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "fanotify":
        reason = unavailable_reason()
        if reason is not None:
            pytest.skip(f"fanotify: {reason}")
        if os.geteuid() != 0:
            pytest.skip("the fanotify oracle runs as root (filesystem mark)")
    return name


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "w").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "home").mkdir()
    yield tmp_path


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (.ci/run installs them)")


def git_env(base: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base / "home"), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t", "LC_ALL": "C"}


def check(base: Path, backend: str, argvs: list[list[str]], *, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> None:
    run = run_command(argvs, backend, base / "w", cwd=cwd or base / "w", env=env)
    verdict = judge(run, base / "w")
    assert verdict.ok, f"{' && '.join(' '.join(a) for a in argvs)}\n{verdict}"
    assert run.records, "the programs changed the tree: there must be records"


def sh(script: str) -> list[str]:
    return ["sh", "-ec", textwrap.dedent(script)]


def make_repo(path: Path, env: dict[str, str]) -> list[str]:
    """A script making a repository with history: adds, edits, a rename, a directory move, a delete."""
    return sh(f"""
        git -c init.defaultBranch=main init -q {path}
        cd {path}
        mkdir -p src/pkg docs
        for i in 1 2 3 4 5; do echo "v$i" > src/pkg/m$i.py; done
        echo readme > README; git add -A; git commit -qm one
        echo more >> README; git mv src/pkg/m1.py src/pkg/first.py; git rm -q src/pkg/m2.py; git commit -qm two
        git mv src/pkg src/lib; echo doc > docs/a.md; git add -A; git commit -qm three
        mkdir -p deep/x/y; echo z > deep/x/y/z; git add -A; git commit -qm four
    """)


def test_git_init_commits_checkout_gc(base: Path, backend: str) -> None:
    need("git")
    env = git_env(base)
    check(base, backend, [make_repo(base / "w" / "repo", env),
                          ["git", "-C", "repo", "checkout", "-q", "HEAD~3"],
                          ["git", "-C", "repo", "checkout", "-q", "main"],
                          ["git", "-C", "repo", "gc", "-q", "--aggressive", "--prune=now"]], env=env)


def test_git_clone_and_checkout_across_history(base: Path, backend: str) -> None:
    need("git")
    env = git_env(base)
    origin = base / "out" / "origin"
    import subprocess

    subprocess.run(make_repo(origin, env), check=True, env=env, capture_output=True)
    check(base, backend, [["git", "clone", "-q", str(origin), "clone"],
                          ["git", "-C", "clone", "checkout", "-q", "HEAD~3"],
                          ["git", "-C", "clone", "checkout", "-q", "-b", "side", "main~1"],
                          ["git", "-C", "clone", "checkout", "-q", "main"],
                          ["git", "-C", "clone", "gc", "-q"]], env=env)


def _source_tree(root: Path) -> Path:
    src = root / "pkg"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "deep.txt").write_text("deep")
    (src / "top.txt").write_text("top")
    (src / "empty").mkdir()
    (src / "link").symlink_to("top.txt")
    for i in range(20):
        (src / "a" / f"f{i}").write_text(str(i))
    return src


def test_tar_x(base: Path, backend: str) -> None:
    need("tar")
    src = _source_tree(base / "out")
    archive = base / "out" / "pkg.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname="pkg")
    (base / "w" / "pkg").mkdir()  # tar x over an existing directory
    check(base, backend, [["tar", "xf", str(archive)], ["tar", "xf", str(archive), "-C", "pkg"]])


def test_unzip(base: Path, backend: str) -> None:
    need("unzip")
    src = _source_tree(base / "out")
    archive = base / "out" / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(src.rglob("*")):
            if not path.is_symlink():
                z.write(path, path.relative_to(src.parent))
    check(base, backend, [["unzip", "-q", str(archive)], ["unzip", "-q", "-o", str(archive)],
                          ["unzip", "-q", str(archive), "-d", "again"]])


def test_cp_a_in_and_within(base: Path, backend: str) -> None:
    need("cp")
    src = _source_tree(base / "out")
    check(base, backend, [["cp", "-a", str(src), "copy"], ["cp", "-a", "copy", "copy2"],
                          ["cp", "-a", "copy/.", "copy2/a"]])


def test_sed_i(base: Path, backend: str) -> None:
    need("sed")
    for i in range(5):
        (base / "w" / f"t{i}.txt").write_text("alpha\nbeta\n")
    check(base, backend, [["sed", "-i", "s/alpha/gamma/", *[f"t{i}.txt" for i in range(5)]],
                          ["sed", "-i.bak", "s/beta/delta/", "t0.txt"]])


def test_editor_atomic_save(base: Path, backend: str) -> None:
    (base / "w" / "doc.txt").write_text("one\n")
    (base / "w" / "sub").mkdir()
    save = textwrap.dedent("""
        import os, sys, tempfile
        for path in sys.argv[1:]:
            d = os.path.dirname(path) or "."
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".#save-")
            with os.fdopen(fd, "w") as f:
                f.write("saved\\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    """)
    check(base, backend, [[sys.executable, "-c", save, "doc.txt", "sub/new.txt", "doc.txt"]])


@pytest.mark.parametrize("editor", ["vim", "ex"])
def test_vim_save(base: Path, backend: str, editor: str) -> None:
    need(editor)
    (base / "w" / "doc.txt").write_text("one\ntwo\n")
    env = {**os.environ, "HOME": str(base / "home")}
    # -u NONE: no user config; 'backup' + 'writebackup' make vim write doc.txt~ and rename, as many setups do.
    check(base, backend, [[editor, "-u", "NONE", "-i", "NONE", "-N", "-es", "-c", "set backup writebackup",
                           "-c", "%s/one/uno/", "-c", "wq", "doc.txt"],
                          [editor, "-u", "NONE", "-i", "NONE", "-N", "-es", "-c", "set backupcopy=no",
                           "-c", "%s/two/dos/", "-c", "wq", "doc.txt"]], env=env)


def test_rm_rf(base: Path, backend: str) -> None:
    need("rm")
    _source_tree(base / "w")
    (base / "w" / "keep").write_text("k")
    check(base, backend, [["rm", "-rf", "pkg/a"], ["rm", "-rf", "pkg"]])
