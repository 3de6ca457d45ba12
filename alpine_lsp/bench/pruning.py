"""`alpine-lsp bench pruning`: what ALPINE pruning buys at inference on real code, on this machine.

The same functions run with the model's pruning and with pruning off, alternating A/B per input
after a warm-up, at batch 1 and batch 16. Reported: mean sequence length per layer, FLOPs per
function, median and p95 wall latency of `model.score`, and unpruned/pruned ratios.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ..evalkit.errors import CommandError
from ..evalkit.measure import interleaved_latency, mean_lengths, ratio, sample, summarize
from ..model import ModelLoadError, load_model
from ..pruning import NO_PRUNING, PruningConfig

SEED = 11
MIN_BATCH16_RUNS = 8

# Last-resort inputs when neither the Devign data nor any C file is around: real-looking C of
# a few sizes, since pruning's effect depends on length.
BUILTIN_C = [
    """static int parse_header(const uint8_t *buf, int len, Header *h)
{
    if (len < 8)
        return -1;
    h->magic = AV_RB32(buf);
    h->size = AV_RB32(buf + 4);
    if (h->size > len - 8)
        return AVERROR_INVALIDDATA;
    return 0;
}""",
    """char *str_dup_trim(const char *s)
{
    size_t n;
    char *out;
    while (*s == ' ' || *s == '\\t')
        s++;
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\\n'))
        n--;
    out = malloc(n + 1);
    if (!out)
        return NULL;
    memcpy(out, s, n);
    out[n] = '\\0';
    return out;
}""",
    """static void ring_push(Ring *r, int v)
{
    r->data[r->head] = v;
    r->head = (r->head + 1) % r->cap;
    if (r->count < r->cap)
        r->count++;
    else
        r->tail = (r->tail + 1) % r->cap;
}""",
    """int copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    FILE *out;
    char buf[4096];
    size_t n;
    int ret = 0;
    if (!in)
        return -1;
    out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            ret = -1;
            break;
        }
    }
    if (ferror(in))
        ret = -1;
    fclose(in);
    if (fclose(out) != 0)
        ret = -1;
    return ret;
}""",
    """static int decode_block(Context *s, int16_t *block, int n)
{
    int i, j, level, run, code;
    int qscale = s->qscale;
    const uint8_t *scan = s->scantable;
    memset(block, 0, 64 * sizeof(*block));
    for (i = 0; i < 64;) {
        code = get_vlc(&s->gb, s->vlc);
        if (code < 0) {
            av_log(s->avctx, AV_LOG_ERROR, "invalid vlc at %d\\n", n);
            return -1;
        }
        if (code == END_OF_BLOCK)
            break;
        run = code >> 8;
        level = (code & 0xff) * qscale;
        if (get_bits1(&s->gb))
            level = -level;
        i += run;
        if (i >= 64)
            return -1;
        j = scan[i];
        block[j] = level;
        i++;
    }
    s->last_index[n] = i;
    return 0;
}""",
]


def _devign_dirs(data: str | None) -> list[Path]:
    if data:
        return [Path(data)]
    repo = Path(__file__).resolve().parents[2]
    return [Path.cwd() / "../shared/data/devign", repo / "../shared/data/devign"]


def find_inputs(data: str | None, n: int, seed: int = SEED) -> tuple[list[str], str]:
    """(n code strings, where they came from). Devign test functions when available, else C
    files (from --data or the package), else the built-in snippets."""
    for d in _devign_dirs(data):
        if d.is_file() and d.name == "devign.jsonl.gz":
            d = d.parent
        if (d / "devign.jsonl.gz").is_file() and (d / "split.json").is_file():
            from ..evalkit.data import load_devign

            rows = load_devign(d)["test"]
            return _fill([r["func"] for r in sample(rows, n, seed)], n), f"devign test split ({d})"
    files: list[Path] = []
    if data and Path(data).is_dir():
        files = sorted(Path(data).rglob("*.c"))
    elif data and Path(data).is_file():
        files = [Path(data)]
    where = data
    if not files:
        pkg = Path(__file__).resolve().parents[1]
        files, where = sorted(pkg.rglob("*.c")), f"C files under {pkg}"
    texts = (f.read_text(encoding="utf-8", errors="replace") for f in files)
    codes = [t for t in texts if t.strip()]
    if codes:
        return _fill(sample(codes, n, seed), n), f"{len(codes)} C file(s): {where}"
    return _fill(list(BUILTIN_C), n), "built-in C snippets"


def _fill(codes: list[str], n: int) -> list[str]:
    """Repeat the inputs cyclically up to n (few files, or --n above the data)."""
    if not codes:
        return []
    return [codes[i % len(codes)] for i in range(max(n, 1))]


def run(model, codes: list[str], pruned: PruningConfig, language: str = "c") -> dict:
    """The benchmark proper, reusable by `bench all`."""
    configs = {"pruned": pruned, "none": NO_PRUNING}
    enc = model.net.encoder.config
    before = model.pruning
    lengths, flops = {}, {}
    try:
        for name, cfg in configs.items():
            model.configure(pruning=cfg)
            scores = model.score(codes, language)
            lengths[name] = mean_lengths([s.tokens_per_layer for s in scores])
            flops[name] = float(np.mean([s.flops for s in scores]))
            truncated = float(np.mean([s.truncated for s in scores]))
    finally:
        model.configure(pruning=before)

    b1 = interleaved_latency(model, configs, [[c] for c in codes], language)
    groups = [codes[i : i + 16] for i in range(0, len(codes) - 15, 16)] or [_fill(codes, 16)]
    # Enough timed batch-16 calls for a median and a p95 to mean something.
    groups = groups * math.ceil(MIN_BATCH16_RUNS / len(groups))
    b16 = interleaved_latency(model, configs, groups, language)
    lat1 = {k: summarize(v) for k, v in b1.items()}
    lat16 = {k: summarize(v) for k, v in b16.items()}
    return {
        "model": model.info(),
        "layers": enc.num_hidden_layers,
        "pruning": pruned.to_dict(),
        "inputs": {
            "n": len(codes),
            "mean_input_tokens": lengths["none"][0],
            "truncated_share": truncated,
            "max_tokens": model.max_tokens,
        },
        "tokens_per_layer": lengths,
        "flops_per_function": flops,
        "flops_ratio": ratio(flops["none"], flops["pruned"]),
        "latency_ms": lat1,
        "speedup_batch1": ratio(lat1["none"]["median"], lat1["pruned"]["median"]),
        "batch16": {
            "runs": len(groups),
            "latency_ms": lat16,
            "per_function_ms": {k: v["median"] / 16 for k, v in lat16.items()},
            "speedup": ratio(lat16["none"]["median"], lat16["pruned"]["median"]),
        },
        "speedup_batch16": ratio(lat16["none"]["median"], lat16["pruned"]["median"]),
    }


def text(res: dict) -> str:
    tl = res["tokens_per_layer"]
    lines = [
        f"model {res['model']['name']} ({res['model']['path']}), pruning {res['pruning']}, "
        f"{res['threads']} threads",
        f"inputs: {res['inputs']['n']} functions from {res['source']}, mean "
        f"{res['inputs']['mean_input_tokens']:.1f} tokens, "
        f"{res['inputs']['truncated_share']:.0%} truncated at {res['inputs']['max_tokens']}",
        "",
        f"{'position':<16}{'none':>10}{'pruned':>10}",
    ]
    for i, (a, b) in enumerate(zip(tl["none"], tl["pruned"], strict=True)):
        lines.append(f"{'input' if i == 0 else f'after layer {i}':<16}{a:>10.1f}{b:>10.1f}")
    f = res["flops_per_function"]
    l1, l16 = res["latency_ms"], res["batch16"]["latency_ms"]
    lines += [
        "",
        f"FLOPs per function: none {f['none'] / 1e9:.3f} G, pruned {f['pruned'] / 1e9:.3f} G, "
        f"ratio {res['flops_ratio']:.2f}",
        f"batch 1  (ms, n={l1['none']['n']}): none median {l1['none']['median']:.2f} "
        f"p95 {l1['none']['p95']:.2f} | pruned median {l1['pruned']['median']:.2f} "
        f"p95 {l1['pruned']['p95']:.2f} | speedup {res['speedup_batch1']:.2f}",
        f"batch 16 (ms, n={l16['none']['n']}): none median {l16['none']['median']:.2f} "
        f"p95 {l16['none']['p95']:.2f} | pruned median {l16['pruned']['median']:.2f} "
        f"p95 {l16['pruned']['p95']:.2f} | speedup {res['speedup_batch16']:.2f}",
        "latency = wall time of model.score() (tokenization included), A/B interleaved per "
        "input after a warm-up; speedup = unpruned / pruned median",
    ]
    lines += [f"note: {n}" for n in res.get("notes", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench pruning", description=__doc__)
    ap.add_argument("--model", help="model directory (default: the bundled model)")
    ap.add_argument("--data", help="Devign directory, a C file or a directory of C files")
    ap.add_argument("--n", type=int, default=64, help="functions to time (default 64)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args(argv)

    try:
        model = load_model(args.model, device="cpu", threads=args.threads)
    except ModelLoadError as e:
        hint = "" if args.model else " (pass --model DIR to benchmark another model)"
        raise CommandError(f"alpine-lsp bench pruning: {e}{hint}", code=2) from e
    import torch

    codes, source = find_inputs(args.data, max(1, args.n))
    notes = []
    pruned = model.pruning
    if pruned.layers == "none":
        pruned = PruningConfig()
        notes.append(
            "the model's alpine.json switches pruning off; benchmarked the default "
            f"ALPINE setting {pruned.to_dict()} instead"
        )
    res = run(model, codes, pruned)
    res = {"source": source, "threads": torch.get_num_threads(), **res, "notes": notes}
    if args.json:
        from ..evalkit.output import dumps

        print(dumps(res))
    else:
        print(text(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
