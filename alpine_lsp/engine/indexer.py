"""The workspace indexer: embeds every source file of the workspace for similar-code hints, and
keeps the index in step with files changed or deleted on disk.

The walk and the file-by-file loop run on their own thread, which only sequences: it hands
each file to the worker as a job (read and parse, chunks of functions, store) and waits for
it. So progress and cancellation stay a plain loop, nothing queued goes stale on a cancel, and
the model runs on the worker alone, where an edit's analysis (EDIT) always goes before the
next step of indexing (INDEX).

Invariants: the indexer never scores off the worker; every write to the index goes through
`store`/`remove`, which count writes per file (a document's memoised hints hold while no
other file wrote); open documents are left to their own analysis.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..index import IndexStore, iter_source_files, read_source_file, refusal
from ..model.score import FunctionScore
from ..parsing import Function, extract_functions, language_for
from .cache import ScoreCache
from .models import ModelHolder
from .policy import ScorePool
from .scheduler import INDEX, OTHER, Scheduler, Stopped
from .settings import Settings
from .similar import KeyCache, index_entries, vectors_of
from .stats import Stats

if TYPE_CHECKING:
    from .engine import Scorer

log = logging.getLogger("alpine_lsp.engine")

INDEX_CHUNK = 16  # functions per step of the workspace index, at most
INDEX_STEP_S = 0.1  # model time of one index step with a debounce shorter than this
WALK_WAIT_S = 600  # how long the walk waits for a model before giving up


class WorkspaceIndexer:
    """Owns the index walk (thread, cancel event, state) and the index's write counts.

    It shares the engine's worker, scorer, score cache, flag-budget pool and clone-key cache;
    `settings` and `open_uris` are read at the time of use (they change under it), and
    `reanalyze` re-runs the open documents' analyses when what they point at changed."""

    def __init__(
        self,
        *,
        holder: ModelHolder,
        worker: Scheduler,
        scorer: Scorer,
        cache: ScoreCache,
        pool: ScorePool,
        clone_keys: KeyCache,
        stats: Stats,
        settings: Callable[[], Settings],
        open_uris: Callable[[], Iterable[str]],
        reanalyze: Callable[[], None],
    ) -> None:
        self.holder = holder
        self.worker = worker
        self.scorer = scorer
        self.cache = cache
        self.pool = pool
        self.clone_keys = clone_keys
        self.stats = stats
        self._settings = settings
        self._open_uris = open_uris
        self._reanalyze = reanalyze
        self.root: Path | None = None
        self.index: IndexStore | None = None
        self.state = "idle"  # idle, running, done, cancelled
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._s_per_char = 0.0  # index steps' model time per padded character (average)
        self._writes = 0
        self._own_writes: dict[str, int] = {}
        self._writes_lock = threading.Lock()

    def attach(self, root: Path | None, index: IndexStore | None) -> None:
        self.root, self.index = root, index

    # -- write counts ---------------------------------------------------------------------
    def own_writes(self, uri: str) -> int:
        return self._own_writes.get(uri, 0)

    def writes_by_others(self, uri: str) -> int:
        """Index writes of every file but `uri` so far (a generation, compared for equality)."""
        return self._writes - self._own_writes.get(uri, 0)

    def _wrote(self, uri: str) -> None:
        # The worker and the walk's thread both write.
        with self._writes_lock:
            self._writes += 1
            self._own_writes[uri] = self._own_writes.get(uri, 0) + 1

    def store(
        self, uri, language, functions, vectors, keys, fingerprint: str, edited: bool = False
    ) -> None:
        """Index a file's functions with their similarity vectors (`similar.vectors_of`) and
        clone keys, capped for generated files. `edited`: an open document, rewritten in place
        by the rows that changed."""
        assert self.index is not None
        self._wrote(uri)
        write = self.index.update_file if edited else self.index.replace_file
        write(uri, index_entries(uri, language, functions, vectors, keys, fingerprint))

    def remove(self, uri: str) -> None:
        """Drop a file's rows (deleted, unreadable or refused)."""
        if self.index is not None:
            self._wrote(uri)
            self.index.remove_file(uri)

    # -- the walk -------------------------------------------------------------------------
    def start(
        self,
        progress: Callable[[int, int, str], None] | None = None,
        done: Callable[[int], None] | None = None,
    ) -> None:
        """Embed every source file of the workspace in the background; cancellable. A walk
        already running is cancelled first."""
        if self.root is None or self.index is None:
            return
        if self._thread is not None and self._thread.is_alive():
            self._cancel.set()
            self._thread.join(timeout=5)
        self._cancel = threading.Event()
        self._thread = threading.Thread(
            target=self._loop,
            args=(self._cancel, progress, done),
            name="alpine-indexer",
            daemon=True,
        )
        self._thread.start()

    def cancel(self) -> None:
        """Stop the walk (what it stored stays)."""
        self._cancel.set()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the walk's thread to end; True once none is running."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def _loop(self, cancel: threading.Event, progress, done) -> None:
        deadline = time.monotonic() + WALK_WAIT_S
        while not self.holder.ready.wait(0.2):
            if cancel.is_set() or time.monotonic() > deadline:
                return
        if self.holder.model is None:
            return
        self.state = "running"
        try:
            self._walk(cancel, progress, done)
        except Exception:  # the state must not stay "running" with nothing being indexed
            log.exception("workspace indexing stopped by an error")
            self.stats.add("errors")
            self.state = "done"

    def _unreadable(self, directory: str, e: OSError) -> None:
        if not self.stats.counters.get("dirs_unreadable"):
            log.warning("cannot read %s (%s); skipped (counted in dirs_unreadable)", directory, e)
        self.stats.add("dirs_unreadable")

    def _walk(self, cancel: threading.Event, progress, done) -> None:
        assert self.root is not None and self.index is not None and self.holder.model
        model = self.holder.model
        settings = self._settings()
        files = list(
            iter_source_files(
                self.root, settings.max_file_size, settings.languages, self._unreadable
            )
        )
        known = self.index.files(model.fingerprint)
        self.index.preload(model.fingerprint, model.embedding_dim)
        seen = set()
        n = 0
        for i, path in enumerate(files):
            if cancel.is_set():
                log.info("workspace indexing cancelled after %d files", i)
                break
            uri = path.resolve().as_uri()
            seen.add(uri)
            if progress:
                progress(i, len(files), path.name)
            if uri in {index_uri(u) for u in self._open_uris()}:
                continue  # open documents are indexed by their own analysis
            try:
                n += self.worker.run(self._steps(path, uri, known.get(uri), cancel), INDEX)
            except Stopped:
                cancel.set()  # the engine stopped
                break
            except Exception:
                log.exception("indexing %s failed", path)
                self.stats.add("errors")
        else:
            for uri in set(known) - seen:  # files deleted while the server was away
                self.remove(uri)
        self.state = "cancelled" if cancel.is_set() else "done"
        if done:
            done(n)

    # -- one file ---------------------------------------------------------------------------
    def index_file(self, path: Path, uri: str, known_hashes: set[str] | None = None) -> int:
        """(Re)index one file from disk, on the worker (waits for it). Returns the number of
        functions embedded anew."""
        return self.worker.run(self._steps(path, uri, known_hashes), OTHER)

    def reindex_file(self, path: Path, uri: str) -> None:
        """Re-index a file changed on disk, then re-analyse the open documents (their hints
        may change): queued behind edits and the workspace index; returns at once."""

        def job() -> Generator[None, None, None]:
            yield from self._steps(path, uri)
            self._reanalyze()

        self.worker.submit(job(), OTHER)

    def forget_file(self, uri: str) -> None:
        """A file deleted on disk: its rows go, and hints that pointed at it."""
        if self.index is not None:
            self.remove(uri)
            self._reanalyze()

    def _chunk(self, functions: list[Function], cap: int) -> int:
        """How many of `functions` the next index step scores (1 to 16), by the model's time
        per padded character (a batch costs its size times its longest text, truncated at
        `cap`): the step must end before the next analysis is due, and within a debounce, so
        that an edit arriving during it finds the worker free when its debounce ends (16
        functions take 0.6 s on a busy 2-core machine). With a short debounce an edit waits
        for one step of about INDEX_STEP_S at most."""
        per_char = self._s_per_char
        if per_char <= 0:
            return 1  # the first step measures
        debounce = max(self._settings().debounce_ms / 1000, INDEX_STEP_S)
        budget = 0.6 * min(self.worker.time_left(), debounce) / per_char  # in padded chars
        longest = 0
        for k, f in enumerate(functions[:INDEX_CHUNK]):
            longest = max(longest, min(len(f.text), cap))
            if (k + 1) * longest > budget:
                return max(1, k)
        return min(INDEX_CHUNK, len(functions)) or 1

    def _steps(
        self,
        path: Path,
        uri: str,
        known_hashes: set[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> Generator[None, None, int]:
        """Index one file, as worker steps: read and parse, then each chunk of functions,
        then clone keys and the store. Returns the number of functions embedded anew (0 when
        cancelled: the file is left as it was)."""
        assert self.index is not None
        model = self.holder.model
        if model is None:
            return 0
        settings = self._settings()
        try:  # regular, inside the workspace, under the limit: checked on the descriptor
            data = read_source_file(path, settings.max_file_size, self.root)
        except OSError as e:
            log.debug("not indexed: %s", e)
            self.remove(uri)
            return 0
        if refusal(data, len(data), settings.max_file_size):
            self.remove(uri)
            return 0
        text = data.decode("utf-8", errors="replace")
        language = language_for(str(path))
        if language is None:
            return 0
        functions = extract_functions(text, language)
        if known_hashes is not None and {f.hash for f in functions} == known_hashes:
            # Unchanged since the last run: its cached scores still count towards the budget.
            fp = self.scorer.fingerprint() or model.fingerprint
            found = self.cache.get_many(fp, language, list(known_hashes))
            self.pool.set_file(uri, {h: s.probability for h, s in found.items()})
            return 0
        before = self.stats.counters["functions_scored"]
        scores: list[FunctionScore] = []
        cap = 4 * getattr(model, "max_tokens", 512)  # characters the model reads, about
        i = 0
        while i < len(functions):
            yield  # an analysis that is due goes first
            if cancel is not None and cancel.is_set():
                return 0
            part = functions[i : i + self._chunk(functions[i:], cap)]
            i += len(part)
            t0 = time.perf_counter()
            n0 = self.stats.counters["functions_scored"]
            scores += self.scorer.score(part, language) or []
            fresh = self.stats.counters["functions_scored"] - n0
            if fresh:  # a running average of the model's time per padded character
                padded = fresh * max(min(len(f.text), cap) for f in part)
                per_char = (time.perf_counter() - t0) / padded
                old = self._s_per_char
                self._s_per_char = per_char if old <= 0 else 0.8 * old + 0.2 * per_char
                # No step starts when one short function would not end before an analysis.
                self.worker.min_gap = self._s_per_char * cap / 4
        if len(scores) != len(functions):
            return 0
        yield
        keys = self.clone_keys.many(functions, language)
        vectors = vectors_of(model, scores, language)
        self.store(uri, language, functions, vectors, keys, model.fingerprint)
        self.pool.set_file(
            uri, {f.hash: s.probability for f, s in zip(functions, scores, strict=True)}
        )
        fresh = self.stats.counters["functions_scored"] - before
        self.stats.add("embeddings_computed", fresh)
        self.stats.add("files_indexed")
        return fresh


@functools.lru_cache(maxsize=4096)
def index_uri(uri: str) -> str:
    """One spelling per file in the index, whether it came from a client or the disk walk
    (clients differ in percent-encoding and may name a file through a symlink)."""
    if not uri.startswith("file:"):
        return uri
    from urllib.parse import unquote, urlparse

    try:
        return Path(unquote(urlparse(uri).path)).resolve().as_uri()
    except (OSError, ValueError):
        return uri
