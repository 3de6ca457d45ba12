"""An open document: text, tree-sitter tree kept in sync by range edits, cached functions."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from tree_sitter import Tree

from .functions import Function, TopLevel
from .languages import get_parser, normalize_language
from .preproc import mask
from .text import LineIndex, char_offset, encode, ts_point, ts_point_after


def _common_affixes(old: str, new: str) -> tuple[int, int]:
    """Lengths of the common prefix and (non-overlapping) common suffix of two strings."""
    limit = min(len(old), len(new))
    # Binary search with slice compares: runs in C, unlike a per-character Python loop.
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if old[:mid] == new[:mid]:
            lo = mid
        else:
            hi = mid - 1
    prefix = lo
    lo, hi = 0, limit - prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if old[len(old) - mid :] == new[len(new) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return prefix, lo


@dataclass(frozen=True)
class Snapshot:
    """One generation of a document: what analysis reads, consistent and immutable."""

    gen: int
    text: str
    data: bytes


@dataclass
class _PendingEdit:
    gen: int  # the generation this edit produced
    ts_edit: dict  # tree-sitter InputEdit fields
    bytes_: tuple[int, int, int]  # start, old end, new length (for the #if blanks)


class ParsedDocument:
    """Source text plus its syntax tree, edited incrementally.

    Edits are O(edit) plus C-speed copies and never wait on a parse: they change the text and
    queue the tree edit. Parsing and extraction run on a snapshot outside the lock (by whoever
    asks for functions, normally the engine's worker), and install their tree only if no newer
    one is there; edits made meanwhile stay queued for the next parse. Raises ValueError for an
    unsupported language, never for the text.
    """

    def __init__(self, text: str, language: str) -> None:
        self.language: str = normalize_language(language)
        self._lock = threading.Lock()
        self._text = text
        self._data = encode(text)
        self._gen = 0
        self._index: LineIndex | None = None  # of the current text, when built
        self._tree: Tree | None = None  # the syntax tree of generation _tree_gen
        self._tree_gen = -1
        self._tree_masked: tuple[tuple[int, int], ...] = ()  # blanked #if branches of that tree
        self._edits: list[_PendingEdit] = []  # edits after _tree_gen, for the next parse
        self._functions: list[Function] | None = None
        self._functions_gen = -1
        self._extracted: _Extraction | None = None  # the newest extraction, for reuse

    @property
    def text(self) -> str:
        return self._text

    @property
    def nbytes(self) -> int:
        """UTF-8 length of the text (lone surrogates count 3, as they are stored)."""
        return len(self._data)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._gen, self._text, self._data)

    @property
    def tree(self) -> Tree:
        """The syntax tree of the current text (parsed incrementally on demand)."""
        return self._compute(self.snapshot())[0]

    def apply_change(
        self, start_line: int, start_col: int, end_line: int, end_col: int, new_text: str
    ) -> None:
        """Replace an LSP range (code-point columns); positions past the end clamp to it."""
        with self._lock:
            start = char_offset(self._text, start_line, start_col)
            end = char_offset(self._text, end_line, end_col)
            if end < start:
                start, end = end, start
            self._splice(start, end, new_text)

    def replace(self, start: int, end: int, new_text: str) -> None:
        """Replace code points [start, end) of the text."""
        with self._lock:
            n = len(self._text)
            start, end = min(max(start, 0), n), min(max(end, 0), n)
            self._splice(min(start, end), max(start, end), new_text)

    def replace_text(self, text: str) -> None:
        """Full sync. Still edits the tree over the differing middle so reparsing stays cheap."""
        with self._lock:
            old = self._text
            if text == old:
                return
            prefix, suffix = _common_affixes(old, text)
            self._splice(prefix, len(old) - suffix, text[prefix : len(text) - suffix])

    def _byte_offset(self, offset: int) -> int:
        if len(self._text) == len(self._data):  # ASCII: bytes and code points agree
            return offset
        if self._index is not None:
            return self._index.char_to_byte(offset)
        return len(encode(self._text[:offset]))  # C speed; a line table costs more to build

    def _splice(self, start: int, end: int, new_text: str) -> None:
        old_text = self._text
        if start == end and not new_text:
            return
        if old_text[start:end] == new_text:
            return
        start_byte = self._byte_offset(start)
        old_end_byte = self._byte_offset(end)
        inserted = encode(new_text)
        old_data = self._data
        self._text = old_text[:start] + new_text + old_text[end:]
        self._data = old_data[:start_byte] + inserted + old_data[old_end_byte:]
        self._index = None
        self._functions = None
        self._gen += 1
        start_point = ts_point(old_data, start_byte)
        ts_edit = {
            "start_byte": start_byte,
            "old_end_byte": old_end_byte,
            "new_end_byte": start_byte + len(inserted),
            "start_point": start_point,
            "old_end_point": ts_point_after(start_point, old_data[start_byte:old_end_byte]),
            "new_end_point": ts_point_after(start_point, inserted),
        }
        edit = _PendingEdit(self._gen, ts_edit, (start_byte, old_end_byte, len(inserted)))
        self._edits.append(edit)

    def _edited_tree(self) -> Tree | None:
        """The last parsed tree with the queued edits applied, not re-parsed (for tests)."""
        with self._lock:
            if self._tree is None:
                return None
            return _replay(self._tree, self._edits)

    def _compute(self, snap: Snapshot) -> tuple[Tree, _Reparse | None]:
        """The tree of `snap`, parsing outside the lock; with what changed since the tree it
        was parsed from, when that parse was incremental."""
        with self._lock:
            if self._tree_gen == snap.gen and self._tree is not None:
                return self._tree, None
            base, base_gen, masked = self._tree, self._tree_gen, self._tree_masked
            edits = [e for e in self._edits if e.gen <= snap.gen] if base is not None else []
        edited = _replay(base, edits) if base is not None else None
        for e in edits:
            masked = _shift(masked, *e.bytes_)
        tree, masked, incremental = _parse(self.language, snap.data, edited, masked)
        with self._lock:
            if snap.gen > self._tree_gen:
                self._tree, self._tree_gen, self._tree_masked = tree, snap.gen, masked
                self._edits = [e for e in self._edits if e.gen > snap.gen]
        if not incremental or edited is None:
            return tree, None
        changed = [(r.start_byte, r.end_byte) for r in edited.changed_ranges(tree)]
        return tree, _Reparse(base_gen, [e.bytes_ for e in edits], changed)

    def functions_of(self, snap: Snapshot) -> list[Function]:
        """Functions of one snapshot's text; the parse runs outside the lock, so edits can
        come in meanwhile (they make a newer generation, and this result is for `snap`)."""
        with self._lock:
            if self._functions is not None and self._functions_gen == snap.gen:
                return list(self._functions)
            last = self._extracted
        tree, reparse = self._compute(snap)
        index = LineIndex(snap.text, snap.data)
        top = TopLevel(tree, self.language, index)
        extraction = None
        if reparse is not None and last is not None and last.gen == reparse.base_gen:
            extraction = _reuse(last, reparse, top, snap)
        if extraction is None:  # the first parse, a fresh one, or nothing safe to reuse
            nodes = top.nodes()
            per = [top.functions(n) for n in nodes]
            extraction = _Extraction.build(snap, nodes, per)
        found = extraction.functions
        with self._lock:
            if self._extracted is None or snap.gen > self._extracted.gen:
                self._extracted = extraction
            if self._gen == snap.gen:
                self._functions, self._functions_gen = found, snap.gen
                if self._index is None:
                    self._index = index
        return list(found)

    def functions(self) -> list[Function]:
        """Functions of the current text; reparses only after a change."""
        return self.functions_of(self.snapshot())


@dataclass
class _Reparse:
    base_gen: int  # the generation of the tree the incremental parse started from
    edits: list[tuple[int, int, int]]  # (start, old end, new length) bytes, in order
    changed: list[tuple[int, int]]  # byte ranges whose syntax changed (new coordinates)


@dataclass
class _Extraction:
    """The functions of one generation, and per top-level node (in order) its bytes, rows and
    first function: arrays, so an edit finds the nodes it left alone by binary search."""

    gen: int
    newlines: int
    functions: list[Function]
    starts: np.ndarray  # start byte per node
    ends: np.ndarray
    start_rows: np.ndarray
    end_rows: np.ndarray
    counts: np.ndarray  # functions per node

    @staticmethod
    def build(snap: Snapshot, nodes, per: list[list[Function]]) -> _Extraction:
        functions = [f for fs in per for f in fs]
        return _Extraction(
            snap.gen,
            snap.data.count(b"\n"),
            functions,
            *_node_arrays(nodes),
            np.array([len(fs) for fs in per], dtype=np.int64),
        )

    def first(self, node: int) -> int:
        return int(self.counts[:node].sum())


def _node_arrays(nodes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = [(n.start_byte, n.end_byte, n.start_point.row, n.end_point.row) for n in nodes]
    a = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return a[:, 0], a[:, 1], a[:, 2], a[:, 3]


# Grammars whose functions take in their preceding siblings (Rust's #[attributes]): there a
# function's extent is not its top-level node's, so nothing is reused.
_NO_REUSE = frozenset({"rust"})


def _reuse(
    last: _Extraction, reparse: _Reparse, top: TopLevel, snap: Snapshot
) -> _Extraction | None:
    """The new extraction, re-walking only the top-level nodes near the edits and keeping (or
    moving down) the functions of the others; None where that would not be exactly what a
    full walk gives. Per edit this costs the nodes near it, not the 20,000 of a big file."""
    if top.extractor.language in _NO_REUSE or not top.split:
        return None
    text = snap.text
    if text.count("\r") != text.count("\r\n"):
        return None  # a lone \r breaks an LSP line but not a tree-sitter row
    # The edits' envelope [lo, hi) in new bytes; bytes outside moved by 0 (before) or delta.
    lo = hi = None
    delta = 0
    for start, old_end, new_len in reparse.edits:
        new_end, d = start + new_len, new_len - (old_end - start)
        if lo is None or hi is None:
            lo, hi = start, new_end
        else:
            lo = min(lo if lo < start else (lo + d if lo >= old_end else start), start)
            hi = max(hi if hi <= start else (hi + d if hi >= old_end else new_end), new_end)
        delta += d
    if lo is None or hi is None:
        return None
    for a, b in reparse.changed:
        lo, hi = min(lo, a), max(hi, b)
    data = snap.data
    # Lines next to an edit matter too: `alpine: ignore` reads the line above a function.
    lo_row = data.count(b"\n", 0, lo) - 1
    hi_row = data.count(b"\n", 0, hi) + 1
    rows = data.count(b"\n") - last.newlines
    m = len(last.starts)
    # Old nodes wholly before the envelope (same bytes and rows now), and from j0 on wholly
    # after it (moved by delta bytes and `rows` rows); the arrays are sorted.
    i0 = min(
        int(np.searchsorted(last.ends, lo, side="right")),
        int(np.searchsorted(last.end_rows, lo_row, side="left")),
    )
    j0 = max(
        int(np.searchsorted(last.starts, hi - delta, side="left")),
        int(np.searchsorted(last.start_rows, hi_row - rows, side="right")),
        i0,
    )
    root = top.root
    new_j0 = root.child_count - (m - j0)
    if new_j0 < i0:
        return None
    # The nodes around the re-walked ones must be the old ones, where the old ones were.
    if i0 > 0 and root.child(i0 - 1).end_byte != last.ends[i0 - 1]:
        return None
    if j0 < m and root.child(new_j0).start_byte != last.starts[j0] + delta:
        return None
    dirty, node = [], root.child(i0) if i0 < new_j0 else None
    for _ in range(new_j0 - i0):
        assert node is not None
        dirty.append(node)
        node = node.next_sibling
    per = [top.functions(n) for n in dirty]
    first_after = last.first(j0)
    after = last.functions[first_after:]
    functions = [
        *last.functions[: last.first(i0)],
        *(f for fs in per for f in fs),
        *(after if not rows else [_moved(f, rows) for f in after]),
    ]
    starts, ends, start_rows, end_rows = _node_arrays(dirty)
    return _Extraction(
        snap.gen,
        last.newlines + rows,
        functions,
        np.concatenate([last.starts[:i0], starts, last.starts[j0:] + delta]),
        np.concatenate([last.ends[:i0], ends, last.ends[j0:] + delta]),
        np.concatenate([last.start_rows[:i0], start_rows, last.start_rows[j0:] + rows]),
        np.concatenate([last.end_rows[:i0], end_rows, last.end_rows[j0:] + rows]),
        np.concatenate(
            [last.counts[:i0], np.array([len(fs) for fs in per], np.int64), last.counts[j0:]]
        ),
    )


def _moved(f: Function, rows: int) -> Function:
    """`f` on lines `rows` further down (columns stay: the edit ended lines above it)."""
    return Function(
        f.name,
        f.kind,
        f.start_line + rows,
        f.start_col,
        f.end_line + rows,
        f.end_col,
        f.name_start_line + rows,
        f.name_start_col,
        f.name_end_line + rows,
        f.name_end_col,
        f.text,
        f.hash,
        f.ignored,
    )


def _replay(tree: Tree, edits: list[_PendingEdit]) -> Tree:
    """A copy of `tree` with the queued edits applied (the original may be in use elsewhere)."""
    out = tree.copy()
    for e in edits:
        out.edit(**e.ts_edit)
    return out


def _parse(
    language: str, data: bytes, edited: Tree | None, masked: tuple[tuple[int, int], ...]
) -> tuple[Tree, tuple[tuple[int, int], ...], bool]:
    """Parse `data`, incrementally from `edited` when that is safe: (tree, the #if blanks,
    whether the tree came from `edited`)."""
    parser = get_parser(language)
    if language in ("c", "cpp"):  # one configuration: see preproc.py
        data, now = mask(data)
        if now != masked:
            edited = None  # blanks moved outside the edit: reuse would be stale
        masked = now
    tree = None
    if edited is not None:
        tree = parser.parse(data, old_tree=edited)
        # Error recovery after incremental edits can depend on the edit history; a fresh
        # parse keeps function boundaries (and hashes) a function of the text alone.
        if tree is not None and tree.root_node.has_error:
            tree = None
    if tree is None:
        return parser.parse(data), masked, False
    return tree, masked, True


def _shift(
    ranges: tuple[tuple[int, int], ...], start: int, old_end: int, new_len: int
) -> tuple[tuple[int, int], ...]:
    """Blanked ranges moved by an edit of [start, old_end) to new_len bytes. A range the edit
    touches cannot be predicted: then a marker that never equals a real mask."""
    delta = new_len - (old_end - start)
    out = []
    for a, b in ranges:
        if b < start:
            out.append((a, b))
        elif a > old_end:
            out.append((a + delta, b + delta))
        else:
            return ((-1, -1),)
    return tuple(out)


def extract_functions(text: str, language: str) -> list[Function]:
    """One-shot parse of `text`; [] for an unsupported language. See ParsedDocument for edits."""
    try:
        doc = ParsedDocument(text, language)
    except ValueError:
        return []
    return doc.functions()
