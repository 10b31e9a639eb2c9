"""The shadow tree: what fsnorm believes the watched tree contains, kept current from the records themselves,
so that a rescan after an overflow can report exactly the differences (on by default; ``--no-rescan`` /
``rescan=False`` turns it off).

It follows the records with the rules a consumer rebuilding the tree would use: ``create`` adds, ``delete``
removes (with everything below), a two-sided ``rename`` moves the subtree (or, if the source is not known, adds
the destination like a destination-only rename), a source-only rename removes, a destination-only rename adds
(its content arrives as ``synthesized`` creates; a directory already known keeps what it holds). Because the
consumer's tree and the shadow follow the same records the same way, the differences the rescan reports are
exactly what the consumer's tree lacks.

A ``RENAME_EXCHANGE`` is two renames, ``a -> b`` then ``b -> a``; read as two moves they would leave ``a`` as
it was and ``b`` gone. When both carry object ids (fanotify) and the ids differ, the second rename is the other
half of an exchange (the same object moved back would carry the same id; only records that do not change the
tree's shape may come between): what the first rename displaced at ``b`` goes to ``a`` (tests/oracle.py reads
them the same way). inotify has no object ids and cannot tell an exchange of two files from ``mv a b; mv b a``
(README, "Limits"), nor one of two empty directories; but an inotify rename that lands where rename(2) could
not have replaced what was there (a directory onto a file, a file onto a directory, a directory onto a
non-empty one) is the first half of an exchange for certain, and its mirror next is read as the second half
(fanotify's renames without ids are read as before). Likewise inotify's ``-> X`` (or ``a -> X``) then ``X ->``
of the other kind (a file after a directory, or the reverse) is an exchange of X with an entry outside the tree
(README, "Limits", on coalescing: inotify gives the same pair for a move in and a move out): what arrived
stays. (inotify's
relisting of a new directory's rebound path diffs against this shadow: read as two moves, such exchanges made
it report entries the records already had.)

Layout, chosen for memory (it is kept for every watched file, all the time): one dict per directory, name ->
child dict (a directory) or None (anything else). A file costs its name (a bytes object) and one dict slot;
paths are never stored whole, and a directory rename moves a subtree by relinking one dict. Measured:
``benchmarks/shadow_memory.py`` (README, "Limits and known gaps").

Modifications are not tracked per file: a rescan reports as ``modify`` every file whose mtime is not older than
the last read before the overflow (events about it may have been lost), which errs on the side of telling too
much.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..records import Rec

#: A directory of the shadow: name -> child directory, or None for a file (anything not a directory).
Node = dict[bytes, "Node | None"]
#: The record kinds that change the tree.
_FOLLOWED = frozenset({"create", "delete", "rename", "watch_end"})


class ShadowTree:
    """path -> is_dir for everything under the watched ``roots`` (absolute byte paths, the roots not included).

    Paths outside every root (an ``unresolved`` record's bare name, ``""``) are ignored."""

    def __init__(self, roots: Sequence[bytes]) -> None:
        #: (root + "/", root, its node), longest root first so a nested root wins.
        self._roots: list[tuple[bytes, bytes, Node]] = []
        for root in sorted({r.rstrip(b"/") or b"/" for r in roots}, key=len, reverse=True):
            self._roots.append((root if root.endswith(b"/") else root + b"/", root, {}))
        #: Directory path -> its node, for the hot path of :meth:`apply`; cleared whenever a directory changes.
        self._nodes: dict[bytes, Node] = {}
        #: The last two-sided rename with an object id that landed on an existing entry: (dst, src, its object
        #: id, the entry it displaced), until the next rename (module docstring: exchanges).
        self._landing: tuple[bytes, bytes, str, Node | None] | None = None
        #: The last rename without object ids that brought something to a path, and whether a directory, until
        #: the next record (module docstring: an exchange with the outside).
        self._arrived: tuple[bytes, bool] | None = None

    # -- lookups -------------------------------------------------------------------------------------------

    def _locate(self, path: bytes) -> tuple[Node, list[bytes]] | None:
        """(root node, components below it) for a path under a root; None for a root itself or outside."""
        for prefix, _root, node in self._roots:
            if path.startswith(prefix):
                parts = path[len(prefix):].split(b"/")
                if parts[-1] == b"":
                    parts.pop()
                return (node, parts) if parts else None
        return None

    def _parent(self, path: bytes, *, create: bool) -> tuple[Node, bytes] | None:
        """(the node of ``path``'s directory, its name). With ``create``, missing directories on the way are
        added (a record about ``a/b/c`` says ``a/b`` exists)."""
        found = self._locate(path)
        if found is None:
            return None
        node, parts = found
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                if not create:
                    return None
                child = node[part] = {}
            node = child
        return node, parts[-1]

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, bytes):
            return False
        found = self._parent(path, create=False)
        return found is not None and found[1] in found[0]

    def __len__(self) -> int:
        return sum(1 for _ in self._walk())

    def has_dir(self, path: bytes) -> bool:
        """True if ``path`` is a root or a directory the tree holds (inotify's relisting starts at the nearest
        one: normalizer.backends.inotify)."""
        if any(path == root for _prefix, root, _node in self._roots):
            return True
        found = self._parent(path, create=False)
        return found is not None and isinstance(found[0].get(found[1]), dict)

    def _walk(self) -> Iterator[tuple[bytes, bool]]:
        for prefix, _root, node in self._roots:
            yield from self._walk_node(prefix, node)

    @staticmethod
    def _walk_node(base: bytes, node: Node) -> Iterator[tuple[bytes, bool]]:
        """Everything below ``node`` (whose path is ``base``, ending in "/"), as (path, is_dir)."""
        stack: list[tuple[bytes, Node]] = [(base, node)]
        while stack:
            base, cur = stack.pop()
            for name, child in cur.items():
                yield base + name, child is not None
                if child is not None:
                    stack.append((base + name + b"/", child))

    def snapshot(self, below: Sequence[bytes] | None = None) -> dict[bytes, bool]:
        """Everything, as a flat path -> is_dir dict (for the rescan's diff). With ``below`` (directories), only
        the paths under one of them (``top + "/"`` a prefix; a top itself is not included): the subtrees are
        copied, not the whole tree, since a rescan of a few places (a ``Rescan``, inotify's relisting) diffs
        only them. The same dict as the whole snapshot filtered by those prefixes, nested roots included (the
        roots are taken in the same order, so where two hold a path the same one wins)."""
        if below is None:
            return dict(self._walk())
        tops = sorted({top + b"/" for top in below})
        tops = [top for i, top in enumerate(tops) if not any(top.startswith(t) for t in tops[:i])]
        out: dict[bytes, bool] = {}
        for prefix, _root, node in self._roots:
            if any(prefix.startswith(top) for top in tops):  # the root is one of them or below one
                out.update(self._walk_node(prefix, node))
                continue
            for top in tops:
                if not top.startswith(prefix):
                    continue  # neither holds the other: no path of this root is below it
                cur: Node | None = node
                for part in top[len(prefix):-1].split(b"/"):
                    cur = cur.get(part) if cur is not None else None
                if cur is not None:
                    out.update(self._walk_node(top, cur))
        return out

    # -- changes -------------------------------------------------------------------------------------------

    def add(self, path: bytes, is_dir: bool) -> None:
        found = self._parent(path, create=True)
        if found is None:
            return
        node, name = found
        if is_dir:
            if node.get(name) is None:
                node[name] = {}  # a directory already known keeps what it holds
        else:
            node[name] = None

    def remove(self, path: bytes) -> None:
        self._nodes.clear()
        found = self._parent(path, create=False)
        if found is not None:
            found[0].pop(found[1], None)

    def add_root(self, root: bytes) -> None:
        """A root added while running (``Stream.add``); its content comes with the walk that watches it."""
        root = root.rstrip(b"/") or b"/"
        if all(r != root for _prefix, r, _node in self._roots):
            self._nodes.clear()
            self._roots.append((root if root.endswith(b"/") else root + b"/", root, {}))
            self._roots.sort(key=lambda t: len(t[1]), reverse=True)

    def remove_root(self, root: bytes) -> None:
        """A watched root went away: forget everything below it."""
        self._nodes.clear()
        root = root.rstrip(b"/") or b"/"
        for i, (prefix, r, _node) in enumerate(self._roots):
            if r == root:
                self._roots[i] = (prefix, r, {})

    def move(self, src: bytes, dst: bytes, is_dir: bool) -> None:
        self._nodes.clear()
        old = self._parent(src, create=False)
        if old is None or old[1] not in old[0]:
            # The source is not known (the rescan after an overflow may have reported the destination already,
            # from an event queued after the overflow): the destination exists, whatever it holds stays.
            self.add(dst, is_dir)
            return
        node: Node | None = old[0].pop(old[1])
        new = self._parent(dst, create=True)
        if new is None:
            return
        if is_dir and node is None:
            node = {}
        elif not is_dir:
            node = None
        new[0][new[1]] = node

    def _dir_node(self, path: bytes) -> Node | None:
        """The node of directory ``path`` (created, with the directories on the way, if missing); None outside
        every root. Cached by path until a directory changes (hot path: file records in a few directories)."""
        node = self._nodes.get(path)
        if node is not None:
            return node
        for _prefix, root, top in self._roots:
            if path == root:
                node = top
                break
        else:
            found = self._parent(path, create=True)
            if found is None:
                return None
            parent, name = found
            node = parent.get(name)
            if node is None:
                node = parent[name] = {}
        self._nodes[path] = node
        return node

    def apply(self, records: Iterable[Rec]) -> None:
        """Follow the tree through what the records say happened (module docstring).

        Hot path (every record of a live session passes here): a file's record touches one dict, found through
        a cache of directory nodes by path; a record about a directory clears that cache and takes the general
        methods above. A file record never needs to clear it: the shadow can only hold a directory where the
        kernel reports a file if events were lost, and a directory record (which clears it) comes before
        anything below a path that is a directory again."""
        nodes = self._nodes
        dir_node = self._dir_node
        for rec in records:
            kind = rec.kind
            if kind not in _FOLLOWED:
                continue
            if kind == "rename":
                if rec.object_id is not None:
                    if rec.path and rec.dst and self._exchanged(rec):
                        continue
                elif rec.source != "fanotify":  # inotify (fanotify's reading is left as it was)
                    arrived, self._arrived = self._arrived, None
                    if rec.dst:
                        self._arrived = (rec.dst, rec.is_dir)
                    elif arrived is not None and arrived[0] == rec.path and arrived[1] != rec.is_dir:
                        continue  # the other half of an exchange with the outside: what arrived stays
                    if self._landing is not None and self._second_half(rec):
                        continue
            elif kind != "watch_end":
                self._landing = None  # a create or delete between two renames: they are no exchange
                self._arrived = None
            if rec.is_dir or kind == "watch_end":
                nodes.clear()
                self._apply_dir(rec)
                continue
            if kind == "rename":
                if rec.path:
                    parent, _, name = rec.path.rpartition(b"/")
                    node = nodes.get(parent)
                    if node is None:
                        node = dir_node(parent or b"/")
                    if node is not None:
                        node.pop(name, None)
                path = rec.dst
                if not path:
                    continue
            else:
                path = rec.path
            parent, _, name = path.rpartition(b"/")
            node = nodes.get(parent)
            if node is None:
                node = dir_node(parent or b"/")
                if node is None:
                    continue
            if kind == "delete":
                node.pop(name, None)
            else:
                if kind == "rename" and rec.path and rec.object_id is None and node.get(name) is not None and \
                        rec.source != "fanotify":
                    # A file renamed onto a directory: an exchange for certain (module docstring).
                    self._landing = (path, rec.path, "", node[name])
                    nodes.clear()  # the directory's node, cached by path, is no longer there
                node[name] = None

    def _exchanged(self, rec: Rec) -> bool:
        """Exchanges (module docstring): True if ``rec`` is the second half of one (applied here); else note
        what ``rec`` is about to displace, if anything."""
        landing, self._landing = self._landing, None
        if landing is not None and rec.path == landing[0] and rec.dst == landing[1] and landing[2] and \
                rec.object_id != landing[2]:
            self._nodes.clear()
            found = self._parent(rec.dst, create=True)
            if found is not None:
                found[0][found[1]] = landing[3]
            return True
        found = self._parent(rec.dst, create=False)
        if found is not None and found[1] in found[0]:
            assert rec.object_id is not None
            self._landing = (rec.dst, rec.path, rec.object_id, found[0][found[1]])
        return False

    def _second_half(self, rec: Rec) -> bool:
        """No object ids: True if ``rec`` mirrors the rename before it, which landed where only an exchange
        could (module docstring): what that one displaced goes to ``rec``'s destination."""
        landing, self._landing = self._landing, None
        if landing is None or landing[2] or rec.path != landing[0] or rec.dst != landing[1]:
            return False
        self._nodes.clear()
        found = self._parent(rec.dst, create=True)
        if found is not None:
            found[0][found[1]] = landing[3]
        return True

    def _apply_dir(self, rec: Rec) -> None:
        kind = rec.kind
        if kind == "create":
            self.add(rec.path, rec.is_dir)
        elif kind == "delete":
            self.remove(rec.path)
        elif kind == "rename":
            if rec.path and rec.dst:
                if rec.object_id is None and rec.source != "fanotify":
                    found = self._parent(rec.dst, create=False)
                    if found is not None and found[1] in found[0]:
                        there = found[0][found[1]]
                        if there is None or there:  # a file, or a non-empty directory: an exchange
                            self._landing = (rec.dst, rec.path, "", there)
                self.move(rec.path, rec.dst, rec.is_dir)
            elif rec.path:
                self.remove(rec.path)
            elif rec.dst:
                self.add(rec.dst, rec.is_dir)
        elif kind == "watch_end" and rec.message and "root" in rec.message:
            self.remove_root(rec.path)
