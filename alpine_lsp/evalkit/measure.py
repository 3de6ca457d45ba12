"""Timing and memory helpers shared by the evaluation and benchmark commands."""

from __future__ import annotations

import random
import resource
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..pruning import PruningConfig


def summarize(ms: Sequence[float]) -> dict:
    """Median, p95 and mean of a list of milliseconds (NaN when empty)."""
    a = np.asarray(ms, dtype=np.float64)
    if not len(a):
        return {"median": float("nan"), "p95": float("nan"), "mean": float("nan"), "n": 0}
    return {
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(a.mean()),
        "n": len(a),
    }


def ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def sample(rows: list, n: int | None, seed: int = 0) -> list:
    """A seeded random subset of `n` rows kept in their original order (all rows if n is falsy).

    The data files are grouped by project/label/clone type, so a head slice would be one-sided.
    """
    if not n or n >= len(rows):
        return list(rows)
    picked = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in picked]


def mean_lengths(per_row: Sequence[Sequence[int]]) -> list[float]:
    """Mean valid length entering layer 0 and after each layer, over functions."""
    if not per_row:
        return []
    return [float(x) for x in np.asarray(per_row, dtype=np.float64).mean(axis=0)]


def interleaved_latency(
    model,
    configs: dict[str, PruningConfig],
    batches: Sequence[list[str]],
    language: str = "c",
    warmup: int = 3,
) -> dict[str, list[float]]:
    """Wall ms of `model.score(batch)` per batch and config, A/B order alternating per batch.

    Alternating the order cancels slow drifts (thermal, another process starting) that would
    otherwise bias whichever config always runs second. The model's batch size is raised so one
    call is one forward pass. The model's pruning is restored afterwards.
    """
    names = list(configs)
    before, before_bs = model.pruning, model.batch_size
    out: dict[str, list[float]] = {name: [] for name in names}
    try:
        model.batch_size = max(before_bs, max((len(b) for b in batches), default=1))
        for i in range(min(warmup, len(batches))):
            for name in names:
                model.configure(pruning=configs[name])
                model.score(batches[i], language)
        for i, batch in enumerate(batches):
            for name in names if i % 2 == 0 else names[::-1]:
                model.configure(pruning=configs[name])
                t0 = time.perf_counter()
                model.score(batch, language)
                out[name].append((time.perf_counter() - t0) * 1000)
    finally:
        model.configure(pruning=before)
        model.batch_size = before_bs
    return out


class PeakMemory:
    """Peak resident memory of this process over a `with` block, in MB.

    torch allocates outside Python's allocator, so tracemalloc misses it. Best source first:
    Linux VmHWM after resetting it through /proc/self/clear_refs (an exact per-block peak),
    else psutil RSS sampled every 10 ms, else ru_maxrss (the peak over the whole process life,
    which cannot separate blocks). `source` says which one was used.
    """

    def __init__(self) -> None:
        self.mb: float = float("nan")
        self.start_mb: float = float("nan")  # RSS when the block began, when known
        self.source = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._psutil_peak = 0

    def __enter__(self) -> PeakMemory:
        if _reset_hwm():
            self.source = "linux VmHWM (reset per phase)"
            self.start_mb = _read_status_kb("VmRSS:") / 1024
            return self
        try:
            import psutil
        except ImportError:
            self.source = "resource ru_maxrss (process-lifetime peak)"
            return self
        proc = psutil.Process()
        self.source = "psutil rss sampled every 10 ms"

        def poll() -> None:
            while not self._stop.is_set():
                self._psutil_peak = max(self._psutil_peak, proc.memory_info().rss)
                self._stop.wait(0.01)

        self._psutil_peak = proc.memory_info().rss
        self.start_mb = self._psutil_peak / 2**20
        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.source.startswith("linux"):
            self.mb = _read_status_kb("VmHWM:") / 1024
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.mb = self._psutil_peak / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            # ru_maxrss is bytes on macOS, kilobytes on Linux and the BSDs.
            self.mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _read_status_kb("VmHWM:") > 0
    except OSError:
        return False


def _read_status_kb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return float(line.split()[1])
    return 0.0
