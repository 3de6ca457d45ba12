"""Line ranking: which source lines of a function the encoder attended to most.

The encoder already scores every token at each pruning layer (the attention it received); the
pruning bookkeeping spreads a merged token's score over the tokens it stands for
(`AlpineOutput.token_scores`). Here those per-token scores are summed over layers and tokens
onto the lines of the ORIGINAL function text. The tokenizer reads whitespace-collapsed text, so
its character offsets are mapped back through the collapse first. No torch here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_SPACE = re.compile(r"\s+")
# Line breaks as LSP counts them (engine/positions.py), so line numbers agree with the editor.
_EOL = re.compile(r"\r\n|\r|\n")

# Lines shown per function (hover, relatedInformation, JSON).
MAX_LINES = 10
# Ranking adjustments measured by `eval lines` (MODEL.md): a line with a call counts double, and
# the function's first line (its signature, which draws attention in every function) goes last.
CALL_WEIGHT = 2.0
_CALL = re.compile(r"[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*\s*\(")
_NOT_CALL = re.compile(r"\b(?:if|for|while|switch|return|sizeof|catch|elif)\s*\($")


def has_call(text: str) -> bool:
    """Whether a source line calls something (`f(`, not `if (`)."""
    return any(not _NOT_CALL.search(m.group(0)) for m in _CALL.finditer(text))


# What str.isspace() (and so the collapse's \s) counts as whitespace, as code points.
_WS_POINTS = (9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F)
_WS = np.array([*_WS_POINTS, 0x205F, 0x3000, *range(0x2000, 0x200B)], dtype=np.uint32)


# A lookup table over code points up to the last whitespace one; everything above maps to the
# entry past it (False). A table read is several times cheaper than np.isin per function.
_WS_TABLE = np.zeros(int(_WS.max()) + 2, dtype=bool)
_WS_TABLE[_WS] = True
_ABOVE = len(_WS_TABLE) - 1


def _spaces(code: str) -> np.ndarray:
    """Boolean whitespace mask of `code`, vectorised (this runs on every scored function)."""
    points = np.frombuffer(code.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return _WS_TABLE[np.minimum(points, _ABOVE)]


def collapse_map(code: str) -> tuple[str, np.ndarray]:
    """The whitespace-collapsed text (as `normalize_code(..., "collapse")`) and, for each of its
    characters, the index of the character it came from in `code` (a collapsed space maps to the
    first character of its whitespace run)."""
    text = _SPACE.sub(" ", code).strip()
    if not code:
        return text, np.zeros(0, dtype=np.int64)
    sp = _spaces(code)
    first = sp.copy()
    first[1:] &= ~sp[:-1]  # the first character of each whitespace run
    keep = ~sp | first
    idx = np.flatnonzero(keep)
    # Runs at either edge are stripped.
    if len(idx) and sp[idx[0]]:
        idx = idx[1:]
    if len(idx) and sp[idx[-1]]:
        idx = idx[:-1]
    return text, idx.astype(np.int64)


def line_starts(code: str) -> np.ndarray:
    """Character offset at which each line of `code` starts (line 1 at offset 0)."""
    return np.asarray([0] + [m.end() for m in _EOL.finditer(code)], dtype=np.int64)


def token_lines(
    code: str, offsets: Sequence[tuple[int, int]], whitespace: str = "collapse"
) -> np.ndarray:
    """1-based line (within `code`) of each token, from the tokenizer's offsets into the text the
    model read. A token's line is that of its first non-space character; 0 if it has none."""
    if whitespace == "collapse":
        text, src = collapse_map(code)
    else:
        text, src = code, np.arange(len(code), dtype=np.int64)
    starts = line_starts(code)
    out = np.zeros(len(offsets), dtype=np.int64)
    if not len(offsets) or not len(text):
        return out
    span = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    a, b = span[:, 0].clip(0, len(text)), span[:, 1].clip(0, len(text))
    space = _spaces(text)
    # Byte-level BPE glues the preceding space onto a token: step past it (vectorised).
    while True:
        step = (a < b) & space[np.minimum(a, len(text) - 1)]
        if not step.any():
            break
        a = a + step
    ok = (a < b) & (a < len(src))
    out[ok] = np.searchsorted(starts, src[a[ok]], side="right")
    return out


def rank_lines(
    lines: np.ndarray, scores: np.ndarray, limit: int = MAX_LINES, code: str | None = None
) -> list[tuple[int, float]]:
    """Lines by the summed score of their tokens, highest first, with their share of the total
    (shares of all lines sum to 1; only the first `limit` are returned). Ties go to the earlier
    line. With `code`, the adjustments above apply (calls weighted up, first line last)."""
    ok = lines > 0
    if not ok.any():
        return []
    sums = np.bincount(lines[ok], weights=np.asarray(scores, dtype=np.float64)[ok])
    present = np.flatnonzero(np.bincount(lines[ok]))
    last = np.zeros(len(sums), dtype=bool)
    if code is not None:
        text = _EOL.split(code)
        for ln in present:
            if ln - 1 < len(text) and has_call(text[ln - 1]):
                sums[ln] *= CALL_WEIGHT
        if len(present) > 1:
            last[1] = present[0] == 1
    total = float(sums.sum())
    if total <= 0:  # nothing attended (cannot happen with softmax): the earliest lines
        return [(int(ln), 0.0) for ln in present[:limit]]
    order = present[np.lexsort((present, -sums[present], last[present]))]
    return [(int(ln), float(sums[ln] / total)) for ln in order[:limit]]


def combine_layers(per_layer: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """(P, L) per-layer token scores → (L,): a weighted sum over layers (equal by default)."""
    if per_layer.ndim == 1:
        return per_layer
    if weights is None:
        return per_layer.sum(axis=0)
    w = np.asarray(weights, dtype=np.float64)[: per_layer.shape[0]]
    return (per_layer[: len(w)] * w[:, None]).sum(axis=0)


def function_lines(
    code: str,
    offsets: Sequence[tuple[int, int]],
    per_layer: np.ndarray,
    whitespace: str = "collapse",
    weights: Sequence[float] | None = None,
    limit: int = MAX_LINES,
) -> list[tuple[int, float]]:
    """Ranked (line, share) for one function. `per_layer` is (P, n) or (n,) over the content
    tokens in `offsets` (specials already removed)."""
    if not len(offsets):
        return []
    scores = combine_layers(np.asarray(per_layer, dtype=np.float64), weights)
    lines = token_lines(code, offsets, whitespace)
    return rank_lines(lines, scores[: len(offsets)], limit, code)


def row_lines(
    code: str,
    offsets: Sequence[tuple[int, int]],
    per_layer_row: np.ndarray,
    whitespace: str = "collapse",
    weights: Sequence[float] | None = None,
    limit: int = MAX_LINES,
) -> list[tuple[int, float]]:
    """`function_lines` from one row of `AlpineOutput.token_scores` (P, L): input position 0 is
    the first special, content tokens follow it in `offsets` order."""
    per = np.asarray(per_layer_row, dtype=np.float64)
    if per.ndim == 1:
        per = per[None, :]
    per = per[:, 1 : 1 + len(offsets)]
    return function_lines(code, offsets, per, whitespace, weights, limit)


def _wordch(c: str) -> bool:
    return c.isalnum() or c == "_"


def position_words(text: str, offsets: Sequence[tuple[int, int]]) -> list[str]:
    """Per model position (0 = the first special, then the content tokens), the whole word of the
    normalised `text` that the token is part of: `DEBUGASSERT`, never the piece `ERT`. Specials
    and whitespace-only tokens get ""."""
    out = [""]
    for a, b in offsets:
        while a < b and text[a].isspace():
            a += 1
        if a >= b:
            out.append("")
            continue
        if _wordch(text[a]):
            while a > 0 and _wordch(text[a - 1]):
                a -= 1
            while b < len(text) and _wordch(text[b]):
                b += 1
        out.append(text[a:b].strip())
    out.append("")
    return out
