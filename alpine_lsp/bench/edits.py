"""`alpine-lsp bench edits`: what one edit costs the message loop on big and odd files.

In-process on the engine, without a model (scoring is not what is measured): the time
`Engine.change` takes (the message loop waits that long), and the time until the worker has a
result for the new version (parse and function extraction). Files: a 1 MB minified one-line
JavaScript file with emoji, a 52 MB C file (over maxFileSize: skipped, but edits still apply),
and a C file of 20,000 small functions where one function is edited.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _engine():
    from ..engine.engine import Engine
    from ..engine.settings import Settings

    return Engine(Settings(debounce_ms=0), cache_path=False)


def _result_wait(engine, uri: str, version: int, timeout: float = 600.0) -> float:
    t0 = time.perf_counter()
    while True:
        state = engine.docs[uri]
        if state.result is not None and state.result.version == version:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            return float("inf")
        time.sleep(0.002)


def _case(name: str, text: str, language: str, edits: list[tuple[int, int]], settle: bool = True):
    engine = _engine()
    uri = f"file:///bench/{name}"
    try:
        engine.open(uri, text, language, 1)
        _result_wait(engine, uri, 1)
        change_ms, result_ms = [], []
        for i, (line, col) in enumerate(edits, start=2):
            t0 = time.perf_counter()
            engine.change(uri, i, [((line, col, line, col), "x")], encoding="utf-16")
            change_ms.append((time.perf_counter() - t0) * 1000)
            if settle:
                result_ms.append(_result_wait(engine, uri, i) * 1000)
        return {
            "file": name,
            "chars": len(text),
            "skipped": engine.docs[uri].skipped,
            "change_ms_median": round(statistics.median(change_ms), 1),
            "change_ms_max": round(max(change_ms), 1),
            "result_ms_median": round(statistics.median(result_ms), 1) if result_ms else None,
        }
    finally:
        engine.stop()


def run(repeats: int = 5) -> list[dict]:
    one_line = "".join(f"function f{i}(a){{return a+{i}/*\U0001f600*/;}}" for i in range(25_000))
    huge = "int f(void) { return 1; }\n" * 2_000_000
    many = "".join(f"static int fn_{i}(int a)\n{{\n    return a + {i};\n}}\n" for i in range(20000))
    mid = len(one_line) // 2
    return [
        _case("minified-1MB.js", one_line, "javascript", [(0, mid + k) for k in range(repeats)]),
        _case("skipped-52MB.c", huge, "c", [(1_999_000, 0)] * repeats),
        _case("20k-functions.c", many, "c", [(40_001, 11)] * repeats),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench edits")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.repeats)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'file':18} {'chars':>10} {'change ms (med/max)':>20} {'to result ms':>13}  skipped")
    for r in rows:
        cm = f"{r['change_ms_median']}/{r['change_ms_max']}"
        print(
            f"{r['file']:18} {r['chars']:>10} {cm:>20} {r['result_ms_median']!s:>13}  "
            f"{r['skipped'] or '-'}"
        )
    return 0
