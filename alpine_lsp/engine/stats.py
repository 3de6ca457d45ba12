"""Counters the server reports through `alpine/stats`: what it did, not what it meant to do."""

from __future__ import annotations

import threading
from collections import deque


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {
            "functions_parsed": 0,
            "functions_scored": 0,
            "cache_hits": 0,
            "model_forwards": 0,
            "analyses": 0,
            "results_dropped": 0,
            "embeddings_computed": 0,
            "files_indexed": 0,
            "files_skipped": 0,
            "similar_lookups": 0,  # functions looked up in the index (the rest kept theirs)
            "errors": 0,
        }
        self.latencies: dict[str, deque[float]] = {
            "score_ms": deque(maxlen=50),
            "analysis_ms": deque(maxlen=50),
            "edit_to_result_ms": deque(maxlen=50),
        }

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def latency(self, name: str, ms: float) -> None:
        with self._lock:
            self.latencies.setdefault(name, deque(maxlen=50)).append(round(ms, 2))

    def snapshot(self) -> dict:
        with self._lock:
            out: dict = dict(self.counters)
            out["last_latencies"] = {k: list(v) for k, v in self.latencies.items()}
            return out
