"""Helpers shared by `eval defect` and `eval clone`: scoring passes, baselines, JSON, Markdown."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..evalkit.measure import (
    PeakMemory,
    interleaved_latency,
    mean_lengths,
    ratio,
    sample,
    summarize,
)
from ..pruning import NO_PRUNING, PruningConfig

# Identifiers, numbers, multi-character operators, then any other single symbol: code tokens,
# not English words (sklearn's default pattern would drop every operator and 1-letter name).
TOKEN_PATTERN = (
    r"[A-Za-z_][A-Za-z0-9_]*|\d[\w.]*|->|\+\+|--|<<=?|>>=?|&&|\|\||::|[-+*/%&|^!=<>]=|[^\s\w]"
)


def tfidf(n_docs: int, ngrams: tuple[int, int] = (1, 2)):
    from sklearn.feature_extraction.text import TfidfVectorizer

    # min_df=2 drops one-off identifiers in real data; tiny test sets would lose everything.
    return TfidfVectorizer(
        token_pattern=TOKEN_PATTERN,
        lowercase=False,
        ngram_range=ngrams,
        min_df=2 if n_docs >= 100 else 1,
        max_features=200_000,
        sublinear_tf=True,
        dtype=np.float32,
    )


def configs_of(model) -> tuple[dict[str, PruningConfig], str]:
    """The two inference settings compared everywhere: the model's own pruning and none."""
    own = model.pruning
    note = ""
    if own.layers == "none":
        note = "the model's alpine.json switches pruning off, so 'pruned' equals 'none'"
    return {"pruned": own, "none": NO_PRUNING}, note


def scoring_pass(model, codes: list[str], cfg: PruningConfig, language: str) -> tuple[list, dict]:
    """Score every function under `cfg` (the model's batching) and measure the pass."""
    before = model.pruning
    model.configure(pruning=cfg)
    try:
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            scores = model.score(codes, language)
            seconds = time.perf_counter() - t0
    finally:
        model.configure(pruning=before)
    stats = {
        "pruning": cfg.to_dict(),
        **efficiency(scores),
        "pass_seconds": seconds,
        "pass_ms_per_function": 1000 * seconds / max(1, len(codes)),
        "peak_rss_mb": mem.mb,
        "peak_rss_growth_mb": mem.mb - mem.start_mb,
        "memory_source": mem.source,
    }
    return scores, stats


def efficiency(scores: Sequence) -> dict:
    """Mean tokens entering each layer, mean FLOPs and the truncated share of scored functions."""
    flops = [s.flops for s in scores]
    return {
        "tokens_per_layer": mean_lengths([s.tokens_per_layer for s in scores]),
        "flops_mean": float(np.mean(flops)) if flops else float("nan"),
        "truncated_share": float(np.mean([s.truncated for s in scores])) if scores else 0.0,
    }


def latency(
    model, codes: list[str], configs: dict[str, PruningConfig], n: int, language: str, seed: int
) -> dict[str, dict]:
    """Batch-1 wall latency of `model.score([code])` over a fixed seeded sample, A/B interleaved."""
    picked = sample(codes, n, seed)
    runs = interleaved_latency(model, configs, [[c] for c in picked], language)
    return {name: summarize(ms) for name, ms in runs.items()}


def add_ratios(out: dict) -> None:
    """flops_ratio and speedup_batch1 (unpruned / pruned) from out['none'] and out['pruned']."""
    none, pruned = out["none"], out["pruned"]
    out["flops_ratio"] = ratio(none["flops_mean"], pruned["flops_mean"])
    out["speedup_batch1"] = ratio(none["latency_ms"]["median"], pruned["latency_ms"]["median"])


def plot_tokens(curves: dict[str, Sequence[float]], out: Path, title: str) -> Path:
    """Mean sequence length entering each layer, one line per setting (the paper's Figure 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, ys in curves.items():
        ax.plot(range(len(ys)), ys, marker="o", label=name)
    n = max(len(ys) for ys in curves.values())
    ax.set_xticks(range(n), ["in", *(str(i + 1) for i in range(n - 1))])
    ax.set_xlabel("after layer")
    ax.set_ylabel("mean tokens per function")
    top = max((max(ys) for ys in curves.values() if len(ys)), default=1.0)
    ax.set_ylim(0, top * 1.15)  # headroom so the legend does not cover the flat line
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_path(report: str | None, plot: str | None) -> Path | None:
    if plot:
        return Path(plot)
    if report:
        r = Path(report)
        return r.with_name(r.stem + "_tokens.png")
    return None


def finish(res: dict, args, title: str, markdown) -> int:
    """The end of an `eval` command: the token-length plot (when asked for or beside a
    report), the Markdown report written, then JSON or the Markdown printed."""
    from ..evalkit.output import dumps

    plot = plot_path(args.report, args.plot)
    if plot is not None:
        plot_tokens(
            {
                "ALPINE (pruned)": res["pruned"]["tokens_per_layer"],
                "no pruning": res["none"]["tokens_per_layer"],
            },
            plot,
            title,
        )
        res["plot"] = str(plot)
    text = markdown(res, plot)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(text, encoding="utf-8")
        res["report"] = str(args.report)
    print(dumps(res) if args.json else text)
    return 0


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, float):
        if abs(x) >= 1e9:
            return f"{x / 1e9:.2f} G"
        if abs(x) >= 1e6:
            return f"{x / 1e6:.1f} M"
        return f"{x:.{digits}f}"
    return str(x)


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def lengths_table(curves: dict[str, Sequence[float]]) -> str:
    names = list(curves)
    n = max(len(v) for v in curves.values())
    rows = [
        ["input" if i == 0 else f"after layer {i}", *(curves[k][i] for k in names)]
        for i in range(n)
    ]
    return table(["position", *names], rows)


def metric_row(cols: list[dict], label: str, get) -> list:
    """One table row: `get` applied to each column's results (None where a key is missing)."""
    vals = []
    for c in cols:
        try:
            vals.append(get(c))
        except KeyError:
            vals.append(None)
    return [label, *vals]
