"""`alpine-lsp eval defect`: the model on the Devign test split, pruned vs unpruned, beside TF-IDF.

Every figure comes from one run over the same functions: the model with the pruning of its
alpine.json, the same weights with pruning switched off at inference, and a TF-IDF + logistic
regression baseline trained on the train split. With `--limit` the splits are seeded subsets and
the numbers are smoke figures, not results.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..evalkit.data import load_devign
from ..evalkit.errors import CommandError
from ..evalkit.measure import sample
from ..model import ModelLoadError, load_model
from ..pruning import NO_PRUNING
from .lexical import C_GRID, fit_tfidf
from .metrics import (
    precision_at_top,
    precision_threshold,
    prf,
    random_pair_cosines,
    roc_auc,
)
from .report import (
    add_ratios,
    configs_of,
    finish,
    fmt,
    latency,
    lengths_table,
    metric_row,
    scoring_pass,
    table,
)

SEED = 7


def defect_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pred = probs >= 0.5
    p, r, f = prf(pred, labels)
    at = probs >= threshold
    tp, tr, tf = prf(at, labels)
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "precision": p,
        "recall": r,
        "f1": f,
        "roc_auc": roc_auc(probs, labels),
        "precision_top10": precision_at_top(probs, labels, 0.1) if len(labels) else float("nan"),
        "at_threshold": {
            "threshold": float(threshold),
            "accuracy": float((at == labels).mean()) if len(labels) else float("nan"),
            "precision": tp,
            "recall": tr,
            "f1": tf,
            "flagged_share": float(at.mean()) if len(labels) else float("nan"),
        },
    }


def tfidf_baseline(train: list[dict], valid: list[dict], test: list[dict]) -> dict:
    """TF-IDF over code tokens + logistic regression; C picked by valid ROC-AUC, and the
    threshold calibrated on valid by the same rule training uses for the model's threshold.
    The same fit `train lexical` ships as the model's lexical half."""
    t0 = time.perf_counter()
    vec, clf, c, by_c = fit_tfidf(train, valid)
    y_valid = np.array([r["target"] for r in valid])
    pv = clf.predict_proba(vec.transform([r["func"] for r in valid]))[:, 1]
    threshold = precision_threshold(pv, y_valid, 0.70, min_share=0.02)
    pt = clf.predict_proba(vec.transform([r["func"] for r in test]))[:, 1]
    return {
        "name": "tfidf+logreg",
        "C": c,
        "valid_roc_auc_by_C": by_c,
        "vocabulary": len(vec.vocabulary_),
        "fit_seconds": time.perf_counter() - t0,
        **defect_metrics(pt, np.array([r["target"] for r in test]), threshold),
    }


def compare_truncation(model, codes: list[str], labels: np.ndarray, own_scores: list) -> dict:
    """head vs head_tail at inference under the model's pruning; the difference lives entirely
    in the truncated functions, so those get their own figures."""
    out = {}
    before = model.truncation
    for strat in ("head", "head_tail"):
        if strat == before:
            scores = own_scores
        else:
            model.configure(truncation=strat)
            try:
                scores = model.score(codes, "c")
            finally:
                model.configure(truncation=before)
        probs = np.array([s.probability for s in scores])
        trunc = np.array([s.truncated for s in scores], dtype=bool)
        m = defect_metrics(probs, labels, model.threshold)
        m["truncated_n"] = int(trunc.sum())
        m["roc_auc_truncated"] = roc_auc(probs[trunc], labels[trunc])
        m["accuracy_truncated"] = (
            float(((probs[trunc] >= 0.5) == labels[trunc]).mean()) if trunc.any() else float("nan")
        )
        out[strat] = m
    return out


def alpha_sweep(model, valid: list[dict], alphas: list[float]) -> list[dict]:
    """The keep band's width against accuracy and cost, on the validation split (choosing it on
    test would tune to test): one row per alpha with the model's layers and mode, plus none."""
    codes = [r["func"] for r in valid]
    labels = np.array([r["target"] for r in valid])
    rows = []
    settings = [(a, replace(model.pruning, alpha=a)) for a in alphas]
    for alpha, cfg in [*settings, (None, NO_PRUNING)]:
        scores, stats = scoring_pass(model, codes, cfg, "c")
        probs = np.array([s.probability for s in scores])
        rows.append(
            {
                "alpha": alpha,
                "accuracy": float(((probs >= 0.5) == labels).mean()),
                "roc_auc": roc_auc(probs, labels),
                "flops_mean": stats["flops_mean"],
                "tokens_per_layer": stats["tokens_per_layer"],
            }
        )
    full = rows[-1]["flops_mean"]
    for r in rows:
        r["flops_saved"] = 1.0 - r["flops_mean"] / full if full else float("nan")
    return rows


def relayout(code: str) -> str:
    """The same function as people write it: Devign's doubled newlines made single, and each
    four-space indent step a tab."""
    lines = code.replace("\r\n", "\n").replace("\n\n", "\n").split("\n")
    out = []
    for line in lines:
        body = line.lstrip(" ")
        steps, rest = divmod(len(line) - len(body), 4)
        out.append("\t" * steps + " " * rest + body)
    return "\n".join(out)


def robustness(model, codes: list[str], labels: np.ndarray, own_scores: list) -> dict:
    """Checks a held-out score cannot show: does layout move scores (Devign's layout is unlike
    anyone's editor), and do unrelated functions look alike to the embedding (every such pair
    above the similarity threshold would be a false similar-code hint)?"""
    probs = np.array([s.probability for s in own_scores])
    again = np.array([s.probability for s in model.score([relayout(c) for c in codes], "c")])
    delta = np.abs(again - probs)
    before = defect_metrics(probs, labels, model.threshold)
    after = defect_metrics(again, labels, model.threshold)
    layout = {
        "accuracy": before["accuracy"],
        "accuracy_relaid": after["accuracy"],
        "flagged_share": before["at_threshold"]["flagged_share"],
        "flagged_share_relaid": after["at_threshold"]["flagged_share"],
        "mean_abs_delta": float(delta.mean()),
        "max_abs_delta": float(delta.max()),
    }
    cos = random_pair_cosines(np.stack([s.embedding for s in own_scores]), 5000, SEED)
    sim_t = model.similarity_threshold
    spread = {
        "pairs": len(cos),
        "cosine_median": float(np.median(cos)) if len(cos) else float("nan"),
        "cosine_p99": float(np.quantile(cos, 0.99)) if len(cos) else float("nan"),
        "similarity_threshold": sim_t,
        "share_above_threshold": (
            float((cos >= sim_t).mean()) if sim_t is not None and len(cos) else None
        ),
    }
    return {"layout": layout, "embedding_spread": spread}


def markdown(res: dict, plot: Path | None) -> str:
    p, u, b, e = res["pruned"], res["none"], res["baseline"], res.get("encoder_only")
    cols = [p, u, *([e] if e else []), *([b] if b else [])]
    head = [
        "metric",
        "ALPINE (pruned)",
        "no pruning",
        *(["encoder alone (pruned)"] if e else []),
        *(["TF-IDF + LR"] if b else []),
    ]

    def row(label: str, get) -> list:
        return metric_row(cols, label, get)

    rows = [
        row("accuracy @0.5", lambda c: c["accuracy"]),
        row("precision @0.5", lambda c: c["precision"]),
        row("recall @0.5", lambda c: c["recall"]),
        row("F1 @0.5", lambda c: c["f1"]),
        row("ROC-AUC", lambda c: c["roc_auc"]),
        row("precision, top 10%", lambda c: c["precision_top10"]),
        row("calibrated threshold", lambda c: c["at_threshold"]["threshold"]),
        row("accuracy @threshold", lambda c: c["at_threshold"]["accuracy"]),
        row("precision @threshold", lambda c: c["at_threshold"]["precision"]),
        row("recall @threshold", lambda c: c["at_threshold"]["recall"]),
        row("flagged share @threshold", lambda c: c["at_threshold"]["flagged_share"]),
        row("FLOPs per function (mean)", lambda c: c["flops_mean"]),
        row("latency batch 1, median ms", lambda c: c["latency_ms"]["median"]),
        row("latency batch 1, p95 ms", lambda c: c["latency_ms"]["p95"]),
        row("pass ms/function (batch 16, one pass)", lambda c: c["pass_ms_per_function"]),
        row("peak RSS MB (scoring pass)", lambda c: c["peak_rss_mb"]),
    ]
    n = res["n"]
    lines = [
        "# Defect prediction: Devign test split",
        "",
        f"Model `{res['model']['name']}` ({res['model']['path']}), pruning "
        f"`{res['pruned']['pruning']}`, max_tokens {res['model']['max_tokens']}, "
        f"truncation {res['model']['truncation']}, {res['threads']} torch threads, CPU.",
        f"Functions: test {n['test']}, valid {n['valid']}, train (baseline) {n['train']}.",
    ]
    if res.get("limit"):
        lines.append(
            f"**Subset run (--limit {res['limit']}): seeded samples of each split; these are "
            "smoke figures, not results.**"
        )
    lines += [
        "",
        table(head, rows),
        "",
        f"Unpruned / pruned: FLOPs x{fmt(res['flops_ratio'], 2)}, batch-1 median latency "
        f"x{fmt(res['speedup_batch1'], 2)} (over {u['latency_ms']['n']} functions, A/B "
        "interleaved after a warm-up). The one-pass timings run each setting once in turn, "
        "so they carry machine noise; `alpine-lsp bench pruning` times batch 16 A/B.",
        f"Peak memory source: {res['memory_source']}; process-wide RSS (weights, data and "
        "Python included).",
        "",
        "## Tokens per layer (mean over test functions)",
        "",
        lengths_table({"pruned": p["tokens_per_layer"], "none": u["tokens_per_layer"]}),
    ]
    if plot is not None:
        lines += ["", f"![tokens per layer]({plot.name})"]
    if b:
        lines += [
            "",
            f"Baseline: C={b['C']} chosen on valid ROC-AUC from {list(C_GRID)}; "
            f"vocabulary {b['vocabulary']} uni+bigrams of code tokens.",
        ]
    if res.get("truncation"):
        t = res["truncation"]
        trows = [
            [
                s,
                t[s]["accuracy"],
                t[s]["f1"],
                t[s]["roc_auc"],
                t[s]["precision_top10"],
                t[s]["truncated_n"],
                t[s]["accuracy_truncated"],
                t[s]["roc_auc_truncated"],
            ]
            for s in ("head", "head_tail")
        ]
        lines += [
            "",
            "## Truncation at inference (pruned)",
            "",
            table(
                [
                    "strategy",
                    "accuracy",
                    "F1",
                    "ROC-AUC",
                    "P top 10%",
                    "truncated n",
                    "accuracy (truncated)",
                    "ROC-AUC (truncated)",
                ],
                trows,
            ),
        ]
    if res.get("alpha_sweep"):
        lines += [
            "",
            "## Keep-band width (validation split)",
            "",
            table(
                ["alpha", "accuracy @0.5", "ROC-AUC", "FLOPs per function", "FLOPs saved"],
                [
                    [
                        "no pruning" if r["alpha"] is None else r["alpha"],
                        r["accuracy"],
                        r["roc_auc"],
                        r["flops_mean"],
                        r["flops_saved"],
                    ]
                    for r in res["alpha_sweep"]
                ],
            ),
        ]
    if res.get("robustness"):
        lay, spr = res["robustness"]["layout"], res["robustness"]["embedding_spread"]
        above = spr["share_above_threshold"]
        lines += [
            "",
            "## Outside Devign's own form (pruned)",
            "",
            table(
                ["layout", "accuracy @0.5", "flagged share @threshold"],
                [
                    ["as in Devign (doubled newlines)", lay["accuracy"], lay["flagged_share"]],
                    [
                        "single newlines, tab indents",
                        lay["accuracy_relaid"],
                        lay["flagged_share_relaid"],
                    ],
                ],
            ),
            "",
            f"Layout moves a score by {fmt(lay['mean_abs_delta'], 4)} on average "
            f"(at most {fmt(lay['max_abs_delta'], 4)}).",
            f"Embeddings of {spr['pairs']} random pairs of distinct test functions: cosine "
            f"median {fmt(spr['cosine_median'], 3)}, p99 {fmt(spr['cosine_p99'], 3)}; "
            + (
                f"{fmt(100 * above, 1)}% are at or above the similarity threshold "
                f"{fmt(spr['similarity_threshold'], 3)} (each would be a similar-code hint)."
                if above is not None
                else "the model sets no similarity threshold (no hints by default)."
            ),
        ]
    if res.get("notes"):
        lines += ["", *(f"- {x}" for x in res["notes"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--sources" or a.startswith("--sources=") for a in argv):
        from .eval_sources import main as eval_sources_main  # every source, from the cache

        return eval_sources_main(argv)
    ap = argparse.ArgumentParser(prog="alpine-lsp eval defect", description=__doc__)
    ap.add_argument("--model", required=True, help="model directory")
    ap.add_argument("--data", required=True, help="Devign directory (devign.jsonl.gz, split.json)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--limit", type=int, default=0, help="seeded subset of N test/valid functions")
    ap.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="baseline training functions (default: all, or 5*limit with --limit)",
    )
    ap.add_argument("--report", help="write a Markdown report here (the plot goes beside it)")
    ap.add_argument("--plot", help="write the tokens-per-layer PNG here")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--latency-n", type=int, default=100, help="functions timed at batch 1")
    ap.add_argument(
        "--compare-truncation",
        action="store_true",
        help="also score the test split with head and head_tail truncation",
    )
    ap.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baseline")
    ap.add_argument(
        "--alpha-sweep",
        help="comma list of keep-band widths to score on the validation split, e.g. 0.5,1.0",
    )
    args = ap.parse_args(argv)
    try:
        alphas = [float(a) for a in args.alpha_sweep.split(",")] if args.alpha_sweep else []
        if any(not a >= 0 for a in alphas):
            raise ValueError
    except ValueError:
        raise CommandError(
            f"alpine-lsp eval defect: --alpha-sweep wants numbers >= 0 separated by commas, "
            f"got {args.alpha_sweep!r}",
            code=2,
        ) from None

    try:
        model = load_model(args.model, device="cpu", threads=args.threads)
        splits = load_devign(args.data)
    except (ModelLoadError, FileNotFoundError) as e:
        raise CommandError(f"alpine-lsp eval defect: {e}", code=2) from e
    import torch

    train_limit = args.train_limit
    if train_limit is None:
        train_limit = max(200, 5 * args.limit) if args.limit else 0
    test = sample(splits["test"], args.limit, SEED)
    valid = sample(splits["valid"], args.limit, SEED)
    train = sample(splits["train"], train_limit, SEED)
    if not test:
        raise CommandError("alpine-lsp eval defect: the test split is empty", code=2)
    codes = [r["func"] for r in test]
    labels = np.array([r["target"] for r in test])
    configs, note = configs_of(model)

    res: dict = {
        "task": "defect",
        "data": str(args.data),
        "model": {**model.info(), "truncation": model.truncation},
        "limit": args.limit or None,
        "n": {"test": len(test), "valid": len(valid), "train": len(train)},
        "positive_share": float(labels.mean()),
        "threads": torch.get_num_threads(),
        "notes": [note] if note else [],
    }
    # Latency first: its warm-up also warms the allocator before the memory-measured passes.
    lat = latency(model, codes, configs, args.latency_n, "c", SEED)
    # Pruned before unpruned: memory an earlier pass keeps can only inflate the later peak.
    own_scores = None
    for name in ("pruned", "none"):
        scores, stats = scoring_pass(model, codes, configs[name], "c")
        probs = np.array([s.probability for s in scores])
        res[name] = {
            **defect_metrics(probs, labels, model.threshold),
            **stats,
            "latency_ms": lat[name],
        }
        if name == "pruned":
            own_scores = scores
    if model.lexical is not None:
        # The shipped score fuses encoder and lexical half; show what the encoder does alone.
        model.configure(lexical=False)
        scores, _ = scoring_pass(model, codes, configs["pruned"], "c")
        model.configure(lexical=True)
        enc_threshold = float(model.meta.extra.get("encoder_threshold", 0.5))
        res["encoder_only"] = defect_metrics(
            np.array([s.probability for s in scores]), labels, enc_threshold
        )
        res["notes"].append(
            "the model fuses its encoder with a lexical half (TF-IDF + logistic regression, "
            f"fusion {model.fusion.to_dict()}); 'encoder alone' drops the lexical half"
        )
    res["memory_source"] = res["pruned"].pop("memory_source")
    res["none"].pop("memory_source")
    add_ratios(res)
    if args.compare_truncation:
        res["truncation"] = compare_truncation(model, codes, labels, own_scores)
    res["robustness"] = robustness(model, codes, labels, own_scores)
    if alphas:
        res["alpha_sweep"] = alpha_sweep(model, valid, alphas)
    res["baseline"] = None if args.no_baseline else tfidf_baseline(train, valid, test)
    return finish(res, args, f"Devign test, {model.name}", markdown)


if __name__ == "__main__":
    raise SystemExit(main())
