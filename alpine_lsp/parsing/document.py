"""An open document: text, tree-sitter tree kept in sync by range edits, cached functions."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tree_sitter import Tree

from .functions import Function, functions_from_tree
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
            tree = self._tree.copy()
            for e in self._edits:
                tree.edit(**e.ts_edit)
            return tree

    def _compute(self, snap: Snapshot) -> tuple[Tree, list[Function] | None]:
        """The tree of `snap` (and its functions when cached), parsing outside the lock."""
        with self._lock:
            if self._tree_gen == snap.gen and self._tree is not None:
                cached = self._functions if self._functions_gen == snap.gen else None
                return self._tree, cached
            base, masked = self._tree, self._tree_masked
            edits = [e for e in self._edits if e.gen <= snap.gen] if base is not None else []
        tree = base.copy() if base is not None else None
        for e in edits:
            assert tree is not None
            tree.edit(**e.ts_edit)
            masked = _shift(masked, *e.bytes_)
        tree, masked = _parse(self.language, snap.data, tree, masked)
        with self._lock:
            if snap.gen > self._tree_gen:
                self._tree, self._tree_gen, self._tree_masked = tree, snap.gen, masked
                self._edits = [e for e in self._edits if e.gen > snap.gen]
        return tree, None

    def functions_of(self, snap: Snapshot) -> list[Function]:
        """Functions of one snapshot's text; the parse runs outside the lock, so edits can
        come in meanwhile (they make a newer generation, and this result is for `snap`)."""
        with self._lock:
            if self._functions is not None and self._functions_gen == snap.gen:
                return list(self._functions)
        tree, _ = self._compute(snap)
        index = LineIndex(snap.text, snap.data)
        found = functions_from_tree(tree, self.language, index)
        with self._lock:
            if self._gen == snap.gen:
                self._functions, self._functions_gen = found, snap.gen
                if self._index is None:
                    self._index = index
        return list(found)

    def functions(self) -> list[Function]:
        """Functions of the current text; reparses only after a change."""
        return self.functions_of(self.snapshot())


def _parse(
    language: str, data: bytes, edited: Tree | None, masked: tuple[tuple[int, int], ...]
) -> tuple[Tree, tuple[tuple[int, int], ...]]:
    """Parse `data`, incrementally from `edited` when that is safe; returns the #if blanks."""
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
        tree = parser.parse(data)
    return tree, masked


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
