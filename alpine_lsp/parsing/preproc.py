"""One configuration of C/C++ source for tree-sitter: conditional branches blanked.

tree-sitter parses every branch of `#if/#elif/#else` as if all were compiled, so a directive
that splits a statement (an `#ifdef` between an `if` and its `else if`, two function headers
for one body, two opening lines for one closing brace) leaves fragments: `else if (...) {...}`
parsed as a function named `if`, or one function swallowing the next. A compiler sees one
branch; so does the parser here. The first branch of each group is kept (the `#else` of an
`#if 0`), the others and the directive lines become blanks of the same byte length, newlines
kept: every byte offset and point is unchanged, and the function text shown and scored is
still the real source, directives and all.
"""

from __future__ import annotations

import re

# A conditional directive line, continuation lines included.
_DIRECTIVE = re.compile(
    rb"^[ \t]*#[ \t]*(ifdef|ifndef|if|elifdef|elifndef|elif|else|endif)\b(?:\\\r?\n|[^\n])*",
    re.M,
)
_IF_ZERO = re.compile(rb"#[ \t]*if[ \t]+(?:0|false)\b[ \t]*(?:/[/*].*)?$", re.S)
_BLANK = bytes(b if b in (10, 13) else 32 for b in range(256))


def masked_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges to blank: conditional directive lines and the branches not taken."""
    if b"#" not in data:
        return []
    ranges: list[tuple[int, int]] = []
    # Per open group: [branch kept now, a branch already kept]; nesting inside a dropped
    # branch is dropped whole.
    stack: list[list[bool]] = []
    inactive_from: int | None = None  # where the current dropped stretch began

    def active() -> bool:
        return all(g[0] for g in stack)

    for m in _DIRECTIVE.finditer(data):
        kind = m[1]
        was_active = active()
        if kind in (b"if", b"ifdef", b"ifndef"):
            keep = not (kind == b"if" and _IF_ZERO.match(m[0].strip()))
            stack.append([keep, keep])
        elif kind in (b"elif", b"elifdef", b"elifndef", b"else"):
            if not stack:
                continue  # stray directive: leave it to tree-sitter
            group = stack[-1]
            group[0] = not group[1]
            group[1] = True
        else:  # endif
            if not stack:
                continue
            stack.pop()
        now_active = active()
        if was_active and not now_active:
            inactive_from = m.end()
        elif not was_active and now_active and inactive_from is not None:
            ranges.append((inactive_from, m.start()))
            inactive_from = None
        ranges.append((m.start(), m.end()))
    if inactive_from is not None:
        ranges.append((inactive_from, len(data)))
    return ranges


def mask(data: bytes) -> tuple[bytes, tuple[tuple[int, int], ...]]:
    """`data` with the ranges of `masked_ranges` blanked, and those ranges (empty: unchanged)."""
    ranges = masked_ranges(data)
    if not ranges:
        return data, ()
    out = bytearray(data)
    for a, b in ranges:
        out[a:b] = data[a:b].translate(_BLANK)
    return bytes(out), tuple(ranges)
