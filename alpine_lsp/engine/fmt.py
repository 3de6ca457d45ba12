"""How a similarity shows in messages, hover and `check` output: one helper for all of them."""

from __future__ import annotations

# float32 cosine of two identical embeddings lands within a few 1e-7 of 1.
_EXACT = 1.0 - 1e-6


def similarity(score: float) -> str:
    """Three digits (0.9989 → "0.999"); "1.000" only for an exact copy, so a near-copy never
    reads as identical."""
    if score >= _EXACT:
        return "1.000"
    return f"{min(score, 0.9994):.3f}"
