"""Score cache keyed by (model fingerprint, language, function-text hash).

Two levels: a bounded in-memory LRU, and SQLite in the user cache directory so that reopening a
file or restarting the editor scores nothing that did not change. A damaged database is moved
aside and rebuilt; the cache is an optimisation and never a reason to fail.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..model.score import FunctionScore

log = logging.getLogger(__name__)
SCHEMA = 1


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
    # ~3 KB per entry (embedding, layer lengths, explanations): 2,000 keep the open files'
    # functions hot in ~6 MB; SQLite holds the rest and answers in well under a millisecond.
    def __init__(self, db_path: Path | None, memory_items: int = 2_000) -> None:
        self.memory: OrderedDict[tuple[str, str, str], FunctionScore] = OrderedDict()
        self.memory_items = memory_items
        self.db_path = db_path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if db_path is not None:
            self._open()

    def _open(self) -> None:
        assert self.db_path is not None
        try:
            self._db = self._connect(self.db_path)
        except sqlite3.DatabaseError as e:
            log.warning("score cache %s is unreadable (%s); rebuilding it", self.db_path, e)
            self._discard()
            try:
                self._db = self._connect(self.db_path)
            except sqlite3.DatabaseError as e2:
                log.error("score cache disabled: %s", e2)
                self._db = None

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Created private before SQLite writes anything into it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(str(path), check_same_thread=False, timeout=5)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if version not in (0, SCHEMA):
            db.execute("DROP TABLE IF EXISTS scores")
        db.execute(
            "CREATE TABLE IF NOT EXISTS scores (fingerprint TEXT, language TEXT, hash TEXT, "
            "probability REAL, meta TEXT, embedding BLOB, "
            "PRIMARY KEY (fingerprint, language, hash)) WITHOUT ROWID"
        )
        db.execute(f"PRAGMA user_version={SCHEMA}")
        db.execute("SELECT count(*) FROM scores").fetchone()  # reads the pages: detects damage
        db.commit()
        return db

    def _discard(self) -> None:
        assert self.db_path is not None
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.db_path) + suffix)
            if p.exists():
                p.replace(p.with_name(p.name + ".corrupt")) if not suffix else p.unlink()

    def _recover(self, e: Exception) -> None:
        log.warning("score cache error (%s); rebuilding %s", e, self.db_path)
        self._discard()
        self._open()

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
                else:
                    missing.append(h)
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
                            score = _from_row(prob, meta, emb)
                            found[h] = score
                            self._remember((fingerprint, language, h), score)
                except (sqlite3.DatabaseError, ValueError, KeyError) as e:
                    self._recover(e)
        return found

    def put_many(self, fingerprint: str, language: str, scores: dict[str, FunctionScore]) -> None:
        with self._lock:
            for h, s in scores.items():
                self._remember((fingerprint, language, h), s)
            if self._db is None or not scores:
                return
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?)",
                    [(fingerprint, language, h, *_to_row(s)) for h, s in scores.items()],
                )
                self._db.commit()
            except sqlite3.DatabaseError as e:
                self._recover(e)

    def _remember(self, key: tuple[str, str, str], score: FunctionScore) -> None:
        self.memory[key] = score
        self.memory.move_to_end(key)
        while len(self.memory) > self.memory_items:
            self.memory.popitem(last=False)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
