"""`alpine-lsp train lexical`: add the lexical half to a model directory and fuse it.

Fits TF-IDF over code tokens + logistic regression on the train split (C chosen by valid
ROC-AUC), then fits the fusion p = sigmoid(a * encoder_logit + b * lexical_logit + c) on the
validation split, where neither half has seen the labels, and recalibrates the threshold there.
The encoder is untouched. Prints the valid figures of the encoder, the lexical half and the
fusion; `alpine-lsp eval defect` gives the test figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from ..evalkit.data import load_devign
from ..evalkit.errors import CommandError
from ..model import ModelLoadError, load_model
from ..model.files import Fusion
from ..model.lexical import LexicalModel
from .metrics import precision_threshold, roc_auc
from .report import tfidf

C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0)


def fit_tfidf(train: list[dict], valid: list[dict]) -> tuple[object, object, float, dict]:
    """(vectorizer, classifier, C, valid ROC-AUC by C): C picked by valid ROC-AUC."""
    from sklearn.linear_model import LogisticRegression

    vec = tfidf(len(train))
    x_train = vec.fit_transform([r["func"] for r in train])
    y_train = np.array([r["target"] for r in train])
    x_valid = vec.transform([r["func"] for r in valid])
    y_valid = np.array([r["target"] for r in valid])
    by_c: dict[str, float] = {}
    best: tuple[float, float, object] = (-1.0, 0.0, None)
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=2000, solver="liblinear").fit(x_train, y_train)
        pv = clf.predict_proba(x_valid)[:, 1]
        auc = roc_auc(pv, y_valid)
        # A one-class valid subset (tiny data) has no AUC; fall back to accuracy.
        key = auc if np.isfinite(auc) else float(((pv >= 0.5) == y_valid).mean())
        by_c[str(c)] = auc
        if key > best[0]:
            best = (key, c, clf)
    return vec, best[2], best[1], by_c


def fit_fusion(enc_logits: np.ndarray, lex_logits: np.ndarray, labels: np.ndarray) -> Fusion:
    from sklearn.linear_model import LogisticRegression

    x = np.c_[enc_logits, lex_logits]
    clf = LogisticRegression(C=1.0, max_iter=1000).fit(x, labels)
    return Fusion(float(clf.coef_[0][0]), float(clf.coef_[0][1]), float(clf.intercept_[0]))


def _logit(p: np.ndarray) -> np.ndarray:
    # The model computes its probabilities in float64 from the encoder's logit, so this gives
    # the logit back to rounding for |logit| < 34; only beyond that does the clip bite.
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def _summary(probs: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "accuracy": float(((probs >= 0.5) == labels).mean()),
        "roc_auc": roc_auc(probs, labels),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp train lexical", description=__doc__)
    ap.add_argument("--model", required=True, help="model directory with a trained encoder")
    ap.add_argument("--data", required=True, help="Devign directory (devign.jsonl.gz, split.json)")
    ap.add_argument("--out", help="write the fused model here (default: update --model in place)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)

    src = Path(args.model)
    out = Path(args.out) if args.out else src
    try:
        splits = load_devign(args.data)
        if out != src:
            if out.exists():
                raise CommandError(
                    f"alpine-lsp train lexical: {out} exists; pick a new --out", code=2
                )
            shutil.copytree(src, out)
        model = load_model(out, device="cpu", threads=args.threads)
    except (ModelLoadError, FileNotFoundError, OSError) as e:
        raise CommandError(f"alpine-lsp train lexical: {e}", code=2) from e
    train, valid = splits["train"], splits["valid"]
    y_valid = np.array([r["target"] for r in valid])

    t0 = time.perf_counter()
    vec, clf, c, by_c = fit_tfidf(train, valid)
    lexical = LexicalModel.from_sklearn(vec, clf)
    fit_s = time.perf_counter() - t0
    print(f"lexical half: C={c}, {len(lexical.vocabulary)} terms, {fit_s:.0f}s", flush=True)

    model.configure(lexical=False)  # the encoder alone, as trained
    enc = _logit(model.defect_probability([r["func"] for r in valid], "c"))
    lex = lexical.logits([r["func"] for r in valid])
    fusion = fit_fusion(enc, lex, y_valid)
    fused = 1 / (1 + np.exp(-(fusion.encoder * enc + fusion.lexical * lex + fusion.bias)))
    threshold = precision_threshold(fused, y_valid, 0.70, min_share=0.02)

    lexical.save(out)
    meta = json.loads((out / "alpine.json").read_text(encoding="utf-8"))
    report = {
        "C": c,
        "valid_roc_auc_by_C": by_c,
        "terms": len(lexical.vocabulary),
        "fit_seconds": round(fit_s, 1),
        "valid": {
            "encoder": _summary(1 / (1 + np.exp(-enc)), y_valid),
            "lexical": _summary(1 / (1 + np.exp(-lex)), y_valid),
            "fused": _summary(fused, y_valid),
        },
    }
    meta["encoder_threshold"] = meta.get("encoder_threshold", meta["threshold"])
    meta["threshold"] = threshold
    meta["fusion"] = fusion.to_dict()
    meta["lexical_training"] = report
    (out / "alpine.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"out": str(out), "threshold": threshold, **report, **fusion.to_dict()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
