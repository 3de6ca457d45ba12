"""`alpine-lsp bench lsp`: edit → diagnostic and hover latency through the real server.

Replays edits to real C functions (Devign test functions of at most --max-tokens tokens when
the shared data is present, else the shipped examples) with a real LSP client over stdio.
Each edit changes one function's text, so each edit costs one model forward for that function.
The debounce is subtracted from the edit → diagnostic figure (it is a setting, not work).

With --big-file, the files the message loop must not choke on instead (targets of issue 20):
a C file of 20,000 small functions where one function is edited (edit → diagnostic, beyond
the debounce, target ≤ 200 ms), a 1 MB one-line minified JavaScript file and a 52 MB C file
(over maxFileSize: skipped, but edits still apply). For each edit a `alpine/stats` request is
sent right behind it: its reply time bounds how long the edit blocked the message loop
(target ≤ 20 ms for the two skipped files).

With --index, the edits run while the workspace indexer embeds a workspace of 4,000 real C
functions (generated in a temporary directory, a fresh cache: every function is scored):
edit → diagnostic p95 beyond the debounce, target ≤ 100 ms (issue 15). The edits start as soon
as the model is ready, and the figure says how many files the indexer finished meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from lsprotocol import types

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


def function_starts(lines: list[str]) -> list[int]:
    """The lines where functions start (a C definition's first line), to aim edits and hovers."""
    return [
        i
        for i, line in enumerate(lines)
        if line and not line[0].isspace() and "(" in line and not line.startswith(("}", "#", "/"))
    ]


def comment_edit(
    client: BenchClient, uri: str, lines: list[str], starts: list[int], k: int
) -> float:
    """Send edit k (document version k + 2): a comment at the end of a function's first line,
    inside the definition, so that function's text alone changes. Returns when it was sent."""
    line = starts[k % len(starts)]
    note = f"/*{k}*/"
    t0 = time.perf_counter()
    client.change(uri, k + 2, line, len(lines[line]), note)
    lines[line] += note
    return t0


async def run(args: argparse.Namespace) -> dict:
    codes = load_functions(args.functions, args.max_tokens, args.model)
    tmp = Path(tempfile.mkdtemp(prefix="alpine-bench-lsp-"))
    (tmp / "ws").mkdir()
    text = "\n\n".join(codes) + "\n"
    path = tmp / "ws" / "bench.c"
    path.write_text(text)
    uri = path.as_uri()
    settings = {"debounceMs": args.debounce_ms, "similarity": {"enabled": False}}
    settings["lineHints"] = getattr(args, "line_hints", True)
    if args.model:
        settings["model"] = args.model
    client = BenchClient()
    await client.start(tmp / "ws", settings, tmp / "cache")
    try:
        s = await client.wait_model()
        client.open(uri, text)
        await client.wait_published(uri, 1, timeout=600)
        lines = text.split("\n")
        starts = function_starts(lines)
        edit_ms, hover_ms = [], []
        for k in range(args.edits):
            version = k + 2
            t0 = comment_edit(client, uri, lines, starts, k)
            if k % 2 == 1:  # a hover while the worker is debouncing or scoring
                h0 = time.perf_counter()
                await client.hover(uri, starts[(k + 1) % len(starts)], 0)
                hover_ms.append((time.perf_counter() - h0) * 1000)
            t1 = await client.wait_published(uri, version)
            edit_ms.append((t1 - t0) * 1000 - args.debounce_ms)
        stats = await client.stats()
    finally:
        code = await client.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # its caches: tens of MB a run
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


INDEX_TARGET_MS = 100.0
INDEX_PER_FILE = 20  # functions per generated file


async def run_index(args: argparse.Namespace) -> dict:
    """Edits to one open file while the indexer works through `args.workspace_functions`."""
    n_ws = args.workspace_functions
    codes = load_functions(n_ws + args.functions, args.max_tokens, args.model)
    if len(codes) < n_ws + args.functions:  # the shipped examples only: repeat them, renamed
        base = codes
        codes = [f"/* copy {i} */\n{base[i % len(base)]}" for i in range(n_ws + args.functions)]
    tmp = Path(tempfile.mkdtemp(prefix="alpine-bench-index-"))
    ws = tmp / "ws"
    ws.mkdir()
    edited, rest = codes[: args.functions], codes[args.functions :]
    for k in range(0, len(rest), INDEX_PER_FILE):
        part = rest[k : k + INDEX_PER_FILE]
        (ws / f"lib_{k // INDEX_PER_FILE:04d}.c").write_text("\n\n".join(part) + "\n")
    text = "\n\n".join(edited) + "\n"
    path = ws / "edited.c"
    path.write_text(text)
    uri = path.as_uri()
    settings = {"debounceMs": args.debounce_ms, "similarity": {"enabled": True}}
    if args.model:
        settings["model"] = args.model
    client = BenchClient()
    await client.start(ws, settings, tmp / "cache")
    try:
        s = await client.wait_model()
        client.open(uri, text)  # right away: the indexer starts with the model too
        await client.wait_published(uri, 1, timeout=600)
        lines = text.split("\n")
        starts = function_starts(lines)
        before = await client.stats()
        edit_ms, running = [], 0
        for k in range(args.edits):
            version = k + 2
            t0 = comment_edit(client, uri, lines, starts, k)
            t1 = await client.wait_published(uri, version)
            edit_ms.append((t1 - t0) * 1000 - args.debounce_ms)
            running += (await client.stats())["index_state"] == "running"
        after = await client.stats()
    finally:
        code = await client.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # its caches: tens of MB a run
    counters = ("files_indexed", "functions_scored")
    return {
        "workspace_functions": len(rest),
        "edited_functions": len(edited),
        "edits": args.edits,
        "debounce_ms": args.debounce_ms,
        "model": s["model"].get("name"),
        "edit_to_diagnostic_ms": {"median": statistics.median(edit_ms), "p95": pct(edit_ms, 0.95)},
        "target_p95_ms": INDEX_TARGET_MS,
        "edit_ms": [round(v, 1) for v in edit_ms],
        # Files the indexer finished while the edits ran, and after how many edits it was still
        # running (the figure measures nothing when it had already finished).
        "during_edits": {c: after.get(c, 0) - before.get(c, 0) for c in counters},
        "edits_while_indexing": running,
        "index_state_after": after["index_state"],
        "exit_code": code,
    }


def big_files() -> list[tuple[str, str, str, int, int]]:
    """(name, language, text, line, column) of each big-file case and where its edits go."""
    many = "".join(
        f"static int fn_{i}(int a)\n{{\n    return a + {i};\n}}\n" for i in range(20_000)
    )
    one_line = "".join(f"function f{i}(a){{return a+{i}/*\U0001f600*/;}}" for i in range(25_000))
    huge = "int f(void) { return 1; }\n" * 2_000_000
    # Edits: a comment at the end of fn_10000's first line; mid-line; near the end.
    return [
        ("20k-functions.c", "c", many, 10_000 * 4, len("static int fn_10000(int a)")),
        ("minified-1MB.js", "javascript", one_line, 0, len(one_line) // 2),
        ("skipped-52MB.c", "c", huge, 1_999_000, 0),
    ]


async def run_big(args: argparse.Namespace) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="alpine-bench-big-"))
    (tmp / "ws").mkdir()
    settings = {"debounceMs": args.debounce_ms}
    if args.model:
        settings["model"] = args.model
    client = BenchClient()
    await client.start(tmp / "ws", settings, tmp / "cache")
    rows = []
    try:
        await client.wait_model()
        for name, language, text, line, col in big_files():
            uri = (tmp / "ws" / name).as_uri()
            client.open(uri, text, language)
            await client.wait_published(uri, 1, timeout=600)
            # A new big file is scored in passes (about 2 s of model time each): edits are
            # measured once the last pass is in, as on a file the cache already knows.
            deadline = time.perf_counter() + 1800
            while any(d.code == "scoring" for d in client.published[uri][2]):
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"{name} was not scored within 30 minutes")
                await asyncio.sleep(0.5)
            blocked, to_diag = [], []
            for k in range(args.edits):
                version = k + 2
                t0 = time.perf_counter()
                client.change(uri, version, line, col, f"/*{k}*/")
                await client.stats()  # answered once the loop has applied the edit
                blocked.append((time.perf_counter() - t0) * 1000)
                t1 = await client.wait_published(uri, version, timeout=600)
                to_diag.append((t1 - t0) * 1000 - args.debounce_ms)
                col += len(f"/*{k}*/") if name != "skipped-52MB.c" else 0
            rows.append(
                {
                    "file": name,
                    "chars": len(text),
                    "edits": args.edits,
                    "blocked_ms": {"median": statistics.median(blocked), "max": max(blocked)},
                    "edit_to_diagnostic_ms": {
                        "median": statistics.median(to_diag),
                        "p95": pct(to_diag, 0.95),
                    },
                }
            )
            client.client.text_document_did_close(
                types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)
                )
            )
    finally:
        await client.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # its caches: tens of MB a run
    return rows


def _compare_line_hints(args: argparse.Namespace) -> int:
    """Alternate off/on runs (two each), so drift in the machine's load hits both alike."""
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for on in (False, True, False, True):
        args.line_hints = on
        runs[on].append(asyncio.run(run(args)))

    def p95(on: bool) -> float:
        return statistics.median(r["edit_to_diagnostic_ms"]["p95"] for r in runs[on])

    def p50(on: bool) -> float:
        return statistics.median(r["edit_to_diagnostic_ms"]["median"] for r in runs[on])

    out = {
        "runs_each": 2,
        "edits": args.edits,
        "off": {"p50": p50(False), "p95": p95(False)},
        "on": {"p50": p50(True), "p95": p95(True)},
        "ratio_p95_on_vs_off": p95(True) / p95(False),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{args.edits} edits per run, lineHints off/on alternated, 2 runs each (medians)")
    for name, key in (("off", "off"), ("on ", "on")):
        r = out[key]
        print(f"lineHints {name}: edit -> diagnostic p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f} ms")
    print(f"p95 on/off: {out['ratio_p95_on_vs_off']:.3f} (target <= 1.10)")
    return 0


def _print_index(out: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(out))
        return 0
    e, d = out["edit_to_diagnostic_ms"], out["during_edits"]
    print(
        f"model {out['model']}, {out['edits']} edits to a {out['edited_functions']}-function file "
        f"while indexing {out['workspace_functions']} functions, debounce {out['debounce_ms']} ms "
        "(subtracted)"
    )
    print(
        f"edit -> diagnostic while indexing: median {e['median']:.1f} ms, p95 {e['p95']:.1f} ms "
        f"(target <= {out['target_p95_ms']:.0f} ms)"
    )
    print(
        f"indexed during the edits: {d['files_indexed']} files, {d['functions_scored']} "
        f"functions scored; indexer still running after {out['edits_while_indexing']} of "
        f"{out['edits']} edits (state after: {out['index_state_after']})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench lsp", description=__doc__)
    ap.add_argument("--model", help="model directory (default: bundled)")
    ap.add_argument("--edits", type=int, help="edits to replay (default 60; 10 per big file)")
    ap.add_argument("--functions", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--debounce-ms", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--compare-line-hints",
        action="store_true",
        help="run the edits twice, with lineHints on (line ranking in the forward pass) and "
        "off, and compare edit -> diagnostic (issue 16: within 10%%)",
    )
    ap.add_argument(
        "--index",
        action="store_true",
        help="edits while the indexer embeds a 4,000-function workspace (p95 target 100 ms)",
    )
    ap.add_argument("--workspace-functions", type=int, default=4000, help="with --index")
    ap.add_argument(
        "--big-file",
        action="store_true",
        help="the 20,000-function, 1 MB one-line and 52 MB files instead (default 10 edits each)",
    )
    args = ap.parse_args(argv)
    if args.edits is None:
        args.edits = 10 if args.big_file else 60
    if args.compare_line_hints:
        return _compare_line_hints(args)
    if args.index:
        return _print_index(asyncio.run(run_index(args)), args.json)
    if args.big_file:
        rows = asyncio.run(run_big(args))
        if args.json:
            print(json.dumps({"big_files": rows}))
            return 0
        print(f"debounce {args.debounce_ms} ms (subtracted from edit -> diagnostic)")
        print(f"{'file':18} {'chars':>9}  {'loop blocked ms med/max':>24}  edit->diag ms med/p95")
        for r in rows:
            b, e = r["blocked_ms"], r["edit_to_diagnostic_ms"]
            print(
                f"{r['file']:18} {r['chars']:>9}  {b['median']:>11.1f} / {b['max']:<10.1f}"
                f"  {e['median']:.1f} / {e['p95']:.1f}"
            )
        return 0
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
