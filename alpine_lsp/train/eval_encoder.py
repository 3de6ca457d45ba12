"""`alpine-lsp eval encoder`: encoders' own defect probability on every source's test split.

`eval defect --sources` judges the shipped fused head from the feature cache; this command runs
encoders themselves, so that an encoder trained by `train defect --sources` (several sources,
language markers, pairwise loss) can be compared with the shipped one before anything is
re-fitted on top of it. Each `--model NAME=DIR` is scored with its own tokenizer, markers and
pruning, at one `--max-tokens` for all. The same rows are scored by three baselines: length
(non-blank lines), TF-IDF + logistic regression fitted on the train splits of `--fit-sources`
(capped like the training run), and a flawfinder-style count of risky calls from the tree-sitter
metrics. Test splits are cross-project; pairs are kept whole when a split is capped.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..evalkit.errors import CommandError
from ..model import ModelLoadError
from ..model.files import read_meta
from ..model.tokenize import CodeTokenizer
from ..parsing.metrics import function_metrics
from .defect import build_base, cap_rows, encode_all, predict
from .errors import TrainError
from .eval_sources import pairwise, pr_auc, prec_at_budget
from .metrics import roc_auc
from .report import table as md_table
from .sources import LABELLED, Row, SourceError, load_source, pairs_of

TEST_SOURCES = ("devign", "sven", "manysstubs4j", "juliet_java", "semgrep_tests")
RISKY_KEYS = ("memory_calls", "string_calls", "exec_calls", "deser_calls", "unsafe_ops")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="alpine-lsp eval encoder", description=__doc__)
    p.add_argument("--data", required=True, help="the data root (../shared/data)")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=DIR",
        help="an encoder directory to score, under a short name; repeat to compare",
    )
    p.add_argument("--sources", default=",".join(TEST_SOURCES), help="test splits to score")
    p.add_argument(
        "--fit-sources",
        default=",".join(TEST_SOURCES),
        help="train splits the TF-IDF baseline is fitted on",
    )
    p.add_argument("--test-cap", type=int, default=1000, help="rows per test split (0: all)")
    p.add_argument("--fit-cap", type=int, default=3000, help="TF-IDF train rows per source")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", help="also write the Markdown report here")
    return p.parse_args(argv)


def _models(specs: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, d = spec.partition("=")
        if not sep or not name or not d:
            raise CommandError(f"--model wants NAME=DIR, got {spec!r}", code=2)
        if name in out:
            raise CommandError(f"--model name {name!r} given twice", code=2)
        out[name] = Path(d)
    return out


def _names(spec: str) -> list[str]:
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in LABELLED]
    if bad:
        raise CommandError(f"unknown source(s) {bad}; use {', '.join(TEST_SOURCES)}", code=2)
    return names


def split_rows(data: str, names: list[str], split: str, cap: int, seed: int) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        part = [r for r in load_source(name, data) if r.split == split and r.target in (0, 1)]
        rows += cap_rows(part, cap, random.Random(f"{seed}:{name}:{split}"))
    return rows


def encoder_probs(model_dir: Path, rows: list[Row], max_tokens: int) -> np.ndarray:
    """The encoder's own defect probability (its head, no lexical or metric half), read the way
    the product reads it: the directory's tokenizer, whitespace handling, markers and pruning."""
    try:
        meta = read_meta(model_dir)
    except ModelLoadError as e:
        raise CommandError(f"{model_dir} is not a model directory ({e})") from e
    net, tok_json, _ = build_base(str(model_dir), meta.embed_dim)
    tok = CodeTokenizer.from_str(tok_json, meta.specials, meta.whitespace)
    langs = [r.language for r in rows] if meta.language_marker else None
    ids = encode_all(tok, [r.text for r in rows], max_tokens, meta.truncation, langs)
    probs, _ = predict(net, ids, tok.pad_id, meta.pruning)
    return probs


def tfidf_scores(fit: list[Row], rows: list[Row]) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    from .report import tfidf

    vec = tfidf(len(fit))
    x = vec.fit_transform([r.text for r in fit])
    clf = LogisticRegression(C=1.0, max_iter=3000, solver="liblinear")
    clf.fit(x, [r.target for r in fit])
    return clf.decision_function(vec.transform([r.text for r in rows]))


def baseline_scores(fit: list[Row], rows: list[Row]) -> dict[str, np.ndarray]:
    mets = [function_metrics(r.text, r.language) for r in rows]
    return {
        "length": np.array([m["lines"] for m in mets]),
        "tfidf": tfidf_scores(fit, rows),
        "risky": np.array([sum(m[k] for k in RISKY_KEYS) for m in mets]),
    }


def figures(scores: np.ndarray, rows: list[Row]) -> dict:
    y = np.array([r.target for r in rows])
    pairs = np.array(pairs_of(rows), dtype=int).reshape(-1, 2)
    hi, _ = pairwise(scores, pairs, None)
    both = len(set(y.tolist())) == 2
    return {
        "n": len(rows),
        "positives": int(y.sum()),
        "roc_auc": roc_auc(scores, y) if both else float("nan"),
        "pr_auc": pr_auc(scores, y),
        "prec_at_2pct": prec_at_budget(scores, y),
        "pairs": len(pairs),
        "pair_higher": hi,
    }


def evaluate(args: argparse.Namespace) -> dict:
    models = _models(args.model)
    tests = _names(args.sources)
    fit_names = _names(args.fit_sources)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rows = split_rows(args.data, tests, "test", args.test_cap, args.seed)
        fit = split_rows(args.data, fit_names, "train", args.fit_cap, args.seed)
    except SourceError as e:
        raise CommandError(str(e)) from e
    scores = baseline_scores(fit, rows)
    seconds: dict[str, float] = {}
    for name, d in models.items():
        t0 = time.time()
        try:
            scores[name] = encoder_probs(d, rows, args.max_tokens)
        except TrainError as e:
            raise CommandError(str(e)) from e
        seconds[name] = round(time.time() - t0, 1)
        print(f"{name}: {len(rows)} rows in {seconds[name]:.0f}s", file=sys.stderr, flush=True)
    src = np.array([r.source for r in rows])
    lang = np.array([r.language for r in rows])
    per_source = {
        s: {k: figures(v[src == s], [r for r in rows if r.source == s]) for k, v in scores.items()}
        for s in tests
    }
    per_language = {
        lg: {
            k: figures(v[lang == lg], [r for r in rows if r.language == lg])
            for k, v in scores.items()
        }
        for lg in sorted(set(lang.tolist()))
        if (lang == lg).sum() >= 20  # fewer rows give no figure worth printing
    }
    return {
        "models": {k: str(v) for k, v in models.items()},
        "scorers": list(scores),
        "max_tokens": args.max_tokens,
        "test_cap": args.test_cap,
        "fit_sources": fit_names,
        "fit_rows": len(fit),
        "seconds": seconds,
        "per_source": per_source,
        "per_language": per_language,
    }


def _f(x: float) -> str:
    return "–" if x is None or x != x else f"{x:.3f}"


def markdown(res: dict) -> str:
    names = res["scorers"]
    fitted = f"{res['fit_rows']} train rows of {', '.join(res['fit_sources'])}"
    out = [
        f"# eval encoder (test splits, ≤ {res['test_cap']} rows each, {res['max_tokens']} "
        f"tokens; TF-IDF fitted on {fitted})",
        "",
    ]
    for title, key, cols in (
        ("ROC-AUC", "roc_auc", None),
        ("PR-AUC", "pr_auc", None),
        ("precision at a 2% flag budget", "prec_at_2pct", None),
        ("pairs whose vulnerable half scores higher", "pair_higher", "pairs"),
    ):
        for group in ("per_source", "per_language"):
            rows = []
            for s, by in res[group].items():
                first = next(iter(by.values()))
                if cols and not first[cols]:
                    continue
                n = f"{first['n']}" + (f" ({first[cols]} pairs)" if cols else "")
                rows.append([s, n, *(_f(by[k][key]) for k in names)])
            if rows:
                out += [f"## {title}, {group.replace('_', ' ')}", ""]
                out += [md_table([group.split("_")[1], "rows", *names], rows), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = evaluate(args)  # a CommandError is said by cli/main
    md = markdown(res)
    if args.out:
        Path(args.out).write_text(md + "\n", encoding="utf-8")
    print(json.dumps(res, indent=1) if args.json else md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
