"""Range edits on plain text (documents that are not parsed: skipped, too big, minified).

Only the lines up to the edit are looked at, with C-speed scans: a skipped 50 MB file cost
seconds a keystroke when the whole text was split into lines and indexed for each edit.
"""

from __future__ import annotations

import re

from .positions import to_codepoint

_EOL = re.compile(r"\r\n|\r|\n")  # LSP's line breaks


def splice(text: str, rng: tuple[int, int, int, int], new: str, encoding: str) -> str:
    """Apply one range edit to plain text, clamped like ParsedDocument.apply_change."""
    a = _raw_offset(text, rng[0], rng[1], encoding)
    b = _raw_offset(text, rng[2], rng[3], encoding)
    a, b = min(a, b), max(a, b)
    return text[:a] + new + text[b:]


def _line_start(text: str, line: int) -> int | None:
    """Offset where line `line` (> 0) starts, None past the end; C-speed scans only."""
    if "\r" in text:
        # Atomic and possessive: a \r\n is one break, never split into two by backtracking.
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


def _raw_offset(text: str, line: int, character: int, encoding: str) -> int:
    if line < 0:
        return 0
    start = _line_start(text, line) if line else 0
    if start is None:
        return len(text)  # past the last line: its end
    m = _EOL.search(text, start)
    end = m.start() if m else len(text)
    return start + to_codepoint(text[start:end], max(0, character), encoding)
