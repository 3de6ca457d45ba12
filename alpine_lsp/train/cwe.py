"""`alpine-lsp train cwe`: the CWE head beside a model (`cwe.safetensors` + `cwe.json`).

Rows: target 1 rows with a CWE of sven, juliet_java, semgrep_tests and cyberseceval, label leaks
removed (`leaks.clean`). Categories with at least `--min-rows` training rows are kept, the rest
become "other". Three feature sets are fitted with a multinomial logistic regression (C chosen
on valid by top-3 accuracy): the frozen encoder's function embedding, a TF-IDF over code terms,
and both. The one best on valid is written; every figure is on the cross-project test splits,
beside the majority class (top-1) and the three most frequent classes (top-3).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..evalkit.errors import CommandError
from ..model import ModelLoadError, load_model
from ..model.cwe import OTHER, CweHead, describe, terms
from .leaks import CWE_SETS, clean, load_rows

C_GRID = (1.0, 10.0)
FEATURES = ("embedding", "tfidf", "both")


def gather(data_root: Path, sets: list[str]) -> dict[str, list[tuple[str, str, str]]]:
    """(cleaned code, first CWE, set name) of every target-1 row with a CWE, by split."""
    out: dict[str, list[tuple[str, str, str]]] = {"train": [], "valid": [], "test": []}
    for name in sets:
        for split, rows in load_rows(data_root / name).items():
            for r in rows:
                if r["target"] == 1 and r.get("cwe"):
                    out.setdefault(split, []).append((clean(r), str(r["cwe"][0]), name))
    return out


def fit_vocabulary(codes: list[str], min_df: int = 2, max_terms: int = 5_000):
    df: Counter = Counter()
    for c in codes:
        df.update(set(terms(c)))
    kept = [t for t, n in df.most_common(max_terms) if n >= min_df]
    vocab = {t: i for i, t in enumerate(sorted(kept))}
    n = len(codes)
    idf = np.array([np.log((1 + n) / (1 + df[t])) + 1.0 for t in sorted(kept)])
    return vocab, idf


def topk_accuracy(prob: np.ndarray, y: np.ndarray, k: int) -> float:
    if not len(y):
        return float("nan")
    top = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def main(argv: list[str] | None = None) -> int:
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(prog="alpine-lsp train cwe", description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: the bundled model)")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--sets", default=",".join(CWE_SETS))
    ap.add_argument("--min-rows", type=int, default=20, help="training rows a category needs")
    ap.add_argument("--out", help="write cwe.safetensors + cwe.json here (default: don't write)")
    ap.add_argument("--features", choices=(*FEATURES, "best"), default="best")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        model = load_model(args.model, device="cpu", threads=args.threads)
    except ModelLoadError as e:
        raise CommandError(f"alpine-lsp train cwe: {e}", code=2) from e
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    try:
        data = gather(Path(args.data_root), sets)
    except FileNotFoundError as e:
        raise CommandError(f"alpine-lsp train cwe: {e}", code=2) from e

    counts = Counter(c for _, c, _ in data["train"])
    classes = [*sorted(c for c, n in counts.items() if n >= args.min_rows), OTHER]
    index = {c: i for i, c in enumerate(classes)}

    def labels(rows):
        return np.array([index.get(c, index[OTHER]) for _, c, _ in rows])

    t0 = time.perf_counter()
    kinds = FEATURES if args.features == "best" else (args.features,)
    emb = {}
    if any(k != "tfidf" for k in kinds):
        for s, rows in data.items():
            emb[s] = model.embed([c for c, _, _ in rows])
            print(f"embedded {s}: {len(rows)} rows, {time.perf_counter() - t0:.0f} s", flush=True)
    embed_s = time.perf_counter() - t0
    vocab, idf = fit_vocabulary([c for c, _, _ in data["train"]])
    head0 = CweHead(classes, "tfidf", np.zeros((0, 0)), np.zeros(0), vocab, idf, {})
    tfidf = {s: sparse.csr_matrix(head0.tfidf([c for c, _, _ in rows])) for s, rows in data.items()}
    y = {s: labels(rows) for s, rows in data.items()}

    def feats(kind: str, split: str) -> np.ndarray:
        if kind == "embedding":
            return emb[split].astype(np.float64)
        if kind == "tfidf":
            return tfidf[split]
        return sparse.hstack(
            [sparse.csr_matrix(emb[split].astype(np.float64)), tfidf[split]]
        ).tocsr()

    prior = np.bincount(y["train"], minlength=len(classes)).astype(np.float64)
    report: dict = {
        "model": model.name,
        "classes": len(classes),
        "rows": {s: len(v) for s, v in data.items()},
        "embed_seconds": round(embed_s, 1),
        "results": {},
    }
    maj = np.tile(prior / prior.sum(), (len(y["test"]), 1))
    covered = {s: y[s] != index[OTHER] for s in y}
    report["results"]["majority class"] = {
        "top1": topk_accuracy(maj, y["test"], 1),
        "top3": topk_accuracy(maj, y["test"], 3),
        "top3_covered": topk_accuracy(maj[covered["test"]], y["test"][covered["test"]], 3),
        "top1_covered": topk_accuracy(maj[covered["test"]], y["test"][covered["test"]], 1),
    }
    fitted = {}
    for kind in kinds:
        best = None
        for c in C_GRID:
            clf = LogisticRegression(C=c, max_iter=2000)
            clf.fit(feats(kind, "train"), y["train"])
            pv = _full_proba(clf, feats(kind, "valid"), len(classes))
            v3 = topk_accuracy(pv, y["valid"], 3)
            if best is None or v3 > best[0]:
                best = (v3, c, clf)
            print(f"  {kind} C={c}: valid top-3 {v3:.3f}", flush=True)
        v3, c, clf = best
        pt = _full_proba(clf, feats(kind, "test"), len(classes))
        cov = covered["test"]
        fitted[kind] = (v3, c, clf)
        report["results"][kind] = {
            "C": c,
            "valid_top3": v3,
            "top1": topk_accuracy(pt, y["test"], 1),
            "top3": topk_accuracy(pt, y["test"], 3),
            "top1_covered": topk_accuracy(pt[cov], y["test"][cov], 1),
            "top3_covered": topk_accuracy(pt[cov], y["test"][cov], 3),
            "per_set_top3": {
                name: topk_accuracy(pt[m], y["test"][m], 3)
                for name in sets
                if (m := np.array([s == name for _, _, s in data["test"]])).any()
            },
        }
    kind = max(kinds, key=lambda k: fitted[k][0])
    report["chosen"] = kind
    print(
        f"{len(classes) - 1} categories with >= {args.min_rows} training rows + other; rows "
        f"train/valid/test {report['rows']}; embeddings {embed_s:.0f} s"
    )
    print(f"  {'features':16s} {'top1':>6s} {'top3':>6s} {'top1 cov':>9s} {'top3 cov':>9s}  C")
    for name, r in report["results"].items():
        print(
            f"  {name:16s} {r['top1']:6.3f} {r['top3']:6.3f} {r['top1_covered']:9.3f} "
            f"{r['top3_covered']:9.3f}  {r.get('C', '')}"
        )
    print(f"chosen on valid top-3: {kind}")
    if args.out:
        _, c, clf = fitted[kind]
        weight, bias = _full_coef(clf, len(classes))
        head = CweHead(
            classes,
            kind,
            weight,
            bias,
            vocab if kind != "embedding" else {},
            idf if kind != "embedding" else np.zeros(0),
            {c: describe(c) for c in classes},
        )
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        head.save(
            out,
            {
                "training": {
                    "command": "alpine-lsp train cwe " + " ".join(argv or sys.argv[1:]),
                    "test": report["results"][kind],
                    "majority": report["results"]["majority class"],
                }
            },
        )
        print(f"wrote {out / 'cwe.safetensors'} and {out / 'cwe.json'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


def _full_proba(clf, x: np.ndarray, n_classes: int) -> np.ndarray:
    """predict_proba widened to every class (a class absent from train gets 0)."""
    p = np.zeros((x.shape[0], n_classes))
    p[:, clf.classes_] = clf.predict_proba(x)
    return p


def _full_coef(clf, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    w = np.full((n_classes, clf.coef_.shape[1]), 0.0)
    b = np.full(n_classes, -1e4)  # classes never seen in training can never win
    w[clf.classes_] = clf.coef_
    b[clf.classes_] = clf.intercept_
    return w, b
