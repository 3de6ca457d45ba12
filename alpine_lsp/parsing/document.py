"""An open document: text, tree-sitter tree kept in sync by range edits, cached functions."""

from __future__ import annotations

import threading

from tree_sitter import Tree

from .functions import Function, functions_from_tree
from .languages import get_parser, normalize_language
from .preproc import mask
from .text import LineIndex, encode, ts_point, ts_point_after


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


class ParsedDocument:
    """Source text plus its syntax tree, edited incrementally.

    Methods take an internal lock, so a document may be edited on one thread and queried on
    another; parsing uses the calling thread's own Parser. Raises ValueError for an unsupported
    language, never for the text.
    """

    def __init__(self, text: str, language: str) -> None:
        self.language: str = normalize_language(language)
        self._lock = threading.RLock()
        self._text = text
        self._data = encode(text)
        self._index: LineIndex | None = None
        self._tree: Tree | None = None
        self._parsed = False  # whether _tree matches _text
        self._functions: list[Function] | None = None
        self._masked: tuple[tuple[int, int], ...] = ()  # blanked #if branches (C, C++)

    @property
    def text(self) -> str:
        return self._text

    @property
    def tree(self) -> Tree:
        """The syntax tree of the current text (parsed incrementally on demand)."""
        with self._lock:
            self._ensure_parsed()
            assert self._tree is not None
            return self._tree

    def _line_index(self) -> LineIndex:
        if self._index is None:
            self._index = LineIndex(self._text, self._data)
        return self._index

    def apply_change(
        self, start_line: int, start_col: int, end_line: int, end_col: int, new_text: str
    ) -> None:
        """Replace an LSP range (code-point columns); positions past the end clamp to it."""
        with self._lock:
            index = self._line_index()
            start = index.offset(start_line, start_col)
            end = index.offset(end_line, end_col)
            if end < start:
                start, end = end, start
            self._splice(start, end, new_text)

    def replace_text(self, text: str) -> None:
        """Full sync. Still edits the tree over the differing middle so reparsing stays cheap."""
        with self._lock:
            old = self._text
            if text == old:
                return
            prefix, suffix = _common_affixes(old, text)
            self._splice(prefix, len(old) - suffix, text[prefix : len(text) - suffix])

    def _splice(self, start: int, end: int, new_text: str) -> None:
        old_text = self._text
        if start == end and not new_text:
            return
        if old_text[start:end] == new_text:
            return
        index = self._line_index()
        start_byte = index.char_to_byte(start)
        old_end_byte = index.char_to_byte(end)
        inserted = encode(new_text)
        old_data = self._data
        self._text = old_text[:start] + new_text + old_text[end:]
        self._data = old_data[:start_byte] + inserted + old_data[old_end_byte:]
        self._index = None
        self._functions = None
        self._parsed = False
        if self._masked:  # where the blanks are after this edit, if it left them alone
            self._masked = _shift(self._masked, start_byte, old_end_byte, len(inserted))
        if self._tree is not None:
            start_point = ts_point(old_data, start_byte)
            self._tree.edit(
                start_byte=start_byte,
                old_end_byte=old_end_byte,
                new_end_byte=start_byte + len(inserted),
                start_point=start_point,
                old_end_point=ts_point_after(start_point, old_data[start_byte:old_end_byte]),
                new_end_point=ts_point_after(start_point, inserted),
            )

    def _ensure_parsed(self) -> None:
        if self._parsed and self._tree is not None:
            return
        parser = get_parser(self.language)
        data = self._data
        tree = None
        if self.language in ("c", "cpp"):  # one configuration: see preproc.py
            data, masked = mask(data)
            if masked != self._masked:
                self._tree = None  # blanks moved outside the edit: reuse would be stale
            self._masked = masked
        if self._tree is not None:
            tree = parser.parse(data, old_tree=self._tree)
            # Error recovery after incremental edits can depend on the edit history; a fresh
            # parse keeps function boundaries (and hashes) a function of the text alone.
            if tree is not None and tree.root_node.has_error:
                tree = None
        if tree is None:
            tree = parser.parse(data)
        self._tree = tree
        self._parsed = True

    def functions(self) -> list[Function]:
        """Functions of the current text; reparses only after a change."""
        with self._lock:
            if self._functions is None:
                self._ensure_parsed()
                assert self._tree is not None
                self._functions = functions_from_tree(self._tree, self.language, self._line_index())
            return list(self._functions)


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
