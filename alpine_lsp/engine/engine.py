"""What to score when: open documents, debounced analysis, the score cache and the index.

The engine knows nothing of LSP. The server feeds it text changes (in the client's position
encoding; `documents.py` applies them) and receives `DocumentResult`s through a callback, on
the worker thread. Invariants:
- only functions whose text hash is not cached for the current model are scored;
- a document's unscored functions are scored in calls of SCORE_CHUNK (the model batches
  them); a pass stops after ANALYSIS_BUDGET_S of model time and the rest is published as
  pending, then scored by the next pass;
- a result whose document version has moved on is dropped, never published.
"""

from __future__ import annotations

import functools
import gc
import logging
import operator
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..index import (
    IndexStore,
    Match,
    index_db_path,
)
from ..model.score import FunctionScore
from ..parsing import Function, file_ignored
from .adapter import AdapterWatcher
from .cache import ScoreCache, default_cache_path, usable_cache_dir
from .documents import DocumentState, DocumentStore, Edits, function_budget
from .indexer import WorkspaceIndexer, index_uri
from .memory import release_memory, settle_heap, unsettle_heap
from .models import ModelHolder
from .policy import (
    ScorePool,
    file_may_flag,
    flag_bar,
    flags_function,
    language_off,
    language_table,
)
from .positions import lsp_lines
from .scheduler import INDEX, OTHER, Scheduler, Stopped
from .settings import Settings
from .similar import MAX_PER_FILE, KeyCache, find, thresholds, vectors_of
from .stats import Stats

log = logging.getLogger(__name__)
T = TypeVar("T")
# A client's JSON may carry unpaired \\udXXX escapes; the tokenizer refuses such strings.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(slots=True)
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
    pending: int = 0  # functions the model has not reached yet (over the analysis budget)
    # The text this result was computed from: positions in it are converted against this, not
    # against the document's current text, which may be newer.
    text: str = ""

    @functools.cached_property
    def lines(self) -> list[str]:
        """The text's lines, split the way LSP counts them (once per result)."""
        return lsp_lines(self.text)


_flag = flags_function  # the one rule, shared with check (policy.py)


def _function_result(
    f: Function, s: FunctionScore | None, sim: list[Match], bar: float, may_flag: bool
) -> FunctionResult:
    return FunctionResult(f, s, _flag(f, s, bar, may_flag), sim)


_hash_of = operator.attrgetter("hash")
_function_of = operator.attrgetter("function")
_probability_of = operator.attrgetter("probability")


@dataclass
class _Memo:
    """What the last analysis of a document found per function text, for the next one: an
    edit to one of 20,000 functions then costs one cache miss and one similar-code lookup,
    not 20,000 of each."""

    fingerprint: str  # scores hold for this model (and adapter)
    scores: dict[str, FunctionScore]  # by function hash
    similar_key: tuple | None = None  # model, settings, thresholds the matches were found with
    others_gen: int = -1  # index writes by other files when the matches were found
    similar: dict[str, list[Match]] = field(default_factory=dict)
    # The last complete analysis, aligned with its functions (None when it was not complete).
    # The next one keeps the entries of the functions an edit left alone (the same objects at
    # the same places) by slicing these lists, and works only on the functions between.
    functions: list[Function] | None = None
    hashes: list[str] | None = None
    aligned: list[FunctionScore] | None = None
    keys: list | None = None  # clone keys (None: not computed)
    hints: list[list[Match]] | None = None  # None: not valid for reuse
    results: list[FunctionResult] | None = None
    counts: Counter[str] | None = None  # occurrences of each hash (for the flag-budget pool)
    bar: float | None = None  # the flag bar the results were computed with
    may_flag: bool = False
    own_writes: int = -1  # this document's index writes after its last store


@dataclass(slots=True)
class _Splice:
    """How an analysis's functions relate to the last complete one's: those in [p, n - s)
    are new texts; the p before and the s after have the texts of last time, in order
    (the same objects, or moved by an edit above them)."""

    p: int
    s: int
    n_old: int  # functions last time
    n: int  # functions now

    def keep(self, old: list, middle: list) -> list:
        """An aligned list of last time with its middle replaced by `middle` (C-speed)."""
        return old[: self.p] + middle + old[self.n_old - self.s :]

    def old_middle(self, old: list) -> list:
        return old[self.p : self.n_old - self.s]

    def middle(self, new: list) -> list:
        return new[self.p : self.n - self.s]


def _splice(old: list[str], new: list[str]) -> _Splice:
    """The ends two lists of function hashes share (C-speed comparisons)."""
    n = min(len(old), len(new))
    same = list(map(operator.eq, old[:n], new[:n]))
    p = same.index(False) if False in same else n
    rest = n - p
    same = list(map(operator.eq, old[::-1][:rest], new[::-1][:rest]))
    s = same.index(False) if False in same else rest
    return _Splice(p, s, len(old), len(new))


def _replace_middle(
    by_hash: dict, sp: _Splice, old_hashes: list[str] | None, functions: list[Function], values
) -> dict:
    """A per-hash memo with the splice's old middle replaced by the new one (in place). It
    holds the document's texts only, never those edits replaced: bounded by the document."""
    if old_hashes is None or len(by_hash) > len(functions) + 16:
        return dict(zip(map(_hash_of, functions), values, strict=True))
    for h in sp.old_middle(old_hashes):
        by_hash.pop(h, None)  # a copy elsewhere in the file is only looked up again
    by_hash.update(zip(map(_hash_of, sp.middle(functions)), sp.middle(values), strict=True))
    return by_hash


def _moved(old: list[Function], new: list[Function]) -> list[int]:
    """Where two aligned function lists hold different objects (moved, or ignored anew)."""
    same = list(map(operator.is_, old, new))
    if False not in same:
        return []
    return [i for i, x in enumerate(same) if not x]


@dataclass(frozen=True, slots=True)
class ModelState:
    """The model holder as features see it: state is idle, loading, ready or failed."""

    state: str
    error: str | None = None
    load_seconds: float | None = None
    name: str | None = None  # of the loaded model (None unless ready)
    device: str | None = None


@dataclass(frozen=True, slots=True)
class DocumentSnapshot:
    """An open document as the server's features read it (`Engine.snapshot`): taken at once,
    never changed. `result` is the latest published analysis, computed from its own text
    (`result.text`, `result.lines`), which may be older than `version`."""

    uri: str
    version: int | None  # the document's current version
    language: str | None
    analysed: bool  # parsed (False: skipped by a budget or an unknown language)
    result: DocumentResult | None
    model: ModelState

    @property
    def lines(self) -> list[str]:
        """The result's lines (what its positions count in); empty without a result."""
        return self.result.lines if self.result is not None else []


CLOSE_TRIM_S = 0.5  # after a close, the worker trims the heap (closing many: after the last)
# Entries the in-memory caches keep beyond the open documents' functions. Every edit adds the
# text of a new version to both; what it replaced is dead weight, so a fixed 2,000 scores
# (~7 KB each) and 20,000 clone keys (~1 KB) grew the server steadily (bench soak, issue 20).
CACHE_MARGIN = 256
CACHE_MARGIN_NO_DB = 2000  # without a cache directory the LRU is the only score store
# Budget: the model time one analysis may take. A file opened with thousands of functions is
# scored in passes of about this long, each published (the rest pending), so the worker can
# serve other documents' edits between them (each pass also costs a re-analysis of the whole
# file, ~0.2 s at 20,000 functions: a shorter pass would spend too much of the time on that).
ANALYSIS_BUDGET_S = 2.0
SCORE_CHUNK = 32
_NO_HINTS = ("no hints",)  # a memo's similar_key when no function got hints


class Scorer:
    """Model + cache: scores functions, consulting the cache first."""

    def __init__(self, holder: ModelHolder, cache: ScoreCache, stats: Stats) -> None:
        self.holder = holder
        self.cache = cache
        self.stats = stats
        self.adapters: AdapterWatcher | None = None  # the workspace's adapter, once started
        # Ranked lines in the forward pass: off with lineHints off (nothing would show them).
        # A callable: the engine's settings may be replaced without telling the scorer.
        self.lines_wanted: Callable[[], bool] = lambda: True
        # One caller at a time: a second caller then finds the first one's results cached
        # instead of scoring the same functions again.
        self._lock = threading.Lock()
        # The threads that called score(): in the server, the worker alone (alpine/stats).
        self.threads: set[str] = set()

    @property
    def track_lines(self) -> bool:
        return self.lines_wanted()

    def fingerprint(self) -> str | None:
        """What a score depends on now: the model's fingerprint, the adapter's if any, and
        whether the scores carry ranked lines."""
        model = self.holder.model
        return self._fingerprint(model, self._adapter(model)) if model is not None else None

    def _adapter(self, model):
        return self.adapters.current(model) if self.adapters is not None else None

    def _fingerprint(self, model, adapter) -> str:
        fp = adapter.fingerprint(model.fingerprint) if adapter else model.fingerprint
        return fp if self.track_lines else fp + "|no-lines"

    def score(
        self,
        functions: list[Function],
        language: str,
        known: tuple[str, dict[str, FunctionScore]] | None = None,
        budget_s: float | None = None,
    ) -> list[FunctionScore] | None:
        """Scores of `functions`; `known` = (fingerprint, scores by hash) already at hand.
        With `budget_s`, the model stops after about that long: the functions it did not
        reach are None (the caller scores them in a later pass)."""
        with self._lock:
            self.threads.add(threading.current_thread().name)
            model = self.holder.model
            if model is None:
                return None
            adapter = self._adapter(model)
            fp = self._fingerprint(model, adapter)
            hashes = [f.hash for f in functions]
            held = known[1] if known is not None and known[0] == fp else {}
            # One pass over a 20,000-function file's hashes, not three: this runs per edit.
            found: dict[str, FunctionScore] = {}
            missing = [
                h for h in hashes if (sc := held.get(h)) is None or found.setdefault(h, sc) is None
            ]
            if missing:
                found.update(self.cache.get_many(fp, language, missing))
            self.stats.add("cache_hits", len(hashes) - sum(1 for h in missing if h not in found))
            todo: dict[str, str] = {}
            for f in functions:
                if f.hash not in found:
                    todo.setdefault(f.hash, _LONE_SURROGATE.sub("\ufffd", f.text))
            if todo:
                t0 = time.perf_counter()
                before = model.forwards
                keys, codes = list(todo.keys()), list(todo.values())
                step = len(codes) if budget_s is None else SCORE_CHUNK
                scores: list[FunctionScore] = []
                for i in range(0, len(codes), step):
                    if budget_s is not None and scores and time.perf_counter() - t0 > budget_s:
                        break
                    part = codes[i : i + step]
                    scores += model.score(part, language, explain=True, lines=self.track_lines)
                if adapter is not None:
                    scores = adapter.apply(scores, codes[: len(scores)])
                self.stats.add("model_forwards", model.forwards - before)
                self.stats.add("functions_scored", len(scores))
                self.stats.latency("score_ms", (time.perf_counter() - t0) * 1000)
                fresh = dict(zip(keys[: len(scores)], scores, strict=True))
                self.cache.put_many(fp, language, fresh)
                found.update(fresh)
            return [found.get(h) for h in hashes]  # type: ignore[misc]  # None: not reached


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
        self.scorer.lines_wanted = lambda: self.settings.line_hints
        self.documents = DocumentStore(lambda: self.settings, self.stats)
        self.on_result = on_result or (lambda r: None)
        self.on_model = on_model or (lambda h: None)
        self.index: IndexStore | None = None
        self.clone_keys = KeyCache()
        self.root: Path | None = None
        # All model work (analyses, index steps, warm-up, re-indexing) on this one thread.
        self.worker = Scheduler(self._analyze)
        self.holder.run_model = self._warm_up
        self.pool = ScorePool()  # the workspace's scores, for alpine.flagBudget
        self.indexer = WorkspaceIndexer(
            holder=self.holder,
            worker=self.worker,
            scorer=self.scorer,
            cache=self.cache,
            pool=self.pool,
            clone_keys=self.clone_keys,
            stats=self.stats,
            settings=lambda: self.settings,
            open_uris=self.documents.uris,
            reanalyze=self.reanalyze_all,
        )
        self._languages_logged: set[str] = set()

    @property
    def docs(self) -> dict[str, DocumentState]:
        """The open documents' states (the store's own dict: read, never write)."""
        return self.documents.docs

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
        self.indexer.attach(root, self.index)
        self.load_model()

    def load_model(self) -> None:
        unsettle_heap()  # the model being replaced may hold cycles: let them be collected
        self.holder.load_async(self.settings, self._model_done)

    def _warm_up(self, fn: Callable[[], None]) -> None:
        # A forward like any other: on the worker (INDEX: it must not wait for the index).
        try:
            self.worker.call(fn, INDEX)
        except Stopped:
            pass

    def run_model(self, fn: Callable[[], T], priority: int = OTHER) -> T:
        """`fn()` (model work from elsewhere, e.g. `learn`'s scoring) on the worker, in turn.
        Raises scheduler.Stopped once the engine has stopped."""
        return self.worker.call(fn, priority)

    def _model_done(self, holder: ModelHolder) -> None:
        if holder.state == "ready":
            settle_heap()
        self.on_model(holder)
        if holder.state == "ready":
            self.reanalyze_all(delay_s=0)

    def stop(self) -> None:
        self.indexer.cancel()
        self.worker.stop()
        self.cache.close()
        if self.index is not None:
            self.index.close()

    def update_settings(self, settings: Settings) -> None:
        old = self.settings
        self.settings = settings
        self.documents.recheck_all()  # alpine.languages, alpine.maxFileSize
        if settings.model_key() != old.model_key():
            self.load_model()  # re-analysis follows when it is ready
        else:
            self.reanalyze_all(delay_s=0)

    # -- documents --------------------------------------------------------------------------
    def open(self, uri: str, text: str, language_id: str | None, version: int | None) -> None:
        self.documents.open(uri, text, language_id, version)
        self.worker.schedule(uri, 0)

    def change(
        self,
        uri: str,
        version: int | None,
        edits: Edits,
        encoding: str = "utf-32",
        full_text: str | None = None,
    ) -> None:
        """Apply edits to an open document (`DocumentStore.apply_changes`) and schedule its
        analysis; a change to a document that is not open opens it when `full_text` is given."""
        if not self.documents.apply_changes(uri, version, edits, encoding, full_text):
            if full_text is not None:
                self.open(uri, full_text, None, version)
            return
        self.worker.schedule(uri, self.settings.debounce_ms / 1000)

    def close(self, uri: str) -> None:
        self.documents.close(uri)
        if self.index is not None:
            self.index.forget_rows(index_uri(uri))
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
        states = self.documents.states(but=uri)
        n = n_current + sum(len(s.result.functions) for s in states if s.result is not None)
        margin = CACHE_MARGIN if self.cache.db_path is not None else CACHE_MARGIN_NO_DB
        self.cache.resize(margin + n)
        self.clone_keys.resize(CACHE_MARGIN + n)

    def _analyze(self, uri: str) -> None:
        state = self.docs.get(uri)
        if state is None:  # closed: what it kept in the caches goes too
            self._fit_caches()
            self._idle_trim(collect=True)
            return
        t0 = time.perf_counter()
        with state.lock:  # a consistent snapshot; the parse itself runs without the lock
            version = state.version
            changed_at = state.changed_at
            skipped = state.skipped
            doc = state.parsed
            snap = doc.snapshot() if doc is not None else None
        functions = doc.functions_of(snap) if doc is not None and snap is not None else []
        ignored_file = file_ignored(snap.text) if snap is not None else False
        over = None if skipped else function_budget(len(functions))
        if over:
            skipped = over
            if state.result is None or state.result.skipped != skipped:  # once, not per edit
                log.info("%s: not analysed: %s", uri, skipped)
            functions = []
        self.stats.add("analyses")
        self.stats.add("functions_parsed", len(functions))
        self._fit_caches(uri, len(functions))
        model = self.holder.model
        result = DocumentResult(
            uri=uri,
            version=version,
            text=snap.text if snap is not None else "",
            language=state.language,
            functions=[],
            model_name=model.name if model else None,
            threshold=self.threshold(),
            skipped=skipped,
            file_ignored=ignored_file,
        )
        scores = None
        failed = False
        memo = state.memo
        fp0 = self.scorer.fingerprint()
        sp: _Splice | None = None  # None: every function is worked on
        hashes = list(map(_hash_of, functions))
        if memo is not None and memo.hashes is not None and memo.fingerprint == fp0:
            sp = _splice(memo.hashes, hashes)
        if functions and not skipped:
            try:
                known = (memo.fingerprint, memo.scores) if memo is not None else None
                if sp is not None and memo is not None and memo.aligned is not None:
                    part = self.scorer.score(
                        sp.middle(functions), state.language or "", known, ANALYSIS_BUDGET_S
                    )
                    if part is not None:
                        scores = sp.keep(memo.aligned, part)
                        self.stats.add("cache_hits", sp.p + sp.s)  # served by the memo
                        if not all(part):
                            sp = None  # over the budget: the passes work on everything
                else:
                    scores = self.scorer.score(
                        functions, state.language or "", known, budget_s=ANALYSIS_BUDGET_S
                    )
            except Exception:
                log.exception("%s: scoring failed", uri)
                self.stats.add("errors")
                failed = True  # final for this version: waiting would not bring scores
        if state.version != version or self.docs.get(uri) is not state:
            self.stats.add("results_dropped")
            self._idle_trim()
            return
        everything, done = functions, None
        if scores is not None and not all(scores):  # None where the budget ran out
            # Over the budget: publish what was scored, the rest in the next pass.
            done = [i for i, sc in enumerate(scores) if sc is not None]
            result.pending = len(functions) - len(done)
            functions = [functions[i] for i in done]
            scores = [scores[i] for i in done]
            if state.result is None or not state.result.pending:
                log.info("%s: scoring %d functions in passes", uri, len(everything))
        scored = scores is not None or failed or not functions or skipped is not None
        result.scored = scored and not result.pending
        fp = self.scorer.fingerprint()
        if fp != fp0 or scores is None or skipped:
            sp = None
        before = memo if memo is not None and memo.fingerprint == fp else None
        if scores is not None and fp is not None:
            if sp is not None and before is not None:
                # Last time's, less the texts the edit replaced (the score cache keeps those:
                # held here, 50 small documents kept ~70 MB of old scores over a soak).
                by_hash = _replace_middle(before.scores, sp, before.hashes, functions, scores)
            else:
                by_hash = dict(zip(map(_hash_of, functions), scores, strict=True))
            after = state.memo = _Memo(fp, by_hash)
        else:
            after = None
        similar, relooked = self._similar(uri, state.language, functions, scores, before, after, sp)
        threshold = result.threshold if result.threshold is not None else 1.1
        result.defect_off = self.defect_off(state.language)
        cutoff = self._pool_cutoff(uri, functions, scores, before, after, sp)
        if done is not None:  # back to every function, the pending ones unscored
            all_scores: list = [None] * len(everything)
            all_similar: list[list[Match]] = [[] for _ in everything]
            for k, i in enumerate(done):
                all_scores[i], all_similar[i] = scores[k], similar[k]  # type: ignore[index]
            functions, scores, similar = everything, all_scores, all_similar
        bar = flag_bar(threshold, cutoff)
        may_flag = file_may_flag(ignored_file, result.defect_off)
        got = scores if scores is not None else [None] * len(functions)
        if (
            sp is not None
            and before is not None
            and before.results is not None
            and relooked is not None
            and (before.bar, before.may_flag) == (bar, may_flag)
        ):
            # The functions the edit left alone keep their entries; those whose hints were
            # looked up again get new ones where the hints changed.
            mid = range(sp.p, sp.n - sp.s)
            fresh = [_function_result(functions[i], got[i], similar[i], bar, may_flag) for i in mid]
            out = result.functions = sp.keep(before.results, fresh)
            for i in relooked:
                if out[i].similar != similar[i]:
                    out[i] = _function_result(functions[i], got[i], similar[i], bar, may_flag)
            # Same text, another object: moved by an edit above it, or ignored anew.
            for i in _moved(list(map(_function_of, out)), functions):
                out[i] = _function_result(functions[i], got[i], similar[i], bar, may_flag)
        else:
            self._all_results(result, state.result, functions, got, similar, bar, may_flag)
        if after is not None and result.scored:  # complete: the next may reuse it by slices
            after.functions, after.aligned, after.results = functions, scores, result.functions
            after.hashes = hashes
            after.bar, after.may_flag = bar, may_flag
        state.result = result
        now = time.perf_counter()
        self.stats.latency("analysis_ms", (now - t0) * 1000)
        self.stats.latency("edit_to_result_ms", (now - changed_at) * 1000)
        self.on_result(result)
        if result.pending:
            self.worker.schedule(uri, 0)  # the next pass, behind edits already queued
        self._idle_trim()

    @staticmethod
    def _all_results(
        result: DocumentResult,
        last: DocumentResult | None,
        functions: list[Function],
        scores: list,
        similar: list[list[Match]],
        bar: float,
        may_flag: bool,
    ) -> None:
        # The last result's entries, reused when nothing in them changed: a new object per
        # function per edit kept the cyclic collector walking 20,000 of them every few edits.
        previous = last.functions if last else []
        by_id = dict(zip(map(id, map(_function_of, previous)), previous, strict=True))
        out = result.functions
        for f, s, sim in zip(functions, scores, similar, strict=True):
            flag = _flag(f, s, bar, may_flag)
            old = by_id.get(id(f))
            if (
                old is not None
                and old.function is f
                and old.score is s
                and old.flagged == flag
                and old.similar == sim
            ):
                out.append(old)
            else:
                out.append(FunctionResult(f, s, flag, sim))

    def _idle_trim(self, collect: bool = False) -> None:
        # After a burst, not after every document: the trim costs a few ms of the worker.
        if self.worker.pending() == 0:
            if collect:  # a closed document's cycles (trees, futures) wait for a full pass
                gc.collect()
            if len(self.documents) == 0:  # nothing open: SQLite's page caches go back too
                self.cache.release_memory()
                if self.index is not None:
                    self.index.release_memory()
            release_memory()

    def _pool_cutoff(
        self,
        uri: str,
        functions: list[Function],
        scores: list[FunctionScore] | None,
        before: _Memo | None = None,
        after: _Memo | None = None,
        sp: _Splice | None = None,
    ) -> float:
        """The flag budget's cutoff, with this document's scores in the pool. Spliced: only
        the hashes the edit removed and added change in the pool (a hash may occur twice)."""
        if scores is not None:
            uri = index_uri(uri)
            counts = before.counts if sp is not None and before is not None else None
            if counts is not None and sp is not None and 4 * (sp.n - sp.p - sp.s) > sp.n:
                counts = None  # most of the file is new: counting it anew is cheaper
            if counts is not None and sp is not None:
                gone = []
                for f in sp.old_middle(before.functions or []):  # type: ignore[union-attr]
                    counts[f.hash] -= 1
                    if counts[f.hash] <= 0:
                        del counts[f.hash]
                        gone.append(f.hash)
                mid = sp.middle(functions)
                counts.update(map(_hash_of, mid))
                probs = map(_probability_of, sp.middle(scores))
                if not self.pool.update_file(
                    uri, gone, dict(zip(map(_hash_of, mid), probs, strict=True))
                ):
                    counts = None
            if counts is None:
                probs = map(_probability_of, scores)
                self.pool.set_file(uri, dict(zip(map(_hash_of, functions), probs, strict=True)))
                counts = Counter(map(_hash_of, functions))
            if after is not None:
                after.counts = counts
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
        return self.settings.defect_threshold(self.holder.model)

    def similarity_threshold(self) -> float | None:
        return self.settings.cosine_threshold(self.holder.model)

    def _similar(
        self,
        uri: str,
        language: str | None,
        functions: list[Function],
        scores: list[FunctionScore] | None,
        before: _Memo | None = None,
        after: _Memo | None = None,
        sp: _Splice | None = None,
    ) -> tuple[list[list[Match]], list[int] | None]:
        """Similar-code hints per function, and the functions outside the splice's middle
        whose hints were looked up again (None: any function's hints may have changed).

        With the last analysis's memo (`before`), only functions whose text is new, whose
        hints point into this file (its lines move), or that a new function's hints point at
        are looked up; the rest keep their hints while no other file changed the index.
        `after` receives the hints for the next time."""
        model = self.holder.model
        spliced = sp is not None and before is not None
        if self.index is None or scores is None or model is None or language is None:
            return self._no_hints(functions, before if spliced else None, after)
        uri = index_uri(uri)
        try:
            if spliced and before.keys is not None:  # type: ignore[union-attr]
                mid = self.clone_keys.many(sp.middle(functions), language)  # type: ignore[union-attr]
                keys = sp.keep(before.keys, mid)  # type: ignore[union-attr]
            else:
                keys = self.clone_keys.many(functions, language)
            if after is not None:
                after.keys = keys
            vectors = vectors_of(model, scores, language)  # one space for the rows and queries
            self._index(uri, language, functions, vectors, keys, model, before, after, sp)
            sim = self.settings.similarity
            if not sim.enabled or sim.max_results == 0:
                return self._no_hints(functions, before if spliced else None, after)
            limits = thresholds(model, language, sim.threshold)
            key = (model.fingerprint, sim.max_results, limits)
            others = self.indexer.writes_by_others(uri)
            held: dict[str, list[Match]] = {}
            valid = before is not None and before.similar_key == key and before.others_gen == others
            if valid:
                held = before.similar  # type: ignore[union-attr]
            out: list[list[Match] | None]
            if valid and spliced and before.hints is not None:  # type: ignore[union-attr]
                middle = range(sp.p, sp.n - sp.s)  # type: ignore[union-attr]
                out = sp.keep(before.hints, [None] * len(middle))  # type: ignore[union-attr]
                for i, got in enumerate(out):  # hints into this file: its lines may move
                    if got and any(m.uri == uri for m in got):
                        out[i] = None
            else:
                middle = range(len(functions))
                out = [None] * len(functions)
            for i in middle:
                got = held.get(functions[i].hash)
                if got is not None and all(m.uri != uri for m in got):
                    out[i] = got

            def look_up(todo: list[int]) -> None:
                found = find(
                    self.index,
                    uri,
                    language,
                    [functions[i] for i in todo],
                    [keys[i] for i in todo],
                    [vectors[i] for i in todo],
                    model.fingerprint,
                    limits,
                    sim.max_results,
                )
                for i, matches in zip(todo, found, strict=True):
                    out[i] = matches

            todo = [i for i, m in enumerate(out) if m is None]
            look_up(todo)
            # A new function that copies an unchanged one: that one's hints change too.
            lines = {m.start_line for i in todo for m in out[i] or () if m.uri == uri}
            again = []
            if lines and held:
                again = [i for i, f in enumerate(functions) if f.start_line in lines]
                look_up(again)
            self.stats.add("similar_lookups", len(todo))
            done = [m if m is not None else [] for m in out]
            if after is not None:
                after.similar_key, after.others_gen, after.hints = key, others, done
                if valid and spliced:
                    held = _replace_middle(held, sp, before.hashes, functions, done)  # type: ignore[union-attr]
                    held.update((functions[i].hash, done[i]) for i in [*todo, *again])
                    after.similar = held
                else:
                    after.similar = dict(zip(map(_hash_of, functions), done, strict=True))
            if not (valid and spliced and before.hints is not None):  # type: ignore[union-attr]
                return done, None
            return done, [i for i in {*todo, *again} if i not in middle]
        except Exception:
            log.exception("similar-code lookup failed for %s", uri)
            self.stats.add("errors")
            return [[] for _ in functions], None

    @staticmethod
    def _no_hints(
        functions: list[Function], before: _Memo | None, after: _Memo | None
    ) -> tuple[list[list[Match]], list[int] | None]:
        """No hints for anything (no index, model or grammar; hints off). Nothing changed
        outside the middle when there were none last time either."""
        if after is not None:
            after.similar_key = _NO_HINTS
        unchanged = before is not None and before.similar_key == _NO_HINTS
        return [[] for _ in functions], [] if unchanged else None

    def _index(self, uri, language, functions, vectors, keys, model, before, after, sp) -> None:
        """Write an open document's functions to the index, unless the edit left every
        indexed one alone (a file over MAX_PER_FILE has only its first ones indexed) and
        nothing else wrote this file's rows since."""
        unchanged = (
            sp is not None
            and before is not None
            and before.own_writes == self.indexer.own_writes(uri)
            and min(sp.n_old, sp.n) > MAX_PER_FILE
            and before.functions is not None
            # the indexed functions: the very objects of last time (not moved, not new)
            and not _moved(before.functions[:MAX_PER_FILE], functions[:MAX_PER_FILE])
        )
        if not unchanged:
            self.indexer.store(
                uri, language, functions, vectors, keys, model.fingerprint, edited=True
            )
        if after is not None:
            after.own_writes = self.indexer.own_writes(uri)

    # -- workspace index (engine/indexer.py) ------------------------------------------------
    def index_workspace(
        self,
        progress: Callable[[int, int, str], None] | None = None,
        done: Callable[[int], None] | None = None,
    ) -> None:
        """Embed every source file of the workspace in the background; cancellable."""
        self.indexer.start(progress, done)

    def index_file(self, path: Path, uri: str, known_hashes: set[str] | None = None) -> int:
        """(Re)index one file from disk, on the worker (waits for it). Returns the number of
        functions embedded anew."""
        return self.indexer.index_file(path, uri, known_hashes)

    def reindex_file(self, path: Path, uri: str) -> None:
        """Re-index a file changed on disk, then re-analyse the open documents."""
        self.indexer.reindex_file(path, uri)

    def forget_file(self, uri: str) -> None:
        """A file deleted on disk: its rows and the hints that pointed at it go."""
        self.indexer.forget_file(index_uri(uri))

    # -- read API for the server's features (they touch nothing else of the engine) ----------
    def snapshot(self, uri: str) -> DocumentSnapshot | None:
        """The open document `uri` as it is now, or None when it is not open."""
        state = self.docs.get(uri)
        if state is None:
            return None
        return DocumentSnapshot(
            uri,
            state.version,
            state.language,
            state.parsed is not None,
            state.result,
            self.model_state(),
        )

    def is_open(self, uri: str) -> bool:
        return uri in self.docs

    def document_text(self, uri: str) -> tuple[int | None, str] | None:
        """(version, current text) of an open document, read under its lock; None if closed."""
        return self.documents.text(uri)

    def model_state(self) -> ModelState:
        holder = self.holder
        model = holder.model
        return ModelState(
            holder.state,
            holder.error,
            holder.load_seconds,
            model.name if model is not None else None,
            str(model.device) if model is not None else None,
        )

    def loaded_model(self):
        """The loaded model (None unless ready), for work that scores through `run_model`."""
        return self.holder.model

    def cancel_indexing(self) -> None:
        """Stop the workspace index walk (what it stored stays)."""
        self.indexer.cancel()

    def forget_adapter(self) -> None:
        """Look for the repository's adapter again at the next score (after `learn` wrote)."""
        if self.scorer.adapters is not None:
            self.scorer.adapters.forget()

    def report(self) -> dict:
        """What the engine did and holds, for `alpine/stats`."""
        out = self.stats.snapshot()
        holder = self.holder
        out["model"] = {
            "state": holder.state,
            "error": holder.error,
            "load_seconds": holder.load_seconds,
            **(holder.model.info() if holder.model else {}),
        }
        out["documents"] = len(self.documents)
        out["pending"] = self.worker.pending()
        out["queued"] = self.worker.queued()
        out["score_threads"] = sorted(self.scorer.threads)
        out["index_functions"] = self.index.count() if self.index else None
        out["index_state"] = self.indexer.state
        watcher = self.scorer.adapters
        adapter = watcher.adapter if watcher is not None else None
        out["adapter"] = {
            "path": str(adapter.path) if adapter else None,
            "fix_commits": adapter.fixes if adapter else None,
            "blend": adapter.blend if adapter else None,
            "error": watcher.error if watcher is not None else None,
        }
        return out
