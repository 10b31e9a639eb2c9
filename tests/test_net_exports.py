"""Exports (normalizer/net/exports.py): server paths -> export paths, no absolute path leaks, subscription paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from normalizer.errors import ProtocolError
from normalizer.net import wire
from normalizer.net.exports import Export, PathMap, check_subscription_path, make_exports


def test_paths_map_to_the_longest_export_and_nothing_outside() -> None:
    pm = PathMap([Export(b"data", b"/srv/data"), Export(b"inner", b"/srv/data/inner"), Export(b"r", b"/")])
    assert pm.to_export(b"/srv/data/a/b") == b"data/a/b"
    assert pm.to_export(b"/srv/data") == b"data"
    assert pm.to_export(b"/srv/data/inner/x") == b"inner/x"
    assert pm.to_export(b"/srv/database") == b"r/srv/database"  # not under /srv/data: a prefix is not a parent
    assert pm.to_export(b"") == b""
    only = PathMap([Export(b"data", b"/srv/data")])
    assert only.to_export(b"/etc/passwd") == b""
    assert only.scrub("directory /srv/data/x vanished") == "directory data/x vanished"


def test_make_exports_names_real_paths_and_refuses_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a" / "data").mkdir(parents=True)
    (tmp_path / "b" / "data").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a" / "data")
    (e,) = make_exports([(None, str(tmp_path / "link"))])
    assert (e.name, e.root) == (b"data", os.fsencode(tmp_path / "a" / "data"))
    with pytest.raises(ValueError, match="two exports named 'data'"):
        make_exports([(None, str(tmp_path / "a" / "data")), (None, str(tmp_path / "b" / "data"))])
    assert [x.name for x in make_exports([(None, str(tmp_path / "a" / "data")),
                                          ("other", str(tmp_path / "b" / "data"))])] == [b"data", b"other"]
    for bad in ("..", ".", "a/b"):
        with pytest.raises(ValueError, match="bad export name"):
            make_exports([(bad, str(tmp_path))])


def test_subscription_paths(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    exports = [Export(b"data", os.fsencode(tmp_path))]
    assert check_subscription_path(b"", exports) == b""
    assert check_subscription_path(b"data/", exports) == b"data"
    assert check_subscription_path(b"data/sub/", exports) == b"data/sub"
    assert check_subscription_path(b"data/not/yet/there", exports) == b"data/not/yet/there"
    for bad in (b"/data", b"data//sub", b"data/./sub", b"data/sub/..", b"..", b"data/\0", b"x"):
        with pytest.raises(ProtocolError) as info:
            check_subscription_path(bad, exports)
        assert info.value.code == wire.E_PATH and "refused" in str(info.value)
