"""`alpine-lsp eval lines`: does the line ranking point at the flaw?

On every shared set with flaw lines (`lines`), the vulnerable (target 1) rows of the TEST split
(cross-project): top-1/3/5/10 line accuracy (a flaw line among the k lines ranked highest) and
the mean rank of the first flaw line, for the model's ranking (from the same forward pass as the
probability) beside two baselines on the same rows: random lines (the exact expected value) and
the lines with most tokens. Juliet and Semgrep rows lose their comments and leaking names first
(line numbers kept). Candidate lines are the function's non-blank lines; a flaw line that is
blank after cleaning is not counted, and rows left without a flaw line are skipped (counted).

Variants of the ranking that cost nothing at run time are measured beside it (one layer alone,
later layers weighted up, mean per token instead of sum, the signature line demoted).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from math import comb
from pathlib import Path

import numpy as np
import torch

from ..evalkit.errors import CommandError
from ..model import ModelLoadError, load_model
from ..model.lines import combine_layers, has_call, line_starts, rank_lines, token_lines
from .leaks import LINE_SETS, clean, load_rows

KS = (1, 3, 5, 10)


def candidates(code: str) -> list[int]:
    """1-based lines that hold something other than whitespace."""
    starts = line_starts(code)
    ends = [*starts[1:].tolist(), len(code)]
    return [i + 1 for i, (a, b) in enumerate(zip(starts, ends, strict=True)) if code[a:b].strip()]


def full_order(ranked: list[int], cands: list[int]) -> list[int]:
    """A ranking over every candidate: the ranked ones first, the rest in source order."""
    seen = set()
    out = []
    for ln in ranked:
        if ln in cands and ln not in seen:
            out.append(ln)
            seen.add(ln)
    out += [ln for ln in cands if ln not in seen]
    return out


def hits(order: list[int], flaws: set[int]) -> tuple[dict[int, float], float]:
    first = next(i + 1 for i, ln in enumerate(order) if ln in flaws)
    return {k: float(first <= k) for k in KS}, float(first)


def random_expected(n: int, f: int) -> tuple[dict[int, float], float]:
    """Exact expectations for a uniformly random order of n lines of which f are flaws."""
    at = {k: 1.0 - (comb(n - f, k) / comb(n, k) if k < n else 0.0) for k in KS}
    return at, (n + 1) / (f + 1)


def _forward(
    model, codes: list[str], languages: list[str] | None = None
) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per code: per-layer scores of its content tokens (P, n), their lines, their strings. A
    model trained with language markers reads them (after the content: slices stay valid)."""
    from dataclasses import replace

    cfg = replace(model.pruning, track_lines=True)
    marks = languages if model.meta.language_marker else None
    batch = model.tokenizer.batch(codes, model.max_tokens, model.truncation, marks)
    with torch.inference_mode():
        out = model.net(
            batch.input_ids.to(model.device), batch.attention_mask.to(model.device), cfg
        )
    per = out.alpine.token_scores.float().cpu().numpy()
    res = []
    for row, code in enumerate(codes):
        n = len(batch.offsets[row])
        lines = token_lines(code, batch.offsets[row], model.tokenizer.whitespace)
        res.append((per[row][:, 1 : 1 + n], lines, batch.tokens[row][1 : 1 + n]))
    return res


_PUNCT = set("()[]{};,.:+-*/%&|^!~<>=?\"'#\\@$`_")


def _order(lines: np.ndarray, scores: np.ndarray) -> list[int]:
    return [ln for ln, _ in rank_lines(lines, scores, 10_000)]


def _by_line(lines: np.ndarray, scores: np.ndarray) -> dict[int, float]:
    ok = lines > 0
    sums = np.bincount(lines[ok], weights=np.asarray(scores, np.float64)[ok])
    return {int(ln): float(sums[ln]) for ln in np.flatnonzero(np.bincount(lines[ok]))}


def _rank_dict(d: dict[int, float]) -> list[int]:
    return [ln for ln, _ in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))]


def variants(
    per: np.ndarray, lines: np.ndarray, toks: list[str], code: str, lexical=None
) -> dict[str, list[int]]:
    """Rankings (lines, best first) that cost nothing beyond the forward pass."""
    out: dict[str, list[int]] = {}
    summed = combine_layers(per)
    out["shipped: attention x call, first line last"] = [
        ln for ln, _ in rank_lines(lines, summed, 10_000, code)
    ]
    out["attention, sum over layers"] = _order(lines, summed)
    for p in range(per.shape[0]):
        out[f"attention, layer {p + 1} only"] = _order(lines, per[p])
    w = np.arange(1, per.shape[0] + 1, dtype=np.float64)
    out["attention, layer p weighted p"] = _order(lines, combine_layers(per, w))
    ok = lines > 0
    counts = np.bincount(lines[ok], minlength=int(lines.max(initial=0)) + 1).astype(np.float64)
    out["attention, mean per token"] = _order(lines, summed / np.maximum(counts[lines], 1))
    ranked = out["attention, sum over layers"]
    out["attention, first line last"] = [ln for ln in ranked if ln != 1] + (
        [1] if 1 in ranked else []
    )
    word = np.array([not set(t.lstrip("Ġ")) <= _PUNCT for t in toks], dtype=np.float64)
    out["attention, word tokens only"] = _order(lines, summed * word)
    text_lines = code.splitlines() if "\r" not in code else re.split(r"\r\n|\r|\n", code)
    call = {
        ln: has_call(text_lines[ln - 1]) if ln - 1 < len(text_lines) else False
        for ln in set(lines[ok].tolist())
    }
    att = _by_line(lines, summed)
    out["attention x 2 on lines with a call"] = _rank_dict(
        {ln: v * (2.0 if call[ln] else 1.0) for ln, v in att.items()}
    )
    first_last = {
        ln: v * (0.0 if ln == 1 else 1.0) + (1e-9 if ln == 1 else 0) for ln, v in att.items()
    }
    out["attention x call, first line last"] = _rank_dict(
        {ln: v * (2.0 if call[ln] else 1.0) for ln, v in first_last.items()}
    )
    tokc = _by_line(lines, np.ones(len(lines)))
    out["most tokens"] = _rank_dict(tokc)
    out["rule: lines with a call, then most tokens"] = _rank_dict(
        {ln: v + (1000.0 if call[ln] else 0.0) for ln, v in tokc.items()}
    )
    if lexical is not None:
        lex = {}
        for ln in att:
            t = lexical.regex.findall(text_lines[ln - 1]) if ln - 1 < len(text_lines) else []
            idx = [lexical.index[x] for x in t if x in lexical.index]
            lex[ln] = float(np.clip(lexical.coef[idx] * lexical.idf[idx], 0, None).sum())
        tot = sum(lex.values()) or 1.0
        out["attention + lexical term weights"] = _rank_dict(
            {ln: v + 0.5 * lex[ln] / tot for ln, v in att.items()}
        )
    return out


def evaluate(model, rows: list[dict], batch_size: int = 16) -> dict:
    """Figures for one set's rows (target 1, with lines)."""
    sums: dict[str, dict[str, float]] = {}
    used = skipped = 0
    todo = []
    for r in rows:
        code = clean(r)
        cands = candidates(code)
        flaws = {ln for ln in r["lines"] if ln in set(cands)}
        if not flaws:
            skipped += 1
            continue
        todo.append((code, cands, flaws, r.get("language", "c")))
    todo.sort(key=lambda t: len(t[0]))
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        codes, langs = [t[0] for t in part], [t[3] for t in part]
        for (code, cands, flaws, _), (per, lines, toks) in zip(
            part, _forward(model, codes, langs), strict=True
        ):
            used += 1
            ranks = variants(per, lines, toks, code, model.lexical)
            methods = {k: hits(full_order(v, cands), flaws) for k, v in ranks.items()}
            methods["random lines (expected)"] = random_expected(len(cands), len(flaws))
            for name, (at, rank) in methods.items():
                acc = sums.setdefault(name, {f"top{k}": 0.0 for k in KS} | {"mean_rank": 0.0})
                for k in KS:
                    acc[f"top{k}"] += at[k]
                acc["mean_rank"] += rank
    res = (
        {name: {k: v / used for k, v in acc.items()} for name, acc in sums.items()} if used else {}
    )
    return {"rows": used, "skipped_no_flaw_line": skipped, "methods": res}


def render(results: dict) -> str:
    out = []
    for name, r in results["sets"].items():
        out.append(
            f"\n{name}: {r['rows']} vulnerable {results['split']} rows "
            f"({r['skipped_no_flaw_line']} without a flaw line skipped)"
        )
        rnd = r["methods"].get("random lines (expected)", {})
        out.append(
            f"  {'method':44s} {'top1':>6s} {'top3':>6s} {'top5':>6s} {'top10':>6s} "
            f"{'rank':>6s} {'top1/rnd':>8s} {'top5/rnd':>8s}"
        )
        for m, f in r["methods"].items():
            ratio = f["top5"] / rnd["top5"] if rnd.get("top5") else float("nan")
            r1 = f["top1"] / rnd["top1"] if rnd.get("top1") else float("nan")
            out.append(
                f"  {m:44s} {f['top1']:6.3f} {f['top3']:6.3f} {f['top5']:6.3f} {f['top10']:6.3f} "
                f"{f['mean_rank']:6.2f} {r1:8.2f} {ratio:8.2f}"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp eval lines", description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: the bundled model)")
    ap.add_argument("--data-root", default="../shared/data", help="folder holding the sets")
    ap.add_argument("--sets", default=",".join(LINE_SETS), help="comma-separated set names")
    ap.add_argument("--split", default="test", choices=("train", "valid", "test"))
    ap.add_argument("--limit", type=int, default=0, help="at most this many rows per set (smoke)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        model = load_model(args.model, device="cpu", threads=args.threads)
    except ModelLoadError as e:
        raise CommandError(f"alpine-lsp eval lines: {e}", code=2) from e
    results: dict = {
        "split": args.split,
        "model": model.name,
        "pruning": model.pruning.to_dict(),
        "sets": {},
    }
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        d = Path(args.data_root) / name
        try:
            rows = load_rows(d)[args.split]
        except (FileNotFoundError, KeyError) as e:
            print(f"alpine-lsp eval lines: skipping {name}: {e}", file=sys.stderr)
            continue
        rows = [r for r in rows if r["target"] == 1 and r["lines"]]
        if args.limit:
            rows = rows[: args.limit]
        t0 = time.perf_counter()
        results["sets"][name] = evaluate(model, rows)
        results["sets"][name]["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"model {results['model']}, pruning {results['pruning']}")
    print(render(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0
