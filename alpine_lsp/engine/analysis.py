"""Findings for a set of files read from disk: what `alpine-lsp check` reports.

The same rules as the server's worker, through the same functions: admission (`index.refusal`),
scores through `Scorer` (cache first), index rows (`similar.index_entries`, capped for generated
files), the flag rule (`policy.flag_bar`, `policy.flags_function`, the flag budget over every
file read, the per-language gate) and similar-code lookup (`similar.find`). Ignored functions
(`alpine: ignore`, `alpine: ignore-file`) are never flagged and get no similar-code hints, as
the server shows none for them. No LSP here, no walking of folders: the caller names the files.

Two phases, because a hint may point at a file read later and the budget needs every score:
`add` each file, then read `findings()`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..index import IndexStore, Match, NotReadable, read_source_file, refusal
from ..model.score import FunctionScore
from ..parsing import Function, extract_functions, file_ignored, language_for
from ..parsing.clones import CloneKeys
from . import policy
from .cache import ScoreCache
from .documents import BUDGET, function_budget, line_budget
from .engine import Scorer
from .memory import release_memory
from .models import ModelHolder
from .positions import lsp_lines
from .settings import Settings
from .similar import KeyCache, find, index_entries, thresholds, vectors_of
from .stats import Stats

if TYPE_CHECKING:
    from ..model.api import AlpineModel


@dataclass(frozen=True, slots=True)
class Finding:
    """One function as the server would judge it."""

    function: Function
    score: FunctionScore
    flagged: bool
    ignored: bool  # `alpine: ignore` on the function or `alpine: ignore-file` in its file
    similar: list[Match]  # empty for ignored functions


@dataclass(frozen=True, slots=True)
class FileFindings:
    path: Path  # as the caller named it
    language: str
    lines: list[str]  # the text's LSP lines (hint columns are counted in them)
    defect_off: str | None  # why the language gets no defect hints (policy.language_off)
    findings: list[Finding]


@dataclass(slots=True)
class _File:
    path: Path
    uri: str
    language: str
    functions: list[Function]
    scores: list[FunctionScore]
    ignored: bool
    keys: list[CloneKeys | None]
    lines: list[str]


def _light(scores: list[FunctionScore]) -> list[FunctionScore]:
    """What a score still needs once its file is indexed: held until every file is read."""
    return [replace(s, top_tokens=[], lexical_terms=[], tokens_per_layer=[]) for s in scores]


class WorkspaceAnalysis:
    """The server's analysis over files from disk, with a throw-away similar-code index: hits
    come from the files added only. `settings.languages` opts languages in past the gate; it
    does not filter files (the caller chooses them). Close it (or use `with`)."""

    def __init__(
        self,
        model: AlpineModel,
        settings: Settings,
        cache_path: Path | None,
        size_limit: str = "the size limit",
    ) -> None:
        self.model = model
        self.settings = settings
        self.size_limit = size_limit  # what the caller's user calls max_file_size
        self.stats = Stats()
        holder = ModelHolder()
        holder.model, holder.state = model, "ready"
        self.cache = ScoreCache(cache_path)
        self.scorer = Scorer(holder, self.cache, self.stats)
        self.scorer.lines_wanted = lambda: settings.line_hints  # as the server's engine
        self.pool = policy.ScorePool()  # the flag budget's share is of the files added
        self.clone_keys = KeyCache()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.index: IndexStore | None = None
        if settings.similarity.enabled:
            self._tmp = tempfile.TemporaryDirectory(prefix="alpine-check-")
            self.index = IndexStore(Path(self._tmp.name) / "index.sqlite")
        self.paths: dict[str, Path] = {}  # index URI -> the path as added
        self._files: list[_File] = []

    def __enter__(self) -> WorkspaceAnalysis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.cache.close()
        if self.index is not None:
            self.index.close()
            self.index = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def threshold(self) -> float:
        t = self.settings.defect_threshold(self.model)
        return 1.1 if t is None else t  # as the server: no threshold flags nothing

    @property
    def cutoff(self) -> float:
        """The flag budget's cutoff over every function added so far."""
        return self.pool.cutoff(self.settings.flag_budget)

    @property
    def files(self) -> int:
        return len(self._files)

    @property
    def functions(self) -> int:
        return sum(len(f.functions) for f in self._files)

    def add(self, path: Path) -> str | None:
        """Read, admit, parse, score and index one file. Returns why it was skipped, or None."""
        language = language_for(path.name)
        if language is None:
            return "no grammar for this file type"
        max_size = self.settings.max_file_size
        try:  # regular and under the limit, checked on the opened descriptor
            data = read_source_file(path, max_size)
        except NotReadable as e:
            return str(e).removeprefix(f"{path}: ")
        except OSError as e:
            return e.strerror or str(e)
        refused = refusal(data, len(data), max_size, self.size_limit)  # changed since a walk
        if refused:
            return refused
        text = data.decode("utf-8", errors="replace")
        over = line_budget(text)  # the server's per-document budgets, so both skip alike
        if over:
            return over.removeprefix(BUDGET)
        try:
            functions = extract_functions(text, language)
            over = function_budget(len(functions))
            if over:
                return over.removeprefix(BUDGET)
            scores = (self.scorer.score(functions, language) or []) if functions else []
            if len(scores) != len(functions):
                raise RuntimeError("the model returned no scores")
        except Exception as e:  # one bad file must not end the run
            self.stats.add("errors")
            return f"{type(e).__name__}: {e}"
        self.stats.add("functions_parsed", len(functions))
        uri = path.resolve().as_uri()
        keys = self.clone_keys.many(functions, language) if self.index is not None else []
        if self.index is not None and functions:
            vectors = vectors_of(self.model, scores, language)
            rows = index_entries(uri, language, functions, vectors, keys, self.model.fingerprint)
            self.index.replace_file(uri, rows)
        self.pool.set_file(
            uri, {f.hash: s.probability for f, s in zip(functions, scores, strict=True)}
        )
        self.paths.setdefault(uri, path)
        held = _File(
            path,
            uri,
            language,
            functions,
            _light(scores),
            file_ignored(text),
            keys,
            lsp_lines(text),
        )
        self._files.append(held)
        release_memory()  # one file's batches freed: return the heap pages (a few ms)
        return None

    def findings(self) -> Iterator[FileFindings]:
        """Every added file's findings, in the order added (after the last `add`)."""
        bar = policy.flag_bar(self.threshold, self.cutoff)
        table = policy.language_table(self.model.path)
        for f in self._files:
            off = policy.language_off(table, f.language, self.settings.languages)
            may_flag = policy.file_may_flag(f.ignored, off)
            ignored = [f.ignored or fn.ignored for fn in f.functions]
            hits = self._similar(f, ignored)
            out = [
                Finding(fn, s, policy.flags_function(fn, s, bar, may_flag), ig, found)
                for fn, s, ig, found in zip(f.functions, f.scores, ignored, hits, strict=True)
            ]
            yield FileFindings(f.path, f.language, f.lines, off, out)

    def _similar(self, f: _File, ignored: list[bool]) -> list[list[Match]]:
        out: list[list[Match]] = [[] for _ in f.functions]
        todo = [i for i, ig in enumerate(ignored) if not ig]
        if self.index is None or not todo:
            return out
        sim = self.settings.similarity
        found = find(
            self.index,
            f.uri,
            f.language,
            [f.functions[i] for i in todo],
            [f.keys[i] for i in todo],
            vectors_of(self.model, [f.scores[i] for i in todo], f.language),
            self.model.fingerprint,
            thresholds(self.model, f.language, sim.threshold),
            sim.max_results,
        )
        for i, matches in zip(todo, found, strict=True):
            out[i] = matches
        return out
