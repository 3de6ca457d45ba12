"""The document store: the text of every open document, its parse or its rope, and the rule
that decides whether it is analysed (file admission and the per-document budgets).

Invariants: every edit goes through `apply_changes` (positions in the client's encoding,
clamped to the document), under the document's lock, in O(edit) plus C-speed copies: nothing
here parses a whole file on an edit or waits for analysis. Whether a document is analysed
depends on its current text and the settings, never on its history (`recheck`). The worker
reads a document only through a snapshot taken under its lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..index import BINARY_PROBE, refusal
from ..parsing import ParsedDocument, language_for
from .positions import client_offset
from .rawtext import RawText
from .settings import Settings
from .stats import Stats

if TYPE_CHECKING:
    from .engine import DocumentResult, _Memo

log = logging.getLogger("alpine_lsp.engine")

MAX_LINE_CHARS = 100_000  # a 45K-character bundle line is still analysed
# Budget: more functions than this in one file is generated code (a 20,000-function file is
# still analysed, an edit in it costs ~0.2 s); each would be scored and indexed.
MAX_FUNCTIONS = 50_000
BUDGET = "budget: "  # skip reasons that are per-document budgets get an Information diagnostic
# Range edits in order: (start_line, start_char, end_line, end_char) in the client's units, or
# None for a full replacement, with the new text.
Edits = Iterable[tuple[tuple[int, int, int, int] | None, str]]


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
    raw: RawText | None = None  # the text while it is not parsed (skipped): edits still apply
    memo: _Memo | None = None  # the worker's own: read and written by analysis only


def skip_reason(
    text: str | RawText,
    settings: Settings,
    language: str | None,
    nbytes: int | None = None,
    longest_line: int | None = None,
) -> str | None:
    """Why a document is not analysed, or None. `nbytes` and `longest_line`, when the caller
    knows them, spare a pass over the text (this runs on every edit)."""
    if language is None:
        return "no grammar for this language"
    if settings.languages is not None and language not in settings.languages:
        return f"{language} is not in alpine.languages"
    n, limit = len(text), settings.max_file_size
    raw = isinstance(text, RawText)
    # A code point is 1-4 bytes: encode only when the length alone cannot tell.
    size = n if n > limit or n * 4 <= limit else _utf8_length(text, nbytes)
    refused = refusal(text.head(BINARY_PROBE) if raw else text, size, limit, "alpine.maxFileSize")
    if refused:
        return refused
    return line_budget(text, longest_line)


def line_budget(text: str | RawText, longest_line: int | None = None) -> str | None:
    """The budget on minified or generated code, where per-edit work grows with the line: the
    server and `check` (engine/analysis.py) skip such a file alike."""
    if len(text) > MAX_LINE_CHARS:
        if longest_line is None:
            longest_line = text.longest_line() if isinstance(text, RawText) else _longest_line(text)
        if longest_line > MAX_LINE_CHARS:
            return f"{BUDGET}a line longer than {MAX_LINE_CHARS} characters (minified code?)"
    return None


def function_budget(n_functions: int) -> str | None:
    """The budget on functions per file (generated code), for the server and `check` alike."""
    if n_functions > MAX_FUNCTIONS:
        return f"{BUDGET}more than {MAX_FUNCTIONS:,} functions (generated code?)"
    return None


def _utf8_length(text: str | RawText, known: int | None) -> int:
    if known is not None:
        return known
    if isinstance(text, RawText):
        return text.utf8_length()
    return len(text.encode("utf-8", "surrogatepass"))


def _longest_line(text: str) -> int:
    return max(map(len, text.split("\n")))


def _span_longest_line(text: str, a: int, b: int) -> int:
    """The longest line among those that [a, b) of `text` touches."""
    start = text.rfind("\n", 0, a) + 1
    end = text.find("\n", b)
    return _longest_line(text[start : end if end >= 0 else len(text)])


class DocumentStore:
    """The open documents by URI. `settings` is read at the time of use (it changes)."""

    def __init__(self, settings: Callable[[], Settings], stats: Stats) -> None:
        self._settings = settings
        self.stats = stats
        self.docs: dict[str, DocumentState] = {}
        self._lock = threading.Lock()  # guards the dict; each document has its own lock

    def get(self, uri: str) -> DocumentState | None:
        return self.docs.get(uri)

    def uris(self) -> list[str]:
        with self._lock:  # read from the indexer's thread too
            return list(self.docs)

    def states(self, but: str | None = None) -> list[DocumentState]:
        """Every open document's state (but `but`'s), read under the store's lock."""
        with self._lock:
            return [s for u, s in self.docs.items() if u != but]

    def __len__(self) -> int:
        return len(self.docs)

    def open(self, uri: str, text: str, language_id: str | None, version: int | None) -> None:
        language = language_for(uri, language_id)
        reason = skip_reason(text, self._settings(), language)
        parsed = ParsedDocument(text, language) if reason is None and language else None
        if reason:
            log.info("%s: not analysed: %s", uri, reason)
            self.stats.add("files_skipped")
        state = DocumentState(uri, language, version, parsed, reason, time.perf_counter())
        state.raw = RawText(text) if parsed is None else None
        with self._lock:
            self.docs[uri] = state

    def close(self, uri: str) -> None:
        with self._lock:
            self.docs.pop(uri, None)

    def apply_changes(
        self,
        uri: str,
        version: int | None,
        edits: Edits,
        encoding: str = "utf-32",
        full_text: str | None = None,
    ) -> bool:
        """Apply range edits in order: (start_line, start_char, end_line, end_char) counted in
        `encoding` units (the client's), or None for a full replacement. Out-of-range positions
        clamp to the document. `full_text`, when given, wins over our own result. False when
        the document is not open (nothing changed)."""
        state = self.docs.get(uri)
        if state is None:
            return False
        # Only O(edit) work and C-speed copies here, under a lock that analysis holds only to
        # take a snapshot: the message loop waits for neither a parse nor a line table.
        with state.lock:
            state.version = version
            state.changed_at = time.perf_counter()
            longest: int | None = None  # of the lines the edits touched, when known
            if state.parsed is None:
                # Skipped documents keep their text (a rope): an edit can make them analysable.
                raw = state.raw if state.raw is not None else RawText()
                for rng, new in edits:
                    if rng is None:
                        raw = RawText(new)
                    else:
                        raw.splice(rng, new, encoding)
                state.raw = RawText(full_text) if full_text is not None else raw
            else:
                doc = state.parsed
                longest = 0
                for rng, new in edits:
                    if rng is None:
                        doc.replace_text(new)
                        longest = None
                        continue
                    text = doc.text
                    a = client_offset(text, rng[0], rng[1], encoding)
                    b = client_offset(text, rng[2], rng[3], encoding)
                    a, b = min(a, b), max(a, b)
                    doc.replace(a, b, new)
                    if longest is not None:
                        longest = max(longest, _span_longest_line(doc.text, a, a + len(new)))
                if full_text is not None and doc.text != full_text:
                    log.warning("%s: edit stream diverged from the client; resynchronising", uri)
                    doc.replace_text(full_text)
                    longest = None
                if longest is not None and longest > MAX_LINE_CHARS:
                    longest = None  # an earlier edit's long line may be gone: measure it all
            self._recheck(state, longest)
        return True

    def recheck_all(self) -> None:
        """After a settings change (alpine.languages, alpine.maxFileSize)."""
        for state in self.states():
            with state.lock:
                self._recheck(state)

    def _recheck(self, state: DocumentState, longest: int | None = None) -> None:
        """Parse or skip a document by its current text and the settings (lock held): whether
        it is analysed depends on them, not on its history. `longest`: the longest line an
        edit touched in a parsed document (whose other lines were within the budget)."""
        settings = self._settings()
        if state.parsed is not None:
            doc = state.parsed
            reason = skip_reason(doc.text, settings, state.language, doc.nbytes, longest)
            if reason:
                log.info("%s: not analysed: %s", state.uri, reason)
                state.parsed, state.raw = None, RawText(doc.text)
        else:
            raw = state.raw if state.raw is not None else RawText()
            reason = skip_reason(raw, settings, state.language)
            if reason is None and state.language:
                state.parsed, state.raw = ParsedDocument(str(raw), state.language), None
        state.skipped = reason

    def text(self, uri: str) -> tuple[int | None, str] | None:
        """(version, current text) of an open document, read under its lock; None if closed.
        Joins a skipped document's rope: for tests and tools, not for every request."""
        state = self.docs.get(uri)
        if state is None:
            return None
        with state.lock:
            text = state.parsed.text if state.parsed is not None else str(state.raw or "")
            return state.version, text
