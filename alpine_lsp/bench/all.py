"""`alpine-lsp bench all`: the pruning, lsp (and --big-file, --index), index and memory benches
in one run, one table."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import platform
import sys

import torch

from ..evalkit.errors import CommandError

BENCHES = {
    "pruning": ("alpine_lsp.bench.pruning", []),
    "lsp": ("alpine_lsp.bench.lsp", []),
    "index": ("alpine_lsp.bench.index", []),
    "memory": ("alpine_lsp.bench.memory", []),
    "big": ("alpine_lsp.bench.lsp", ["--big-file"]),
    "lsp_index": ("alpine_lsp.bench.lsp", ["--index"]),  # about a minute
}


def _run(module: str, argv: list[str]) -> dict:
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            code = importlib.import_module(module).main([*argv, "--json"])
    except CommandError as e:  # one bench that cannot run does not stop the others
        return {"error": f"exit {e.code}: {e}", "output": buf.getvalue()[-500:]}
    text = buf.getvalue()
    # The JSON document is the last thing printed; it may span several (indented) lines.
    starts = [i for i, line in enumerate(text.splitlines()) if line.startswith("{")]
    if code or not starts:
        return {"error": f"exit {code}", "output": text[-500:]}
    try:
        return json.loads("\n".join(text.splitlines()[starts[-1] :]))
    except ValueError:
        return {"error": "no JSON in the output", "output": text[-500:]}


def _get(d: dict, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def table(results: dict) -> str:
    p, lsp, idx = results.get("pruning", {}), results.get("lsp", {}), results.get("index", {})
    mem = results.get("memory", {})

    def f(v, fmt="{:.1f}"):
        return fmt.format(v) if isinstance(v, (int, float)) else "n/a"

    rows = [
        (
            "pruning",
            "batch-1 latency median, unpruned → pruned (ms)",
            f"{f(_get(p, 'latency_ms', 'none', 'median'))} → "
            f"{f(_get(p, 'latency_ms', 'pruned', 'median'))}",
        ),
        ("pruning", "batch-1 speed-up (unpruned/pruned)", f(p.get("speedup_batch1"), "{:.2f}x")),
        ("pruning", "batch-16 speed-up", f(p.get("speedup_batch16"), "{:.2f}x")),
        ("pruning", "FLOPs ratio (unpruned/pruned)", f(p.get("flops_ratio"), "{:.2f}x")),
        (
            "lsp",
            "edit → diagnostic p50 / p95 (ms, debounce excluded)",
            f"{f(_get(lsp, 'edit_to_diagnostic_ms', 'median'))} / "
            f"{f(_get(lsp, 'edit_to_diagnostic_ms', 'p95'))}",
        ),
        (
            "lsp",
            "hover while scoring p50 / p95 (ms)",
            f"{f(_get(lsp, 'hover_ms', 'median'))} / {f(_get(lsp, 'hover_ms', 'p95'))}",
        ),
        ("index", "build throughput (functions/s)", f(idx.get("build_functions_per_s"))),
    ]
    for n in ("1000", "10000", "100000"):
        rows.append(
            (
                "index",
                f"query at {int(n):,} functions p50 / p95 (ms)",
                f"{f(_get(idx, 'query_ms', n, 'median'), '{:.2f}')} / "
                f"{f(_get(idx, 'query_ms', n, 'p95'), '{:.2f}')}",
            )
        )
    rows.append(
        (
            "index",
            "warm restart (s), functions re-embedded",
            f"{f(idx.get('warm_restart_s'), '{:.2f}')}, {idx.get('warm_restart_embedded', 'n/a')}",
        )
    )
    load = mem.get("model_load", {})
    indexed = mem.get("server_indexed", {})
    rows += [
        (
            "memory",
            "model load, warm: API import + load_model() (s)",
            f"{f(load.get('api_import_s'), '{:.2f}')} + {f(load.get('load_s'), '{:.2f}')}"
            f" (torch import {f(load.get('torch_import_s'), '{:.2f}')})",
        ),
        (
            "memory",
            "server RSS, one file open (MB)",
            f(_get(mem, "server_one_file", "rss_mb"), "{:.0f}"),
        ),
        (
            "memory",
            f"server RSS after indexing {indexed.get('functions', 'n/a')} functions (MB)",
            f(indexed.get("rss_mb"), "{:.0f}"),
        ),
        (
            "memory",
            "check peak RSS on that workspace (MB)",
            f(_get(mem, "check", "peak_mb"), "{:.0f}"),
        ),
    ]
    li = results.get("lsp_index", {})
    rows.append(
        (
            "lsp",
            "edit → diagnostic p50 / p95 while indexing 4,000 functions (ms, target p95 ≤ 100)",
            f"{f(_get(li, 'edit_to_diagnostic_ms', 'median'))} / "
            f"{f(_get(li, 'edit_to_diagnostic_ms', 'p95'))}",
        )
    )
    for r in results.get("big", {}).get("big_files", []):
        rows.append(
            (
                "lsp",
                f"{r['file']}: loop blocked max / edit → diagnostic p50 (ms)",
                f"{f(_get(r, 'blocked_ms', 'max'))} / "
                f"{f(_get(r, 'edit_to_diagnostic_ms', 'median'))}",
            )
        )
    width = max(len(r[1]) for r in rows)
    out = [
        f"| bench   | {'figure'.ljust(width)} | value |",
        f"|---------|{'-' * (width + 2)}|-------|",
    ]
    out += [f"| {a:<7} | {b.ljust(width)} | {c} |" for a, b, c in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench all", description=__doc__)
    ap.add_argument("--model", help="model directory (default: bundled)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    extra = ["--model", args.model] if args.model else []
    results = {}
    for name, (module, argv_) in BENCHES.items():
        print(f"running bench {name}…", file=sys.stderr, flush=True)
        results[name] = _run(module, [*argv_, *extra])
    results["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor(),
    }
    if args.json:
        print(json.dumps(results))
    else:
        print(table(results))
    return 0
