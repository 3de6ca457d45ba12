"""The lexical half of the defect score: TF-IDF over code tokens and a logistic regression.

On Devign a linear model over token n-grams is a strong signal that a small encoder trained on
two CPU cores does not reach on its own; the shipped score fuses both (weights fitted on the
validation split, see MODEL.md). Stored beside the encoder as lexical.json (the tokenization and
the vocabulary) and lexical.safetensors (idf, coef, intercept): data only, numpy only, no pickle.
The transform matches scikit-learn's TfidfVectorizer(sublinear_tf=True, norm="l2") exactly, so
training can use scikit-learn and the server does not need it.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

JSON_NAME = "lexical.json"
WEIGHTS_NAME = "lexical.safetensors"


class Vocabulary:
    """The n-gram vocabulary in a few flat arrays instead of a dict of 200k strings.

    A dict and its string objects cost about 33 MB per lexical model, and the server holds two;
    this costs about 7 MB. Lookups go by Python's string hash (stable within one process, which
    is all it needs: the arrays are built at load), then compare the stored UTF-8 bytes, so a
    hash collision can never match a term that is not in the vocabulary.
    """

    def __init__(self, terms: list[str]) -> None:
        # One joined string, not a bytes object per term: a 2M-term vocabulary would hold
        # another 120 MB of them for a moment (the UTF-8 of the join is the join of the UTF-8s).
        joined = "".join(terms)
        n = len(terms)
        if joined.isascii():
            lengths = np.fromiter(map(len, terms), dtype=np.int64, count=n)
        else:
            sizes = (len(t.encode("utf-8", "surrogatepass")) for t in terms)
            lengths = np.fromiter(sizes, dtype=np.int64, count=n)
        self._blob = joined.encode("utf-8", "surrogatepass")
        del joined
        self._offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=self._offsets[1:])
        hashes = np.fromiter(map(hash, terms), dtype=np.int64, count=len(terms))
        self._order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[self._order]
        # True where the next sorted hash is the same (a collision inside the vocabulary).
        self._shared = np.zeros(len(terms), dtype=bool)
        self._shared[:-1] = self._hashes[1:] == self._hashes[:-1]

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._blob[self._offsets[i] : self._offsets[i + 1]].decode("utf-8", "surrogatepass")

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def find(self, grams: list[str]) -> list[int]:
        """The vocabulary index of each gram that is a term, in order; others are left out."""
        n = len(self._hashes)
        if not grams or not n:
            return []
        h = np.fromiter(map(hash, grams), dtype=np.int64, count=len(grams))
        pos = np.searchsorted(self._hashes, h)
        np.minimum(pos, n - 1, out=pos)
        hit = np.flatnonzero(self._hashes[pos] == h)
        if not len(hit):
            return []
        blob, off = self._blob, self._offsets
        out: list[int] = []
        at = pos[hit]
        for k, p, i in zip(hit.tolist(), at.tolist(), self._order[at].tolist(), strict=True):
            if blob[off[i] : off[i + 1]].decode("utf-8", "surrogatepass") == grams[k]:
                out.append(i)
            elif self._shared[p]:  # another term has the same hash: walk the run
                j = self._lookup_run(p, grams[k])
                if j is not None:
                    out.append(j)
        return out

    def _lookup_run(self, p: int, gram: str) -> int | None:
        while p < len(self._hashes) and self._hashes[p] == hash(gram):
            i = int(self._order[p])
            if self[i] == gram:
                return i
            p += 1
        return None


class LexicalModel:
    def __init__(
        self,
        vocabulary: list[str],
        idf: np.ndarray,
        coef: np.ndarray,
        intercept: float,
        token_pattern: str,
        ngram_range: tuple[int, int] = (1, 2),
    ) -> None:
        if not (len(vocabulary) == len(idf) == len(coef)):
            raise ValueError("vocabulary, idf and coef differ in length")
        self.vocabulary = Vocabulary(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.token_pattern = token_pattern
        self.regex = re.compile(token_pattern)
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))

    # -- scoring ----------------------------------------------------------------------------
    def _features(self, code: str) -> tuple[np.ndarray, np.ndarray]:
        """(feature indices, l2-normalised tf-idf values) of one function."""
        tokens = self.regex.findall(code)
        lo, hi = self.ngram_range
        grams = [
            " ".join(tokens[i : i + n])
            for n in range(lo, hi + 1)
            for i in range(len(tokens) - n + 1)
        ]
        counts = Counter(self.vocabulary.find(grams))
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter((1.0 + math.log(c) for c in counts.values()), float, len(counts))
        vals = tf * self.idf[idx]
        norm = float(np.sqrt((vals * vals).sum()))
        return idx, vals / norm if norm > 0 else vals

    def logits(self, codes: list[str]) -> np.ndarray:
        return self.score(codes, explain=0)[0]

    def score(
        self, codes: list[str], explain: int = 5
    ) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
        """Logits, and per function the `explain` n-grams that pushed its score up the most,
        from one tokenization each (the server asks for both on every scored function)."""
        out = np.empty(len(codes), dtype=np.float64)
        terms: list[list[tuple[str, float]]] = []
        for k, code in enumerate(codes):
            idx, vals = self._features(code)
            contrib = vals * self.coef[idx]
            out[k] = float(contrib.sum()) + self.intercept
            top = np.argsort(-contrib)[:explain] if explain else []
            vocab = self.vocabulary
            terms.append([(vocab[idx[i]], float(contrib[i])) for i in top if contrib[i] > 0])
        return out, terms

    def explain(self, code: str, k: int = 5) -> list[tuple[str, float]]:
        """The n-grams that pushed this function's lexical score up the most."""
        return self.score([code], explain=k)[1][0]

    # -- files ------------------------------------------------------------------------------
    def save(self, directory: str | Path, stem: str = "lexical") -> None:
        """`stem` names the files (`lexical` for the Devign half; the fused head's own lexical
        input uses another)."""
        from safetensors.numpy import save_file

        d = Path(directory)
        meta = {
            "format": 1,
            "token_pattern": self.token_pattern,
            "ngram_range": list(self.ngram_range),
            "sublinear_tf": True,
            "norm": "l2",
            "vocabulary": list(self.vocabulary),
        }
        (d / f"{stem}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        save_file(
            {
                "idf": self.idf.astype(np.float32),
                "coef": self.coef.astype(np.float32),
                "intercept": np.array([self.intercept], dtype=np.float32),
            },
            str(d / f"{stem}.safetensors"),
        )

    @classmethod
    def load(
        cls, directory: str | Path, stem: str = "lexical", meta: dict | None = None
    ) -> LexicalModel:
        """Raises ValueError/OSError with the reason when the files are damaged, ModelLoadError
        when `stem`.json is over the bounds (model/bounds.py). `meta`: that file, already read
        and checked by bounds.check_lexical."""
        from safetensors.numpy import load_file

        from .bounds import check_lexical, check_safetensors

        d = Path(directory)
        if meta is None:
            meta = check_lexical(d / f"{stem}.json")
        names = {"idf": None, "coef": None, "intercept": None}  # a lying header: refused
        check_safetensors(d / f"{stem}.safetensors", names, f"{stem}.json")
        if meta.get("sublinear_tf") is not True or meta.get("norm") != "l2":
            raise ValueError(f"{d / stem}.json: only sublinear tf with l2 norm is supported")
        w = load_file(str(d / f"{stem}.safetensors"))
        return cls(
            # Strings from JSON already; a non-string entry could only never match.
            vocabulary=list(meta["vocabulary"]),
            idf=w["idf"],
            coef=w["coef"],
            intercept=float(w["intercept"][0]),
            token_pattern=str(meta["token_pattern"]),
            ngram_range=tuple(meta["ngram_range"]),
        )

    @classmethod
    def from_sklearn(cls, vectorizer, classifier) -> LexicalModel:
        """Convert a fitted TfidfVectorizer + binary LogisticRegression (training side only)."""
        if not (vectorizer.sublinear_tf and vectorizer.norm == "l2" and not vectorizer.lowercase):
            raise ValueError(
                "expected TfidfVectorizer(sublinear_tf=True, norm='l2', lowercase=False)"
            )
        vocab = [""] * len(vectorizer.vocabulary_)
        for term, i in vectorizer.vocabulary_.items():
            vocab[i] = term
        return cls(
            vocabulary=vocab,
            idf=vectorizer.idf_,
            coef=classifier.coef_[0],
            intercept=float(classifier.intercept_[0]),
            token_pattern=vectorizer.token_pattern,
            ngram_range=vectorizer.ngram_range,
        )
