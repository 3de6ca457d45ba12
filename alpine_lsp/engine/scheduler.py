"""Per-document debounce on one worker thread.

Scheduling a document again before its deadline moves the deadline (only the latest state is
scored). Work runs on this thread, never on the event loop or the thread that reads stdin.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Debouncer:
    def __init__(self, run: Callable[[str], None], name: str = "alpine-worker") -> None:
        self._run = run
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def schedule(self, key: str, delay_s: float) -> None:
        with self._cond:
            due = time.monotonic() + max(0.0, delay_s)
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))
            self._cond.notify()

    def cancel(self, key: str) -> None:
        with self._cond:
            self._due.pop(key, None)

    def pending(self) -> int:
        with self._cond:
            return len(self._due)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _next(self) -> str | None:
        with self._cond:
            while not self._stopped:
                # Drop heap entries superseded by a later schedule() or a cancel().
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                due, key = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                del self._due[key]
                return key
            return None

    def _loop(self) -> None:
        while (key := self._next()) is not None:
            try:
                self._run(key)
            except Exception:  # the worker must outlive any one document
                log.exception("analysis of %s failed", key)
