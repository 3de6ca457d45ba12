"""Readers for the shared datasets (read in place, never copied into the repository)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path


def load_devign(data_dir: str | Path) -> dict[str, list[dict]]:
    """Devign functions by split name, using the fixed split.json beside the data."""
    d = Path(data_dir)
    if not (d / "devign.jsonl.gz").is_file() or not (d / "split.json").is_file():
        raise FileNotFoundError(f"{d} lacks devign.jsonl.gz and split.json")
    rows = {}
    with gzip.open(d / "devign.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            rows[r["id"]] = r
    split = json.loads((d / "split.json").read_text())
    return {name: [rows[i] for i in ids if i in rows] for name, ids in split.items()}


def load_bcb(
    data_dir: str | Path,
) -> tuple[dict[str, str], dict[str, list[tuple[str, str, int, int]]]]:
    """BigCloneBench: (functions by id, pairs by split as (id1, id2, label, clone_type))."""
    d = Path(data_dir)
    funcs: dict[str, str] = {}
    with gzip.open(d / "functions.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            funcs[str(r["id"])] = r["code"]
    pairs = {}
    for name in ("train", "valid", "test"):
        out = []
        with gzip.open(d / f"pairs_{name}.tsv.gz", "rt", encoding="utf-8") as f:
            next(f)
            for line in f:
                a, b, label, kind = line.rstrip("\n").split("\t")
                if a in funcs and b in funcs:
                    out.append((a, b, int(label), int(kind)))
        pairs[name] = out
    return funcs, pairs
