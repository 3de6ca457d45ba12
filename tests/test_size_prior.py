"""The fused head's size prior: folded into the head exactly, and chosen so that the flag rate
on ordinary code does not fall with function length (issue 14's flag-rate target)."""

from __future__ import annotations

import itertools

import numpy as np

from alpine_lsp.model.fusion import FusedHead, feature_names
from alpine_lsp.train.fusion_train import (
    SIZE_PRIORS,
    Table,
    bucket_rates,
    budget_threshold,
    choose_size_prior,
)

DIM = 4
NAMES = feature_names(DIM)
LINES = NAMES.index("metric:lines")


def _head(lines_weight: float, seed: int = 0) -> FusedHead:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, len(NAMES))
    w[LINES] = lines_weight
    mean, scale = rng.normal(0, 1, len(NAMES)), rng.uniform(0.5, 2, len(NAMES))
    return FusedHead(NAMES, mean, scale, w, 0.2, {"threshold": 0.5})


def _corpus(n: int = 4000, seed: int = 1) -> Table:
    rng = np.random.default_rng(seed)
    bounds = ((1, 6), (6, 21), (21, 51), (51, 300))  # one quarter per length bucket
    lines = np.concatenate([rng.integers(lo, hi, n // 4) for lo, hi in bounds])
    x = rng.normal(0, 1, (n, len(NAMES)))
    x[:, LINES] = np.log1p(lines)
    return Table([], x, np.full(n, -1), np.full(n, "corpus_a"), lines)


def test_size_prior_adds_beta_log_lines_to_the_logit_exactly() -> None:
    head = _head(-0.8)
    x = _corpus(400).x
    for beta in (0.0, 0.5, 1.25):
        h = head.with_size_prior(beta)
        np.testing.assert_allclose(
            h.logits(x), head.logits(x) + beta * (x[:, LINES] - head.mean[LINES]), atol=1e-9
        )
        assert h.names == head.names and h.record == head.record
    assert head.with_size_prior(0.5).weight[LINES] != head.weight[LINES]  # a copy changed
    assert _head(-0.8).weight[LINES] == head.weight[LINES]  # the original did not


def _rates(head: FusedHead, t: Table, share: float = 0.03) -> list[float]:
    p = 1 / (1 + np.exp(-head.logits(t.x)))
    return bucket_rates(p >= budget_threshold(p, share), t.lines)


def test_a_head_that_flags_short_functions_gets_the_smallest_prior_that_stops_it() -> None:
    head, t = _head(-0.5), _corpus()
    before = _rates(head, t)
    assert before[0] > before[-1]  # the failure: short helpers flagged, long ones not
    beta = choose_size_prior(head, t, 0.03)
    assert beta > 0
    after = _rates(head.with_size_prior(beta), t)
    assert all(b >= a for a, b in itertools.pairwise(after))
    smaller = SIZE_PRIORS[SIZE_PRIORS.index(beta) - 1]
    r = _rates(head.with_size_prior(smaller), t)
    assert any(b < a for a, b in itertools.pairwise(r))  # and no smaller one would do


def test_a_head_already_rising_with_size_gets_none() -> None:
    t = _corpus()
    assert choose_size_prior(_head(3.0), t, 0.03) == 0.0
