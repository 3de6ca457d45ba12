"""`alpine-lsp bench index`: how fast the similar-code index builds, answers and restarts.

(a) build: functions/s over PATH, counting file reads, parsing, clone keys, embedding and
    SQLite writes
    (model loading and one warm-up forward pass are not counted); repeated on a fresh database
    until it has run for a couple of seconds, so a small folder still gives a stable figure;
    with the milliseconds per function that went to embedding and to the clone keys;
(b) query: median and p95 latency of `IndexStore.query` (k=10, self excluded) with 1k, 10k
    and 100k random unit vectors of the model's size stored in a temporary database; the
    one-off load of the in-memory matrix by the first query is reported apart; "all tiers"
    times what the server asks per function: the exact lookup (SQL), the near-copy lookup
    (LSH bands) and the cosine query, merged (random clone keys, so few candidates);
(c) warm restart: reopen the database from (a) and index PATH again: how long, and how many
    functions had to be embedded (0 when nothing changed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..evalkit.errors import CommandError
from ..evalkit.measure import summarize
from ..index import IndexEntry, IndexStore, iter_source_files

BUILD_MIN_S = 2.0  # repeat the build on a fresh database until this much time has been spent
BUILD_MAX_ROUNDS = 10
BUILD_BUDGET_S = 60.0  # a large PATH is indexed only this long, and the figure says so
PER_FILE = 500  # functions per synthetic file in the query bench
SEED = 7


def default_path() -> Path:
    examples = Path(__file__).resolve().parents[1] / "examples"
    return examples if examples.is_dir() else Path.cwd()


def _load_model(model_dir: str | None, tmp: Path, threads: int | None):
    """The model to bench, and a note for stderr when it is a stand-in."""
    from ..model import ModelLoadError, load_model

    if model_dir:
        return load_model(model_dir, threads=threads), None
    try:
        return load_model(threads=threads), None
    except ModelLoadError as e:
        from ..model.tiny import create_tiny_model

        note = (
            f"note: {e}; benchmarking a tiny random model instead, so build throughput is not "
            "that of the real model (pass --model DIR for a trained one)"
        )
        return load_model(create_tiny_model(tmp / "tiny-model"), threads=threads), note


def torch_threads() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def index_files(
    store: IndexStore,
    model,
    files: Sequence[Path],
    deadline: float = float("inf"),
    spent: dict[str, float] | None = None,
) -> tuple[int, int, int]:
    """Index files as the server does, reusing stored embeddings.

    Returns (files done, functions indexed, functions embedded); stops at `deadline`. Adds the
    seconds spent embedding and building clone keys to `spent` ("embed", "clone_keys").
    """
    from ..engine.similar import KeyCache, capped
    from ..parsing import extract_functions, language_for

    spent = {} if spent is None else spent
    fingerprint = model.fingerprint
    key_cache = KeyCache()
    done = total = embedded = 0
    for path in files:
        if time.perf_counter() >= deadline:
            break
        done += 1
        language = language_for(str(path))
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        if language is None:
            continue
        functions = extract_functions(text, language)
        vectors = store.cached_embeddings(fingerprint, [f.hash for f in functions])
        todo = {f.hash: f.text for f in functions if f.hash not in vectors}  # dedupe by hash
        t0 = time.perf_counter()
        if todo:
            vectors.update(zip(todo, model.embed(list(todo.values()), language), strict=True))
            embedded += len(todo)
        t1 = time.perf_counter()
        uri = path.resolve().as_uri()
        keys = key_cache.many(functions, language)
        t2 = time.perf_counter()
        spent["embed"] = spent.get("embed", 0.0) + t1 - t0
        spent["clone_keys"] = spent.get("clone_keys", 0.0) + t2 - t1
        store.replace_file(
            uri,
            [
                IndexEntry.from_function(uri, language, f, fingerprint, vectors[f.hash], k)
                for f, k, ok in zip(functions, keys, capped(uri, keys), strict=True)
                if ok
            ],
        )
        total += len(functions)
    return done, total, embedded


def bench_build(model, files: list[Path], tmp: Path) -> dict:
    model.embed(["int warm_up(int x) { return x + 1; }"], "c")  # lazy init is not indexing
    spent = 0.0
    functions = rounds = 0
    truncated = False
    db = tmp / "build.sqlite"
    done = 0
    parts: dict[str, float] = {}
    while rounds < BUILD_MAX_ROUNDS and (rounds == 0 or spent < BUILD_MIN_S):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        t0 = time.perf_counter()
        with IndexStore(db) as store:
            done, n, _ = index_files(store, model, files, t0 + BUILD_BUDGET_S, parts)
        spent += time.perf_counter() - t0
        functions += n
        rounds += 1
        truncated = done < len(files)
        if truncated or n == 0:
            break
    return {
        "db": db,
        "files_done": files[:done],
        "build_files": done,
        "build_functions": functions // rounds,
        "build_rounds": rounds,
        "build_truncated": truncated,
        "build_s": spent,
        "build_functions_per_s": functions / spent if functions and spent else None,
        **{
            f"build_{k}_ms_per_function": 1000 * parts.get(k, 0.0) / functions
            if functions
            else None
            for k in ("embed", "clone_keys")
        },
    }


def bench_warm_restart(model, db: Path, files: list[Path]) -> dict:
    t0 = time.perf_counter()
    with IndexStore(db) as store:
        _, n, embedded = index_files(store, model, files)
    return {
        "warm_restart_s": time.perf_counter() - t0,
        "warm_restart_embedded": embedded,
        "warm_restart_functions": n,
    }


def _random_keys(rng: np.random.Generator, i: int):
    from ..parsing.clones import NUM_PERM, CloneKeys

    sig = rng.integers(0, 2**32, NUM_PERM, dtype=np.uint64).astype(np.uint32)
    return CloneKeys(60, f"{i:032x}", f"{i:032x}", sig)


def bench_query(size: int, dim: int, n_queries: int, tmp: Path) -> dict:
    from ..engine import similar
    from ..parsing import Function

    rng = np.random.default_rng(SEED + size)
    db = tmp / f"query-{size}.sqlite"
    fingerprint = "bench"
    t0 = time.perf_counter()
    with IndexStore(db) as store:
        for start in range(0, size, PER_FILE):
            m = min(PER_FILE, size - start)
            vecs = rng.standard_normal((m, dim), dtype=np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            uri = f"file:///bench/f{start // PER_FILE}.c"
            store.replace_file(
                uri,
                [
                    IndexEntry(
                        uri,
                        f"fn{i}",
                        10 * i,
                        0,
                        10 * i + 8,
                        1,
                        10 * i,
                        4,
                        10 * i,
                        7,
                        "c",
                        f"{start + i:x}",
                        fingerprint,
                        vecs[i],
                        _random_keys(rng, start + i),
                    )
                    for i in range(m)
                ],
            )
        insert_s = time.perf_counter() - t0
        queries = rng.standard_normal((n_queries + 1, dim), dtype=np.float32)
        t0 = time.perf_counter()
        store.query(queries[0], 10, fingerprint)  # loads the matrix
        load_ms = (time.perf_counter() - t0) * 1000
        ms = []
        for i, q in enumerate(queries[1:]):
            exclude = (f"file:///bench/f{i % max(1, size // PER_FILE)}.c", 10 * (i % PER_FILE))
            t0 = time.perf_counter()
            store.query(q, 10, fingerprint, exclude=exclude)
            ms.append((time.perf_counter() - t0) * 1000)
        limits = similar.Thresholds(near=0.8, cosine=0.99)
        tiers_ms = []
        for i, q in enumerate(queries[1:]):
            f = Function("q", "function", 10 * (i % PER_FILE), 0, 0, 0, 0, 0, 0, 0, "", "", False)
            uri = f"file:///bench/f{i % max(1, size // PER_FILE)}.c"
            k = _random_keys(rng, size + i)
            t0 = time.perf_counter()
            similar.find(store, uri, "c", [f], [k], [q], fingerprint, limits, 10)
            tiers_ms.append((time.perf_counter() - t0) * 1000)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    s = summarize(ms)
    t = summarize(tiers_ms)
    return {
        "median": s["median"],
        "p95": s["p95"],
        "tiers_median": t["median"],
        "tiers_p95": t["p95"],
        "n": s["n"],
        "first_query_ms": load_ms,
        "insert_s": insert_s,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="alpine-lsp bench index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("path", nargs="?", help="folder to index (default: the bundled examples)")
    ap.add_argument("--model", help="model directory (default: bundled, else a tiny model)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--sizes", default="1000,10000,100000", help="stored functions per query run")
    ap.add_argument("--queries", type=int, default=200, help="timed queries per size")
    ap.add_argument("--dim", type=int, help="query-bench vector size (default: the model's)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's, as the server)")
    args = ap.parse_args(argv)
    try:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--sizes wants comma-separated integers, got {args.sizes!r}")
    root = Path(args.path) if args.path else default_path()
    if not root.is_dir():
        raise CommandError(f"alpine-lsp bench index: {root} is not a folder", code=2)

    from ..model import ModelLoadError

    with tempfile.TemporaryDirectory(prefix="alpine-bench-index-") as tmp_s:
        tmp = Path(tmp_s)
        try:
            model, note = _load_model(args.model, tmp, args.threads)
        except ModelLoadError as e:
            raise CommandError(f"alpine-lsp bench index: {e}", code=2) from e
        if note:
            print(note, file=sys.stderr)
        files = list(iter_source_files(root))
        build = bench_build(model, files, tmp)
        warm = bench_warm_restart(model, build.pop("db"), build.pop("files_done"))
        dim = args.dim or model.embedding_dim
        query = {str(n): bench_query(n, dim, args.queries, tmp) for n in sizes}

    result = {
        "model": model.name,
        "fingerprint": model.fingerprint,
        "path": str(root.resolve()),
        "stand_in_model": note is not None,
        "threads": torch_threads(),
        **build,
        **warm,
        "query_dim": dim,
        "query_k": 10,
        "query_ms": query,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(render(result))
    return 0


def render(r: dict) -> str:
    rate = r["build_functions_per_s"]
    lines = [
        f"alpine-lsp bench index: {r['path']} (model {r['model']}"
        f"{', a stand-in' if r['stand_in_model'] else ''}, {r['threads']} torch threads)",
        "",
        f"build         {r['build_functions']} functions in {r['build_files']} files, "
        f"{r['build_rounds']} round(s): "
        + (f"{rate:,.1f} functions/s" if rate else "no functions found")
        + (" (stopped at the time budget)" if r["build_truncated"] else ""),
        *(
            [
                f"              per function: embedding {r['build_embed_ms_per_function']:.2f} ms, "
                f"clone keys {r['build_clone_keys_ms_per_function']:.3f} ms"
            ]
            if rate
            else []
        ),
        f"warm restart  {r['warm_restart_s']:.3f} s, {r['warm_restart_embedded']} of "
        f"{r['warm_restart_functions']} functions re-embedded",
        "",
        f"query (k={r['query_k']}, dim {r['query_dim']})",
        f"  {'functions':>10}  {'median ms':>10}  {'p95 ms':>8}  {'first query ms':>15}"
        f"  {'all tiers median / p95 ms':>26}",
    ]
    for n, q in r["query_ms"].items():
        lines.append(
            f"  {int(n):>10,}  {q['median']:>10.2f}  {q['p95']:>8.2f}  {q['first_query_ms']:>15.1f}"
            f"  {q['tiers_median']:>14.2f} / {q['tiers_p95']:.2f}"
        )
    return "\n".join(lines)
