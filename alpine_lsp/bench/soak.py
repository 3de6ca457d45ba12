"""`alpine-lsp bench soak --minutes N`: continuous edits, resident memory over time.

Every edit changes a function's text (so the model runs), bursts of typing alternate with
pauses, files are opened and closed; the server's RSS is sampled from /proc every few seconds.
Target: growth of at most 50 MB over 10 minutes after the first minute's warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from pathlib import Path

from lsprotocol import types

from .client import BenchClient, rss_mb
from .lsp import load_functions


async def run(args: argparse.Namespace) -> dict:
    codes = load_functions(60, 400, args.model)
    tmp = Path(tempfile.mkdtemp(prefix="alpine-soak-"))
    (tmp / "ws").mkdir()
    settings = {"debounceMs": 100}
    if args.model:
        settings["model"] = args.model
    client = BenchClient()
    await client.start(tmp / "ws", settings, tmp / "cache")
    rng = random.Random(0)
    samples: list[tuple[float, float]] = []
    edits = 0
    try:
        await client.wait_model()
        t0 = time.perf_counter()
        end = t0 + args.minutes * 60
        next_sample = t0
        n_file = 0
        while time.perf_counter() < end:
            n_file += 1
            chosen = rng.sample(codes, min(8, len(codes)))
            text = "\n\n".join(chosen) + "\n"
            lines = text.split("\n")
            path = tmp / "ws" / f"f{n_file % 5}.c"
            uri = path.as_uri()
            client.open(uri, text)
            version = 1
            for _ in range(rng.randint(20, 60)):
                line = rng.randrange(len(lines))
                version += 1
                note = f"/*{edits}*/"
                client.change(uri, version, line, len(lines[line]), note)
                lines[line] += note
                edits += 1
                await asyncio.sleep(rng.uniform(0.02, 0.3))
                if time.perf_counter() >= next_sample:
                    mb = rss_mb(client.pid or 0)
                    if mb is not None:
                        samples.append((round(time.perf_counter() - t0, 1), round(mb, 1)))
                        if not args.json:
                            print(
                                f"{samples[-1][0]:7.1f}s  rss {mb:7.1f} MB  edits {edits}",
                                flush=True,
                            )
                    next_sample += args.sample_seconds
                if time.perf_counter() >= end:
                    break
            client.client.text_document_did_close(
                types.DidCloseTextDocumentParams(
                    text_document=types.TextDocumentIdentifier(uri=uri)
                )
            )
        stats = await client.stats()
    finally:
        await client.stop()
    warm = [mb for t, mb in samples if t >= 60] or [mb for _, mb in samples]
    growth = (warm[-1] - warm[0]) if warm else None
    return {
        "minutes": args.minutes,
        "edits": edits,
        "rss_mb": samples,
        "growth_after_warmup_mb": growth,
        "functions_scored": stats["functions_scored"],
        "errors": stats["errors"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench soak", description=__doc__)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--sample-seconds", type=float, default=10)
    ap.add_argument("--model")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"{out['edits']} edits in {out['minutes']} min; RSS growth after warm-up: "
            f"{out['growth_after_warmup_mb']} MB; errors {out['errors']}"
        )
    return 0
