"""All model work on one worker thread, in one queue with priorities (issue 15).

- EDIT: per-document analyses, debounced. Scheduling a document again before its deadline
  moves the deadline (only the latest state is scored). A due analysis always runs next.
- INDEX: workspace indexing, one step of one file at a time (its read and parse, a chunk of
  its functions, its store), and the model's warm-up.
- OTHER: anything else (watched-file re-indexing, `learn`'s scoring).

A job is a generator: the worker runs it up to its next `yield` (one step), then puts it back at
the end of its priority's queue, so an edit waits for one step at most. A job is not started
when an analysis is due within `min_gap` seconds, and `time_left()` tells a job how long it has
until the next one is due, so a step can be sized to end before it (within the debounce, an
edit then waits for nothing). Work runs on this thread, never on the event loop or the thread
that reads stdin; the worker outlives an exception in any item.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
EDIT, INDEX, OTHER = 0, 1, 2
Job = Iterator[Any]


class Stopped(RuntimeError):
    """The scheduler was stopped before the work ran (or finished)."""


def _once(fn: Callable[[], T]) -> Generator[None, None, T]:
    return fn()
    yield  # unreachable: makes this a generator of one step


def _tracked(job: Generator[Any, None, T], fut: Future) -> Generator[Any, None, None]:
    try:
        value = yield from job
    except Exception as e:
        _settle(fut, exc=e)
    else:
        _settle(fut, value=value)


def _settle(fut: Future, value: Any = None, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
    except InvalidStateError:  # stop() settled it first
        pass


class Scheduler:
    def __init__(self, analyze: Callable[[str], None], name: str = "alpine-worker") -> None:
        self._run = analyze
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._jobs: tuple[deque[Job], deque[Job]] = (deque(), deque())  # INDEX, OTHER
        self._waiting: set[Future] = set()
        self._cond = threading.Condition()
        self._stopped = False
        self.min_gap = 0.0  # seconds: no job starts when an analysis is due sooner
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return self._thread.name

    def on_worker(self) -> bool:
        return threading.current_thread() is self._thread

    # -- document analyses (EDIT) -----------------------------------------------------------
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
        """Documents waiting for their analysis."""
        with self._cond:
            return len(self._due)

    def queued(self) -> int:
        """Jobs waiting (index and other work)."""
        with self._cond:
            return sum(map(len, self._jobs))

    def time_left(self) -> float:
        """Seconds until the next document analysis is due (inf: none is waiting)."""
        with self._cond:
            self._drop_stale()
            return self._heap[0][0] - time.monotonic() if self._heap else float("inf")

    # -- jobs (INDEX, OTHER) ----------------------------------------------------------------
    def submit(self, job: Job, priority: int = INDEX) -> None:
        """Queue a job (a generator, run one step per turn); dropped once stopped."""
        assert priority in (INDEX, OTHER)
        with self._cond:
            if self._stopped:
                return
            self._jobs[priority - 1].append(job)
            self._cond.notify()

    def run(self, job: Generator[Any, None, T], priority: int = INDEX) -> T:
        """Run a job on the worker and wait for what it returns (or raises). On the worker
        itself it runs at once. Raises Stopped when the scheduler stops first."""
        if self.on_worker():
            return _drain(job)
        fut: Future = Future()
        with self._cond:
            if self._stopped:
                raise Stopped("the worker has stopped")
            self._waiting.add(fut)
            self._jobs[priority - 1].append(_tracked(job, fut))
            self._cond.notify()
        try:
            return fut.result()
        finally:
            with self._cond:
                self._waiting.discard(fut)

    def call(self, fn: Callable[[], T], priority: int = OTHER) -> T:
        """`fn()` on the worker, as one step; its result (or exception) comes back."""
        return self.run(_once(fn), priority)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            jobs = [j for q in self._jobs for j in q]
            for q in self._jobs:
                q.clear()
            waiting = list(self._waiting)
            self._cond.notify()
        for fut in waiting:
            _settle(fut, exc=Stopped("the worker has stopped"))
        for job in jobs:
            close = getattr(job, "close", None)
            if close is not None:
                close()

    # -- the worker -------------------------------------------------------------------------
    def _drop_stale(self) -> None:
        # Heap entries superseded by a later schedule() or a cancel() (lock held).
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)

    def _next(self) -> tuple[str | None, tuple[int, Job] | None] | None:
        with self._cond:
            while not self._stopped:
                self._drop_stale()
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                if wait is not None and wait <= 0:
                    key = heapq.heappop(self._heap)[1]
                    del self._due[key]
                    return key, None
                if wait is None or wait > self.min_gap:
                    for priority, q in enumerate(self._jobs, INDEX):
                        if q:
                            return None, (priority, q.popleft())
                self._cond.wait(wait)
            return None

    def _loop(self) -> None:
        while (item := self._next()) is not None:
            key, job = item
            if key is not None:
                try:
                    self._run(key)
                except Exception:  # the worker must outlive any one document
                    log.exception("analysis of %s failed", key)
                continue
            assert job is not None
            priority, gen = job
            try:
                next(gen)
            except StopIteration:
                continue
            except Exception:  # ... and any one job
                log.exception("background work failed")
                continue
            with self._cond:
                if not self._stopped:
                    self._jobs[priority - 1].append(gen)
                    continue
            close = getattr(gen, "close", None)
            if close is not None:
                close()


def _drain(job: Generator[Any, None, T]) -> T:
    """Every step of a job, here and now; what it returns."""
    while True:
        try:
            next(job)
        except StopIteration as e:
            return e.value
