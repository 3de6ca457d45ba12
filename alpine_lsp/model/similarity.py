"""The space similar-code hints are measured in: the function embedding, centred per language.

The embedding crowds each language into a narrow cone (a Java function's nearest unrelated
neighbour sits at cosine 0.996), so a cut that keeps chance hints rare also misses most
clones. Subtracting the language's mean embedding and renormalising spreads the cone; the
semantic tier's per-language cut (`similarity_thresholds.<lang>.cosine`) is calibrated in the
centred space for a language marked `"centred": true`, and in the raw space otherwise.

Stored beside the model as `similarity.safetensors`: one (embed_dim,) float32 mean per centred
language, named by the language. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .score import ModelLoadError

SIMILARITY_WEIGHTS = "similarity.safetensors"


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def centre(embeddings: Sequence[np.ndarray] | np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Subtract a language's mean vector and renormalise (spreads a crowded cone)."""
    x = np.asarray(embeddings, dtype=np.float32).reshape(len(embeddings), -1)
    return unit_rows(x - np.asarray(mean, np.float32)[None, :]).astype(np.float32)


class SimilaritySpace:
    """Per-language means; `vectors` maps embeddings into the space hints are measured in."""

    def __init__(self, means: Mapping[str, np.ndarray] | None = None) -> None:
        self.means = {k: np.asarray(v, np.float32) for k, v in (means or {}).items()}

    def vectors(
        self, embeddings: Sequence[np.ndarray] | np.ndarray, language: str
    ) -> Sequence[np.ndarray] | np.ndarray:
        """Centred unit rows where the language has a mean; otherwise the embeddings as they
        are, not copied: the index normalises what it stores and what it is asked, and this
        runs on the edit -> diagnostic path for every function of a file."""
        mean = self.means.get(language)
        return embeddings if mean is None else centre(embeddings, mean)

    def save(self, directory: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(directory) / SIMILARITY_WEIGHTS
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in self.means.items()}, path)
        return path


def read_similarity(
    directory: str | Path, table: Mapping[str, Mapping], embed_dim: int
) -> tuple[SimilaritySpace, str]:
    """The similarity space of a model directory and its digest for the fingerprint: a mean
    for every language the thresholds mark `centred`, checked before it is read."""
    from .bounds import check_safetensors
    from .files import weights_digest

    want = sorted(lang for lang, t in table.items() if t.get("centred"))
    p = Path(directory) / SIMILARITY_WEIGHTS
    if not want:
        return SimilaritySpace(), ""
    if not p.is_file():
        raise ModelLoadError(
            f"{p.parent}: alpine.json centres similarity for {', '.join(want)} but "
            f"{SIMILARITY_WEIGHTS} is missing"
        )
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        check_safetensors(p, dict.fromkeys(want, (embed_dim,)), "alpine.json")
        t = load_file(str(p))
        means = {lang: t[lang].astype(np.float32) for lang in want}
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise ModelLoadError(f"{p}: {e}") from e
    for lang, m in means.items():
        if not np.all(np.isfinite(m)):
            raise ModelLoadError(f"{p}: the {lang} mean is not finite")
    return SimilaritySpace(means), "|sim:" + weights_digest(p)
