"""`alpine-lsp train fused`: the fused head over [encoder logit, lexical logit, code metrics].

The encoder stays frozen: its outputs per row come from the feature cache
(train/feature_cache.py), so fitting the head, or refitting it for every leave-one-source-out
run, costs seconds. The objective is a per-source weighted binary cross-entropy (each source
counts by its weight, each class of a source by half of it) plus a pairwise logistic loss on the
vulnerable/patched pairs (the vulnerable half must score above its fix).

Which rows fit what: the train split of every labelled source fits the weights, except Devign,
whose train split taught the encoder and lexical half (their scores there are overconfident), so
half of Devign's valid split stands in for it. L2 strength and pairwise weight are chosen on
the valid splits (the other half of Devign's). vuldetectbench is never trained on. The
threshold flags a set share of a c_corpus sample (half A; half B reports the flag rate).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model.fusion import N_BASE, FusedHead, feature_names, features
from ..parsing.metrics import METRIC_NAMES, function_metrics
from .feature_cache import load_cache, rows_to_cache
from .sources import Row

DEFAULT_WEIGHTS = {
    "devign": 1.0,
    "sven": 1.0,
    "manysstubs4j": 1.0,
    "juliet_java": 0.5,  # synthetic templates: useful, but not what real code looks like
    "semgrep_tests": 0.5,  # pattern-matcher tests: a negative only means one rule is silent
    "cyberseceval": 0.25,  # positives only, from static patterns; mixed with others' negatives
}


@dataclass
class Table:
    rows: list[Row]
    x: np.ndarray  # (n, features) raw
    y: np.ndarray  # (n,) 0/1, -1 unlabelled
    role: np.ndarray  # fit | select | test | corpus_a | corpus_b | none
    lines: np.ndarray
    # TF-IDF rows of this table's texts (one shared vectorizer, see LexSpace), or None.
    tfidf: object = None
    space: object = None

    def take(self, mask: np.ndarray) -> Table:
        idx = np.where(mask)[0]
        return Table(
            [self.rows[i] for i in idx],
            self.x[idx],
            self.y[idx],
            self.role[idx],
            self.lines[idx],
            self.tfidf[idx] if self.tfidf is not None else None,
            self.space,
        )

    @property
    def source(self) -> np.ndarray:
        return np.array([r.source for r in self.rows])

    @property
    def language(self) -> np.ndarray:
        return np.array([r.language for r in self.rows])


def _half(rid: str) -> int:
    return hashlib.blake2b(rid.encode(), digest_size=2).digest()[0] & 1


def role_of(r: Row) -> str:
    if r.source == "c_corpus":
        return "corpus_a" if _half(r.id) == 0 else "corpus_b"
    if r.source == "vuldetectbench":
        return "test"  # external test only, all of it
    if r.source == "devign":
        if r.split == "valid":
            return "fit" if _half(r.id) == 0 else "select"
        return "test" if r.split == "test" else "none"
    return {"train": "fit", "valid": "select", "test": "test"}.get(r.split, "none")


def metrics_cached(rows: list[Row], path: Path) -> np.ndarray:
    """Raw metric counts per row (cached by id in `path`, JSON)."""
    have: dict[str, list[float]] = {}
    if path.is_file():
        have = json.loads(path.read_text())
    changed = False
    out = np.zeros((len(rows), len(METRIC_NAMES)))
    for i, r in enumerate(rows):
        v = have.get(r.id)
        if v is None or len(v) != len(METRIC_NAMES):
            m = function_metrics(r.text, r.language)
            v = [m[k] for k in METRIC_NAMES]
            have[r.id] = v
            changed = True
        out[i] = v
    if changed:
        path.write_text(json.dumps(have))
    return out


def build_table(
    data: str, feat_dir: str, sources: list[str], train_cap: int = 3000, corpus: int = 3000
) -> Table:
    """Every cached row of the named sources with its features; rows not yet cached are left
    out (and counted in the log)."""
    rows: list[Row] = []
    xs: list[np.ndarray] = []
    for s in sources:
        src_rows = rows_to_cache(s, data)
        cache = load_cache(feat_dir, s)
        keep = [r for r in src_rows if r.id in cache]
        if len(keep) < len(src_rows):
            print(
                f"{s}: {len(src_rows) - len(keep)} of {len(src_rows)} rows not cached yet",
                file=sys.stderr,
            )
        if not keep:
            continue
        mets = metrics_cached(keep, Path(feat_dir) / f"metrics.{s}.json")
        for r, mv in zip(keep, mets, strict=True):
            c = cache[r.id]
            m = dict(zip(METRIC_NAMES, mv, strict=True))
            # The all-source lexical logit is filled in later (out of fold on fit rows).
            xs.append(features(c["encoder_logit"], c["lexical_logit"], 0.0, m, c["embedding"]))
            rows.append(r)
    x = np.stack(xs)
    lines_col = N_BASE + METRIC_NAMES.index("lines")
    return Table(
        rows,
        x,
        np.array([r.target for r in rows]),
        np.array([role_of(r) for r in rows]),
        np.rint(np.expm1(x[:, lines_col])),  # whole lines: buckets are 0-5, 6-20, ...
    )


def row_weights(t: Table, weights: dict[str, float]) -> np.ndarray:
    w = np.zeros(len(t.rows))
    src = t.source
    for s, ws in weights.items():
        for lab in (0, 1):
            m = (src == s) & (t.y == lab)
            if m.any():
                w[m] = ws / m.sum() / (2 if ((src == s) & (t.y == 1 - lab)).any() else 1)
    return w / max(w.sum(), 1e-12) * len(w)


def pair_index(t: Table) -> np.ndarray:
    by: dict[str, dict[int, int]] = {}
    for i, r in enumerate(t.rows):
        if r.pair is not None and r.target in (0, 1):
            by.setdefault(r.source + "|" + r.pair, {})[r.target] = i
    return np.array(
        [(h[1], h[0]) for h in by.values() if 0 in h and 1 in h], dtype=np.int64
    ).reshape(-1, 2)


def fit_head(
    t: Table,
    weights: dict[str, float],
    l2: float = 1e-2,
    pair_weight: float = 1.0,
    cols: np.ndarray | None = None,
    seed: int = 0,
) -> FusedHead:
    """Full-batch L-BFGS on standardised features; deterministic for the same rows."""
    import torch

    torch.manual_seed(seed)
    n_feat = t.x.shape[1]
    cols = np.ones(n_feat, bool) if cols is None else cols
    mean = t.x.mean(0)
    scale = t.x.std(0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = torch.tensor(((t.x - mean) / scale)[:, cols], dtype=torch.float64)
    y = torch.tensor(t.y, dtype=torch.float64)
    w = torch.tensor(row_weights(t, weights), dtype=torch.float64)
    pairs = pair_index(t)
    pv = torch.tensor(pairs[:, 0]) if len(pairs) else None
    pf = torch.tensor(pairs[:, 1]) if len(pairs) else None
    coef = torch.zeros(int(cols.sum()), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([coef, bias], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        s = z @ coef + bias
        loss = (
            w * torch.nn.functional.binary_cross_entropy_with_logits(s, y, reduction="none")
        ).mean()
        if pv is not None and pair_weight > 0:
            loss = loss + pair_weight * torch.nn.functional.softplus(-(s[pv] - s[pf])).mean()
        loss = loss + l2 * (coef * coef).sum()
        loss.backward()
        return loss

    opt.step(closure)
    full = np.zeros(n_feat)
    full[cols] = coef.detach().numpy()
    return FusedHead(
        feature_names(n_feat - N_BASE - len(METRIC_NAMES)),
        mean,
        scale,
        full,
        float(bias.detach()[0]),
    )


SRC_LEX = 2  # column of the all-source lexical logit


def _group(r: Row) -> str:
    # Folds by project keep the out-of-fold logits honest (Devign has two projects: by id).
    return r.id if r.source == "devign" or not r.project else r.source + "|" + r.project


def attach_tfidf(t: Table) -> None:
    """One TF-IDF vocabulary, fitted on the text of the fit rows (no labels), and every row of
    `t` transformed once: each fold and leave-one-out run then fits only its regression. (The
    vocabulary and idf of a leave-one-out run thus include the left-out source's train text,
    never its labels.)"""
    from .report import tfidf

    fit_texts = [r.text for r, role in zip(t.rows, t.role, strict=True) if role == "fit"]
    vec = tfidf(len(fit_texts))
    vec.fit(fit_texts)
    t.space = vec
    t.tfidf = vec.transform([r.text for r in t.rows]).tocsr()


def fit_lexical(fit: Table, weights: dict[str, float], c: float = 1.0):
    """TF-IDF + logistic regression on the fit rows' text (rows weighted like the head's)."""
    from sklearn.linear_model import LogisticRegression

    from ..model.lexical import LexicalModel

    clf = LogisticRegression(C=c, max_iter=3000, solver="liblinear")
    clf.fit(fit.tfidf, fit.y, sample_weight=row_weights(fit, weights))
    model = LexicalModel.from_sklearn(fit.space, clf)
    model.sk = clf  # scores tables by their precomputed rows (same numbers, no re-tokenizing)
    return model


def _lex_logits(model, t: Table) -> np.ndarray:
    return model.sk.decision_function(t.tfidf)


def add_source_lexical(fit: Table, others: list[Table], weights: dict[str, float], folds: int = 3):
    """Fill the all-source lexical column: out of fold (by project) on `fit`, from a model on
    all of `fit` elsewhere, so the head does not learn to trust a half that saw its rows."""
    groups = np.array([_group(r) for r in fit.rows])
    uniq = np.unique(groups)
    rng = np.random.default_rng(5)
    fold_of = dict(zip(uniq, rng.integers(0, folds, len(uniq)), strict=True))
    f = np.array([fold_of[g] for g in groups])
    for k in range(folds):
        m = f == k
        if m.any() and (~m).any():
            lx = fit_lexical(fit.take(~m), weights)
            fit.x[m, SRC_LEX] = _lex_logits(lx, fit.take(m))
    full = fit_lexical(fit, weights)
    for o in others:
        if len(o.rows):
            o.x[:, SRC_LEX] = _lex_logits(full, o)
    return full


def select_hparams(fit: Table, sel: Table, weights: dict[str, float]) -> tuple[dict, list[dict]]:
    """L2, pairwise weight and whether the embedding is an input, by mean ROC-AUC over the
    valid ("select") rows of each source."""
    from .metrics import roc_auc

    n_feat = fit.x.shape[1]
    no_emb = np.arange(n_feat) < N_BASE + len(METRIC_NAMES)
    tried = []
    for emb in (False, True):
        for l2 in (1e-3, 1e-2, 1e-1):
            for pw in (0.0, 1.0):
                head = fit_head(fit, weights, l2, pw, cols=None if emb else no_emb)
                s = head.logits(sel.x)
                aucs = {}
                for src in sorted(set(sel.source)):
                    m = sel.source == src
                    a = roc_auc(s[m], sel.y[m])
                    if a == a:
                        aucs[src] = round(a, 4)
                tried.append(
                    {
                        "embedding": emb,
                        "l2": l2,
                        "pair_weight": pw,
                        "valid_auc": aucs,
                        "mean": float(np.mean(list(aucs.values()))),
                    }
                )
    best = max(tried, key=lambda d: d["mean"])
    return best, tried


def head_from(fit: Table, weights: dict[str, float], hp: dict) -> FusedHead:
    no_emb = np.arange(fit.x.shape[1]) < N_BASE + len(METRIC_NAMES)
    return fit_head(
        fit, weights, hp["l2"], hp["pair_weight"], cols=None if hp["embedding"] else no_emb
    )


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x, -60, 60)))  # clipped: no overflow warning


def budget_threshold(probs: np.ndarray, share: float) -> float:
    """The probability at or above which `share` of these functions lie."""
    return float(np.quantile(probs, 1 - share)) if len(probs) else 1.0


# Length buckets (lines) of the flag-rate-by-length report and of the size prior's rule.
BUCKETS = ((0, 5), (6, 20), (21, 50), (51, 10**9))
SIZE_PRIORS = tuple(i / 8 for i in range(17))  # 0, 0.125, ..., 2


def bucket_rates(flagged: np.ndarray, lines: np.ndarray) -> list[float]:
    return [
        float(flagged[(lines >= lo) & (lines <= hi)].mean())
        if ((lines >= lo) & (lines <= hi)).any()
        else float("nan")
        for lo, hi in BUCKETS
    ]


def choose_size_prior(head: FusedHead, corpus: Table, share: float) -> float:
    """The smallest size prior (grid SIZE_PRIORS) at which, on these ordinary functions, the
    share flagged at the `share` threshold does not fall from one length bucket to the next.

    Why: fitted on labelled sets whose vulnerable and patched halves have the same size, the
    head learns no size effect, and on real code it ends up flagging short helpers (libuv: 2%
    of functions of 6-20 lines, none of the 263 over 50), while size is the best known
    predictor of where defects are (it beat the head on the repositories' later fixes and in
    reading, README). None on the grid qualifies: the largest."""
    for beta in SIZE_PRIORS:
        h = head.with_size_prior(beta)
        p = sigmoid(h.logits(corpus.x))
        rates = [r for r in bucket_rates(p >= budget_threshold(p, share), corpus.lines) if r == r]
        if all(b >= a for a, b in itertools.pairwise(rates)):
            return beta
    return SIZE_PRIORS[-1]


def main(argv: list[str] | None = None) -> int:
    """Fit the head (as `eval defect --sources` does, same figures) and write it into --out."""
    ap = argparse.ArgumentParser(prog="alpine-lsp train fused")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--features", required=True, help="feature cache directory (feature_cache)")
    ap.add_argument("--out", required=True, help="model directory to add fused_head.* to")
    ap.add_argument("--report", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from .eval_sources import main as eval_main

    extra = ["--report", args.report] if args.report else []
    extra += ["--json", args.json] if args.json else []
    return eval_main(
        ["--data", args.data, "--features", args.features, "--save-head", args.out, *extra]
    )


if __name__ == "__main__":
    sys.exit(main())
