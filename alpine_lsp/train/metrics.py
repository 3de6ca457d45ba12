"""Metrics and threshold calibration shared by training and evaluation (numpy only)."""

from __future__ import annotations

import numpy as np


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties get average ranks)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def prf(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    pred = np.asarray(pred).astype(bool)
    labels = np.asarray(labels).astype(bool)
    tp = float((pred & labels).sum())
    p = tp / max(1.0, float(pred.sum()))
    r = tp / max(1.0, float(labels.sum()))
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def precision_at_top(scores: np.ndarray, labels: np.ndarray, share: float = 0.1) -> float:
    k = max(1, round(len(scores) * share))
    top = np.argsort(-np.asarray(scores), kind="mergesort")[:k]
    return float(np.asarray(labels)[top].mean())


def precision_threshold(
    probs: np.ndarray, labels: np.ndarray, target: float = 0.7, min_share: float = 0.02
) -> float:
    """Lowest threshold whose precision among functions at or above it reaches `target`,
    while still flagging at least `min_share` of them; falls back to the threshold of best
    accuracy when no threshold reaches the target."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-probs, kind="mergesort")
    hits = np.cumsum(labels[order])
    n = np.arange(1, len(probs) + 1)
    prec = hits / n
    ok = np.where((prec >= target) & (n >= min_share * len(probs)))[0]
    if len(ok):
        return float(probs[order][ok.max()])
    cands = np.unique(probs)
    accs = [((probs >= t) == labels).mean() for t in cands]
    return float(cands[int(np.argmax(accs))])


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    scores = np.asarray(scores, dtype=np.float64)
    best = (0.5, -1.0)
    for t in np.unique(np.round(scores, 3)):
        f = prf(scores >= t, labels)[2]
        if f > best[1]:
            best = (float(t), f)
    return best


def random_pair_cosines(embs: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Cosines of min(n, all) seeded random pairs of distinct rows (unit-length embeddings)."""
    a, b = distinct_pairs(len(embs), n, seed)
    return np.einsum("ij,ij->i", embs[a], embs[b])


def distinct_pairs(rows: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """min(n, all) seeded random index pairs (a, b), a < b < rows, no pair twice."""
    total = rows * (rows - 1) // 2
    if total <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    k = np.random.default_rng(seed).choice(total, size=min(n, total), replace=False)

    def first(a: np.ndarray) -> np.ndarray:  # number of the first pair whose smaller row is a
        return a * rows - a * (a + 1) // 2

    # Invert first() with the quadratic formula, then mend floating-point rounding.
    a = np.floor((2 * rows - 1 - np.sqrt((2 * rows - 1) ** 2 - 8 * k)) / 2).astype(np.int64)
    a = np.clip(a, 0, rows - 2)
    a -= k < first(a)
    a += k >= first(a + 1)
    return a, a + 1 + (k - first(a))
