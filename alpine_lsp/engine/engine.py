"""What to score when: open documents, debounced analysis, the score cache and the index.

The engine knows nothing of LSP. The server feeds it text changes (code-point positions) and
receives `DocumentResult`s through a callback, on the worker thread. Invariants:
- only functions whose text hash is not cached for the current model are scored;
- the changed functions of a document go through the model together;
- a result whose document version has moved on is dropped, never published.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..index import (
    IndexEntry,
    IndexStore,
    Match,
    index_db_path,
    iter_source_files,
    read_source_file,
)
from ..model.score import FunctionScore
from ..parsing import Function, ParsedDocument, extract_functions, file_ignored, language_for
from .adapter import AdapterWatcher
from .cache import ScoreCache, default_cache_path, usable_cache_dir
from .memory import release_memory
from .models import ModelHolder
from .policy import ScorePool, flagged, language_off, language_table
from .positions import clamp_position, lsp_lines
from .rawtext import splice as _splice
from .scheduler import Debouncer
from .settings import Settings
from .similar import KeyCache, capped, find, thresholds
from .stats import Stats

log = logging.getLogger(__name__)
# A client's JSON may carry unpaired \\udXXX escapes; the tokenizer refuses such strings.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class FunctionResult:
    function: Function
    score: FunctionScore | None
    flagged: bool
    similar: list[Match] = field(default_factory=list)


@dataclass
class DocumentResult:
    uri: str
    version: int | None
    language: str | None
    functions: list[FunctionResult]
    model_name: str | None
    threshold: float | None
    skipped: str | None = None  # why the document was not analysed, for the log and hover
    defect_off: str | None = None  # why this language gets no defect hints (policy.py)
    file_ignored: bool = False
    scored: bool = False  # False while the model is not ready


@dataclass
class DocumentState:
    uri: str
    language: str | None
    version: int | None
    parsed: ParsedDocument | None
    skipped: str | None
    changed_at: float = 0.0
    result: DocumentResult | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    raw: str | None = None  # the text while it is not parsed (skipped), so edits still apply


CLOSE_TRIM_S = 0.5  # after a close, the worker trims the heap (closing many: after the last)
# Entries the in-memory caches keep beyond the open documents' functions. Every edit adds the
# text of a new version to both; what it replaced is dead weight, so a fixed 2,000 scores
# (~7 KB each) and 20,000 clone keys (~1 KB) grew the server steadily (bench soak, issue 20).
CACHE_MARGIN = 256
CACHE_MARGIN_NO_DB = 2000  # without a cache directory the LRU is the only score store
MAX_LINE_CHARS = 100_000  # a 45K-character bundle line is still analysed
BUDGET = "budget: "  # skip reasons that are per-document budgets get an Information diagnostic


def skip_reason(text: str, settings: Settings, language: str | None) -> str | None:
    if language is None:
        return "no grammar for this language"
    if settings.languages is not None and language not in settings.languages:
        return f"{language} is not in alpine.languages"
    n, limit = len(text), settings.max_file_size
    # A code point is 1-4 bytes: encode only when the length alone cannot tell (per keystroke).
    if n > limit or (n * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit):
        return f"file larger than alpine.maxFileSize ({settings.max_file_size} bytes)"
    if "\x00" in text[:8192]:
        return "binary file (NUL bytes)"
    # Budget: minified or generated code, where per-edit work grows with the line.
    if n > MAX_LINE_CHARS and max(map(len, text.split("\n"))) > MAX_LINE_CHARS:
        return f"{BUDGET}a line longer than {MAX_LINE_CHARS} characters (minified code?)"
    return None


class Scorer:
    """Model + cache: scores functions, consulting the cache first."""

    def __init__(self, holder: ModelHolder, cache: ScoreCache, stats: Stats) -> None:
        self.holder = holder
        self.cache = cache
        self.stats = stats
        self.adapters: AdapterWatcher | None = None  # the workspace's adapter, once started
        # One caller at a time: a second caller then finds the first one's results cached
        # instead of scoring the same functions again.
        self._lock = threading.Lock()

    def score(self, functions: list[Function], language: str) -> list[FunctionScore] | None:
        with self._lock:
            return self._score(functions, language)

    def _score(self, functions: list[Function], language: str) -> list[FunctionScore] | None:
        model = self.holder.model
        if model is None:
            return None
        adapter = self.adapters.current(model) if self.adapters is not None else None
        fp = adapter.fingerprint(model.fingerprint) if adapter else model.fingerprint
        hashes = [f.hash for f in functions]
        found = self.cache.get_many(fp, language, hashes)
        self.stats.add("cache_hits", sum(1 for h in hashes if h in found))
        todo: dict[str, str] = {}
        for f in functions:
            if f.hash not in found:
                todo.setdefault(f.hash, _LONE_SURROGATE.sub("\ufffd", f.text))
        if todo:
            t0 = time.perf_counter()
            before = model.forwards
            scores = model.score(list(todo.values()), language, explain=True)
            if adapter is not None:
                scores = adapter.apply(scores, list(todo.values()))
            self.stats.add("model_forwards", model.forwards - before)
            self.stats.add("functions_scored", len(todo))
            self.stats.latency("score_ms", (time.perf_counter() - t0) * 1000)
            fresh = dict(zip(todo.keys(), scores, strict=True))
            self.cache.put_many(fp, language, fresh)
            found.update(fresh)
        return [found[h] for h in hashes]


class Engine:
    def __init__(
        self,
        settings: Settings | None = None,
        on_result: Callable[[DocumentResult], None] | None = None,
        on_model: Callable[[ModelHolder], None] | None = None,
        cache_path: Path | bool | None = True,
    ) -> None:
        self.settings = settings or Settings()
        self.stats = Stats()
        self.holder = ModelHolder()
        if cache_path is True:
            cache_path = default_cache_path()  # None (in memory) without a usable directory
        self.cache = ScoreCache(cache_path or None)
        self.scorer = Scorer(self.holder, self.cache, self.stats)
        self.docs: dict[str, DocumentState] = {}
        self._docs_lock = threading.Lock()
        self.on_result = on_result or (lambda r: None)
        self.on_model = on_model or (lambda h: None)
        self.index: IndexStore | None = None
        self.clone_keys = KeyCache()
        self.root: Path | None = None
        self.worker = Debouncer(self._analyze)
        self.indexer_cancel = threading.Event()
        self._indexer: threading.Thread | None = None
        self.index_state = "idle"  # idle, running, done, cancelled
        self.pool = ScorePool()  # the workspace's scores, for alpine.flagBudget
        self._languages_logged: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, root: Path | None) -> None:
        self.root = root
        self.scorer.adapters = AdapterWatcher(root)
        try:
            # No usable cache directory: default_cache_path() has warned once; no index.
            usable = usable_cache_dir() is not None
            self.index = IndexStore(index_db_path(root or Path.cwd())) if usable else None
        except Exception:  # the index is optional: hints go, defect scoring stays
            log.exception("similar-code index unavailable")
            self.index = None
        self.load_model()

    def load_model(self) -> None:
        self.holder.load_async(self.settings, self._model_done)

    def _model_done(self, holder: ModelHolder) -> None:
        self.on_model(holder)
        if holder.state == "ready":
            self.reanalyze_all(delay_s=0)

    def stop(self) -> None:
        self.indexer_cancel.set()
        self.worker.stop()
        self.cache.close()
        if self.index is not None:
            self.index.close()

    def update_settings(self, settings: Settings) -> None:
        old = self.settings
        self.settings = settings
        for state in list(self.docs.values()):  # alpine.languages, alpine.maxFileSize
            with state.lock:
                self._recheck_skip(state)
        if settings.model_key() != old.model_key():
            self.load_model()  # re-analysis follows when it is ready
        else:
            self.reanalyze_all(delay_s=0)

    # -- documents --------------------------------------------------------------------------
    def open(self, uri: str, text: str, language_id: str | None, version: int | None) -> None:
        language = language_for(uri, language_id)
        reason = skip_reason(text, self.settings, language)
        parsed = ParsedDocument(text, language) if reason is None and language else None
        if reason:
            log.info("%s: not analysed: %s", uri, reason)
            self.stats.add("files_skipped")
        state = DocumentState(uri, language, version, parsed, reason, time.perf_counter())
        state.raw = text if parsed is None else None
        with self._docs_lock:
            self.docs[uri] = state
        self.worker.schedule(uri, 0)

    def change(
        self,
        uri: str,
        version: int | None,
        edits: Iterable[tuple[tuple[int, int, int, int] | None, str]],
        encoding: str = "utf-32",
        full_text: str | None = None,
    ) -> None:
        """Apply range edits in order: (start_line, start_char, end_line, end_char) counted in
        `encoding` units (the client's), or None for a full replacement. Out-of-range positions
        clamp to the document. `full_text`, when given, wins over our own result."""
        state = self.docs.get(uri)
        if state is None:
            if full_text is not None:
                self.open(uri, full_text, None, version)
            return
        with state.lock:
            state.version = version
            state.changed_at = time.perf_counter()
            if state.parsed is None:
                # Skipped documents keep their text: an edit can make them analysable.
                text = state.raw or ""
                for rng, new in edits:
                    text = new if rng is None else _splice(text, rng, new, encoding)
                if full_text is not None:
                    text = full_text
                state.raw = text
            else:
                for rng, text in edits:
                    if rng is None:
                        state.parsed.replace_text(text)
                        continue
                    lines = lsp_lines(state.parsed.text)
                    sl, sc = clamp_position(lines, rng[0], rng[1], encoding)
                    el, ec = clamp_position(lines, rng[2], rng[3], encoding)
                    if (el, ec) < (sl, sc):
                        sl, sc, el, ec = el, ec, sl, sc
                    state.parsed.apply_change(sl, sc, el, ec, text)
                if full_text is not None and state.parsed.text != full_text:
                    log.warning("%s: edit stream diverged from the client; resynchronising", uri)
                    state.parsed.replace_text(full_text)
            self._recheck_skip(state)
        self.worker.schedule(uri, self.settings.debounce_ms / 1000)

    def _recheck_skip(self, state: DocumentState) -> None:
        """Parse or skip a document by its current text and the settings (lock held): whether
        it is analysed depends on them, not on its history."""
        text = state.parsed.text if state.parsed is not None else state.raw or ""
        reason = skip_reason(text, self.settings, state.language)
        if reason and state.parsed is not None:
            log.info("%s: not analysed: %s", state.uri, reason)
            state.parsed, state.raw = None, text
        elif reason is None and state.parsed is None and state.language:
            state.parsed, state.raw = ParsedDocument(text, state.language), None
        state.skipped = reason

    def close(self, uri: str) -> None:
        with self._docs_lock:
            self.docs.pop(uri, None)
        # In place of its analysis: once the queue is empty the worker hands what the
        # document held (text, tree, results) back to the system (_analyze, _idle_trim).
        self.worker.schedule(uri, CLOSE_TRIM_S)

    def reanalyze_all(self, delay_s: float = 0.0) -> None:
        for uri in list(self.docs):
            self.worker.schedule(uri, delay_s)

    def result(self, uri: str) -> DocumentResult | None:
        state = self.docs.get(uri)
        return state.result if state else None

    # -- analysis (worker thread) -----------------------------------------------------------
    def _fit_caches(self, uri: str | None = None, n_current: int = 0) -> None:
        """Size the score LRU and the clone-key cache to the open documents' functions (those
        of `uri` counted as `n_current`) plus a margin; evicts at once when they shrink."""
        with self._docs_lock:
            states = [s for u, s in self.docs.items() if u != uri]
        n = n_current + sum(len(s.result.functions) for s in states if s.result is not None)
        margin = CACHE_MARGIN if self.cache.db_path is not None else CACHE_MARGIN_NO_DB
        self.cache.resize(margin + n)
        self.clone_keys.resize(CACHE_MARGIN + n)

    def _analyze(self, uri: str) -> None:
        state = self.docs.get(uri)
        if state is None:  # closed: what it kept in the caches goes too
            self._fit_caches()
            self._idle_trim()
            return
        t0 = time.perf_counter()
        with state.lock:
            version = state.version
            changed_at = state.changed_at
            skipped = state.skipped
            functions = state.parsed.functions() if state.parsed is not None else []
            ignored_file = file_ignored(state.parsed.text) if state.parsed is not None else False
        self.stats.add("analyses")
        self.stats.add("functions_parsed", len(functions))
        self._fit_caches(uri, len(functions))
        model = self.holder.model
        result = DocumentResult(
            uri=uri,
            version=version,
            language=state.language,
            functions=[],
            model_name=model.name if model else None,
            threshold=self.threshold(),
            skipped=skipped,
            file_ignored=ignored_file,
        )
        scores = None
        failed = False
        if functions and not skipped:
            try:
                scores = self.scorer.score(functions, state.language or "")
            except Exception:
                log.exception("%s: scoring failed", uri)
                self.stats.add("errors")
                failed = True  # final for this version: waiting would not bring scores
        if state.version != version or self.docs.get(uri) is not state:
            self.stats.add("results_dropped")
            self._idle_trim()
            return
        result.scored = scores is not None or failed or not functions or skipped is not None
        similar = self._similar(uri, state.language, functions, scores)
        threshold = result.threshold if result.threshold is not None else 1.1
        result.defect_off = self.defect_off(state.language)
        cutoff = self._pool_cutoff(uri, functions, scores)
        for i, f in enumerate(functions):
            s = scores[i] if scores is not None else None
            flag = bool(
                s is not None
                and not ignored_file
                and not f.ignored
                and result.defect_off is None
                and flagged(s.probability, threshold, cutoff)
            )
            result.functions.append(FunctionResult(f, s, flag, similar[i]))
        state.result = result
        now = time.perf_counter()
        self.stats.latency("analysis_ms", (now - t0) * 1000)
        self.stats.latency("edit_to_result_ms", (now - changed_at) * 1000)
        self.on_result(result)
        self._idle_trim()

    def _idle_trim(self) -> None:
        # After a burst, not after every document: the trim costs a few ms of the worker.
        if self.worker.pending() == 0:
            release_memory()

    def _pool_cutoff(self, uri: str, functions: list[Function], scores) -> float:
        if scores is not None:
            self.pool.set_file(
                index_uri(uri),
                {f.hash: s.probability for f, s in zip(functions, scores, strict=True)},
            )
        return self.pool.cutoff(self.settings.flag_budget)

    def defect_off(self, language: str | None) -> str | None:
        """Why `language` gets no defect hints with this model and settings (logged once)."""
        model = self.holder.model
        if model is None:
            return None
        reason = language_off(language_table(model.path), language, self.settings.languages)
        if reason and language not in self._languages_logged:
            self._languages_logged.add(language or "")
            log.info("%s", reason)
        return reason

    def threshold(self) -> float | None:
        if self.settings.threshold is not None:
            return self.settings.threshold
        model = self.holder.model
        return model.threshold if model else None

    def similarity_threshold(self) -> float | None:
        if self.settings.similarity.threshold is not None:
            return self.settings.similarity.threshold
        model = self.holder.model
        return model.similarity_threshold if model else None

    def _similar(
        self,
        uri: str,
        language: str | None,
        functions: list[Function],
        scores: list[FunctionScore] | None,
    ) -> list[list[Match]]:
        empty: list[list[Match]] = [[] for _ in functions]
        model = self.holder.model
        if self.index is None or scores is None or model is None or language is None:
            return empty
        uri = index_uri(uri)
        try:
            keys = self.clone_keys.many(functions, language)
            self._store(uri, language, functions, scores, keys, model.fingerprint)
            sim = self.settings.similarity
            if not sim.enabled or sim.max_results == 0:
                return empty
            limits = thresholds(model, language, sim.threshold)
            return find(
                self.index,
                uri,
                language,
                functions,
                keys,
                [s.embedding for s in scores],
                model.fingerprint,
                limits,
                sim.max_results,
            )
        except Exception:
            log.exception("similar-code lookup failed for %s", uri)
            self.stats.add("errors")
            return empty

    # -- workspace index (its own thread) ---------------------------------------------------
    def index_workspace(
        self,
        progress: Callable[[int, int, str], None] | None = None,
        done: Callable[[int], None] | None = None,
    ) -> None:
        """Embed every source file of the workspace in the background; cancellable."""
        if self.root is None or self.index is None:
            return
        if self._indexer is not None and self._indexer.is_alive():
            self.indexer_cancel.set()
            self._indexer.join(timeout=5)
        self.indexer_cancel = threading.Event()
        self._indexer = threading.Thread(
            target=self._index_loop,
            args=(self.indexer_cancel, progress, done),
            name="alpine-indexer",
            daemon=True,
        )
        self._indexer.start()

    def _index_loop(self, cancel: threading.Event, progress, done) -> None:
        assert self.root is not None and self.index is not None
        if not self.holder.ready.wait(timeout=600) or self.holder.model is None:
            return
        self.index_state = "running"
        try:
            self._index_all(cancel, progress, done)
        except Exception:  # the state must not stay "running" with nothing being indexed
            log.exception("workspace indexing stopped by an error")
            self.stats.add("errors")
            self.index_state = "done"

    def _unreadable(self, directory: str, e: OSError) -> None:
        if not self.stats.counters.get("dirs_unreadable"):
            log.warning("cannot read %s (%s); skipped (counted in dirs_unreadable)", directory, e)
        self.stats.add("dirs_unreadable")

    def _index_all(self, cancel: threading.Event, progress, done) -> None:
        assert self.root is not None and self.index is not None and self.holder.model
        model = self.holder.model
        settings = self.settings
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
            if uri in {index_uri(u) for u in self.docs}:
                continue  # open documents are indexed by their own analysis
            try:
                n += self.index_file(path, uri, known.get(uri))
            except Exception:
                log.exception("indexing %s failed", path)
                self.stats.add("errors")
        else:
            for uri in set(known) - seen:  # files deleted while the server was away
                self.index.remove_file(uri)
        self.index_state = "cancelled" if cancel.is_set() else "done"
        if done:
            done(n)

    def index_file(self, path: Path, uri: str, known_hashes: set[str] | None = None) -> int:
        """(Re)index one file from disk. Returns the number of functions embedded anew."""
        assert self.index is not None
        model = self.holder.model
        if model is None:
            return 0
        try:  # regular, inside the workspace, under the limit: checked on the descriptor
            data = read_source_file(path, self.settings.max_file_size, self.root)
        except OSError as e:
            log.debug("not indexed: %s", e)
            self.index.remove_file(uri)
            return 0
        if b"\x00" in data[:8192] or len(data) > self.settings.max_file_size:
            self.index.remove_file(uri)
            return 0
        text = data.decode("utf-8", errors="replace")
        language = language_for(str(path))
        if language is None:
            return 0
        functions = extract_functions(text, language)
        if known_hashes is not None and {f.hash for f in functions} == known_hashes:
            # Unchanged since the last run: its cached scores still count towards the budget.
            found = self.cache.get_many(model.fingerprint, language, list(known_hashes))
            self.pool.set_file(uri, {h: s.probability for h, s in found.items()})
            return 0
        before = self.stats.counters["functions_scored"]
        scores: list[FunctionScore] = []
        # Small chunks, so an edit's analysis never waits long behind background indexing.
        for i in range(0, len(functions), 16):
            scores += self.scorer.score(functions[i : i + 16], language) or []
        if len(scores) != len(functions):
            return 0
        keys = self.clone_keys.many(functions, language)
        self._store(uri, language, functions, scores, keys, model.fingerprint)
        self.pool.set_file(
            uri, {f.hash: s.probability for f, s in zip(functions, scores, strict=True)}
        )
        fresh = self.stats.counters["functions_scored"] - before
        self.stats.add("embeddings_computed", fresh)
        self.stats.add("files_indexed")
        return fresh

    def _store(self, uri, language, functions, scores, keys, fingerprint: str) -> None:
        """Index a file's functions with their clone keys, capped for generated files."""
        assert self.index is not None
        keep = capped(uri, keys)
        self.index.replace_file(
            uri,
            [
                IndexEntry.from_function(uri, language, f, fingerprint, s.embedding, k)
                for f, s, k, ok in zip(functions, scores, keys, keep, strict=True)
                if ok
            ],
        )

    def forget_file(self, uri: str) -> None:
        if self.index is not None:
            self.index.remove_file(index_uri(uri))
            self.reanalyze_all()  # hints that pointed at the file go


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
