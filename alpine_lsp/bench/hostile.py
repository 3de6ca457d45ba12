"""`alpine-lsp bench hostile`: hostile model directories against the real server.

Starts `alpine-lsp --stdio` on the bundled model (with `allowWorkspaceModel`, so settings may
switch the model), then for each hostile directory switches `model` to it through
didChangeConfiguration and sends `alpine/stats` every 50 ms until the load ends (failed or
ready). Per case: the outcome, the slowest stats reply, and the server's peak RSS during the
load (VmHWM, reset through /proc/PID/clear_refs before each case; the sampled VmRSS where that
reset is not allowed). Between cases the server goes back to the bundled model, so every case
starts from the same state: the bundled model loaded and held while the new one loads.
Targets (issue #20): every reply within 1 s, RSS never over 1 GB.

The directories are built under --dir (a temporary folder by default): copies of the bundled
model with one file made hostile (about 900 MB of disk in all, while the bench runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lsprotocol import types

from .client import BenchClient, rss_mb

LATENCY_TARGET_MS = 1000.0
RSS_TARGET_MB = 1024.0


# -- building the hostile directories ---------------------------------------------------------
def _bundled() -> Path:
    from ..model.files import BUNDLED_DIR

    return BUNDLED_DIR


def _copy(dst: Path) -> Path:
    shutil.copytree(_bundled(), dst)  # real copies: cases rewrite files in place
    return dst


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_padded(path: Path, head: str, filler: str, tail: str, size: int) -> None:
    """head + filler repeated + tail, about `size` bytes in all (filler and tail ASCII)."""
    n = (size - len(head.encode()) - len(tail)) // len(filler)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head)
        chunk = filler * 65536
        for _ in range(n // 65536):
            f.write(chunk)
        f.write(filler * (n % 65536))
        f.write(tail)


def _bounds():
    from ..model import bounds

    return bounds


def _sized_config(over: bool) -> dict:
    """The bundled config widened to just under (or one row over) the parameter bound."""
    b = _bounds()
    cfg = _json(_bundled() / "config.json")
    h, inter, layers, pos, types_, embed = 1024, 4096, 8, 514, 1, 256
    rest = layers * (4 * h * h + 2 * h * inter + 9 * h) + 2 * h * embed
    vocab = (b.MAX_PARAMETERS - rest) // h - pos - types_ + (1 if over else 0)
    cfg.update(
        hidden_size=h,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=16,
        max_position_embeddings=pos,
        type_vocab_size=types_,
        vocab_size=vocab,
    )
    return cfg


def _zero_weights(path: Path, cfg: dict, embed_dim: int) -> None:
    """A model.safetensors that fits `cfg` exactly: fp16 zeros, written out (a sparse file
    would be read from holes, which understates the page cache a real file maps)."""
    from ..model.encoder import EncoderConfig, uninitialised
    from ..model.network import AlpineNetwork

    with uninitialised():
        net = AlpineNetwork.from_config(EncoderConfig.from_dict(cfg), embed_dim)
    header: dict = {}
    at = 0
    for name, t in net.state_dict().items():
        n = 2 * t.numel()
        header[name] = {"dtype": "F16", "shape": list(t.shape), "data_offsets": [at, at + n]}
        at += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        zeros = bytes(1 << 24)
        for _ in range(at >> 24):
            f.write(zeros)
        f.write(bytes(at & ((1 << 24) - 1)))


def case_params_under(d: Path) -> None:
    """config.json just under the parameter bound; the bundled weights do not fit it."""
    (d / "config.json").write_text(json.dumps(_sized_config(over=False)))


def case_params_under_weights(d: Path) -> None:
    """config.json just under the parameter bound with weights that fit it (a valid model:
    the largest this server loads)."""
    cfg = _sized_config(over=False)
    (d / "config.json").write_text(json.dumps(cfg))
    _zero_weights(d / "model.safetensors", cfg, 256)


def case_params_over(d: Path) -> None:
    (d / "config.json").write_text(json.dumps(_sized_config(over=True)))


def case_tokenizer_vocab(d: Path, size: int | None = None) -> None:
    """tokenizer.json just under its size bound: the vocabulary padded with millions of
    entries (a dict, the slowest shape for a JSON parser)."""
    b = _bounds()
    tok = _json(d / "tokenizer.json")
    vocab = tok["model"]["vocab"]
    base = json.dumps(tok)
    need = (size or b.MAX_JSON_BYTES["tokenizer.json"]) - 4096 - len(base)
    # `"t1234567": 1234567, ` is about 21 bytes
    i = len(vocab)
    extra = {}
    while need > 0:
        k = f"t{i}"
        extra[k] = i
        need -= len(k) + len(str(i)) + 6
        i += 1
    vocab.update(extra)
    (d / "tokenizer.json").write_text(json.dumps(tok))


def case_tokenizer_fast(d: Path) -> None:
    """tokenizer.json of vocabulary entries, just under the size json.loads parses in one go."""
    case_tokenizer_vocab(d, _bounds().FAST_JSON_BYTES)


def case_tokenizer_zeros(d: Path) -> None:
    """tokenizer.json just under its size bound: 32M zeros in an extra array."""
    b = _bounds()
    base = json.dumps(_json(d / "tokenizer.json"))
    head = base[:-1] + ', "junk": ['
    _write_padded(d / "tokenizer.json", head, "0,", "0]}", b.MAX_JSON_BYTES["tokenizer.json"] - 1)


def case_tokenizer_regex(d: Path) -> None:
    """A Split pre-tokenizer whose regex backtracks catastrophically."""
    tok = _json(d / "tokenizer.json")
    tok["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {
                "type": "Split",
                "pattern": {"Regex": "(a+)+$"},
                "behavior": "Isolated",
                "invert": False,
            },
            tok["pre_tokenizer"],
        ],
    }
    (d / "tokenizer.json").write_text(json.dumps(tok))


def case_tokenizer_nested(d: Path) -> None:
    """tokenizer.json of 8 MB of `[` (nesting far beyond any parser's stack)."""
    (d / "tokenizer.json").write_text("[" * (8 << 20))


def case_config_nested(d: Path) -> None:
    (d / "config.json").write_text("[" * 500_000 + "]" * 500_000)


def _lexical_weights(d: Path, n: int) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file(
        {
            "idf": np.ones(n, dtype=np.float32),
            "coef": np.zeros(n, dtype=np.float32),
            "intercept": np.zeros(1, dtype=np.float32),
        },
        str(d / "lexical.safetensors"),
    )


def case_lexical_vocab(d: Path) -> None:
    """lexical.json just under its size bound: the most terms allowed, each long."""
    b = _bounds()
    lex = _json(d / "lexical.json")
    n = b.MAX_LEXICAL_VOCAB
    width = (b.MAX_LEXICAL_JSON_BYTES - 4096) // n - 4  # each term costs width + 4 bytes
    rest = json.dumps({k: v for k, v in lex.items() if k != "vocabulary"})
    head = rest[:-1] + ', "vocabulary": ['
    with open(d / "lexical.json", "w", encoding="ascii") as f:
        f.write(head)
        pad = "x" * (width - 8)
        for start in range(0, n, 65536):
            f.write(",".join(f'"{i:08d}{pad}"' for i in range(start, min(n, start + 65536))))
            f.write("," if start + 65536 < n else "")
        f.write("]}")
    _lexical_weights(d, n)


def case_lexical_zeros(d: Path, size: int | None = None) -> None:
    """lexical.json just under its size bound: the bundled vocabulary and millions of zeros."""
    size = size or _bounds().MAX_LEXICAL_JSON_BYTES - 1
    base = (d / "lexical.json").read_text(encoding="utf-8")
    head = base.rstrip()[:-1] + ', "junk": ['
    _write_padded(d / "lexical.json", head, "0,", "0]}", size)


def case_lexical_zeros_256(d: Path) -> None:
    """lexical.json of 256 MB (the bound before issue #20) of zeros."""
    case_lexical_zeros(d, 256 << 20)


def case_lexical_regex(d: Path) -> None:
    lex = _json(d / "lexical.json")
    lex["token_pattern"] = "(a|aa)*c"
    (d / "lexical.json").write_text(json.dumps(lex))


def case_cwe_zeros(d: Path) -> None:
    """cwe.json of 128 MB (the optional CWE head: no size bound of its own)."""
    base = (d / "cwe.json").read_text(encoding="utf-8")
    head = base.rstrip()[:-1] + ', "junk": ['
    _write_padded(d / "cwe.json", head, "0,", "0]}", 128 << 20)


def case_fused_zeros(d: Path) -> None:
    """fused_lexical.json of 128 MB (the fused head's lexical input)."""
    base = (d / "fused_lexical.json").read_text(encoding="utf-8")
    head = base.rstrip()[:-1] + ', "junk": ['
    _write_padded(d / "fused_lexical.json", head, "0,", "0]}", 128 << 20)


def case_st_header_length(d: Path) -> None:
    """model.safetensors whose header length field says 2**60 bytes."""
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[:8] = struct.pack("<Q", 1 << 60)
    w.write_bytes(bytes(data))


def case_st_offsets(d: Path) -> None:
    """model.safetensors whose header places a tensor far past the end of the file."""
    w = d / "model.safetensors"
    data = w.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 1 << 30
    raw = json.dumps(header).encode()
    w.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def case_st_many_tensors(d: Path) -> None:
    """model.safetensors whose header (90 MB, under safetensors' own 100 MB limit) names a
    million tiny tensors: none of them belongs to the network."""
    header = {}
    n = 1_000_000
    for i in range(n):
        header[f"t{i}"] = {"dtype": "F16", "shape": [1], "data_offsets": [2 * i, 2 * i + 2]}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(d / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + 2 * n)


def case_weights_fifo(d: Path) -> None:
    (d / "model.safetensors").unlink()
    os.mkfifo(d / "model.safetensors")


def case_tokenizer_dev_zero(d: Path) -> None:
    (d / "tokenizer.json").unlink()
    (d / "tokenizer.json").symlink_to("/dev/zero")


def case_lexical_dev_zero(d: Path) -> None:
    (d / "lexical.json").unlink()
    (d / "lexical.json").symlink_to("/dev/zero")


def case_cwe_fifo(d: Path) -> None:
    (d / "cwe.json").unlink()
    os.mkfifo(d / "cwe.json")


CASES: dict[str, Callable[[Path], None]] = {
    "config params just under bound (weights do not fit)": case_params_under,
    "config params just under bound (weights fit)": case_params_under_weights,
    "config params just over bound": case_params_over,
    "config.json nested 500k deep": case_config_nested,
    "tokenizer.json 4 MB dict (json.loads' largest)": case_tokenizer_fast,
    "tokenizer.json at its bound, 64 MB (3M vocab entries)": case_tokenizer_vocab,
    "tokenizer.json at its bound, 64 MB (32M zeros)": case_tokenizer_zeros,
    "tokenizer.json nested 8M deep": case_tokenizer_nested,
    "tokenizer.json regex (a+)+$": case_tokenizer_regex,
    "tokenizer.json -> /dev/zero": case_tokenizer_dev_zero,
    "lexical.json at its bound (2M long terms)": case_lexical_vocab,
    "lexical.json at its bound (zeros)": case_lexical_zeros,
    "lexical.json 256 MB, the old bound (zeros)": case_lexical_zeros_256,
    "lexical.json token_pattern (a|aa)*c": case_lexical_regex,
    "lexical.json -> /dev/zero": case_lexical_dev_zero,
    "cwe.json 128 MB (zeros)": case_cwe_zeros,
    "cwe.json FIFO": case_cwe_fifo,
    "fused_lexical.json 128 MB (zeros)": case_fused_zeros,
    "model.safetensors header length 2**60": case_st_header_length,
    "model.safetensors offsets past the end": case_st_offsets,
    "model.safetensors 1M-tensor header": case_st_many_tensors,
    "model.safetensors FIFO": case_weights_fifo,
}
FIFO_DIR = "model directory is a FIFO"


def build(root: Path, names: list[str]) -> dict[str, Path]:
    out = {}
    for i, name in enumerate(names):
        d = root / f"case{i:02d}"
        if name == FIFO_DIR:
            os.mkfifo(d)
        else:
            CASES[name](_copy(d))
        out[name] = d
    return out


# -- driving the server -----------------------------------------------------------------------
def _status(pid: int) -> dict[str, float]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def _reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+: write 5 to clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _configure(client: BenchClient, model: str) -> None:
    conf = {"model": model, "similarity": {"enabled": False}}
    client.client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"alpine": conf})
    )


def _ended(s: dict, path: str, seen_loading: bool) -> bool:
    m = s["model"]
    if m["state"] == "ready":
        return m.get("path") == path
    if m["state"] == "failed":
        return seen_loading or path in (m.get("error") or "")
    return False


async def run_case(client: BenchClient, path: str, timeout: float, every: float = 0.05) -> dict:
    pid = client.pid
    assert pid is not None
    reset = _reset_peak(pid)
    before = _status(pid).get("VmRSS")
    latencies: list[float] = []
    rss_max = before or 0.0
    seen_loading = False
    last: dict | None = None
    done = asyncio.Event()

    async def one() -> None:
        nonlocal seen_loading, last
        t0 = time.perf_counter()
        s = await client.stats()
        latencies.append((time.perf_counter() - t0) * 1000)
        seen_loading = seen_loading or s["model"]["state"] == "loading"
        if _ended(s, path, seen_loading):
            last = s
            done.set()

    t_start = time.perf_counter()
    _configure(client, path)
    tasks: list[asyncio.Task] = []
    outcome = "timeout"
    while time.perf_counter() - t_start < timeout:
        tasks.append(asyncio.create_task(one()))
        rss_max = max(rss_max, _status(pid).get("VmRSS", 0.0))
        try:
            await asyncio.wait_for(done.wait(), every)
        except TimeoutError:
            pass
        if done.is_set():
            break
        if client.client._server.returncode is not None:
            outcome = "server died"
            break
    # Every request sent is answered (or the case is over by timeout): its latency counts.
    pending = [t for t in tasks if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=60)
    for t in pending:
        if not t.done():
            t.cancel()
            latencies.append(float("inf"))
    st = _status(pid)
    peak = st.get("VmHWM") if reset else None
    rss_max = max(rss_max, st.get("VmRSS", 0.0))
    if last is not None:
        outcome = last["model"]["state"]
    return {
        "outcome": outcome,
        "error": (last or {}).get("model", {}).get("error"),
        "seconds": time.perf_counter() - t_start,
        "replies": len(latencies),
        "max_reply_ms": max(latencies) if latencies else None,
        "rss_before_mb": before,
        "peak_rss_mb": peak if peak is not None else rss_max,
        "peak_source": "VmHWM" if peak is not None else "sampled VmRSS",
    }


async def back_to_bundled(client: BenchClient, timeout: float = 120) -> None:
    path = str(_bundled())
    _configure(client, path)
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        s = await client.stats()
        m = s["model"]
        if m["state"] == "ready" and m.get("path") == path:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the bundled model did not come back")


async def run(args: argparse.Namespace) -> dict:
    names = [*CASES, FIFO_DIR]
    if args.only:
        names = [n for n in names if any(o.lower() in n.lower() for o in args.only)]
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="alpine-hostile-"))
    root.mkdir(parents=True, exist_ok=True)
    ws = root / "ws"
    ws.mkdir(exist_ok=True)
    results: dict[str, dict] = {}
    client = BenchClient()
    try:
        t0 = time.perf_counter()
        dirs = build(root, names)
        build_s = time.perf_counter() - t0
        settings = {
            "model": str(_bundled()),
            "allowWorkspaceModel": True,
            "similarity": {"enabled": False},
        }
        await client.start(ws, settings, root / "cache")
        await client.wait_model()
        assert client.pid is not None
        for name, d in dirs.items():
            r = await run_case(client, str(d), args.timeout)
            results[name] = r
            if r["outcome"] == "server died":
                break
            await back_to_bundled(client)
        idle = rss_mb(client.pid)
    finally:
        code = await client.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "cases": results,
        "build_s": build_s,
        "rss_idle_mb": idle,
        "exit_code": code,
        "targets": {"max_reply_ms": LATENCY_TARGET_MS, "peak_rss_mb": RSS_TARGET_MB},
    }


def _verdict(r: dict) -> str:
    ms, mb = r["max_reply_ms"], r["peak_rss_mb"]
    bad = []
    if ms is None or ms > LATENCY_TARGET_MS:
        bad.append("slow")
    if mb is None or mb > RSS_TARGET_MB:
        bad.append("RSS")
    if r["outcome"] in ("timeout", "server died"):
        bad.append(r["outcome"])
    return "met" if not bad else "MISSED: " + ", ".join(bad)


def table(out: dict) -> str:
    rows = [("case", "outcome", "max stats ms", "peak RSS MB", "verdict (1 s / 1 GB)")]
    for name, r in out["cases"].items():
        rows.append(
            (
                name,
                f"{r['outcome']} {r['seconds']:.1f}s",
                f"{r['max_reply_ms']:.0f}" if r["max_reply_ms"] is not None else "n/a",
                f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "n/a",
                _verdict(r),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]

    def line(row) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench hostile", description=__doc__)
    ap.add_argument("--only", action="append", help="cases whose name contains this (repeatable)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per case")
    ap.add_argument("--dir", help="build the directories here (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the directories afterwards")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        print(table(out))
        print(f"server RSS afterwards, bundled model loaded: {out['rss_idle_mb']:.0f} MB")
        for name, r in out["cases"].items():
            if r["error"]:
                print(f"- {name}: {r['error'][:200]}")
    missed = [r for r in out["cases"].values() if _verdict(r) != "met"]
    return 1 if missed else 0
