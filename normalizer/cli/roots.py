"""The options of ``fsnorm watch`` (and capture, serve) about what a root is: ``--no-recursive`` (a directory
with its direct entries only) and ``--allow-missing`` (a root that does not exist yet)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..api import WatchOptions

#: The paragraph ``fsnorm watch --help`` ends with.
EPILOG = """\
Roots: a PATH may be a directory (watched with everything below it, or with --no-recursive only its direct
entries: a subdirectory's creation, deletion and renames are reported, its content is not) or a file. A file
is watched by its path, as an editor user means it: an atomic save (a temporary file renamed over it) is one
rename record onto it, from the temporary file, with the flag "replaced"; a delete then a create are a delete
and a create; a move away is a one-sided rename, then nothing until something appears at the path again.
Other entries of the file's directory are not reported. With --allow-missing, a PATH that does not exist
yet is waited for: its appearance is reported (a create, or a rename onto it) and from then on it is watched
like any other; if it goes away, it is waited for again.

examples:
  fsnorm watch /etc/app.conf                 # one file, across editors' saves
  fsnorm watch --no-recursive ~/Downloads    # a directory, not its subdirectories' content
  fsnorm watch /srv/data /etc/app.conf       # a tree and a file
  fsnorm watch --allow-missing /srv/incoming # a directory that may not exist yet
"""


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-recursive", dest="recursive", action="store_false", default=True,
                        help="watch each directory PATH with its direct entries only: a subdirectory's "
                        "creation, deletion and renames are reported, its content is not (as inotifywait "
                        "without -r)")
    parser.add_argument("--allow-missing", dest="missing_ok", action="store_true", default=False,
                        help="a PATH that does not exist is not an error: its nearest existing ancestor is "
                        "watched until it appears (created or moved into place); then it is reported and "
                        "watched with its content, and if it disappears again, the same in reverse")


def source_options(args: argparse.Namespace) -> WatchOptions:
    """The API options these flags stand for."""
    out: WatchOptions = {}
    if not getattr(args, "recursive", True):
        out["recursive"] = False
    if getattr(args, "missing_ok", False):
        out["missing_ok"] = True
    return out
