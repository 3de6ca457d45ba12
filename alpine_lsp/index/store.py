"""The similar-code index: function locations and unit embeddings in SQLite, searched in memory.

Layout: `functions` holds one row per indexed function (where it is, what it hashes to);
`vectors` holds one embedding per (model fingerprint, text hash). Keeping vectors apart from
locations means a function that moves (cut from one file, pasted into another), is duplicated,
or survives a restart is never embedded twice; unreferenced vectors expire after a week.

Searching reads no SQL: the vectors of the queried fingerprint sit in one float32 matrix that a
single vectorised product scores. Writes update that matrix in place (deleted rows become
tombstones, new rows are appended), so an edit does not force re-reading the whole index.

The database is a cache. Damage found at open or by any later statement is logged, the file is
moved aside, and an empty index takes its place; if even that fails the index lives in memory.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..parsing.clones import (
    BANDS,
    ID_PERM,
    MIN_TOKENS,
    NEAR_MIN_TOKENS,
    NUM_PERM,
    CloneKeys,
    band_keys,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_VERSION = 4  # 2: clone keys (type-1/type-2 hashes, MinHash signature) per function
# 3: the same columns; boolean and null literals became `$L` in the type-2 keys and signatures
# 4: the signature blob also holds the MinHash of the identifier names (near copies share names)
ORPHAN_TTL_S = 7 * 24 * 3600  # vectors no function refers to are kept this long (moves, undo)
_CHUNK = 500  # bound parameters per IN (...) list; well under SQLite's limit
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL: the file is probably fine (another process holds it,
# the disk is full) and deleting it would not help.
_KEEP = {5, 6, 13}

_TYPE2_INDEX = "CREATE INDEX functions_type2 ON functions(type2)"
# Version 1 -> 2 keeps the embeddings (the costly part) and forgets the locations, so the
# workspace walk re-reads every file and stores its clone keys; nothing is re-embedded.
_MIGRATE_1 = (
    "ALTER TABLE functions ADD COLUMN n_tokens INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE functions ADD COLUMN type1 TEXT",
    "ALTER TABLE functions ADD COLUMN type2 TEXT",
    "ALTER TABLE functions ADD COLUMN signature BLOB",
    _TYPE2_INDEX,
    "DELETE FROM functions",
)
# Version 2 -> 3: the keys' values changed, not the columns; the same trade as above.
_MIGRATE_2 = ("DELETE FROM functions",)
_MIGRATIONS = {1: _MIGRATE_1, 2: _MIGRATE_2, 3: _MIGRATE_2}  # 3 -> 4: longer signature blobs
_SIG_LEN = NUM_PERM + ID_PERM  # k-gram MinHash, then the identifier MinHash
_SIG_BYTES = 4 * _SIG_LEN

_SCHEMA = (
    """CREATE TABLE functions (
        uri TEXT NOT NULL,
        name TEXT NOT NULL,
        start_line INTEGER NOT NULL,
        start_col INTEGER NOT NULL,
        end_line INTEGER NOT NULL,
        end_col INTEGER NOT NULL,
        name_start_line INTEGER NOT NULL,
        name_start_col INTEGER NOT NULL,
        name_end_line INTEGER NOT NULL,
        name_end_col INTEGER NOT NULL,
        language TEXT NOT NULL,
        hash TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        n_tokens INTEGER NOT NULL DEFAULT 0,
        type1 TEXT,
        type2 TEXT,
        signature BLOB
    )""",
    "CREATE INDEX functions_uri ON functions(uri)",
    "CREATE INDEX functions_key ON functions(fingerprint, hash)",
    _TYPE2_INDEX,
    """CREATE TABLE vectors (
        fingerprint TEXT NOT NULL,
        hash TEXT NOT NULL,
        dim INTEGER NOT NULL,
        embedding BLOB NOT NULL,
        used REAL NOT NULL,
        UNIQUE (fingerprint, hash)
    )""",
    # Lets the orphan sweep at open touch only stale rows, not every embedding page.
    "CREATE INDEX vectors_used ON vectors(used)",
)


@dataclass(eq=False)
class IndexEntry:
    """One function to index. `embedding` need not be normalised; the store normalises it."""

    uri: str
    name: str
    start_line: int
    start_col: int
    end_line: int
    end_col: int
    name_start_line: int
    name_start_col: int
    name_end_line: int
    name_end_col: int
    language: str
    hash: str
    fingerprint: str
    embedding: np.ndarray
    keys: CloneKeys | None = None  # None: the exact and near-copy tiers do not see it

    @classmethod
    def from_function(
        cls,
        uri: str,
        language: str,
        f,
        fingerprint: str,
        embedding: np.ndarray,
        keys: CloneKeys | None = None,
    ) -> IndexEntry:
        """An entry for a parsed function (anything with Function's range, name and hash)."""
        return cls(
            uri=uri,
            name=f.name,
            start_line=f.start_line,
            start_col=f.start_col,
            end_line=f.end_line,
            end_col=f.end_col,
            name_start_line=f.name_start_line,
            name_start_col=f.name_start_col,
            name_end_line=f.name_end_line,
            name_end_col=f.name_end_col,
            language=language,
            hash=f.hash,
            fingerprint=fingerprint,
            embedding=embedding,
            keys=keys,
        )


@dataclass(frozen=True)
class Match:
    uri: str
    name: str
    start_line: int
    start_col: int
    end_line: int
    end_col: int
    score: float  # cosine similarity (semantic), estimated Jaccard (near), 1.0 (exact)
    # "identical" (type-1), "renamed" (type-2), "near" (type-3), "semantic" (embedding)
    kind: str = "semantic"


_UPSERT_VECTOR = (
    "INSERT INTO vectors (fingerprint, hash, dim, embedding, used) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (fingerprint, hash) DO UPDATE SET "
    "dim = excluded.dim, embedding = excluded.embedding, used = excluded.used"
)
_INSERT_FUNCTION = f"INSERT INTO functions VALUES ({', '.join('?' * 17)})"


def _function_row(uri: str, e: IndexEntry) -> tuple:
    """The functions-table row of an entry (column order of the schema)."""
    return (
        uri,
        e.name,
        e.start_line,
        e.start_col,
        e.end_line,
        e.end_col,
        e.name_start_line,
        e.name_start_col,
        e.name_end_line,
        e.name_end_col,
        e.language,
        e.hash,
        e.fingerprint,
        e.keys.n_tokens if e.keys else 0,
        e.keys.type1 if e.keys else None,
        e.keys.type2 if e.keys else None,
        _sig_blob(e.keys),
    )


def _unit(vector: Iterable[float] | np.ndarray) -> np.ndarray:
    """A float32 unit vector (all zeros when the input has no direction or is not finite)."""
    v = np.asarray(vector, dtype=np.float32)
    if v.ndim != 1 or v.shape[0] == 0:
        raise ValueError(f"an embedding must be a non-empty 1-D vector, got shape {v.shape}")
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        return np.zeros_like(v)
    return v / np.float32(norm)


def _code(e: sqlite3.Error) -> int | None:
    code = getattr(e, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF  # primary code; extended codes add high bits


def _is_corrupt(e: sqlite3.Error) -> bool:
    code = _code(e)
    if code is None:
        # Only our own "bad blob" error is a plain DatabaseError without a code. Subclasses
        # without one (ProgrammingError: a closed connection, wrong bindings) are bugs, and a
        # bug must not wipe the index on every call.
        return type(e) is sqlite3.DatabaseError
    return code in _CORRUPT


class _Matrix:
    """The unit vectors of one fingerprint and dimension, one column per function.

    Stored as a C-contiguous (dim, capacity) array, so that scoring streams `dim` long contiguous
    rows (axpy-style) instead of computing `capacity` short dot products: about twice as fast.
    """

    def __init__(self, fingerprint: str, dim: int, capacity: int) -> None:
        self.fingerprint = fingerprint
        self.dim = dim
        self.columns = np.zeros((dim, capacity), dtype=np.float32)
        self.alive = np.zeros(capacity, dtype=bool)
        # Near-copy tier, per column: MinHash signature, its LSH band keys, token count and
        # language code (a column without clone keys has n_tokens 0 and never matches).
        self.sigs = np.zeros((capacity, _SIG_LEN), dtype=np.uint32)
        # (BANDS, capacity): one contiguous row per band, so a query streams BANDS rows; a
        # (capacity, BANDS) array reduced with any(axis=1) was 10x slower at 100k functions.
        # 32 bits of each band key: a chance collision only adds a candidate, which the
        # signature comparison then rejects.
        self.bands = np.zeros((BANDS, capacity), dtype=np.uint32)
        self.ntok = np.zeros(capacity, dtype=np.int32)
        self.lang = np.zeros(capacity, dtype=np.int16)
        self.lang_codes: dict[str, int] = {}
        # column -> (uri, name, start_line, start_col, end_line, end_col); None once deleted
        self.rows: list[tuple[str, str, int, int, int, int] | None] = []
        self.by_uri: dict[str, list[int]] = {}
        self.dead = 0

    def _reserve(self, extra: int) -> None:
        n, cap = len(self.rows), self.columns.shape[1]
        if n + extra <= cap:
            return
        # Grow by half, not by exact need: each growth copies the whole matrix.
        cap = max(n + extra, cap + cap // 2 + 1024)
        columns = np.zeros((self.dim, cap), dtype=np.float32)
        columns[:, :n] = self.columns[:, :n]
        alive = np.zeros(cap, dtype=bool)
        alive[:n] = self.alive[:n]
        self.columns, self.alive = columns, alive
        for name in ("sigs", "ntok", "lang"):
            old = getattr(self, name)
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[:n] = old[:n]
            setattr(self, name, new)
        bands = np.zeros((BANDS, cap), dtype=np.uint32)
        bands[:, :n] = self.bands[:, :n]
        self.bands = bands

    def code(self, language: str) -> int:
        return self.lang_codes.setdefault(language, len(self.lang_codes) + 1)

    def append(
        self,
        rows: list[tuple[str, str, int, int, int, int]],
        vectors: np.ndarray,
        near: list[tuple[str, int, np.ndarray | None]] | None = None,
    ) -> None:
        """Add functions; `vectors` is (len(rows), dim); `near` is (language, n_tokens,
        signature or None) per row."""
        self._reserve(len(rows))
        n = len(self.rows)
        self.columns[:, n : n + len(rows)] = vectors.T
        self.alive[n : n + len(rows)] = True
        for i, (language, ntok, sig) in enumerate(near or (), start=n):
            self.lang[i] = self.code(language)
            if sig is not None:
                self.ntok[i] = ntok
                self.sigs[i] = sig
                self.bands[:, i] = _band32(sig[:NUM_PERM])
        self.rows.extend(rows)
        for i, row in enumerate(rows, start=n):
            self.by_uri.setdefault(row[0], []).append(i)

    def remove(self, uri: str) -> None:
        idx = self.by_uri.pop(uri, None)
        if not idx:
            return
        self.alive[idx] = False
        for i in idx:
            self.rows[i] = None
        self.dead += len(idx)
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        # Dead columns still cost matmul time and memory; a compaction copies the live ones, so
        # it waits for a quarter of them to be dead (at least 256: the load's headroom of 1,024
        # then absorbs a small workspace's edits without the matrix ever growing).
        live = len(self.rows) - self.dead
        if self.dead > 256 and self.dead * 4 > live:
            self._compact()

    def add(self, rows: list[tuple], entries: list, units, which) -> None:
        """Append the entries `which` (indices) of one write that are of this matrix's
        fingerprint and dimension; `rows` are their functions-table rows."""
        mine = [
            i
            for i in which
            if entries[i].fingerprint == self.fingerprint and units[i].shape[0] == self.dim
        ]
        if mine:
            self.append(
                [rows[i][:6] for i in mine],
                np.stack([units[i] for i in mine]),
                [_near(entries[i].language, entries[i].keys) for i in mine],
            )

    def remove_row(self, uri: str, row: tuple[str, str, int, int, int, int]) -> None:
        idx = self.by_uri.get(uri, [])
        for k, i in enumerate(idx):
            if self.rows[i] == row:
                self.alive[i] = False
                self.rows[i] = None
                self.dead += 1
                del idx[k]
                # An edit tombstones one column and appends one: without this the matrix grew
                # by a column per keystroke (bench soak: about 2 MB a minute) and never shrank.
                self._maybe_compact()
                return

    def _compact(self) -> None:
        n = len(self.rows)
        keep = np.flatnonzero(self.alive[:n])
        m = len(keep)
        self.columns[:, :m] = self.columns[:, keep]  # fancy indexing copies first: overlap is safe
        for name in ("sigs", "ntok", "lang"):
            arr = getattr(self, name)
            arr[:m] = arr[keep]
            arr[m:n] = 0
        self.bands[:, :m] = self.bands[:, keep]
        self.bands[:, m:n] = 0
        self.alive[:m] = True
        self.alive[m:n] = False
        self.rows = [self.rows[i] for i in keep]
        self.by_uri = {}
        for i, row in enumerate(self.rows):
            assert row is not None
            self.by_uri.setdefault(row[0], []).append(i)
        self.dead = 0

    def _excluded(self, scores: np.ndarray, exclude: tuple[str, int] | None) -> None:
        if exclude is not None:
            uri, line = exclude
            for i in self.by_uri.get(uri, ()):
                row = self.rows[i]
                if row is not None and row[2] == line:
                    scores[i] = -np.inf

    def search_near(
        self,
        sig: np.ndarray,
        k: int,
        exclude: tuple[str, int] | None,
        min_score: float,
        language: str,
        min_tokens: int,
        min_identifiers: float = 0.0,
    ) -> list[Match]:
        """Functions whose k-gram sets look at least `min_score` alike (estimated Jaccard) and
        whose identifier names at least `min_identifiers` alike: candidates share an LSH band,
        then whole signatures are compared. `sig` is the stored form (`_signature`)."""
        n = len(self.rows)
        code = self.lang_codes.get(language)
        if n == 0 or k <= 0 or code is None:
            return []
        q = _band32(sig[:NUM_PERM])
        # A vectorised pass over each band's keys: cheaper than a dict of buckets at 100k
        # rows, and no upkeep when columns die or move.
        hit = self.bands[0, :n] == q[0]
        for b in range(1, BANDS):
            hit |= self.bands[b, :n] == q[b]
        cand = np.flatnonzero(hit)
        # The other conditions on the few candidates only, not on every column.
        cand = cand[self.alive[cand] & (self.ntok[cand] >= min_tokens) & (self.lang[cand] == code)]
        if cand.size == 0:
            return []
        if min_identifiers > 0:
            names = (self.sigs[cand, NUM_PERM:] == sig[NUM_PERM:]).mean(axis=1)
            cand = cand[names >= min_identifiers]
            if cand.size == 0:
                return []
        scores = np.full(n, -np.inf)
        scores[cand] = (self.sigs[cand, :NUM_PERM] == sig[:NUM_PERM]).mean(axis=1)
        self._excluded(scores, exclude)
        top = cand[np.argsort(-scores[cand], kind="stable")][:k]
        out = []
        for i in top:
            s = float(scores[i])
            if not s >= min_score:
                break
            row = self.rows[i]
            assert row is not None
            out.append(Match(*row, score=s, kind="near"))
        return out

    def search(
        self,
        v: np.ndarray,
        k: int,
        exclude: tuple[str, int] | None,
        min_score: float,
        language: str | None = None,
        min_tokens: int = 0,
    ) -> list[Match]:
        n = len(self.rows)
        if n == 0 or k <= 0:
            return []
        # One pass over the matrix. einsum, not `v @ m`: numpy's own single-threaded SIMD loop.
        # OpenBLAS would split the product across threads, and on a busy 2-core machine (the
        # model scoring beside us) waiting for the second thread cost 4-12 ms per query even at
        # 10k functions; alone, einsum is within ~20% of single-threaded BLAS.
        scores = np.einsum("i,ij->j", v, self.columns[:, :n])
        if self.dead:
            scores[~self.alive[:n]] = -np.inf
        if language is not None:  # a cosine between two languages' functions means little
            scores[self.lang[:n] != self.lang_codes.get(language, -1)] = -np.inf
        if min_tokens > 0:
            scores[self.ntok[:n] < min_tokens] = -np.inf
        self._excluded(scores, exclude)
        if k < n:
            top = np.argpartition(scores, n - k)[n - k :]
            top = top[np.argsort(-scores[top], kind="stable")]
        else:
            top = np.argsort(-scores, kind="stable")
        out = []
        for i in top:
            s = float(scores[i])
            if not s >= min_score or s == -np.inf:  # `not >=` also drops NaN
                break
            row = self.rows[i]
            assert row is not None
            out.append(Match(*row, score=min(s, 1.0)))
        return out


def shrink_memory(db: sqlite3.Connection | None, what: str) -> None:
    """Free `db`'s page cache now (SQLite's own `sqlite3_db_release_memory`); the caller
    holds the lock its connection is used under."""
    if db is not None:
        try:
            db.execute("PRAGMA shrink_memory")
        except sqlite3.Error as e:
            log.debug("%s shrink_memory: %s", what, e)


class IndexStore:
    """Thread-safe store of indexed functions; see the module docstring for the design."""

    def __init__(self, db_path: str | os.PathLike) -> None:
        self.db_path = Path(db_path)
        self.in_memory = False  # True when the file could not be used at all
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._matrix: _Matrix | None = None
        self._data_version: int | None = None
        self._open()

    # -- opening, damage and recovery -------------------------------------------------------
    def _open(self) -> None:
        self.in_memory = False
        self._stored: dict[str, set[tuple[str, str]]] = {}  # per file: vectors written here
        self._rows_of: dict[str, set[tuple]] = {}  # per edited file: its rows (update_file)
        try:
            self._db = self._connect(self.db_path)
            return
        except (sqlite3.Error, OSError) as e:
            if isinstance(e, sqlite3.Error) and _code(e) in _KEEP:
                log.warning("index database %s unavailable (%s); in memory", self.db_path, e)
                self._db = self._connect(None)
                self.in_memory = True
                return
            log.warning("index database %s is unreadable (%s); rebuilding it", self.db_path, e)
        self._discard()
        try:
            self._db = self._connect(self.db_path)
        except (sqlite3.Error, OSError) as e:
            log.error("index database %s unusable (%s); indexing in memory", self.db_path, e)
            self._db = self._connect(None)
            self.in_memory = True

    @staticmethod
    def _connect(path: Path | None) -> sqlite3.Connection:
        if path is None:
            db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            if not path.parent.is_dir():
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Created private before SQLite writes anything; its -wal and -shm files inherit
            # the database file's mode.
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            db = sqlite3.connect(
                str(path), check_same_thread=False, timeout=5, isolation_level=None
            )
        try:
            db.execute("PRAGMA journal_mode=WAL")  # the first read: garbage fails right here
            db.execute("PRAGMA synchronous=NORMAL")  # a lost last commit only costs re-embedding
            IndexStore._ensure_schema(db)
            with _transaction(db):
                db.execute(
                    "DELETE FROM vectors WHERE used < ? AND NOT EXISTS (SELECT 1 FROM functions f "
                    "WHERE f.fingerprint = vectors.fingerprint AND f.hash = vectors.hash)",
                    (time.time() - ORPHAN_TTL_S,),
                )
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _ensure_schema(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        ]
        if version == SCHEMA_VERSION and {"functions", "vectors"} <= set(tables):
            return
        if version in _MIGRATIONS and {"functions", "vectors"} <= set(tables):
            try:
                with _transaction(db):
                    for v in range(version, SCHEMA_VERSION):
                        for stmt in _MIGRATIONS[v]:
                            db.execute(stmt)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                log.info(
                    "index schema %s migrated to %s (embeddings kept)", version, SCHEMA_VERSION
                )
                return
            except sqlite3.OperationalError as e:  # an odd old file: start over below
                log.info("index schema %s could not be migrated (%s); rebuilding", version, e)
        if version or tables:
            log.info("index schema %s is not %s; rebuilding the index", version, SCHEMA_VERSION)
        with _transaction(db):
            for t in tables:
                db.execute('DROP TABLE "{}"'.format(t.replace('"', '""')))
            for stmt in _SCHEMA:
                db.execute(stmt)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _discard(self) -> None:
        """Close and move the damaged file aside (one `.corrupt` copy is kept for a post-mortem)."""
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        self._matrix = None
        self._data_version = None
        self._stored = {}
        self._rows_of = {}
        for suffix in ("-wal", "-shm", ""):
            p = Path(f"{self.db_path}{suffix}")
            try:
                if suffix:
                    p.unlink(missing_ok=True)
                elif p.exists():
                    p.replace(p.with_name(p.name + ".corrupt"))
            except OSError as e:
                log.warning("could not move %s aside: %s", p, e)
                try:
                    p.unlink(missing_ok=True)
                except OSError:
                    pass

    def _run(self, op: Callable[[sqlite3.Connection], T], default: T) -> T:
        """Run `op` under the lock; on damage rebuild the database and try once more."""
        with self._lock:
            for attempt in (0, 1):
                if self._db is None:  # closed
                    return default
                db = self._db
                try:
                    return op(db)
                except sqlite3.Error as e:
                    if not _is_corrupt(e):
                        raise
                    if attempt:
                        log.error("index database %s still failing (%s)", self.db_path, e)
                        return default
                    log.warning("index database %s is damaged (%s); rebuilding", self.db_path, e)
                    self._discard()
                    self._open()
            return default

    # -- writes -----------------------------------------------------------------------------
    def update_file(self, uri: str, entries: list[IndexEntry]) -> None:
        """`replace_file` for a document being edited: the rows it wrote last time are kept
        in memory, and when few differ only those are deleted and inserted (in the database
        and the matrix). A keystroke in a file of 20,000 functions rewrote 20,000 rows."""
        rows = [_function_row(uri, e) for e in entries]
        with self._lock:
            prev = self._rows_of.get(uri)
        new = set(rows)
        if prev is None or len(new) != len(rows):
            self.replace_file(uri, entries, _rows=new)
            return
        removed = prev - new
        added = [i for i, r in enumerate(rows) if r not in prev]
        if len(removed) + len(added) > max(64, len(rows) // 8):
            self.replace_file(uri, entries, _rows=new)
            return
        if not removed and not added:
            return
        units = {i: _unit(entries[i].embedding) for i in added}
        now = time.time()

        def op(db: sqlite3.Connection) -> None:
            if self._rows_of.get(uri) is not prev:  # rebuilt or rewritten meanwhile: all of it
                self.replace_file(uri, entries, _rows=new)
                return
            known = self._stored.setdefault(uri, set())
            with _transaction(db):
                db.executemany(
                    "DELETE FROM functions WHERE uri = ? AND start_line = ? AND start_col = ? "
                    "AND hash = ?",
                    [(uri, r[2], r[3], r[11]) for r in removed],
                )
                db.executemany(
                    _UPSERT_VECTOR,
                    [
                        (e.fingerprint, e.hash, u.shape[0], u.tobytes(), now)
                        for i, u in units.items()
                        if ((e := entries[i]).fingerprint, e.hash) not in known
                    ],
                )
                db.executemany(
                    _INSERT_FUNCTION,
                    [rows[i] for i in added],
                )
            known.update((entries[i].fingerprint, entries[i].hash) for i in added)
            # Only a shortcut past re-writing a vector: dropping one costs an UPSERT at most,
            # and keeping every hash an edit ever made grew it per keystroke.
            known.difference_update((r[12], r[11]) for r in removed)
            self._rows_of[uri] = new
            m = self._matrix
            if m is not None:
                for r in removed:
                    m.remove_row(uri, (uri, r[1], r[2], r[3], r[4], r[5]))
                m.add(rows, entries, units, added)

        self._run(op, None)

    def forget_rows(self, uri: str) -> None:
        """Drop the rows kept for `update_file` (the document was closed)."""
        with self._lock:
            self._rows_of.pop(uri, None)

    def release_memory(self) -> None:
        """Hand SQLite's page cache back (nothing is open: it would only wait for reuse)."""
        with self._lock:
            shrink_memory(self._db, "index")

    def replace_file(
        self, uri: str, entries: list[IndexEntry], _rows: set[tuple] | None = None
    ) -> None:
        """Make `entries` the only functions indexed for `uri`, atomically.

        `uri` decides where rows go; the entries' own `uri` field is not consulted.
        """
        units = [_unit(e.embedding) for e in entries]  # validate before touching the database
        now = time.time()
        vector_rows = {
            (e.fingerprint, e.hash): (e.fingerprint, e.hash, u.shape[0], u.tobytes(), now)
            for e, u in zip(entries, units, strict=True)
        }
        function_rows = [_function_row(uri, e) for e in entries]

        def op(db: sqlite3.Connection) -> None:
            # Vectors this connection wrote for the file's last version are there still (only
            # the sweep at open deletes, and only unreferenced ones): an edit to one of 20,000
            # functions then writes one embedding, not 20 MB of them.
            known = self._stored.get(uri, set())
            with _transaction(db):
                db.execute("DELETE FROM functions WHERE uri = ?", (uri,))
                db.executemany(
                    _UPSERT_VECTOR,
                    [row for key, row in vector_rows.items() if key not in known],
                )
                db.executemany(_INSERT_FUNCTION, function_rows)
            self._stored[uri] = set(vector_rows)
            if _rows is not None:
                self._rows_of[uri] = _rows
            else:
                self._rows_of.pop(uri, None)
            m = self._matrix
            if m is not None:
                m.remove(uri)
                m.add(function_rows, entries, units, range(len(entries)))

        self._run(op, None)

    def remove_file(self, uri: str) -> None:
        def op(db: sqlite3.Connection) -> None:
            self._stored.pop(uri, None)
            self._rows_of.pop(uri, None)
            with _transaction(db):
                db.execute("DELETE FROM functions WHERE uri = ?", (uri,))
            if self._matrix is not None:
                self._matrix.remove(uri)

        self._run(op, None)

    # -- reads ------------------------------------------------------------------------------
    def files(self, fingerprint: str | None = None) -> dict[str, set[str]]:
        """Every indexed uri with the text hashes of its functions.

        With `fingerprint`, hashes indexed under another model are left out (a file indexed only
        by an older model maps to an empty set), so a caller comparing hashes re-indexes it.
        """

        def op(db: sqlite3.Connection) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for uri, h, fp in db.execute("SELECT uri, hash, fingerprint FROM functions"):
                hashes = out.setdefault(uri, set())
                if fingerprint is None or fp == fingerprint:
                    hashes.add(h)
            return out

        return self._run(op, {})

    def count(self, fingerprint: str | None = None) -> int:
        def op(db: sqlite3.Connection) -> int:
            if fingerprint is None:
                return db.execute("SELECT count(*) FROM functions").fetchone()[0]
            sql = "SELECT count(*) FROM functions WHERE fingerprint = ?"
            return db.execute(sql, (fingerprint,)).fetchone()[0]

        return self._run(op, 0)

    def cached_embeddings(self, fingerprint: str, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored unit embeddings for those hashes under this model: what need not be embedded."""
        wanted = list(dict.fromkeys(hashes))

        def op(db: sqlite3.Connection) -> dict[str, np.ndarray]:
            found: dict[str, np.ndarray] = {}
            for i in range(0, len(wanted), _CHUNK):
                part = wanted[i : i + _CHUNK]
                rows = db.execute(
                    "SELECT hash, dim, embedding FROM vectors WHERE fingerprint = ? "
                    f"AND hash IN ({', '.join('?' * len(part))})",
                    (fingerprint, *part),
                )
                for h, dim, blob in rows:
                    if len(blob) != 4 * dim:
                        raise sqlite3.DatabaseError(f"embedding of {h} has {len(blob)} bytes")
                    found[h] = np.frombuffer(blob, dtype=np.float32).copy()
            return found

        return self._run(op, {})

    def query(
        self,
        vector: np.ndarray,
        k: int,
        fingerprint: str,
        exclude: tuple[str, int] | None = None,
        min_score: float = 0.0,
        language: str | None = None,
        min_tokens: int = 0,
    ) -> list[Match]:
        """The k most similar functions under this model, best first, cosine >= min_score.

        `exclude` = (uri, start_line) leaves out the function being asked about; `language`
        keeps only functions of that language, `min_tokens` only those with clone keys of at
        least that many tokens.
        """
        v = _unit(vector)
        if not v.any():
            return []

        def op(db: sqlite3.Connection) -> list[Match]:
            m = self._current(db, fingerprint, v.shape[0])
            return m.search(v, k, exclude, min_score, language, min_tokens)

        return self._run(op, [])

    def exact(
        self,
        keys: CloneKeys,
        language: str,
        k: int,
        exclude: tuple[str, int] | None = None,
        min_tokens: int = MIN_TOKENS,
    ) -> list[Match]:
        """Type-1 and type-2 copies of a function (same language, any model), identical first.

        A lookup by the type-2 hash (indexed); the type-1 hash then tells the two apart.
        """
        if keys.n_tokens < min_tokens or k <= 0:
            return []

        def op(db: sqlite3.Connection) -> list[Match]:
            rows = db.execute(
                "SELECT uri, name, start_line, start_col, end_line, end_col, type1 "
                "FROM functions WHERE type2 = ? AND language = ? AND n_tokens >= ? "
                "LIMIT ?",
                # a few more than k: the excluded function itself and one row per model
                (keys.type2, language, min_tokens, 4 * k + 8),
            ).fetchall()
            seen, out = set(), []
            for r in sorted(rows, key=lambda r: (r[6] != keys.type1, r[0], r[2])):
                where = (r[0], r[2])
                if where in seen or (exclude is not None and where == exclude):
                    continue
                seen.add(where)
                kind = "identical" if r[6] == keys.type1 else "renamed"
                out.append(Match(*r[:6], score=1.0, kind=kind))
            return out[:k]

        return self._run(op, [])

    def near(
        self,
        keys: CloneKeys,
        language: str,
        k: int,
        fingerprint: str,
        dim: int,
        min_score: float,
        exclude: tuple[str, int] | None = None,
        min_tokens: int = NEAR_MIN_TOKENS,
        min_identifiers: float = 0.0,
    ) -> list[Match]:
        """Near copies (type-3): estimated k-gram Jaccard >= min_score and identifier-name
        Jaccard >= min_identifiers, both functions of `min_tokens` tokens or more, best first."""
        if keys.n_tokens < min_tokens:
            return []
        sig = _signature(keys)

        def op(db: sqlite3.Connection) -> list[Match]:
            m = self._current(db, fingerprint, dim)
            return m.search_near(sig, k, exclude, min_score, language, min_tokens, min_identifiers)

        return self._run(op, [])

    def _current(self, db: sqlite3.Connection, fingerprint: str, dim: int) -> _Matrix:
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:  # another process wrote: our matrix is stale
            self._matrix = None
            self._data_version = version
        m = self._matrix
        if m is None or m.fingerprint != fingerprint or m.dim != dim:
            m = self._matrix = self._load_matrix(db, fingerprint, dim)
        return m

    def preload(self, fingerprint: str, dim: int) -> int:
        """Load the search matrix now (a worker thread can pay this instead of the first query).

        Returns how many functions it holds.
        """

        def op(db: sqlite3.Connection) -> int:
            m = self._matrix
            if m is None or m.fingerprint != fingerprint or m.dim != dim:
                self._data_version = db.execute("PRAGMA data_version").fetchone()[0]
                m = self._matrix = self._load_matrix(db, fingerprint, dim)
            return len(m.rows) - m.dead

        return self._run(op, 0)

    def _load_matrix(self, db: sqlite3.Connection, fingerprint: str, dim: int) -> _Matrix:
        select = (
            "FROM functions f JOIN vectors v ON v.fingerprint = f.fingerprint AND v.hash = f.hash "
            "WHERE f.fingerprint = ? AND v.dim = ?"
        )
        with _transaction(db, "BEGIN"):  # one snapshot for the count and the rows
            n = db.execute(f"SELECT count(*) {select}", (fingerprint, dim)).fetchone()[0]
            m = _Matrix(fingerprint, dim, n + max(1024, n // 4))  # headroom for edits
            cur = db.execute(
                "SELECT f.uri, f.name, f.start_line, f.start_col, f.end_line, f.end_col, "
                f"v.embedding, f.language, f.n_tokens, f.signature {select}",
                (fingerprint, dim),
            )
            while rows := cur.fetchmany(4096):
                blob = b"".join(r[6] for r in rows)
                if len(blob) != 4 * dim * len(rows):
                    raise sqlite3.DatabaseError("an embedding blob has the wrong size")
                near = []
                for r in rows:
                    sig = None
                    if r[9] is not None:
                        if len(r[9]) != _SIG_BYTES:
                            raise sqlite3.DatabaseError("a signature blob has the wrong size")
                        sig = np.frombuffer(r[9], dtype=np.uint32)
                    near.append((r[7], int(r[8]), sig))
                m.append(
                    [r[:6] for r in rows], np.frombuffer(blob, np.float32).reshape(-1, dim), near
                )
        return m

    # -- lifetime ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the database; later calls do nothing and find nothing."""
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                except sqlite3.Error as e:
                    log.warning("closing index database: %s", e)
                self._db = None
            self._matrix = None

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _band32(sig: np.ndarray) -> np.ndarray:
    return (band_keys(sig) >> np.uint64(32)).astype(np.uint32)


def _signature(keys: CloneKeys) -> np.ndarray:
    """The stored form of a function's near-copy keys: the k-gram MinHash, then the
    identifier MinHash, as one (_SIG_LEN,) uint32 array."""
    sig = np.asarray(keys.signature, dtype=np.uint32)
    ids = np.asarray(keys.identifiers, dtype=np.uint32)
    if sig.shape != (NUM_PERM,) or ids.shape != (ID_PERM,):
        raise ValueError(
            f"a signature must have {NUM_PERM} + {ID_PERM} values, got {sig.shape} + {ids.shape}"
        )
    return np.concatenate([sig, ids])


def _sig_blob(keys: CloneKeys | None) -> bytes | None:
    return None if keys is None else _signature(keys).tobytes()


def _near(language: str, keys: CloneKeys | None) -> tuple[str, int, np.ndarray | None]:
    if keys is None:
        return (language, 0, None)
    return (language, keys.n_tokens, _signature(keys))


class _transaction:
    """BEGIN ... COMMIT, or ROLLBACK when the block raises (the connection is in autocommit)."""

    def __init__(self, db: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> None:
        self.db, self.begin = db, begin

    def __enter__(self) -> None:
        self.db.execute(self.begin)

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
