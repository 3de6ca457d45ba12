"""What the model says about one function (no torch here: the cache and the server use it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ModelLoadError(RuntimeError):
    """A model directory that cannot be used, with a message meant for a person."""


@dataclass
class FunctionScore:
    """What one forward pass says about one function."""

    probability: float
    embedding: np.ndarray  # (D,) float32, unit length
    tokens_per_layer: list[int]  # input length, then the length after each layer
    top_tokens: list[tuple[str, float]]  # code tokens the model attended to most, by weight
    n_tokens: int  # content tokens before truncation
    truncated: bool
    flops: int
    ms: float  # wall time of the forward pass that scored this function (its batch)
    # With a lexical half: {"encoder": p, "lexical": p} before fusion, and the lexical n-grams
    # that raised the score most (explain only).
    parts: dict[str, float] = field(default_factory=dict)
    lexical_terms: list[tuple[str, float]] = field(default_factory=list)
    # Which layer's attention ranked top_tokens (1-based): the last layer, among the tokens that
    # survived pruning, or 1 when too few survived; 0 when there are none.
    top_tokens_layer: int = 0
    # Ranked (line, share) within the function text, 1-based, from the attention each line's
    # tokens received in the pruning layers (explain only; empty when off).
    lines: list[tuple[int, float]] = field(default_factory=list)
    # Top CWE categories with probabilities, when the model has a CWE head (explain only).
    cwe: list[tuple[str, float]] = field(default_factory=list)
