"""Score cache keyed by (model fingerprint, language, function-text hash).

Two levels: a bounded in-memory LRU, and SQLite in the user cache directory so that reopening a
file or restarting the editor scores nothing that did not change. The cache is an optimisation
and never a reason to fail, nor to lose rows: another process's lock (SQLITE_BUSY) is waited for
and the write retried, a full disk or a read-only file pauses writes (rows wait in memory), and
the file is moved aside only when SQLite says it is damaged *and* `PRAGMA quick_check` agrees.
Without a usable cache directory everything stays in memory, with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..index.store import shrink_memory
from ..model.score import FunctionScore

log = logging.getLogger(__name__)
SCHEMA = 1
BUSY_TIMEOUT_S = 2.0  # SQLite's own wait for another connection's lock, per attempt
BUSY_RETRY_S = 1.0  # then rows wait in memory and the next write tries again
PAUSE_S = 60.0  # after a full disk or an unwritable file
MAX_PENDING = 20_000  # rows waiting for the database; older ones stay in the LRU only
_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB

_unusable: set[str] = set()  # directories already warned about


def usable_cache_dir() -> Path | None:
    """The cache directory, or None (warned once) when it cannot be created or written."""
    from ..index.paths import ENV_CACHE_DIR, cache_dir

    key = os.environ.get(ENV_CACHE_DIR, "") + "|" + os.environ.get("HOME", "")
    try:
        path = cache_dir()
        probe = path / f".probe-{os.getpid()}-{threading.get_ident()}"
        os.close(os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600))
        os.unlink(probe)
        return path
    except OSError as e:
        if key not in _unusable:
            _unusable.add(key)
            log.warning("cache directory unusable (%s): score cache and index kept in memory", e)
        return None


def default_cache_path() -> Path | None:
    base = usable_cache_dir()
    return base / "scores.sqlite" if base is not None else None


def _code(e: Exception) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # the primary result code


def _to_row(s: FunctionScore) -> tuple:
    meta = {
        "tokens_per_layer": s.tokens_per_layer,
        "top_tokens": s.top_tokens,
        "n_tokens": s.n_tokens,
        "truncated": s.truncated,
        "flops": s.flops,
        "ms": s.ms,
        "parts": s.parts,
        "lexical_terms": s.lexical_terms,
        "top_tokens_layer": s.top_tokens_layer,
        "lines": s.lines,
        "cwe": s.cwe,
    }
    return s.probability, json.dumps(meta), np.asarray(s.embedding, np.float32).tobytes()


def _from_row(prob: float, meta_s: str, emb: bytes) -> FunctionScore:
    meta = json.loads(meta_s)
    return FunctionScore(
        probability=float(prob),
        embedding=np.frombuffer(emb, dtype=np.float32).copy(),
        tokens_per_layer=list(meta["tokens_per_layer"]),
        top_tokens=[(str(t), float(w)) for t, w in meta["top_tokens"]],
        n_tokens=int(meta["n_tokens"]),
        truncated=bool(meta["truncated"]),
        flops=int(meta["flops"]),
        ms=float(meta["ms"]),
        parts={str(k): float(v) for k, v in meta.get("parts", {}).items()},
        lexical_terms=[(str(t), float(w)) for t, w in meta.get("lexical_terms", [])],
        top_tokens_layer=int(meta.get("top_tokens_layer", 0)),
        lines=[(int(n), float(w)) for n, w in meta.get("lines", [])],
        cwe=[(str(c), float(p)) for c, p in meta.get("cwe", [])],
    )


class ScoreCache:
    # ~7 KB per entry (embedding, layer lengths, explanations, ranked lines; tracemalloc):
    # 2,000 hold ~14 MB. The server sizes it to its open documents' functions (Engine.
    # _fit_caches); SQLite holds the rest and answers in well under a millisecond.
    def __init__(self, db_path: Path | None, memory_items: int = 2_000) -> None:
        self.memory: OrderedDict[tuple[str, str, str], FunctionScore] = OrderedDict()
        self.memory_items = memory_items
        self.db_path = db_path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.pending: OrderedDict[tuple[str, str, str], FunctionScore] = OrderedDict()
        self._paused_until = 0.0
        self._trouble: str | None = None  # what paused writes, logged once per episode
        self.moved_aside = 0
        if db_path is not None:
            self._open()

    def _open(self) -> None:
        assert self.db_path is not None
        try:
            self._db = self._connect(self.db_path)
            return
        except (sqlite3.Error, OSError) as e:
            if not self._damaged(e):
                self._pause(e)
                return
            log.warning("score cache %s is unreadable (%s); rebuilding it", self.db_path, e)
        self._discard()
        try:
            self._db = self._connect(self.db_path)
        except (sqlite3.Error, OSError) as e2:
            log.error("score cache disabled: %s", e2)
            self._db = None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Created private before SQLite writes anything into it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(str(path), check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            if version not in (0, SCHEMA):
                db.execute("DROP TABLE IF EXISTS scores")
            db.execute(
                "CREATE TABLE IF NOT EXISTS scores (fingerprint TEXT, language TEXT, hash TEXT, "
                "probability REAL, meta TEXT, embedding BLOB, "
                "PRIMARY KEY (fingerprint, language, hash)) WITHOUT ROWID"
            )
            if version != SCHEMA:
                db.execute(f"PRAGMA user_version={SCHEMA}")
            db.execute("SELECT count(*) FROM scores").fetchone()  # reads the pages: detects damage
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    def _damaged(self, e: Exception) -> bool:
        """Only SQLite's damage codes, confirmed by an integrity check, count as damage."""
        if not isinstance(e, sqlite3.DatabaseError):
            return False
        code = _code(e)
        if code is not None and code not in _DAMAGED:
            return False
        if code is None and type(e) is not sqlite3.DatabaseError:
            return False  # ProgrammingError and the like are our bugs, not the file's
        assert self.db_path is not None
        try:
            db = sqlite3.connect(str(self.db_path), timeout=BUSY_TIMEOUT_S)
            try:
                rows = db.execute("PRAGMA quick_check").fetchall()
            finally:
                db.close()
        except sqlite3.DatabaseError as e2:
            return _code(e2) in _DAMAGED or _code(e2) is None
        return rows != [("ok",)]

    def _pause(self, e: Exception) -> None:
        code = _code(e)
        busy = code in _BUSY
        self._paused_until = time.monotonic() + (BUSY_RETRY_S if busy else PAUSE_S)
        what = "busy" if busy else str(e)
        if self._trouble != what:
            self._trouble = what
            if busy:
                log.info("score cache locked by another process; %d rows wait", len(self.pending))
            else:
                log.warning(
                    "score cache %s: %s; writes paused, rows kept in memory", self.db_path, e
                )

    def _discard(self) -> None:
        assert self.db_path is not None
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        self.moved_aside += 1
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.db_path) + suffix)
            if p.exists():
                p.replace(p.with_name(p.name + ".corrupt")) if not suffix else p.unlink()

    def _failed(self, e: Exception) -> None:
        """A database error during use (lock held): rebuild only what is really damaged."""
        if self._db is not None:
            try:
                self._db.rollback()
            except sqlite3.Error:
                pass
        if self._damaged(e):
            log.warning("score cache damaged (%s); rebuilding %s", e, self.db_path)
            self._discard()
            self._open()
        else:
            self._pause(e)

    def get_many(
        self, fingerprint: str, language: str, hashes: list[str]
    ) -> dict[str, FunctionScore]:
        found: dict[str, FunctionScore] = {}
        missing = []
        with self._lock:
            for h in hashes:
                key = (fingerprint, language, h)
                if key in self.memory:
                    self.memory.move_to_end(key)
                    found[h] = self.memory[key]
                elif key in self.pending:
                    found[h] = self.pending[key]
                else:
                    missing.append(h)
            self._reopen_if_due()
            if missing and self._db is not None:
                try:
                    for i in range(0, len(missing), 500):
                        part = missing[i : i + 500]
                        marks = ",".join("?" * len(part))
                        rows = self._db.execute(
                            "SELECT hash, probability, meta, embedding FROM scores "
                            f"WHERE fingerprint=? AND language=? AND hash IN ({marks})",
                            (fingerprint, language, *part),
                        ).fetchall()
                        for h, prob, meta, emb in rows:
                            try:
                                score = _from_row(prob, meta, emb)
                            except (ValueError, KeyError, TypeError):
                                continue  # an odd row is a miss: it is scored and replaced
                            found[h] = score
                            self._remember((fingerprint, language, h), score)
                except sqlite3.Error as e:
                    self._failed(e)
        return found

    def put_many(self, fingerprint: str, language: str, scores: dict[str, FunctionScore]) -> None:
        with self._lock:
            for h, s in scores.items():
                self._remember((fingerprint, language, h), s)
            if self.db_path is None or not scores:
                return
            for h, s in scores.items():
                self.pending[(fingerprint, language, h)] = s
            while len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)
            self._flush()

    def flush(self, force: bool = False) -> bool:
        """Write the rows that wait (after a lock or a full disk). True when none wait."""
        with self._lock:
            if force:
                self._paused_until = 0.0
            self._flush()
            return not self.pending

    def _reopen_if_due(self) -> None:
        if self._db is None and self.db_path is not None and self._due():
            self._open()

    def _due(self) -> bool:
        return time.monotonic() >= self._paused_until

    def _flush(self) -> None:
        if not self.pending or not self._due():
            return
        self._reopen_if_due()
        if self._db is None:
            return
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                [(*key, *_to_row(s)) for key, s in self.pending.items()],
            )
            self._db.commit()
        except sqlite3.Error as e:
            self._failed(e)
            return
        self.pending.clear()
        if self._trouble is not None:
            log.info("score cache %s writable again", self.db_path)
            self._trouble = None

    def resize(self, memory_items: int) -> None:
        """Bound the LRU to `memory_items`, evicting the least recently used now."""
        with self._lock:
            self.memory_items = memory_items
            while len(self.memory) > self.memory_items:
                self.memory.popitem(last=False)

    def release_memory(self) -> None:
        """Hand SQLite's page cache back (nothing is open: it would only wait for reuse)."""
        with self._lock:
            shrink_memory(self._db, "score cache")

    def _remember(self, key: tuple[str, str, str], score: FunctionScore) -> None:
        self.memory[key] = score
        self.memory.move_to_end(key)
        while len(self.memory) > self.memory_items:
            self.memory.popitem(last=False)

    def close(self) -> None:
        with self._lock:
            if self.pending:
                self._paused_until = 0.0
                self._flush()  # one last try (SQLite waits BUSY_TIMEOUT_S for a lock)
            if self._db is not None:
                self._db.close()
                self._db = None
