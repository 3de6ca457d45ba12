"""Text <-> bytes <-> position bookkeeping.

Positions handed out are (line, column) with LSP line breaks (\\n, \\r\\n, \\r) and columns in
code points. tree-sitter works on UTF-8 bytes, and its points count rows by \\n only.
"""

from __future__ import annotations

import re
from bisect import bisect_right

import numpy as np

_NEWLINE = re.compile(r"\r\n|\r|\n")
_NEWLINE_B = re.compile(rb"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
_STEP = 512  # code points between the checkpoints of a non-ASCII text


def encode(text: str) -> bytes:
    """UTF-8 for tree-sitter. Lone surrogates become U+FFFD, which is also 3 bytes, so every code
    point keeps the width `surrogatepass` would give it and splicing stays consistent."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def ts_point(data: bytes, offset: int) -> tuple[int, int]:
    """tree-sitter point (row by \\n, byte column) of a byte offset."""
    row = data.count(b"\n", 0, offset)
    return row, offset - (data.rfind(b"\n", 0, offset) + 1)


def ts_point_after(start: tuple[int, int], inserted: bytes) -> tuple[int, int]:
    """The point reached after inserting `inserted` at `start`."""
    newlines = inserted.count(b"\n")
    if newlines == 0:
        return start[0], start[1] + len(inserted)
    return start[0] + newlines, len(inserted) - inserted.rfind(b"\n") - 1


def line_start(text: str, line: int) -> int | None:
    """Code-point offset where LSP line `line` (>= 0) starts; None past the last line.

    C-speed scans only (no line table): edits use this on the message loop, where building a
    table of 80,000 lines cost more than the edit.
    """
    if line <= 0:
        return 0
    if "\r" in text:
        # Atomic and possessive: a \r\n is one break, never split in two by backtracking.
        count = str(min(line, 2**31 - 1))
        m = re.compile(r"(?:[^\r\n]*+(?>\r\n|\r|\n)){" + count + "}").match(text)
        return m.end() if m else None
    pos, left, n = 0, line, len(text)
    while True:  # count newlines a chunk at a time, then find the last few one by one
        end = min(pos + 65536, n)
        seen = text.count("\n", pos, end)
        if seen >= left:
            for _ in range(left):
                pos = text.index("\n", pos) + 1
            return pos
        if end == n:
            return None
        left -= seen
        pos = end


def line_end(text: str, start: int) -> int:
    """Offset of the line break (or text end) of the line starting at `start`."""
    m = _NEWLINE.search(text, start)
    return m.start() if m else len(text)


def char_offset(text: str, line: int, col: int) -> int:
    """Code-point offset of an LSP position with a code-point column, clamped as LSP asks
    (what LineIndex.offset gives, without building the index)."""
    if line < 0:
        return 0
    start = line_start(text, line)
    if start is None:
        return len(text)
    return start + min(max(col, 0), line_end(text, start) - start)


class LineIndex:
    """Line table of one immutable text and its encoded bytes."""

    __slots__ = (
        "_ascii",
        "_byte_starts",
        "_char_starts",
        "_content_ends",
        "_sparse",
        "data",
        "text",
    )

    def __init__(self, text: str, data: bytes) -> None:
        self.text = text
        self.data = data
        # Every code point encodes to at least one byte, so equal lengths means pure ASCII.
        self._ascii = len(text) == len(data)
        self._sparse: list[int] | None = None  # byte offset of every _STEP-th code point
        if "\r" not in text:
            # numpy finds the \n bytes 50x faster than a regex yields match objects (an
            # 80,000-line file took 0.3 s per edit here).
            raw = np.frombuffer(data, dtype=np.uint8)
            nl = np.flatnonzero(raw == 10)
            self._byte_starts = [0, *(nl + 1).tolist()]
            if self._ascii:
                self._char_starts = self._byte_starts
            else:  # code points up to each \n: bytes that are not UTF-8 continuation bytes
                heads = np.cumsum((raw & 0xC0) != 0x80)
                self._char_starts = [0, *heads[nl].tolist()]
            self._content_ends = [s - 1 for s in self._char_starts[1:]]
            self._content_ends.append(len(text))
            return
        breaks = list(_NEWLINE.finditer(text))
        self._char_starts = [0, *(m.end() for m in breaks)]
        self._content_ends = [*(m.start() for m in breaks), len(text)]
        if self._ascii:
            self._byte_starts = self._char_starts
        else:
            # \r and \n never occur inside a multi-byte UTF-8 sequence: the breaks line up.
            self._byte_starts = [0, *(m.end() for m in _NEWLINE_B.finditer(data))]

    @property
    def line_count(self) -> int:
        return len(self._char_starts)

    def line(self, line: int) -> str:
        """Content of a line without its terminator ("" when out of range)."""
        if not 0 <= line < len(self._char_starts):
            return ""
        return self.text[self._char_starts[line] : self._content_ends[line]]

    def offset(self, line: int, col: int) -> int:
        """Code-point offset of an LSP position, clamped the way LSP asks for."""
        if line < 0:
            return 0
        if line >= len(self._char_starts):
            return len(self.text)
        start = self._char_starts[line]
        return start + min(max(col, 0), self._content_ends[line] - start)

    def position(self, offset: int) -> tuple[int, int]:
        """(line, code-point column) of a code-point offset."""
        offset = min(max(offset, 0), len(self.text))
        line = bisect_right(self._char_starts, offset) - 1
        start = self._char_starts[line]
        # An offset between \r and \n belongs at the end of the line's content.
        return line, min(offset, self._content_ends[line]) - start

    def snap(self, offset: int) -> int:
        """Move an offset that splits a \r\n pair to before the \r: LSP has no position there
        (tree-sitter tokens such as `//...` comments can end there)."""
        text = self.text
        if 0 < offset < len(text) and text[offset] == "\n" and text[offset - 1] == "\r":
            return offset - 1
        return offset

    def _checkpoints(self) -> list[int]:
        """Byte offsets of code points 0, _STEP, 2*_STEP...: conversions then cost O(_STEP),
        not O(line length) (a 1 MB minified line made every conversion decode the line)."""
        if self._sparse is None:
            text, out, pos = self.text, [0], 0
            for i in range(0, len(text), _STEP):
                pos += len(encode(text[i : i + _STEP]))
                out.append(pos)
            self._sparse = out
        return self._sparse

    def char_to_byte(self, offset: int) -> int:
        if self._ascii:
            return offset
        line = bisect_right(self._char_starts, offset) - 1
        start = self._char_starts[line]
        if offset - start <= _STEP:  # the usual case: a short way into its line
            return self._byte_starts[line] + len(encode(self.text[start:offset]))
        offset = min(offset, len(self.text))
        i = offset // _STEP
        return self._checkpoints()[i] + len(encode(self.text[i * _STEP : offset]))

    def byte_to_char(self, offset: int) -> int:
        if self._ascii:
            return offset
        line = bisect_right(self._byte_starts, offset) - 1
        start = self._byte_starts[line]
        if offset - start <= _STEP:
            # "ignore" drops a partial trailing sequence: rounds down to a code point boundary.
            return self._char_starts[line] + len(self.data[start:offset].decode("utf-8", "ignore"))
        marks = self._checkpoints()
        i = max(bisect_right(marks, offset) - 1, 0)
        # "ignore" drops a partial trailing sequence, i.e. rounds down to a code point boundary.
        chunk = self.data[marks[i] : max(offset, marks[i])].decode("utf-8", "ignore")
        return min(i * _STEP + len(chunk), len(self.text))
