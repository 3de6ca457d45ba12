"""Score every row of the defect sources with the (frozen) encoder once and keep the result.

The encoder is the expensive part (tens of thousands of functions on a shared CPU); every head,
baseline and leave-one-source-out experiment reuses its outputs. Per source, a directory of
chunks `<source>.<k>.safetensors` (encoder logit, Devign-lexical logit, fp16 embedding) plus
`<source>.<k>.json` (the row ids, the model fingerprint). A stopped run resumes where it was: a
chunk on disk for the same fingerprint is not scored again.

    alpine-lsp cache features --data ../shared/data --out /work/notes/feat \
        --sources sven,manysstubs4j --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from .sources import ALL_SOURCES, Row, load_source

CHUNK = 500


def _chunk_paths(out: Path, source: str, k: int) -> tuple[Path, Path]:
    return out / f"{source}.{k}.safetensors", out / f"{source}.{k}.json"


def encode_rows(model, rows: list[Row]) -> dict[str, np.ndarray]:
    """Encoder logit, lexical logit (the Devign-trained half shipped with the model) and the
    embedding of each row, in row order. The language marker is each row's own language."""
    model.configure(lexical=False)
    enc = np.zeros(len(rows))
    embs = np.zeros((len(rows), model.embedding_dim), dtype=np.float16)
    by_lang: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_lang.setdefault(r.language, []).append(i)
    for lang, idx in by_lang.items():
        scores = model.score([rows[i].text for i in idx], lang)
        for i, s in zip(idx, scores, strict=True):
            p = min(max(s.probability, 1e-12), 1 - 1e-12)
            enc[i] = np.log(p / (1 - p))
            embs[i] = s.embedding.astype(np.float16)
    lex = model.lexical.logits([r.text for r in rows]) if model.lexical is not None else enc * 0
    return {"encoder_logit": enc, "lexical_logit": np.asarray(lex, float), "embedding": embs}


def _texts_digest(rows: list[Row]) -> str:
    h = hashlib.blake2b(digest_size=12)
    for r in rows:
        h.update(r.text.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def cache_source(
    model,
    rows: list[Row],
    out: Path,
    source: str,
    log=print,
    reverse: bool = False,
    start: int = 0,
    first_index: int = 0,
) -> None:
    """`reverse`: last chunk first; `start`: begin at chunk `start` (then wrap). Both let more
    processes share one source; a chunk already on disk is skipped when its turn comes."""
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    fp = model.fingerprint
    n = (len(rows) + CHUNK - 1) // CHUNK
    chunks = [(start + i) % n for i in range(n)] if n else []
    for k in reversed(chunks) if reverse else chunks:
        st, js = _chunk_paths(out, source, first_index + k)
        part = rows[k * CHUNK : (k + 1) * CHUNK]
        digest = _texts_digest(part)
        if js.is_file() and st.is_file():
            meta = json.loads(js.read_text())
            if (
                meta.get("fingerprint") == fp
                and meta.get("ids") == [r.id for r in part]
                and meta.get("texts", digest) == digest  # leak removal changed: score again
            ):
                continue
        t0 = time.perf_counter()
        feats = encode_rows(model, part)
        save_file({k2: np.ascontiguousarray(v) for k2, v in feats.items()}, str(st))
        js.write_text(json.dumps({"fingerprint": fp, "ids": [r.id for r in part], "texts": digest}))
        log(f"{source} chunk {k}: {len(part)} rows in {time.perf_counter() - t0:.0f} s")


def load_cache(out: str | Path, source: str) -> dict[str, dict[str, np.ndarray]]:
    """{row id: {"encoder_logit", "lexical_logit", "embedding"}} for every cached row."""
    from safetensors.numpy import load_file

    res: dict[str, dict[str, np.ndarray]] = {}
    out = Path(out)
    for js in sorted(out.glob(f"{source}.*.json")):
        st = js.with_suffix(".safetensors")
        if not js.stem.split(".")[-1].isdigit() or not st.is_file():
            continue  # metrics.<source>.json, or a chunk still being written
        ids = json.loads(js.read_text())["ids"]
        w = load_file(str(st))
        for j, rid in enumerate(ids):
            res[rid] = {
                "encoder_logit": float(w["encoder_logit"][j]),
                "lexical_logit": float(w["lexical_logit"][j]),
                "embedding": w["embedding"][j].astype(np.float32),
            }
    return res


TRAIN_CAP, CORPUS, DEVIGN_VALID = 3000, 2000, 1600


def rows_to_cache(
    name: str,
    data: str,
    train_cap: int = TRAIN_CAP,
    corpus: int = CORPUS,
    devign_valid: int = DEVIGN_VALID,
) -> list[Row]:
    """Which rows get scored: valid and test of every labelled source in full, and a seeded
    sample of at most `train_cap` train rows (whole pairs kept together). Devign's train split
    is left out: the encoder and lexical half were trained on it, so their scores there say
    nothing about new code. c_corpus: a seeded sample of `corpus` functions."""
    if name == "c_corpus":
        return load_source(name, data, limit=corpus, seed=20261201)
    rows = load_source(name, data)
    if name == "devign":
        # All of test; a seeded sample of valid (half fits the head, half selects it).
        import random

        valid = [r for r in rows if r.split == "valid"]
        keep = {r.id for r in random.Random(13).sample(valid, min(devign_valid, len(valid)))}
        return [r for r in rows if r.split == "test" or r.id in keep]
    train = [r for r in rows if r.split == "train"]
    if train_cap and len(train) > train_cap:
        import random

        keys = sorted({r.pair or r.id for r in train})
        random.Random(11).shuffle(keys)
        keep: set[str] = set()
        n = 0
        by_key: dict[str, int] = {}
        for r in train:
            by_key[r.pair or r.id] = by_key.get(r.pair or r.id, 0) + 1
        for k in keys:
            if n >= train_cap:
                break
            keep.add(k)
            n += by_key[k]
        rows = [r for r in rows if r.split != "train" or (r.pair or r.id) in keep]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp cache features")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--sources", default=",".join(ALL_SOURCES))
    ap.add_argument("--train-cap", type=int, default=TRAIN_CAP)
    ap.add_argument("--corpus", type=int, default=CORPUS)
    ap.add_argument("--devign-valid", type=int, default=DEVIGN_VALID)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reverse", action="store_true", help="last chunk first")
    ap.add_argument("--start-chunk", type=int, default=0, help="begin at this chunk")
    ap.add_argument(
        "--missing",
        action="store_true",
        help="score only rows no chunk holds yet, test and valid first, as chunks from 100 on",
    )
    args = ap.parse_args(argv)
    from ..model.api import load_model

    # Read every source first: a bad file fails here, before any scoring.
    names = [s for s in args.sources.split(",") if s]
    todo = {
        n: rows_to_cache(n, args.data, args.train_cap, args.corpus, args.devign_valid)
        for n in names
    }
    model = load_model(args.model, device="cpu", threads=args.threads)
    for n, rows in todo.items():
        if args.missing:
            have = load_cache(args.out, n)
            order = {"test": 0, "valid": 1}
            rows = sorted(
                (r for r in rows if r.id not in have), key=lambda r: order.get(r.split, 2)
            )
        print(f"{n}: {len(rows)} rows", flush=True)
        cache_source(
            model,
            rows,
            Path(args.out),
            n,
            log=lambda m: print(m, flush=True),
            reverse=args.reverse,
            start=args.start_chunk,
            first_index=100 if args.missing else 0,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
