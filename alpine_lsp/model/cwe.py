"""The CWE head: which weakness a flagged function most likely has.

A multinomial logistic regression over the frozen encoder's function embedding and/or a TF-IDF
of the code's identifier and operator tokens (`train cwe` measures which and writes it). Stored
beside the model as `cwe.safetensors` (weights) + `cwe.json` (category names, descriptions,
vocabulary); never pickle. Categories with too few training rows are folded into "other".
No torch here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .score import ModelLoadError

CWE_JSON = "cwe.json"
CWE_WEIGHTS = "cwe.safetensors"
OTHER = "other"

# Identifiers, numbers and the operators/calls that tell weaknesses apart. Shared by training.
_TERM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|->|<<|>>|[\[\]()*&+\-<>=!%]")

# Short names of the weaknesses the training data covers, written for people (hover, message).
DESCRIPTIONS = {
    "CWE-15": "external control of a system setting",
    "CWE-20": "improper input validation",
    "CWE-22": "path traversal",
    "CWE-78": "OS command injection",
    "CWE-79": "cross-site scripting",
    "CWE-80": "cross-site scripting (script tags)",
    "CWE-89": "SQL injection",
    "CWE-94": "code injection",
    "CWE-95": "eval injection",
    "CWE-113": "HTTP response splitting",
    "CWE-117": "log injection",
    "CWE-119": "buffer overflow",
    "CWE-120": "buffer copy without size check",
    "CWE-121": "stack-based buffer overflow",
    "CWE-122": "heap-based buffer overflow",
    "CWE-125": "out-of-bounds read",
    "CWE-129": "unchecked array index",
    "CWE-134": "uncontrolled format string",
    "CWE-190": "integer overflow",
    "CWE-191": "integer underflow",
    "CWE-197": "numeric truncation",
    "CWE-200": "information exposure",
    "CWE-209": "error message information leak",
    "CWE-252": "unchecked return value",
    "CWE-256": "plaintext password storage",
    "CWE-259": "hard-coded password",
    "CWE-295": "improper certificate validation",
    "CWE-311": "missing encryption",
    "CWE-319": "cleartext transmission",
    "CWE-321": "hard-coded cryptographic key",
    "CWE-326": "weak encryption strength",
    "CWE-327": "broken or risky cryptography",
    "CWE-328": "weak hash",
    "CWE-329": "predictable IV",
    "CWE-330": "insufficiently random values",
    "CWE-338": "weak random number generator",
    "CWE-345": "unverified data authenticity",
    "CWE-352": "cross-site request forgery",
    "CWE-369": "divide by zero",
    "CWE-398": "poor code quality",
    "CWE-400": "uncontrolled resource consumption",
    "CWE-401": "memory leak",
    "CWE-404": "resource not released",
    "CWE-415": "double free",
    "CWE-416": "use after free",
    "CWE-426": "untrusted search path",
    "CWE-457": "uninitialized variable",
    "CWE-470": "unsafe reflection",
    "CWE-476": "null pointer dereference",
    "CWE-477": "obsolete function",
    "CWE-489": "leftover debug code",
    "CWE-501": "trust boundary violation",
    "CWE-502": "deserialization of untrusted data",
    "CWE-532": "sensitive data in a log",
    "CWE-563": "unused assignment",
    "CWE-600": "uncaught exception in a servlet",
    "CWE-601": "open redirect",
    "CWE-611": "XML external entity",
    "CWE-614": "cookie without the secure flag",
    "CWE-643": "XPath injection",
    "CWE-676": "dangerous function",
    "CWE-680": "integer overflow to buffer overflow",
    "CWE-690": "unchecked return value to null dereference",
    "CWE-732": "incorrect permissions",
    "CWE-759": "hash without a salt",
    "CWE-770": "allocation without limits",
    "CWE-772": "resource leak",
    "CWE-776": "XML entity expansion",
    "CWE-787": "out-of-bounds write",
    "CWE-789": "excessive memory allocation",
    "CWE-798": "hard-coded credentials",
    "CWE-807": "security decision on untrusted input",
    "CWE-915": "mass assignment",
    "CWE-918": "server-side request forgery",
    "CWE-943": "NoSQL injection",
    "CWE-1004": "cookie without HttpOnly",
    "CWE-1333": "inefficient regular expression",
    OTHER: "a weakness outside the trained categories",
}


def describe(cwe: str) -> str:
    return DESCRIPTIONS.get(cwe, cwe)


def terms(code: str) -> list[str]:
    return _TERM.findall(code)


@dataclass
class CweHead:
    classes: list[str]
    features: str  # "embedding", "tfidf" or "both"
    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    vocabulary: dict[str, int]
    idf: np.ndarray  # (V,)
    descriptions: dict[str, str]

    def tfidf(self, codes: list[str]) -> np.ndarray:
        """L2-normalised sublinear TF-IDF rows over the head's vocabulary."""
        out = np.zeros((len(codes), len(self.idf)), dtype=np.float64)
        for r, code in enumerate(codes):
            counts: dict[int, int] = {}
            for t in terms(code):
                j = self.vocabulary.get(t)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            for j, c in counts.items():
                out[r, j] = (1.0 + np.log(c)) * self.idf[j]
            n = np.linalg.norm(out[r])
            if n > 0:
                out[r] /= n
        return out

    def featurize(self, embeddings: np.ndarray, codes: list[str]) -> np.ndarray:
        parts = []
        if self.features in ("embedding", "both"):
            parts.append(np.asarray(embeddings, dtype=np.float64))
        if self.features in ("tfidf", "both"):
            parts.append(self.tfidf(codes))
        return np.concatenate(parts, axis=1)

    def probabilities(self, embeddings: np.ndarray, codes: list[str]) -> np.ndarray:
        z = self.featurize(embeddings, codes) @ self.weight.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def top(
        self, embeddings: np.ndarray, codes: list[str], k: int = 3
    ) -> list[list[tuple[str, float]]]:
        p = self.probabilities(embeddings, codes)
        out = []
        for row in p:
            order = np.argsort(-row, kind="stable")[:k]
            out.append([(self.classes[j], float(row[j])) for j in order])
        return out

    def save(self, directory: str | Path, extra: dict | None = None) -> None:
        from safetensors.numpy import save_file

        p = Path(directory)
        save_file(
            {
                "weight": self.weight.astype(np.float32),
                "bias": self.bias.astype(np.float32),
                "idf": self.idf.astype(np.float32),
            },
            str(p / CWE_WEIGHTS),
        )
        vocab = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        meta = {
            "format": 1,
            "classes": self.classes,
            "features": self.features,
            "descriptions": {c: self.descriptions.get(c, describe(c)) for c in self.classes},
            "vocabulary": vocab,
            **(extra or {}),
        }
        (p / CWE_JSON).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def read_cwe(directory: str | Path, embed_dim: int) -> tuple[CweHead | None, str]:
    """The optional CWE head beside a model: (head, digest), or (None, "") when absent."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from .bounds import MAX_JSON_BYTES, check_safetensors, read_bounded_json
    from .files import weights_digest

    p = Path(directory)
    has = [(p / n).is_file() for n in (CWE_JSON, CWE_WEIGHTS)]
    if not any(has):
        return None, ""
    if not all(has):
        raise ModelLoadError(f"model directory {p} has only one of {CWE_JSON}, {CWE_WEIGHTS}")
    try:
        meta = read_bounded_json(p / CWE_JSON, MAX_JSON_BYTES["cwe.json"])
        names = dict.fromkeys(("weight", "bias", "idf"))
        check_safetensors(p / CWE_WEIGHTS, names, CWE_JSON)  # a lying header: refused
        t = load_file(str(p / CWE_WEIGHTS))
        classes = [str(c) for c in meta["classes"]]
        features = str(meta["features"])
        vocab = {str(w): i for i, w in enumerate(meta.get("vocabulary", []))}
        weight = t["weight"].astype(np.float64)
        bias = t["bias"].astype(np.float64)
        idf = t["idf"].astype(np.float64)
        width = {"embedding": embed_dim, "tfidf": len(vocab), "both": embed_dim + len(vocab)}
        if features not in width:
            raise ValueError(f"features {features!r}")
        if weight.shape != (len(classes), width[features]) or bias.shape != (len(classes),):
            raise ValueError(f"weights of shape {weight.shape} do not fit {len(classes)} classes")
        if idf.shape != (len(vocab),):
            raise ValueError("idf and vocabulary differ in length")
        descriptions = {str(k): str(v) for k, v in meta.get("descriptions", {}).items()}
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{p / CWE_WEIGHTS} or {CWE_JSON} is damaged: {e}") from None
    head = CweHead(classes, features, weight, bias, vocab, idf, descriptions)
    return head, weights_digest(p / CWE_WEIGHTS) + weights_digest(p / CWE_JSON)
