"""Character offsets in the units a client counts (UTF-8, UTF-16, UTF-32) ↔ code points.

LSP splits lines on \\n, \\r\\n and \\r only (not on the other characters str.splitlines knows),
and a character offset past the end of a line means the end of that line.
"""

from __future__ import annotations

import re

from ..parsing.text import line_end, line_start

_EOL = re.compile(r"\r\n|\r|\n")


def lsp_lines(text: str) -> list[str]:
    """Lines without their endings, split the way LSP counts them."""
    return _EOL.split(text)


def _units(ch: str, encoding: str) -> int:
    o = ord(ch)
    if encoding == "utf-16":
        return 2 if o > 0xFFFF else 1
    if encoding == "utf-8":
        if o < 0x80:
            return 1
        if o < 0x800:
            return 2
        # Lone surrogates (from invalid input) count as 3 bytes, as CESU/WTF-8 would.
        return 3 if o <= 0xFFFF else 4
    return 1


_CODEC = {"utf-16": ("utf-16-le", 2), "utf-8": ("utf-8", 1)}


def to_codepoint(line: str, character: int, encoding: str = "utf-16") -> int:
    if encoding == "utf-32" or line.isascii():
        return max(0, min(character, len(line)))
    codec = _CODEC.get(encoding)
    if codec is not None and character > 64:
        # By the codec, not per character in Python: a 1 MB minified line took 0.8 s a keystroke.
        # Every code point is at least one unit, so the answer lies in line[:character].
        name, width = codec
        try:
            cut = line[:character].encode(name)[: character * width]
        except UnicodeEncodeError:
            cut = None  # lone surrogates: counted one by one below
        if cut is not None:
            head = cut.decode(name, "ignore")  # a split character is dropped here...
            return len(head) + (len(head.encode(name)) < len(cut))  # ...and counted, as below
    units = 0
    for i, ch in enumerate(line):
        if units >= character:
            return i
        units += _units(ch, encoding)
    return len(line)


def to_client(line: str, codepoint: int, encoding: str = "utf-16") -> int:
    head = line[: max(0, codepoint)]
    if encoding == "utf-32" or head.isascii():
        return len(head)
    # Measured by the codec, not per character in Python: a minified line holds thousands of
    # names, and this runs for each on the event loop. Same widths as _units.
    if encoding == "utf-16":
        return len(head.encode("utf-16-le", "surrogatepass")) // 2
    if encoding == "utf-8":
        return len(head.encode("utf-8", "surrogatepass"))
    return len(head)


def clamp_position(lines: list[str], line: int, character: int, encoding: str) -> tuple[int, int]:
    """Client (line, character) → code-point (line, col), clamped into the document."""
    if line < 0:
        return 0, 0
    if line >= len(lines):
        return len(lines) - 1, len(lines[-1])
    return line, to_codepoint(lines[line], max(0, character), encoding)


def client_offset(text: str, line: int, character: int, encoding: str) -> int:
    """Code-point offset in `text` of a client position, clamped into the document the way
    LSP asks; C-speed scans only, so an edit costs no line table of the whole text."""
    if line < 0:
        return 0
    start = line_start(text, line)
    if start is None:
        return len(text)  # past the last line: its end
    end = line_end(text, start)
    return start + to_codepoint(text[start:end], max(0, character), encoding)
