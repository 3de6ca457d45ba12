"""Analytic FLOPs of an encoder at the lengths a forward actually ran (1 multiply-add = 2 FLOPs).

Counted per layer: Q, K, V projections, attention scores, attention x V, output projection
(all at the length entering the layer) and the feed-forward block (at the length after pruning).
Embeddings, biases, LayerNorm, softmax and the pruning bookkeeping are left out: they are small
next to the matrix products and the paper counts the same way.
"""

from __future__ import annotations

from collections.abc import Sequence


def layer_flops(n_in: int, n_out: int, hidden: int, intermediate: int) -> int:
    qkv = 3 * 2 * n_in * hidden * hidden
    scores = 2 * n_in * n_in * hidden
    context = 2 * n_in * n_in * hidden
    proj = 2 * n_in * hidden * hidden
    ffn = 2 * 2 * n_out * hidden * intermediate
    return qkv + scores + context + proj + ffn


def encoder_flops(lengths: Sequence[int], hidden: int, intermediate: int) -> list[int]:
    """FLOPs per layer for one sequence; lengths[i] enters layer i, lengths[i+1] leaves it."""
    return [
        layer_flops(int(lengths[i]), int(lengths[i + 1]), hidden, intermediate)
        for i in range(len(lengths) - 1)
    ]
