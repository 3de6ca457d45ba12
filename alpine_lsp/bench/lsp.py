"""`alpine-lsp bench lsp`: edit → diagnostic and hover latency through the real server.

Replays edits to real C functions (Devign test functions of at most --max-tokens tokens when
the shared data is present, else the shipped examples) with a real LSP client over stdio.
Each edit changes one function's text, so each edit costs one model forward for that function.
The debounce is subtracted from the edit → diagnostic figure (it is a setting, not work).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from .client import BenchClient

DEVIGN = Path("../shared/data/devign")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def load_functions(n: int, max_tokens: int, model_dir: str | None) -> list[str]:
    from ..evalkit.data import load_devign
    from ..model import load_model

    codes: list[str] = []
    if (DEVIGN / "devign.jsonl.gz").is_file():
        model = load_model(model_dir)
        for row in load_devign(DEVIGN)["test"]:
            code = row["func"].replace("\n\n", "\n")
            ids = model.tokenizer.content([code])[0][0]
            if 32 <= len(ids) <= max_tokens - 2:
                codes.append(code)
            if len(codes) >= n:
                break
    if not codes:
        from ..parsing import extract_functions

        examples = Path(__file__).resolve().parents[1] / "examples"
        for path in sorted(examples.glob("*.c")):
            codes += [f.text for f in extract_functions(path.read_text(), "c")]
    return codes


async def run(args: argparse.Namespace) -> dict:
    codes = load_functions(args.functions, args.max_tokens, args.model)
    tmp = Path(tempfile.mkdtemp(prefix="alpine-bench-lsp-"))
    (tmp / "ws").mkdir()
    text = "\n\n".join(codes) + "\n"
    path = tmp / "ws" / "bench.c"
    path.write_text(text)
    uri = path.as_uri()
    settings = {"debounceMs": args.debounce_ms, "similarity": {"enabled": False}}
    if args.model:
        settings["model"] = args.model
    client = BenchClient()
    await client.start(tmp / "ws", settings, tmp / "cache")
    try:
        s = await client.wait_model()
        client.open(uri, text)
        await client.wait_published(uri, 1, timeout=600)
        # Function start lines, to aim edits and hovers.
        lines = text.split("\n")
        starts = [
            i
            for i, line in enumerate(lines)
            if line
            and not line[0].isspace()
            and "(" in line
            and not line.startswith(("}", "#", "/"))
        ]
        edit_ms, hover_ms = [], []
        version = 1
        for k in range(args.edits):
            line = starts[k % len(starts)]
            version += 1
            t0 = time.perf_counter()
            # A comment at the end of the function's first line (inside the definition):
            # changes that function's text only.
            note = f"/*{k}*/"
            client.change(uri, version, line, len(lines[line]), note)
            lines[line] += note
            if k % 2 == 1:  # a hover while the worker is debouncing or scoring
                h0 = time.perf_counter()
                await client.hover(uri, starts[(k + 1) % len(starts)], 0)
                hover_ms.append((time.perf_counter() - h0) * 1000)
            t1 = await client.wait_published(uri, version)
            edit_ms.append((t1 - t0) * 1000 - args.debounce_ms)
        stats = await client.stats()
    finally:
        code = await client.stop()
    return {
        "functions": len(codes),
        "edits": args.edits,
        "debounce_ms": args.debounce_ms,
        "model": s["model"].get("name"),
        "edit_to_diagnostic_ms": {"median": statistics.median(edit_ms), "p95": pct(edit_ms, 0.95)},
        "hover_ms": {
            "median": statistics.median(hover_ms) if hover_ms else None,
            "p95": pct(hover_ms, 0.95),
        },
        "functions_scored": stats["functions_scored"],
        "exit_code": code,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench lsp", description=__doc__)
    ap.add_argument("--model", help="model directory (default: bundled)")
    ap.add_argument("--edits", type=int, default=60)
    ap.add_argument("--functions", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--debounce-ms", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        e, h = out["edit_to_diagnostic_ms"], out["hover_ms"]
        print(
            f"model {out['model']}, {out['functions']} functions, {out['edits']} edits, "
            f"debounce {out['debounce_ms']} ms (subtracted)"
        )
        print(f"edit -> diagnostic: median {e['median']:.1f} ms, p95 {e['p95']:.1f} ms")
        print(f"hover while scoring: median {h['median']:.1f} ms, p95 {h['p95']:.1f} ms")
    return 0
