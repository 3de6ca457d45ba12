"""Similar-code hints in tiers: exact copies, near copies, then semantic neighbours.

- identical (type-1) and renamed (type-2) copies: equal normalised token hashes; always shown;
- near copies (type-3): estimated Jaccard of token 5-grams at or above the language's threshold;
- semantic (type-4): embedding cosine at or above the language's threshold.

Per-language thresholds come from the model (`similarity_thresholds` in alpine.json, set so
that random pairs of unrelated functions cross them about once per 1,000 functions); the
`similarity.threshold` setting overrides the cosine one. Functions under `MIN_TOKENS` tokens
neither get nor give hints. Used by the server's engine and by `check` alike; no LSP here.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from dataclasses import dataclass

import numpy as np

from ..index import IndexEntry, IndexStore, Match
from ..model.score import FunctionScore
from ..parsing import Function
from ..parsing.clones import MIN_TOKENS, CloneKeys, clone_keys
from .fmt import similarity

log = logging.getLogger(__name__)

# A generated or minified file must not flood the index: at most this many functions per file,
# and at most MAX_SAME_KEY functions of one file with one type-2 key (thousands of identical
# stubs); the rest is left out, with a log line.
MAX_PER_FILE = 2000
MAX_SAME_KEY = 20
# For a language the model has no calibration for: above every calibrated threshold.
FALLBACK_NEAR = 0.8
FALLBACK_COSINE = 0.999
KIND_ORDER = {"identical": 0, "renamed": 1, "near": 2, "semantic": 3}


@dataclass(frozen=True)
class Thresholds:
    near: float | None  # estimated Jaccard of token 5-grams; None: no near-copy hints
    cosine: float | None  # None: no semantic hints
    # A near copy must also have at least this identifier-name Jaccard (estimated).
    near_identifiers: float = 0.0


def thresholds(model, language: str, cosine_override: float | None = None) -> Thresholds:
    """The language's thresholds from the model, the override replacing the cosine."""
    table = getattr(model, "similarity_thresholds", None) or {}
    own = table.get(language)
    if own is None and table:
        nears = [float(t["near"]) for t in table.values() if t.get("near") is not None]
        # The language has no mean, so its vectors are raw: the raw-space cuts apply.
        raw = [t.get("cosine_raw") if t.get("centred") else t.get("cosine") for t in table.values()]
        cosines = [float(c) for c in raw if c is not None]
        names = [float(t.get("near_identifiers", 0.0)) for t in table.values()]
        own = {
            "near": max([*nears, FALLBACK_NEAR]),
            "cosine": max([*cosines, FALLBACK_COSINE]),
            "near_identifiers": max([*names, 0.0]),
        }
    if own is None:  # a model without the table: its one cosine, a conservative near cut
        own = {"near": FALLBACK_NEAR, "cosine": getattr(model, "similarity_threshold", None)}
    cosine = own.get("cosine") if cosine_override is None else cosine_override
    near = own.get("near")
    names = float(own.get("near_identifiers", 0.0))
    return Thresholds(None if near is None else float(near), cosine, names)


class KeyCache:
    """Clone keys by (language, text hash): an edit re-parses only the functions it changed."""

    def __init__(self, size: int = 20000) -> None:
        self.size = size
        self._d: OrderedDict[tuple[str, str], CloneKeys | None] = OrderedDict()

    def get(self, f: Function, language: str) -> CloneKeys | None:
        key = (language, f.hash)
        if key in self._d:
            self._d.move_to_end(key)
            return self._d[key]
        try:
            keys: CloneKeys | None = clone_keys(f.text, language)
        except Exception:  # a grammar problem costs this function its exact tiers only
            log.exception("clone keys failed for %s", f.name)
            keys = None
        self._d[key] = keys
        if len(self._d) > self.size:
            self._d.popitem(last=False)
        return keys

    def resize(self, size: int) -> None:
        self.size = size
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)

    def many(self, functions: list[Function], language: str) -> list[CloneKeys | None]:
        return [self.get(f, language) for f in functions]


def capped(uri: str, keys: list[CloneKeys | None]) -> list[bool]:
    """Which functions of a file go into the index (see MAX_PER_FILE, MAX_SAME_KEY)."""
    keep = [True] * len(keys)
    if len(keys) > MAX_PER_FILE:
        log.info(
            "%s: %d functions; only the first %d are indexed for similar-code hints "
            "(a generated file?)",
            uri,
            len(keys),
            MAX_PER_FILE,
        )
        keep[MAX_PER_FILE:] = [False] * (len(keys) - MAX_PER_FILE)
    seen: Counter[str] = Counter()
    dropped = 0
    for i, k in enumerate(keys):
        if k is None or not keep[i] or k.n_tokens < MIN_TOKENS:
            continue
        seen[k.type2] += 1
        if seen[k.type2] > MAX_SAME_KEY:
            keep[i] = False
            dropped += 1
    if dropped:
        log.info(
            "%s: %d copies of functions already present %d times in the file were not indexed "
            "(a generated file?)",
            uri,
            dropped,
            MAX_SAME_KEY,
        )
    return keep


def vectors_of(model, scores: list[FunctionScore], language: str) -> list[np.ndarray]:
    """The vectors hints compare for these scores: the model's similarity space (centred per
    language where the model has a mean), so the index and every query use one space."""
    return list(model.similarity_vectors([s.embedding for s in scores], language))


def index_entries(
    uri: str,
    language: str,
    functions: list[Function],
    vectors: list[np.ndarray] | np.ndarray,
    keys: list[CloneKeys | None],
    fingerprint: str,
) -> list[IndexEntry]:
    """A file's rows for the index (the server's and `check`'s): its functions with their
    similarity vectors (`AlpineModel.similarity_vectors`) and clone keys, less what `capped`
    leaves out of a generated file."""
    keep = capped(uri, keys)
    return [
        IndexEntry.from_function(uri, language, f, fingerprint, v, k)
        for f, v, k, ok in zip(functions, vectors, keys, keep, strict=True)
        if ok
    ]


def find(
    index: IndexStore,
    uri: str,
    language: str,
    functions: list[Function],
    keys: list[CloneKeys | None],
    embeddings: list[np.ndarray],
    fingerprint: str,
    limits: Thresholds,
    max_results: int,
) -> list[list[Match]]:
    """The hints of each function, best tier first, at most max_results, one per location."""
    out: list[list[Match]] = []
    for f, k, e in zip(functions, keys, embeddings, strict=True):
        if k is None or k.n_tokens < MIN_TOKENS or max_results <= 0:
            out.append([])
            continue
        exclude = (uri, f.start_line)
        found = index.exact(k, language, max_results, exclude)
        if len(found) < max_results and limits.near is not None:
            found += index.near(
                k,
                language,
                max_results,
                fingerprint,
                len(e),
                limits.near,
                exclude,
                min_identifiers=limits.near_identifiers,
            )
        if len(found) < max_results and limits.cosine is not None:
            found += index.query(
                e,
                max_results,
                fingerprint,
                exclude=exclude,
                min_score=limits.cosine,
                language=language,
                min_tokens=MIN_TOKENS,
            )
        out.append(merge(found, max_results))
    return out


def merge(matches: list[Match], k: int) -> list[Match]:
    """One match per location (the strongest tier wins), strongest tier then score first."""
    best: dict[tuple[str, int], Match] = {}
    for m in matches:
        where = (m.uri, m.start_line)
        old = best.get(where)
        if old is None or (KIND_ORDER[m.kind], -m.score) < (KIND_ORDER[old.kind], -old.score):
            best[where] = m
    ranked = sorted(best.values(), key=lambda m: (KIND_ORDER[m.kind], -m.score, m.uri))
    return ranked[:k]


def score_text(m: Match) -> str:
    """Three digits, never rounded up to a perfect score it does not have (0.999, not 1.00)."""
    return similarity(m.score)


def describe(m: Match, where: str) -> str:
    """One match in words: `copy of parse_header in src/io.c:42 (renamed identifiers)`."""
    if m.kind == "identical":
        return f"copy of {m.name} in {where} (identical)"
    if m.kind == "renamed":
        return f"copy of {m.name} in {where} (renamed identifiers)"
    if m.kind == "near":
        return f"near copy of {m.name} in {where} (token overlap {score_text(m)})"
    return f"similar to {m.name} in {where} (cosine {score_text(m)})"


def summary(matches: list[Match], where_of) -> str:
    """The one-line message for a function's hints: the best one, and how many more."""
    first = describe(matches[0], where_of(matches[0]))
    more = len(matches) - 1
    return first + (f" and {more} more" if more else "")


def lens_title(matches: list[Match]) -> str:
    """The code lens: what kinds of match, in the diagnostics' words (`1 copy, 2 similar`)."""
    copies = sum(m.kind in ("identical", "renamed") for m in matches)
    near = sum(m.kind == "near" for m in matches)
    other = len(matches) - copies - near
    parts = []
    if copies:
        parts.append(f"{copies} cop{'ies' if copies != 1 else 'y'}")
    if near:
        parts.append(f"{near} near cop{'ies' if near != 1 else 'y'}")
    if other:
        parts.append(f"{other} similar function{'s' if other != 1 else ''}")
    return ", ".join(parts)
