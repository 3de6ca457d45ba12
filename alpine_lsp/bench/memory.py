"""`alpine-lsp bench memory`: start-up time and resident memory, as a user meets them.

- model load, warm: a fresh process (file cache warm from a first one) times the import of
  the model API and `load_model()` of the bundled model, and its RSS after one score;
- the server with one file open: RSS once that file's diagnostics arrived (targets ≤ 400 MB);
- the server after indexing a workspace of --functions functions (default 4,000; generated C,
  or --workspace DIR): RSS and peak once the index is done (target ≤ 600 MB);
- `check` on a tree (--check-tree DIR, default the generated workspace): peak RSS of the whole
  run, from the kernel (target ≤ 800 MB).
RSS is the server's own (/proc/PID/status VmRSS, peak VmHWM); all figures are for this
machine and its load at the time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .client import BenchClient, rss_mb

TARGETS_MB = {"server_one_file": 400, "server_indexed": 600, "check_peak": 800}
TARGET_LOAD_S = 1.5

_LOAD_SCRIPT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from alpine_lsp.model.api import load_model
t2 = time.perf_counter()
m = load_model(sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else None, threads=1)
t3 = time.perf_counter()
m.defect_probability(["int f(char *s) { return strlen(s); }"], "c")
t4 = time.perf_counter()
heavy = sorted({k.split(".")[0] for k in sys.modules} & {"transformers", "sklearn", "tqdm"})
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
print(json.dumps({"torch_import_s": t1 - t0, "api_import_s": t2 - t1, "load_s": t3 - t2,
                  "first_score_s": t4 - t3, "rss_mb": rss, "heavy_modules": heavy}))
"""

_PEAK_SCRIPT = r"""
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)
"""


def generated_workspace(root: Path, functions: int, per_file: int = 20) -> int:
    """C files with `functions` distinct functions of varied shape (loops, branches, calls)."""
    shapes = [
        "int {n}(const int *v, int len)\n{{\n    int acc = {a};\n"
        "    for (int i = 0; i < len; i++)\n        if (v[i] > {b})\n"
        "            acc += v[i] * {c};\n"
        "    return acc;\n}}\n",
        "static char *{n}(const char *src, size_t cap)\n{{\n    char *out = malloc(cap + {a});\n"
        "    if (out == NULL)\n        return NULL;\n    strncpy(out, src, cap - {b});\n"
        "    out[cap] = '\\0';\n    return out;\n}}\n",
        "void {n}(struct node *head, int key)\n{{\n    while (head != NULL) {{\n"
        "        if (head->key == key + {a}) {{\n            head->count += {b};\n"
        "            break;\n        }}\n        head = head->next;\n    }}\n"
        "    log_event({c});\n}}\n",
        "int {n}(int fd, void *buf, size_t n)\n{{\n    ssize_t got = read(fd, buf, n);\n"
        "    if (got < {a})\n        return -{b};\n    switch (got % {c}) {{\n    case 0:\n"
        "        return 0;\n    default:\n        return (int)got;\n    }}\n}}\n",
    ]
    made = 0
    for f in range((functions + per_file - 1) // per_file):
        parts = ["#include <stdlib.h>\n#include <string.h>\n"]
        for _ in range(min(per_file, functions - made)):
            shape = shapes[made % len(shapes)]
            parts.append(
                shape.format(n=f"fn_{made}", a=made % 97, b=(made * 7) % 31, c=(made * 13) % 17 + 2)
            )
            made += 1
        (root / f"gen_{f:04d}.c").write_text("\n".join(parts))
    return made


def _count_functions(root: Path) -> int:
    from ..index import iter_source_files
    from ..parsing import extract_functions, language_for

    n = 0
    for p in iter_source_files(root, 2_000_000, None):
        lang = language_for(str(p))
        if lang:
            n += len(extract_functions(p.read_text(errors="replace"), lang))
    return n


def model_load(model: str | None) -> dict:
    """The second of two fresh processes: file cache warm, as for every `check` after the first."""
    out = {}
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", _LOAD_SCRIPT, model or ""],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode:
            return {"error": proc.stderr[-500:]}
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def server_rss(root: Path, model: str | None, open_file: Path | None, cache: Path) -> dict:
    settings: dict = {"debounceMs": 50}
    if model:
        settings["model"] = model
    client = BenchClient()
    t0 = time.perf_counter()
    await client.start(root, settings, cache)
    try:
        await client.wait_model(timeout=600)
        ready_s = time.perf_counter() - t0
        if open_file is not None:
            uri = open_file.resolve().as_uri()
            client.open(uri, open_file.read_text())
            await client.wait_published(uri, 1, timeout=300)
        end = time.perf_counter() + 1800
        s = await client.stats()
        while s.get("index_state") not in ("done", "cancelled", "idle") or (
            s.get("index_state") == "idle" and time.perf_counter() - t0 < 5
        ):
            if time.perf_counter() > end:
                break
            await asyncio.sleep(0.5)
            s = await client.stats()
        await asyncio.sleep(1.0)  # the post-burst trim
        pid = client.pid or 0
        return {
            "rss_mb": rss_mb(pid),
            "peak_mb": _hwm_mb(pid),
            "model_ready_s": ready_s,
            "index_functions": s.get("index_functions"),
            "index_state": s.get("index_state"),
        }
    finally:
        await client.stop()


def check_peak(tree: Path, model: str | None) -> dict:
    cmd = [sys.executable, "-m", "alpine_lsp", "check", str(tree), "--no-cache", "--format", "json"]
    if model:
        cmd += ["--model", model]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, *cmd, "-o", os.devnull],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    try:
        peak, code = proc.stdout.split()
    except ValueError:
        return {"error": proc.stderr[-500:]}
    return {"peak_mb": float(peak), "exit": int(code), "seconds": time.perf_counter() - t0}


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="alpine-bench-memory-"))
    examples = Path(__file__).resolve().parents[1] / "examples"
    result: dict = {"targets_mb": TARGETS_MB, "target_load_s": TARGET_LOAD_S}
    print("bench memory: model load…", file=sys.stderr, flush=True)
    result["model_load"] = model_load(args.model)
    _note("model_load", result)

    print("bench memory: server with one file open…", file=sys.stderr, flush=True)
    one = tmp / "one"
    one.mkdir()
    result["server_one_file"] = asyncio.run(
        server_rss(one, args.model, examples / "buffer.c", tmp / "cache1")
    )
    _note("server_one_file", result)

    if args.workspace:
        ws = Path(args.workspace)
        count = _count_functions(ws)
    else:
        ws = tmp / "ws"
        ws.mkdir()
        count = generated_workspace(ws, args.functions)
    print(f"bench memory: server indexing {count} functions…", file=sys.stderr, flush=True)
    result["server_indexed"] = {
        "workspace": str(ws) if args.workspace else f"generated ({count} functions)",
        "functions": count,
        **asyncio.run(server_rss(ws, args.model, None, tmp / "cache2")),
    }
    _note("server_indexed", result)
    tree = Path(args.check_tree) if args.check_tree else ws
    print(f"bench memory: check {tree}…", file=sys.stderr, flush=True)
    try:
        result["check"] = {"tree": str(tree), **check_peak(tree, args.model)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the generated workspace and two caches
    return result


def _note(key: str, result: dict) -> None:
    """Each phase's figures on stderr as soon as they exist (a long run may be cut short)."""
    print(f"bench memory: {key} {json.dumps(result[key])}", file=sys.stderr, flush=True)


def table(r: dict) -> str:
    def f(v, fmt="{:.0f}"):
        return fmt.format(v) if isinstance(v, (int, float)) else "n/a"

    load = r.get("model_load", {})
    one, idx, chk = r.get("server_one_file", {}), r.get("server_indexed", {}), r.get("check", {})
    rows = [
        (
            "model load, warm: import API + load_model() (s)",
            f"{f(load.get('api_import_s'), '{:.2f}')} + {f(load.get('load_s'), '{:.2f}')}"
            f" (torch import {f(load.get('torch_import_s'), '{:.2f}')})",
        ),
        ("server RSS, one file open (MB)", f(one.get("rss_mb"))),
        (
            f"server RSS after indexing {idx.get('functions', '?')} functions (MB)",
            f(idx.get("rss_mb")),
        ),
        ("check peak RSS (MB)", f"{f(chk.get('peak_mb'))} ({chk.get('tree', '?')})"),
    ]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a.ljust(width)}  {b}" for a, b in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench memory", description=__doc__)
    ap.add_argument("--model", help="model directory (default: bundled)")
    ap.add_argument("--functions", type=int, default=4000, help="size of the generated workspace")
    ap.add_argument("--workspace", help="index this folder instead of a generated one")
    ap.add_argument("--check-tree", help="run check on this folder (default: the workspace)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.functions < 1:
        ap.error("--functions must be at least 1")
    for p in (args.workspace, args.check_tree):
        if p and not Path(p).is_dir():
            ap.error(f"{p} is not a directory")
    result = run(args)
    print(json.dumps(result) if args.json else table(result))
    return 0
