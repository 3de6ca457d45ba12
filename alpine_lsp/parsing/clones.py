"""Clone keys of a function: normalised token sequences from its tree-sitter tree, hashed.

- type-1 key: the token texts with comments and layout gone (identical code, reformatted);
- type-2 key: the same with identifiers renamed to `$I` and literals to `$L`, keywords,
  operators and punctuation kept (a copy with renamed variables and changed constants);
- a MinHash signature of the token k-grams, for near copies (type-3): statements added,
  removed or changed. Two signatures agree in a fraction of places that estimates the Jaccard
  similarity of the two k-gram sets; LSH band keys (a few signature values hashed together)
  find the candidates without comparing every pair;
- a MinHash of the set of identifier names: a near copy must also share names, since
  unrelated code of one repetitive shape shares k-grams but not names.

Python's blocks have no bracket tokens, so the keys get synthetic `{` `}` at block edges:
otherwise moving a statement out of an `if` would look identical. Everything here is
deterministic across processes (no `hash()`), because keys are stored in the index.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

import numpy as np

from .languages import get_parser

MIN_TOKENS = 30  # below this a match is boilerplate (getters, one-line wrappers), not a copy
# Near copies need more: in a function of 30-45 tokens one shared idiom (an alloc callback, a
# close callback) is most of its k-grams; a third of such pairs read by hand were not copies.
NEAR_MIN_TOKENS = 45
SHINGLE = 5  # k of the k-grams
NUM_PERM = 72
BANDS = 24
ROWS = NUM_PERM // BANDS  # 3: a pair at Jaccard 0.5 shares a band with probability 0.96
# MinHash of the set of identifier names. Repetitive code of one shape (a run of
# `clear(&o->a); clear(&o->b); ...`) has few distinct type-2 k-grams, so two unrelated functions
# of that shape reach a high k-gram Jaccard; they share few names. Standard error of the
# estimate at Jaccard 0.5: 0.07.
ID_PERM = 48

_LITERAL_TYPES = frozenset(
    {
        "string",
        "number",
        "integer",
        "float",
        "template_string",
        "concatenated_string",
        "text_block",
        "char",
        # Boolean and null literals, which the grammars name as keywords: a copy that turns
        # `false` into `true` is a type-2 clone (BCB labels it so). C's NULL parses as `null`.
        "true",
        "false",
        "null",
        "none",
        "nil",
        "undefined",
    }
)
# Leaves whose text must stay (they look like identifiers to the "identifier" rule below).
_KEEP_IDENTIFIERS = frozenset({"primitive_type", "predefined_type"})
# Wrappers that make a lone method parse as a method (byte offsets are shifted back).
_WRAP = {
    "java": ("class _W {\n", "\n}"),
    "javascript": ("class _W {\n", "\n}"),
    "typescript": ("class _W {\n", "\n}"),
    "tsx": ("class _W {\n", "\n}"),
}
_JS_PLAIN = ("function", "async", "const", "let", "var", "export", "(")


@dataclass(frozen=True)
class CloneKeys:
    """What the index stores per function for the exact and near-copy tiers."""

    n_tokens: int
    type1: str  # hex digests (16 bytes)
    type2: str
    signature: np.ndarray  # (NUM_PERM,) uint32; all 0xFFFFFFFF when too short for a k-gram
    # (ID_PERM,) uint32 MinHash of the identifier names; all 0xFFFFFFFF without identifiers
    identifiers: np.ndarray = field(default_factory=lambda: _EMPTY_ID.copy())

    @property
    def bands(self) -> np.ndarray:
        return band_keys(self.signature)


def _is_literal(node_type: str) -> bool:
    return node_type in _LITERAL_TYPES or node_type.endswith("_literal")


# What a node is to the keys, decided once per node kind (see `_kinds`).
_SKIP, _LITERAL, _IDENT, _BLOCK, _OTHER = range(5)
_KINDS: dict[str, dict[int, int]] = {}  # language -> kind_id -> one of the above


def _category(node_type: str, named: bool, python: bool) -> int:
    if "comment" in node_type:
        return _SKIP  # the comment and all it holds
    if named and _is_literal(node_type):
        return _LITERAL  # one `$L` token, its parts not walked
    if named and "identifier" in node_type and node_type not in _KEEP_IDENTIFIERS:
        return _IDENT  # `$I` when it is a leaf
    if python and node_type == "block":
        return _BLOCK  # synthetic `{` `}` around it when it has children
    return _OTHER


def _kinds(language: str) -> dict[int, int]:
    """Category by node kind id, filled as kinds are met. A node's type and whether it is named
    are properties of its kind (its symbol, aliases included), so one lookup per node replaces
    the string tests per node that the walk cost most of its time in."""
    table = _KINDS.get(language)
    if table is None:
        table = _KINDS.setdefault(language, {})
    return table


def token_streams(text: str, language: str) -> tuple[list[str], list[str]]:
    """The type-1 and the type-2 sequence of one function (comments dropped): token texts, and
    the same with identifiers as `$I` and literals as `$L`; Python blocks get `{` `}`.

    Parses the function's text on its own, so the keys are a function of the text alone (the
    caches and the index key them by its hash); a Java or JS method is wrapped in a class
    first so that the grammar sees a method and not an error.
    """
    prefix, suffix = "", ""
    if language in _WRAP and not (language != "java" and text.lstrip().startswith(_JS_PLAIN)):
        prefix, suffix = _WRAP[language]
    full = prefix + text + suffix
    data = full.encode("utf-8", "surrogatepass")
    # ASCII: byte offsets are code-point offsets, and slicing the str saves a decode per token.
    src = full if len(data) == len(full) else None
    lo, hi = len(prefix), len(data) - len(suffix)  # the wrapper is ASCII
    tree = get_parser(language).parse(data)
    python = language == "python"
    kinds = _kinds(language)
    # Wrapped: nodes wholly in the wrapper are left out; below a node strictly inside the
    # function (depth `inside`) every node is inside, so only the nodes above need the test.
    wrapped = bool(prefix)
    inside = -1
    t1: list[str] = []
    t2: list[str] = []
    cursor = tree.walk()
    first, following, up = cursor.goto_first_child, cursor.goto_next_sibling, cursor.goto_parent
    leaving: list[int] = []  # depth of open python blocks
    depth = 0
    while True:
        node = cursor.node
        assert node is not None
        cat = kinds.get(node.kind_id)
        if cat is None:
            cat = kinds[node.kind_id] = _category(node.type, node.is_named, python)
        test = wrapped and inside < 0
        if test and (node.end_byte <= lo or node.start_byte >= hi):
            pass  # the wrapper's own tokens
        elif cat == _SKIP:
            pass
        elif cat == _LITERAL:
            s, e = node.start_byte, node.end_byte
            t1.append(src[s:e] if src is not None else data[s:e].decode("utf-8", "replace"))
            t2.append("$L")
        elif first():  # an inner node: walk its children
            if test and node.start_byte > lo and node.end_byte < hi:
                inside = depth
            if cat == _BLOCK:
                t1.append("{")
                t2.append("{")
                leaving.append(depth)
            depth += 1
            continue
        else:  # a leaf
            s, e = node.start_byte, node.end_byte
            w = (src[s:e] if src is not None else data[s:e].decode("utf-8", "replace")).strip()
            if w:
                t1.append(w)
                t2.append("$I" if cat == _IDENT else w)
        while not following():
            if not up():
                return t1, t2
            depth -= 1
            if depth <= inside:
                inside = -1  # back on that node: its siblings need the test again
            if leaving and leaving[-1] == depth:
                leaving.pop()
                t1.append("}")
                t2.append("}")


def tokens(text: str, language: str) -> list[tuple[str, str]]:
    """(text, normalised) per token of one function, comments dropped (`token_streams`)."""
    t1, t2 = token_streams(text, language)
    return list(zip(t1, t2, strict=True))


def _digest(parts: list[str]) -> str:
    """blake2b-128 of the parts, each followed by a NUL byte (one update: the same bytes)."""
    data = "\x00".join(parts) + "\x00" if parts else ""
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=65536)
def _token_id(token: str) -> int:
    digest = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _params() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0x414C50)  # fixed: signatures are stored in the index
    a = rng.integers(1, 2**63, NUM_PERM, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, NUM_PERM, dtype=np.uint64)
    return a, b


_A, _B = _params()
_EMPTY_ID = np.full(ID_PERM, 0xFFFFFFFF, dtype=np.uint32)


_MUL = np.uint64(0x100000001B3)


def shingle_hashes(seq: list[str], k: int = SHINGLE) -> np.ndarray:
    """Distinct 64-bit hashes of the k-grams of `seq` (uint64, sorted). Integer arrays wrap
    around on overflow without a warning, so the in-place steps need no errstate."""
    if len(seq) < k:
        return np.zeros(0, dtype=np.uint64)
    ids = np.fromiter(map(_token_id, seq), dtype=np.uint64, count=len(seq))
    n = len(ids) - k + 1
    h = ids[:n].copy()
    for j in range(1, k):
        h *= _MUL
        h += ids[j : j + n]
    h.sort()
    keep = np.empty(n, dtype=bool)
    keep[0] = True
    np.not_equal(h[1:], h[:-1], out=keep[1:])
    return h[keep]


_B_COLUMN = _B[:, None]


def minhash(hashes: np.ndarray, perms: int = NUM_PERM) -> np.ndarray:
    """(perms,) uint32: per hash function (the first `perms`), the least value over the
    hashes (the k-grams, or the identifier names)."""
    if hashes.size == 0:
        return np.full(perms, 0xFFFFFFFF, dtype=np.uint32)
    v = np.multiply.outer(_A[:perms], hashes)  # multiply-shift hashing, (perms, n)
    v += _B_COLUMN[:perms]
    return (v.min(axis=1) >> np.uint64(32)).astype(np.uint32)


def identifier_minhash(names: set[str]) -> np.ndarray:
    """(ID_PERM,) uint32 MinHash of a set of names."""
    return minhash(np.fromiter(map(_token_id, names), dtype=np.uint64, count=len(names)), ID_PERM)


def band_keys(signature: np.ndarray) -> np.ndarray:
    """(BANDS,) uint64: each band's ROWS signature values hashed into one number."""
    s = signature.astype(np.uint64).reshape(BANDS, ROWS)
    key = np.zeros(BANDS, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(ROWS):
            key = key * np.uint64(0x9E3779B97F4A7C15) + s[:, j]
    return key


def estimate_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def shingle_sequence(toks: list[tuple[str, str]]) -> list[str]:
    """The sequence the k-grams are taken over: the type-2 one (identifiers and literals
    renamed). On BigCloneBench's valid pairs its 5-gram Jaccard reaches 0.5 for 94% of the
    very-strong type-3 pairs against 57% with identifiers kept, and for 0.1% of non-clones."""
    return [n for _, n in toks]


def clone_keys(text: str, language: str) -> CloneKeys:
    """All keys of one function (language as in `parsing.languages`)."""
    t1, t2 = token_streams(text, language)
    return CloneKeys(
        n_tokens=len(t1),
        type1=_digest(t1),
        type2=_digest(t2),
        signature=minhash(shingle_hashes(t2)),  # shingle_sequence: the type-2 sequence
        identifiers=identifier_minhash({a for a, b in zip(t1, t2, strict=True) if b == "$I"}),
    )
