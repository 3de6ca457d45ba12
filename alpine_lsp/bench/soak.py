"""`alpine-lsp bench soak --minutes N`: the server's resident memory under steady editing.

The shape of issue #20. The server's RSS is read once its model is ready and before any
document is open (the baseline). Then --files C files of --per-file real C functions each are
opened and edited at --rate edits per second, spread at random over the open files, for
--minutes. Each edit rewrites one statement of one function (`soak_mark = N;`, N new every
time), so the function's text changes and the model scores it again; as VS Code does, the
client then pulls that document's diagnostics (one pull in flight per document; --push makes
it a push client instead). RSS is read from /proc every --sample-seconds. At the end every
document is closed and RSS is read again after --settle-seconds.

Targets: RSS growth after the first minute (warm-up) at most 20 MB; after closing every
document, RSS within 30 MB of the baseline. Runs shorter than two minutes take half the run as
warm-up; their verdicts say little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from .client import BenchClient, rss_mb
from .lsp import load_functions, pct

GROWTH_TARGET_MB = 20.0
CLOSE_TARGET_MB = 30.0
MARK = "\tsoak_mark = {};"


def rss_parts(pid: int) -> dict[str, float]:
    """Anonymous (heap, tensors) and file-backed (library code and data pages) RSS, in MB."""
    out = {"anon": 0.0, "file": 0.0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:")):
                    out["anon" if line.startswith("RssAnon") else "file"] = round(
                        int(line.split()[1]) / 1024, 1
                    )
    except OSError:
        pass
    return out


def build_file(codes: list[str]) -> tuple[str, list[int]]:
    """The file's text and, per function, the line of its `soak_mark` statement (inserted
    before the closing brace); functions that do not end in a line of their own `}` are left
    out."""
    lines: list[str] = []
    marks: list[int] = []
    for code in codes:
        body = code.strip("\n").split("\n")
        if len(body) < 3 or body[-1].strip() != "}":
            continue
        marks.append(len(lines) + len(body) - 1)
        lines += [*body[:-1], MARK.format(0), body[-1], ""]
    return "\n".join(lines) + "\n", marks


def make_files(codes: list[str], n_files: int, per_file: int) -> list[tuple[str, list[int]]]:
    usable = [c for c in codes if build_file([c])[1]]
    if not usable:
        raise SystemExit("no usable C functions for the soak")
    files = []
    for i in range(n_files):
        chosen = [usable[(i * per_file + j) % len(usable)] for j in range(per_file)]
        files.append(build_file(chosen))
    return files


async def run(args: argparse.Namespace) -> dict:
    n_wanted = args.files * args.per_file
    codes = load_functions(n_wanted, args.max_tokens, args.model)
    files = make_files(codes, args.files, args.per_file)
    tmp = Path(tempfile.mkdtemp(prefix="alpine-soak-"))
    (tmp / "ws").mkdir()
    settings: dict = {}
    if args.debounce_ms is not None:
        settings["debounceMs"] = args.debounce_ms
    if args.model:
        settings["model"] = args.model
    pull = not args.push
    client = BenchClient()
    await client.start(tmp / "ws", settings, tmp / "cache", pull=pull)
    rng = random.Random(0)
    samples: list[tuple[float, float]] = []
    pull_ms: list[float] = []
    pull_errors = 0
    edits = 0

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)

    def rss() -> float:
        mb = rss_mb(client.pid or 0)
        if mb is None:
            raise RuntimeError("the server is gone")
        return round(mb, 1)

    try:
        await client.wait_model()
        await asyncio.sleep(args.settle_seconds / 2)  # what the model load freed goes back
        baseline = rss()
        parts = {"baseline": rss_parts(client.pid or 0)}
        say(f"baseline (model ready, no document open): {baseline:.1f} MB")

        uris = [(tmp / "ws" / f"soak{i:02d}.c").as_uri() for i in range(len(files))]
        texts = {u: f[0].split("\n") for u, f in zip(uris, files, strict=True)}
        marks = {u: f[1] for u, f in zip(uris, files, strict=True)}
        versions = {u: 1 for u in uris}
        pulling: dict[str, asyncio.Task] = {}

        async def puller(uri: str) -> None:
            nonlocal pull_errors
            while True:
                wanted = versions[uri]
                t = time.perf_counter()
                try:
                    await client.diagnostic(uri)
                    pull_ms.append((time.perf_counter() - t) * 1000)
                except Exception:
                    pull_errors += 1
                    return
                if versions[uri] == wanted:
                    return

        def want_pull(uri: str) -> None:
            if pull and (uri not in pulling or pulling[uri].done()):
                pulling[uri] = asyncio.create_task(puller(uri))

        for u, (text, _) in zip(uris, files, strict=True):
            client.open(u, text)
            want_pull(u)

        t0 = time.perf_counter()
        end = t0 + args.minutes * 60
        next_edit = next_sample = t0
        while (now := time.perf_counter()) < end:
            if now >= next_sample:
                samples.append((round(now - t0, 1), rss()))
                say(f"{samples[-1][0]:7.1f}s  rss {samples[-1][1]:7.1f} MB  edits {edits}")
                next_sample += args.sample_seconds
            if now >= next_edit:
                uri = rng.choice(uris)
                line = rng.choice(marks[uri])
                lines = texts[uri]
                edits += 1
                new = MARK.format(edits)
                versions[uri] += 1
                # One range edit: the whole statement replaced (as a completion or a paste).
                client.client.text_document_did_change(
                    _replace(uri, versions[uri], line, len(lines[line]), new)
                )
                lines[line] = new
                want_pull(uri)
                next_edit += 1 / args.rate
            await asyncio.sleep(max(0.0, min(next_edit, next_sample, end) - time.perf_counter()))
        editing_s = time.perf_counter() - t0
        if pulling:  # what the editor still waits for
            await asyncio.wait(list(pulling.values()), timeout=60)
        samples.append((round(time.perf_counter() - t0, 1), rss()))
        say(f"{samples[-1][0]:7.1f}s  rss {samples[-1][1]:7.1f} MB  edits {edits} (queue drained)")
        parts["final"] = rss_parts(client.pid or 0)
        open_stats = await client.stats()

        for u in uris:
            client.close(u)
        closing: list[tuple[float, float]] = []
        c0 = time.perf_counter()
        while (waited := time.perf_counter() - c0) < args.settle_seconds:
            await asyncio.sleep(1.0)
            closing.append((round(waited + 1, 1), rss()))
        after_close = closing[-1][1] if closing else rss()
        parts["after_close"] = rss_parts(client.pid or 0)
        say(f"after closing every document ({args.settle_seconds:.0f} s): {after_close:.1f} MB")
        stats = await client.stats()
    finally:
        await client.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # its caches: tens of MB a run

    warm_s = min(60.0, args.minutes * 60 / 2)
    at_warm = next((mb for t, mb in samples if t >= warm_s), samples[-1][1])
    final = samples[-1][1]
    growth = round(final - at_warm, 1)
    close_delta = round(after_close - baseline, 1)
    return {
        "minutes": args.minutes,
        "files": len(files),
        "functions": sum(len(m) for _, m in files),
        "rate_per_s": args.rate,
        "edits": edits,
        "edits_per_s": round(edits / editing_s, 2) if editing_s > 0 else None,
        "pull": pull,
        "pulls": len(pull_ms),
        "pull_errors": pull_errors,
        "pull_ms": {
            "median": round(statistics.median(pull_ms), 1) if pull_ms else None,
            "p95": round(pct(pull_ms, 0.95), 1) if pull_ms else None,
        },
        "baseline_mb": baseline,
        "warmup_s": warm_s,
        "rss_at_warmup_mb": at_warm,
        "max_mb": max(mb for _, mb in samples),
        "final_mb": final,
        "growth_after_warmup_mb": growth,
        "after_close_mb": after_close,
        "after_close_minus_baseline_mb": close_delta,
        "targets_mb": {"growth_after_warmup": GROWTH_TARGET_MB, "after_close": CLOSE_TARGET_MB},
        "met": {
            "growth_after_warmup": growth <= GROWTH_TARGET_MB,
            "after_close": close_delta <= CLOSE_TARGET_MB,
        },
        "rss_parts_mb": parts,
        "rss_mb": samples,
        "rss_after_close_mb": closing,
        "functions_scored": open_stats["functions_scored"],
        "documents_open": open_stats["documents"],
        "documents_after_close": stats["documents"],
        "errors": stats["errors"],
    }


def _replace(uri: str, version: int, line: int, end_col: int, text: str):
    from lsprotocol import types

    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[
            types.TextDocumentContentChangePartial(
                range=types.Range(
                    start=types.Position(line=line, character=0),
                    end=types.Position(line=line, character=end_col),
                ),
                text=text,
            )
        ],
    )


def table(out: dict) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    warm = f"{out['warmup_s']:.0f} s"
    rows = [
        ("files open / functions", f"{out['files']} / {out['functions']}"),
        (
            "edits (rate)",
            f"{out['edits']} in {out['minutes']} min ({out['edits_per_s']}/s); "
            f"{out['functions_scored']} functions scored, {out['errors']} errors",
        ),
        (
            "diagnostic pulls",
            f"{out['pulls']}, median {out['pull_ms']['median']} ms, "
            f"p95 {out['pull_ms']['p95']} ms, {out['pull_errors']} failed"
            if out["pull"]
            else "push client",
        ),
        ("baseline RSS (model ready, nothing open)", f"{out['baseline_mb']:.1f} MB"),
        (f"RSS at {warm} (end of warm-up)", f"{out['rss_at_warmup_mb']:.1f} MB"),
        ("max / final RSS while editing", f"{out['max_mb']:.1f} / {out['final_mb']:.1f} MB"),
        (
            f"growth after warm-up (target <= {GROWTH_TARGET_MB:.0f} MB)",
            f"{out['growth_after_warmup_mb']:+.1f} MB: "
            f"{verdict(out['met']['growth_after_warmup'])}",
        ),
        ("RSS after closing every document", f"{out['after_close_mb']:.1f} MB"),
        (
            "  of the difference: heap (anon) / library pages (file)",
            "{:+.1f} / {:+.1f} MB".format(
                *(
                    out["rss_parts_mb"]["after_close"][k] - out["rss_parts_mb"]["baseline"][k]
                    for k in ("anon", "file")
                )
            ),
        ),
        (
            f"after close - baseline (target <= {CLOSE_TARGET_MB:.0f} MB)",
            f"{out['after_close_minus_baseline_mb']:+.1f} MB: {verdict(out['met']['after_close'])}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="alpine-lsp bench soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--minutes", type=float, default=10, help="editing time (fractions work)")
    ap.add_argument("--files", type=int, default=50, help="documents open at once")
    ap.add_argument("--per-file", type=int, default=5, help="C functions per document")
    ap.add_argument("--rate", type=float, default=10.0, help="edits per second, all files")
    ap.add_argument("--max-tokens", type=int, default=400)
    ap.add_argument("--sample-seconds", type=float, default=5)
    ap.add_argument("--settle-seconds", type=float, default=10, help="wait after closing")
    ap.add_argument("--debounce-ms", type=int, help="the server's debounce (default: its own)")
    ap.add_argument("--push", action="store_true", help="a push client (no pulls)")
    ap.add_argument("--model", help="model directory (default: bundled)")
    ap.add_argument("--json", action="store_true", help="one JSON object")
    args = ap.parse_args(argv)
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        print(table(out))
    return 0
