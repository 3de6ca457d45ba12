"""`alpine-lsp bench lines`: what line ranking costs, pruned, batch 1.

The server scores with `explain=True`; line ranking rides on that pass (the pruning layers'
scores, a gather per layer, then the line sums on the CPU). Three configurations per function,
order alternating per function to cancel drift: the plain pruned forward (`explain` off), the
server's pass without line ranking, and with it. Prints medians and p95 and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ..evalkit.errors import CommandError
from ..evalkit.measure import sample, summarize
from ..model import ModelLoadError, load_model


def run(model, codes: list[str], warmup: int = 3) -> dict:
    configs = {
        "pruned, no explain": {"explain": False, "lines": False},
        "explain, no line ranking": {"explain": True, "lines": False},
        "explain + line ranking": {"explain": True, "lines": True},
    }
    names = list(configs)
    for code in codes[:warmup]:
        for n in names:
            model.score([code], "c", **configs[n])
    ms: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i, code in enumerate(codes):
        for n in names if i % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.thread_time()
            model.score([code], "c", **configs[n])
            ms[n].append((time.perf_counter() - t0) * 1000)
            cpu[n].append((time.thread_time() - c0) * 1000)
    # CPU time of this thread as well as wall time: on a shared machine the wall clock mostly
    # measures the other processes; with one torch thread the thread's CPU time is the work.
    out = {n: summarize(v) for n, v in ms.items()}
    out["cpu"] = {n: summarize(v) for n, v in cpu.items()}
    base = out["explain, no line ranking"]["median"]
    out["ratio_median_lines_vs_no_lines"] = out["explain + line ranking"]["median"] / base
    cb = out["cpu"]["explain, no line ranking"]["median"]
    out["ratio_cpu_median_lines_vs_no_lines"] = out["cpu"]["explain + line ranking"]["median"] / cb
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp bench lines", description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: the bundled model)")
    ap.add_argument("--data", default="../shared/data/devign")
    ap.add_argument("--n", type=int, default=64, help="functions from the Devign test split")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        model = load_model(args.model, device="cpu", threads=args.threads)
        from ..evalkit.data import load_devign

        codes = [r["func"] for r in sample(load_devign(args.data)["test"], args.n, seed=3)]
    except (ModelLoadError, FileNotFoundError) as e:
        raise CommandError(f"alpine-lsp bench lines: {e}", code=2) from e
    res = run(model, codes)
    res["n"] = len(codes)
    res["threads"] = args.threads
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"bench lines: {len(codes)} Devign test functions, batch 1, {args.threads} thread(s)")
    for name, v in res.items():
        if isinstance(v, dict) and "median" in v:
            c = res["cpu"][name]
            print(
                f"  {name:28s} wall median {v['median']:7.2f} ms  p95 {v['p95']:7.2f} ms   "
                f"thread CPU median {c['median']:7.2f} ms  p95 {c['p95']:7.2f} ms"
            )
    print(
        f"  with / without line ranking (median): wall "
        f"{res['ratio_median_lines_vs_no_lines']:.3f}, "
        f"CPU {res['ratio_cpu_median_lines_vs_no_lines']:.3f}"
    )
    return 0
