"""Text of documents that are not parsed (skipped: too big, minified, binary), as a rope.

A skipped file still gets every edit, so that it can become analysable again and so that its
text equals the client's. As one `str`, each keystroke in a 52 MB file copied all of it twice
and counted its newlines (0.2 s on the message loop). Here the text is a list of chunks of about
64K code points, each with its count of LSP line breaks; an edit finds its chunks by those
counts and rewrites only them, so it costs O(chunk + edit) plus O(chunks) bookkeeping.

Invariant: no chunk ends with "\\r" while the next one starts with "\\n" (a \\r\\n pair is one
break and never straddles two chunks), so per-chunk break counts add up.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate, pairwise

from ..parsing.text import line_start
from .positions import to_client, to_codepoint

CHUNK = 1 << 16


def _breaks(s: str) -> int:
    return s.count("\n") + s.count("\r") - s.count("\r\n")


def _find_eol(s: str, at: int) -> int:
    """Offset of the first \r or \n at or after `at`, or -1 (two memchr scans beat a regex)."""
    n, r = s.find("\n", at), s.find("\r", at)
    return n if r < 0 else r if n < 0 else min(n, r)


def _cut_points(s: str) -> list[int]:
    """Where to cut `s` into chunks of about CHUNK, never inside a \\r\\n pair."""
    cuts, at = [], CHUNK
    while at < len(s):
        if s[at - 1] == "\r" and s[at] == "\n":
            at += 1
        cuts.append(at)
        at += CHUNK
    return cuts


def _split(s: str) -> list[str]:
    if not s:
        return []
    bounds = [0, *_cut_points(s), len(s)]
    return [s[a:b] for a, b in pairwise(bounds) if b > a]


class RawText:
    """A mutable text with LSP-position edits in O(edit), and the facts the skip rule needs."""

    def __init__(self, text: str = "") -> None:
        self._load(text)

    def _load(self, text: str) -> None:
        self._chunks: list[str] = _split(text)
        self._lens = [len(c) for c in self._chunks]
        self._nbreaks = [_breaks(c) for c in self._chunks]
        self._utf8: list[int | None] = [None] * len(self._chunks)
        self._lines: list[tuple[int, int, int, bool] | None] = [None] * len(self._chunks)
        self._widths: list[dict[str, int] | None] = [None] * len(self._chunks)
        self._dirty = True
        self._starts: list[int] = []
        self._break_sums: list[int] = []

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        self._index()
        return self._starts[-1] if self._starts else 0

    def __str__(self) -> str:
        return "".join(self._chunks)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RawText):
            return str(self) == str(other)
        return isinstance(other, str) and len(self) == len(other) and str(self) == other

    __hash__ = None  # type: ignore[assignment]  # mutable

    def head(self, n: int) -> str:
        out, left = [], n
        for c in self._chunks:
            if left <= 0:
                break
            out.append(c[:left])
            left -= len(out[-1])
        return "".join(out)

    def utf8_length(self) -> int:
        total = 0
        for i, c in enumerate(self._chunks):
            n = self._utf8[i]
            if n is None:
                n = self._utf8[i] = len(c.encode("utf-8", "surrogatepass"))
            total += n
        return total

    def longest_line(self) -> int:
        """Code points of the longest run without \\n (the skip rule's measure)."""
        best, run = 0, 0
        for i, c in enumerate(self._chunks):
            s = self._lines[i]
            if s is None:
                first = c.find("\n")
                if first < 0:
                    s = (len(c), 0, 0, False)
                else:
                    last = c.rfind("\n")
                    inner = max(map(len, c[first + 1 : last].split("\n"))) if last > first else 0
                    s = (first, inner, len(c) - last - 1, True)
                self._lines[i] = s
            lead, inner, trail, has_nl = s
            if has_nl:
                best = max(best, run + lead, inner)
                run = trail
            else:
                run += lead
        return max(best, run)

    # -- positions --------------------------------------------------------------------------
    def _index(self) -> None:
        if self._dirty:
            self._starts = [0, *accumulate(self._lens)]
            self._break_sums = [0, *accumulate(self._nbreaks)]
            self._dirty = False

    def offset(self, line: int, character: int, encoding: str) -> int:
        """Code-point offset of a client position, clamped like ParsedDocument.apply_change."""
        self._index()
        if line < 0 or not self._chunks:
            return 0
        total = self._break_sums[-1]
        if line > total:
            return self._starts[-1]  # past the last line: its end
        if line == 0:
            k, at = 0, 0
        else:
            # The chunk that holds the line-th break; the line starts right after it.
            k = bisect_right(self._break_sums, line - 1) - 1
            # The chunk holds that break, so its line start is never None.
            at = line_start(self._chunks[k], line - self._break_sums[k]) or 0
        left = max(0, character)
        while True:
            if at == len(self._chunks[k]):  # the line starts at this chunk's end
                if k + 1 == len(self._chunks):
                    return self._starts[-1]
                k, at = k + 1, 0
            chunk = self._chunks[k]
            eol = _find_eol(chunk, at)
            if eol < 0 and at == 0:  # the whole chunk lies inside the line: cached width
                units = self._width(k, encoding)
                if left > units:
                    left -= units
                    if k + 1 == len(self._chunks):
                        return self._starts[-1]
                    k, at = k + 1, 0
                    continue
            seg = chunk[at : eol if eol >= 0 else len(chunk)]
            units = _units(seg, encoding)
            if left <= units or eol >= 0:
                return self._starts[k] + at + to_codepoint(seg, min(left, units), encoding)
            left -= units
            if k + 1 == len(self._chunks):
                return self._starts[-1]
            k, at = k + 1, 0

    def _width(self, k: int, encoding: str) -> int:
        cached = self._widths[k]
        if cached is None:
            cached = self._widths[k] = {}
        if encoding not in cached:
            cached[encoding] = _units(self._chunks[k], encoding)
        return cached[encoding]

    # -- editing ----------------------------------------------------------------------------
    def splice(self, rng: tuple[int, int, int, int], new: str, encoding: str) -> None:
        """Apply one range edit (client positions)."""
        a = self.offset(rng[0], rng[1], encoding)
        b = self.offset(rng[2], rng[3], encoding)
        self.replace(min(a, b), max(a, b), new)

    def replace(self, a: int, b: int, new: str) -> None:
        """Replace code points [a, b) with `new`."""
        self._index()
        if not self._chunks:
            self._load(new)
            return
        ka = min(bisect_right(self._starts, a) - 1, len(self._chunks) - 1)
        kb = min(bisect_right(self._starts, b) - 1, len(self._chunks) - 1)
        piece = (
            self._chunks[ka][: a - self._starts[ka]]
            + new
            + self._chunks[kb][b - self._starts[kb] :]
        )
        # Rewrite the neighbours too when the new piece is small, so chunks do not fragment
        # into slivers over many edits; and so a \r\n across the seam is rejoined below.
        lo, hi = ka, kb + 1
        if len(piece) < CHUNK // 4:
            if lo > 0:
                lo -= 1
                piece = self._chunks[lo] + piece
            elif hi < len(self._chunks):
                piece = piece + self._chunks[hi]
                hi += 1
        if lo > 0 and self._chunks[lo - 1].endswith("\r") and piece.startswith("\n"):
            lo -= 1
            piece = self._chunks[lo] + piece
        if hi < len(self._chunks) and piece.endswith("\r") and self._chunks[hi].startswith("\n"):
            piece = piece + self._chunks[hi]
            hi += 1
        parts = _split(piece)
        self._chunks[lo:hi] = parts
        self._lens[lo:hi] = [len(p) for p in parts]
        self._nbreaks[lo:hi] = [_breaks(p) for p in parts]
        self._utf8[lo:hi] = [None] * len(parts)
        self._lines[lo:hi] = [None] * len(parts)
        self._widths[lo:hi] = [None] * len(parts)
        self._dirty = True


def _units(s: str, encoding: str) -> int:
    """Length of `s` in the client's units."""
    return to_client(s, len(s), encoding)
