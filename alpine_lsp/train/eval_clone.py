"""`alpine-lsp eval clone`: embedding cosine on BigCloneBench pairs, pruned vs unpruned, beside a
TF-IDF cosine baseline.

Each distinct function is embedded once per setting. The cosine threshold is tuned for best F1 on
valid pairs, separately for each setting and the baseline, then applied to the test pairs. 78% of
the pairs are clones, so F1 on all pairs flatters a detector that says "clone" to everything: the
balanced resample and ROC-AUC are the figures to compare.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..evalkit.data import load_bcb
from ..evalkit.errors import CommandError
from ..evalkit.measure import sample
from ..evalkit.output import dumps
from ..model import ModelLoadError, load_model
from .metrics import best_f1_threshold, prf, roc_auc
from .report import (
    add_ratios,
    configs_of,
    efficiency,
    finish,
    fmt,
    latency,
    lengths_table,
    metric_row,
    scoring_pass,
    table,
    tfidf,
)

SEED = 7
CLONE_TYPES = (0, 1, 2, 3, 4)
Pair = tuple[str, str, int, int]


def balanced_indices(labels: np.ndarray, seed: int = SEED) -> np.ndarray:
    """All negatives plus an equal seeded sample of positives (or the reverse when positives
    are the fewer), as sorted indices."""
    labels = np.asarray(labels).astype(bool)
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    k = min(len(pos), len(neg))
    rng = np.random.default_rng(seed)
    pos = rng.choice(pos, k, replace=False) if len(pos) > k else pos
    neg = rng.choice(neg, k, replace=False) if len(neg) > k else neg
    return np.sort(np.concatenate([pos, neg]))


def pair_metrics(
    cos: np.ndarray, labels: np.ndarray, types: np.ndarray, threshold: float, seed: int = SEED
) -> dict:
    cos = np.asarray(cos, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    types = np.asarray(types)
    pred = cos >= threshold
    p, r, f = prf(pred, labels)
    bal = balanced_indices(labels, seed)
    bp, br, bf = prf(pred[bal], labels[bal])
    by_type, n_by_type = {}, {}
    for t in CLONE_TYPES:
        m = labels & (types == t)
        n_by_type[str(t)] = int(m.sum())
        by_type[str(t)] = float(pred[m].mean()) if m.any() else float("nan")
    return {
        "threshold": float(threshold),
        "roc_auc": roc_auc(cos, labels),
        "precision": p,
        "recall": r,
        "f1": f,
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "balanced": {
            "n": len(bal),
            "positives": int(labels[bal].sum()),
            "negatives": int((~labels[bal]).sum()),
            "precision": bp,
            "recall": br,
            "f1": bf,
            "accuracy": float((pred[bal] == labels[bal]).mean()) if len(bal) else float("nan"),
        },
        "recall_by_clone_type": by_type,
        "positives_by_clone_type": n_by_type,
    }


def pair_cosines(vecs: dict[str, np.ndarray], pairs: list[Pair]) -> np.ndarray:
    """Cosine per pair; the model's embeddings are unit length, so a dot product."""
    return np.array([float(vecs[a] @ vecs[b]) for a, b, _, _ in pairs])


def labels_types(pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([p[2] for p in pairs]), np.array([p[3] for p in pairs])


def evaluate(
    cos_valid: np.ndarray, valid: list[Pair], cos_test: np.ndarray, test: list[Pair]
) -> dict:
    threshold, valid_f1 = best_f1_threshold(cos_valid, labels_types(valid)[0])
    y, t = labels_types(test)
    return {**pair_metrics(cos_test, y, t, threshold), "valid_f1": valid_f1}


def tfidf_baseline(
    funcs: dict[str, str], train: list[Pair], valid: list[Pair], test: list[Pair]
) -> dict:
    """TF-IDF vectors of code tokens (fit on the train-pair functions), cosine per pair."""
    t0 = time.perf_counter()
    train_ids = sorted({i for a, b, _, _ in train for i in (a, b)})
    vec = tfidf(len(train_ids))
    vec.fit([funcs[i] for i in train_ids])
    ids = sorted({i for a, b, _, _ in valid + test for i in (a, b)})
    x = vec.transform([funcs[i] for i in ids])  # rows are L2-normalised by TfidfVectorizer
    row = {i: k for k, i in enumerate(ids)}

    def cosines(pairs: list[Pair]) -> np.ndarray:
        if not pairs:
            return np.zeros(0)
        a = x[[row[p[0]] for p in pairs]]
        b = x[[row[p[1]] for p in pairs]]
        return np.asarray(a.multiply(b).sum(axis=1)).ravel()

    out = evaluate(cosines(valid), valid, cosines(test), test)
    return {
        "name": "tfidf-cosine",
        "vocabulary": len(vec.vocabulary_),
        "train_functions": len(train_ids),
        "fit_seconds": time.perf_counter() - t0,
        **out,
    }


def markdown(res: dict, plot: Path | None) -> str:
    p, u, b = res["pruned"], res["none"], res["baseline"]
    cols = [p, u, b] if b else [p, u]
    head = ["metric", "ALPINE (pruned)", "no pruning", *(["TF-IDF cosine"] if b else [])]

    def row(label: str, get) -> list:
        return metric_row(cols, label, get)

    rows = [
        row("ROC-AUC", lambda c: c["roc_auc"]),
        row("cosine threshold (best F1 on valid)", lambda c: c["threshold"]),
        row("precision", lambda c: c["precision"]),
        row("recall", lambda c: c["recall"]),
        row("F1", lambda c: c["f1"]),
        row("F1, balanced resample", lambda c: c["balanced"]["f1"]),
        row("accuracy, balanced resample", lambda c: c["balanced"]["accuracy"]),
        *(
            row(f"recall, clone type {t}", lambda c, t=t: c["recall_by_clone_type"][str(t)])
            for t in CLONE_TYPES
        ),
        row("F1 @ model similarity_threshold", lambda c: c["at_model_threshold"]["f1"]),
        row("FLOPs per function (mean)", lambda c: c["flops_mean"]),
        row("latency batch 1, median ms", lambda c: c["latency_ms"]["median"]),
        row("latency batch 1, p95 ms", lambda c: c["latency_ms"]["p95"]),
        row("pass ms/function (batch 16, one pass)", lambda c: c["pass_ms_per_function"]),
        row("peak RSS MB (embedding pass)", lambda c: c["peak_rss_mb"]),
    ]
    n = res["n"]
    lines = [
        "# Clone detection: BigCloneBench test pairs",
        "",
        f"Model `{res['model']['name']}` ({res['model']['path']}), pruning "
        f"`{p['pruning']}`, max_tokens {res['model']['max_tokens']}, {res['threads']} torch "
        "threads, CPU.",
        f"Pairs: test {n['test_pairs']}, valid {n['valid_pairs']}, train (baseline) "
        f"{n['train_pairs']}; {n['functions']} distinct functions embedded per setting.",
    ]
    if res.get("limit"):
        lines.append(
            f"**Subset run (--limit {res['limit']}): seeded samples of the pair lists; these are "
            "smoke figures, not results.**"
        )
    lines += [
        "",
        f"**Note:** {res['note']}",
        "",
        table(head, rows),
        "",
        f"Balanced resample: all {p['balanced']['negatives']} negatives + "
        f"{p['balanced']['positives']} positives drawn with seed {SEED}.",
        f"Unpruned / pruned: FLOPs x{fmt(res['flops_ratio'], 2)}, batch-1 median latency "
        f"x{fmt(res['speedup_batch1'], 2)} (over {u['latency_ms']['n']} functions, A/B "
        "interleaved after a warm-up). The one-pass timings run each setting once in turn, "
        "so they carry machine noise; `alpine-lsp bench pruning` times batch 16 A/B.",
        f"Peak memory source: {res['memory_source']}; process-wide RSS.",
        "",
        "## Tokens per layer (mean over test-pair functions)",
        "",
        lengths_table({"pruned": p["tokens_per_layer"], "none": u["tokens_per_layer"]}),
    ]
    if plot is not None:
        lines += ["", f"![tokens per layer]({plot.name})"]
    if res.get("notes"):
        lines += ["", *(f"- {x}" for x in res["notes"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp eval clone", description=__doc__)
    ap.add_argument("--model", required=True, help="model directory")
    ap.add_argument("--data", required=True, help="BigCloneBench directory")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--limit", type=int, default=0, help="seeded subset of N test pairs and N valid pairs"
    )
    ap.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="baseline vectorizer train pairs (default all; 5*limit with --limit)",
    )
    ap.add_argument("--report", help="write a Markdown report here (the plot goes beside it)")
    ap.add_argument("--plot", help="write the tokens-per-layer PNG here")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--latency-n", type=int, default=100, help="functions timed at batch 1")
    ap.add_argument("--no-baseline", action="store_true", help="skip the TF-IDF baseline")
    tiers = ap.add_argument_group("similar-code tiers (--tiers): thresholds and recall per type")
    tiers.add_argument("--tiers", action="store_true", help="evaluate the hint tiers instead")
    tiers.add_argument("--c-corpus", help="c_corpus directory: the C chance-hint pool")
    tiers.add_argument("--java-pool", help="manysstubs4j directory: the Java chance-hint pool")
    tiers.add_argument(
        "--python-repo", action="append", help="a checkout whose Python functions form a pool"
    )
    tiers.add_argument("--pool-n", type=int, default=2000, help="C pool size (Java: 3/4 of it)")
    tiers.add_argument("--budget", type=float, default=1.0, help="chance hints per 1,000")
    tiers.add_argument("--jscpd", help="a jscpd executable, run on the same functions")
    tiers.add_argument("--embeddings-cache", help="an .npz reused across runs")
    tiers.add_argument("--write-thresholds", help="write the per-language thresholds (JSON)")
    tiers.add_argument(
        "--judged",
        help="pool pairs read by hand (docs/pool-pairs-judged.json): real clones among them "
        "are not chance hints",
    )
    tiers.add_argument(
        "--near-identifiers",
        type=float,
        default=None,
        help="identifier-name Jaccard a near copy needs (default: the shipped rule)",
    )
    tiers.add_argument(
        "--near-floor", type=float, default=None, help="lowest near cut written (default: shipped)"
    )
    tiers.add_argument(
        "--centre",
        default="",
        help="languages whose semantic tier works on mean-centred embeddings (comma-separated): "
        "their cut is written from the centred space, their means with --write-similarity",
    )
    tiers.add_argument(
        "--write-similarity",
        help="a model directory: write the centred languages' means there (similarity.safetensors)",
    )
    args = ap.parse_args(argv)
    if args.tiers:
        return _tiers(args)

    try:
        model = load_model(args.model, device="cpu", threads=args.threads)
        funcs, pairs = load_bcb(args.data)
    except (ModelLoadError, OSError) as e:
        raise CommandError(f"alpine-lsp eval clone: {e}", code=2) from e
    import torch

    train_limit = args.train_limit
    if train_limit is None:
        train_limit = max(200, 5 * args.limit) if args.limit else 0
    # The pair files are sorted by clone type, so subsets are seeded samples, not head slices.
    test = sample(pairs["test"], args.limit, SEED)
    valid = sample(pairs["valid"], args.limit, SEED)
    train = sample(pairs["train"], train_limit, SEED)
    if not test or not valid:
        raise CommandError("alpine-lsp eval clone: no test or valid pairs", code=2)
    ids = sorted({i for a, b, _, _ in valid + test for i in (a, b)})
    test_ids = sorted({i for a, b, _, _ in test for i in (a, b)})
    codes = [funcs[i] for i in ids]
    configs, note = configs_of(model)
    y, _ = labels_types(test)
    share = float(y.mean())
    _, _, all_clone_f1 = prf(np.ones_like(y, dtype=bool), y)

    res: dict = {
        "task": "clone",
        "data": str(args.data),
        "model": model.info(),
        "limit": args.limit or None,
        "n": {
            "test_pairs": len(test),
            "valid_pairs": len(valid),
            "train_pairs": len(train),
            "functions": len(ids),
            "test_functions": len(test_ids),
        },
        "positive_share": share,
        "all_clone_f1": all_clone_f1,
        "note": (
            f"78% of BigCloneBench pairs are clones ({share:.0%} of the test pairs used here); "
            f"calling every pair a clone already scores F1 {all_clone_f1:.3f}, so compare "
            "ROC-AUC and the balanced-resample F1."
        ),
        "threads": torch.get_num_threads(),
        "notes": [note] if note else [],
    }
    lat = latency(model, [funcs[i] for i in test_ids], configs, args.latency_n, "java", SEED)
    for name in ("pruned", "none"):
        scores, stats = scoring_pass(model, codes, configs[name], "java")
        vecs = {i: s.embedding for i, s in zip(ids, scores, strict=True)}
        by_id = dict(zip(ids, scores, strict=True))
        # Efficiency over the test functions only, like the defect figures.
        stats.update(efficiency([by_id[i] for i in test_ids]))
        cos_test = pair_cosines(vecs, test)
        out = evaluate(pair_cosines(vecs, valid), valid, cos_test, test)
        if model.similarity_threshold is not None:  # None: the model offers no hints
            mp, mr, mf = prf(cos_test >= model.similarity_threshold, y)
            out["at_model_threshold"] = {
                "threshold": model.similarity_threshold,
                "precision": mp,
                "recall": mr,
                "f1": mf,
            }
        res[name] = {**out, **stats, "latency_ms": lat[name]}
    res["memory_source"] = res["pruned"].pop("memory_source")
    res["none"].pop("memory_source")
    add_ratios(res)
    res["baseline"] = None if args.no_baseline else tfidf_baseline(funcs, train, valid, test)
    return finish(res, args, f"BigCloneBench test, {model.name}", markdown)


def _tiers(args: argparse.Namespace) -> int:
    from . import clone_tiers

    try:
        model = load_model(args.model, device="cpu", threads=args.threads)
    except (ModelLoadError, OSError) as e:
        raise CommandError(f"alpine-lsp eval clone: {e}", code=2) from e
    centre = {x.strip() for x in args.centre.split(",") if x.strip()}
    means: dict = {}
    try:
        res = clone_tiers.run(args, model, means)
    except (OSError, ValueError, KeyError) as e:
        raise CommandError(f"alpine-lsp eval clone --tiers: {e}", code=2) from e
    unknown = sorted(centre - set(res["languages"]))
    if unknown:
        raise CommandError(f"--centre: no pool for {', '.join(unknown)}", code=2)
    res["model"] = model.name
    if args.write_thresholds:
        table = {}
        for lang, r in res["languages"].items():
            t = {"near": r["near"], "near_identifiers": r["near_identifiers"]}
            if lang in centre:  # the cut in the centred space, the raw one for comparison
                t.update(cosine=r["cosine_centred"], centred=True, cosine_raw=r["cosine"])
            else:
                t["cosine"] = r["cosine"]
            table[lang] = {**t, "pool": r["pool"]}
        Path(args.write_thresholds).write_text(json.dumps(table, indent=2) + "\n")
    if args.write_similarity:
        from ..model.similarity import SimilaritySpace

        SimilaritySpace({lang: means[lang] for lang in sorted(centre)}).save(args.write_similarity)
    text = clone_tiers.markdown(res)
    if args.report:
        Path(args.report).write_text(text, encoding="utf-8")
    print(dumps(res) if args.json else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
