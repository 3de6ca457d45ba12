"""Fitting the adapter head (logistic + pairwise ranking loss) and the metrics that judge it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..model.adapter import SCALARS, Adapter

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)
BLEND_GRID = tuple(round(0.05 * i, 2) for i in range(21))
BUDGET = 0.03  # precision at the share of functions a user would look at


# -- metrics --------------------------------------------------------------------------------
def roc_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Mann-Whitney ROC-AUC with ties counted half; None without both classes."""
    y = np.asarray(y).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return None
    s = np.asarray(s, np.float64)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # average 1-based rank of each tie group
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def pairwise_accuracy(s: np.ndarray, pairs: np.ndarray) -> float | None:
    """Share of (buggy, fixed) pairs whose buggy half scores higher (ties count half)."""
    if len(pairs) == 0:
        return None
    d = s[pairs[:, 0]] - s[pairs[:, 1]]
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def precision_at_budget(y: np.ndarray, s: np.ndarray, budget: float = BUDGET) -> float | None:
    if len(y) == 0:
        return None
    k = max(1, math.ceil(budget * len(y)))
    top = np.argsort(-np.asarray(s, np.float64), kind="stable")[:k]
    return float(np.asarray(y)[top].mean())


def metrics(y: np.ndarray, s: np.ndarray, pairs: np.ndarray) -> dict:
    out = {
        "auc": roc_auc(y, s),
        "pairwise_acc": pairwise_accuracy(s, pairs),
        "precision_at_budget": precision_at_budget(y, s),
    }
    return {k: (round(v, 4) if v is not None else None) for k, v in out.items()}


def _objective(y, s, pairs) -> float:
    m = metrics(y, s, pairs)
    return (m["auc"] or 0.5) + (m["pairwise_acc"] or 0.5)


# -- the head -------------------------------------------------------------------------------
@dataclass
class Head:
    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray
    b: float
    l2: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std) @ self.w + self.b


def fit_head(
    x: np.ndarray,
    y: np.ndarray,
    pairs: np.ndarray,
    l2: float = 1e-2,
    rank_weight: float = 1.0,
    steps: int = 300,
    seed: int = 0,
) -> Head:
    """Linear head: class-balanced logistic loss + softplus ranking loss on (buggy, fixed) pairs
    + L2, full batch, Adam. Thousands of rows take about a second on one core."""
    import torch

    torch.manual_seed(seed)
    mean = x.mean(0)
    std = x.std(0)
    std = np.where(std < 1e-6, 1.0, std)
    xs = torch.tensor((x - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32)
    pos = max(1.0, float(y.sum()))
    pos_weight = torch.tensor((len(y) - pos) / pos)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.02)
    pt = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
    bce = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    for _ in range(steps):
        opt.zero_grad()
        z = xs @ w + b
        loss = bce(z, yt) + l2 * (w * w).sum()
        if len(pt):
            margin = z[pt[:, 0]] - z[pt[:, 1]]  # buggy half above its fix
            loss = loss + rank_weight * torch.nn.functional.softplus(-margin).mean()
        loss.backward()
        opt.step()
    return Head(mean, std, w.detach().numpy().astype(np.float64), float(b.item()), l2)


def _sub_pairs(pairs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Pairs (global row indices) whose halves are both in `keep`, re-indexed into it."""
    where = -np.ones(int(keep.max()) + 1 if len(keep) else 0, np.int64)
    where[keep] = np.arange(len(keep))
    if len(pairs) == 0 or len(keep) == 0:
        return np.zeros((0, 2), np.int64)
    ok = (pairs < len(where)).all(1)
    p = pairs[ok]
    mapped = where[p]
    return mapped[(mapped >= 0).all(1)]


@dataclass
class Fitted:
    head: Head
    blend: dict
    validation: dict


def fit_adapter(
    x: np.ndarray, y: np.ndarray, pairs: np.ndarray, commit_order: np.ndarray, seed: int = 0
) -> Fitted:
    """Choose L2 and the blend weight on the most recent 20% of fix commits (rows carry their
    commit's chronological index), then refit the head on every row with that L2."""
    g = x[:, -len(SCALARS)].astype(np.float64)
    commits = np.unique(commit_order)
    cut = commits[int(len(commits) * 0.8)] if len(commits) >= 5 else commits[-1] + 1
    fit_idx = np.flatnonzero(commit_order < cut)
    val_idx = np.flatnonzero(commit_order >= cut)
    validation: dict = {}
    best_l2, best_w = L2_GRID[1], 0.0
    if len(val_idx) and len(fit_idx) and len(np.unique(y[val_idx])) == 2:
        fp, vp = _sub_pairs(pairs, fit_idx), _sub_pairs(pairs, val_idx)
        yv, gv = y[val_idx], g[val_idx]
        heads = {l2: fit_head(x[fit_idx], y[fit_idx], fp, l2=l2, seed=seed) for l2 in L2_GRID}
        best_l2 = max(L2_GRID, key=lambda l2: _objective(yv, heads[l2].logits(x[val_idx]), vp))
        h = heads[best_l2]
        a_fit = h.logits(x[fit_idx])
        moments = _moments(a_fit, g[fit_idx])
        av = h.logits(x[val_idx])
        scores = {w: _blend(w, gv, av, moments) for w in BLEND_GRID}
        best_w = max(BLEND_GRID, key=lambda w: (_objective(yv, scores[w], vp), -w))
        validation = {
            "rows": len(val_idx),
            "pairs": len(vp),
            "global": metrics(yv, gv, vp),
            "adapter": metrics(yv, av, vp),
            "blend": metrics(yv, scores[best_w], vp),
        }
    head = fit_head(x, y, pairs, l2=best_l2, seed=seed)
    blend = {"weight": best_w, **_moments(head.logits(x), g)}
    return Fitted(head, blend, validation)


def _moments(a: np.ndarray, g: np.ndarray) -> dict:
    return {
        "adapter_mean": float(a.mean()),
        "adapter_std": float(max(a.std(), 1e-6)),
        "global_mean": float(g.mean()),
        "global_std": float(max(g.std(), 1e-6)),
    }


def _blend(w: float, g: np.ndarray, a: np.ndarray, m: dict) -> np.ndarray:
    a2 = (a - m["adapter_mean"]) / m["adapter_std"] * m["global_std"] + m["global_mean"]
    return (1 - w) * g + w * a2


def to_adapter(f: Fitted, meta: dict) -> tuple[Adapter, dict[str, np.ndarray]]:
    """The in-memory Adapter (for evaluation) and the tensors save_adapter writes."""
    tensors = {
        "mean": f.head.mean,
        "std": f.head.std,
        "w": f.head.w,
        "b": np.array([f.head.b]),
    }
    meta = {**meta, "blend": f.blend}
    adapter = Adapter(
        mean=f.head.mean, std=f.head.std, w=f.head.w, b=f.head.b, meta=meta, digest="unsaved"
    )
    return adapter, tensors
