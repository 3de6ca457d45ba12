"""The similar-code index: paths and permissions, store semantics, recovery, workspace walking."""

from __future__ import annotations

import itertools
import os
import sqlite3
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.index import IndexEntry, IndexStore, cache_dir, index_db_path, iter_source_files

FP = "fp-a"


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def entry(uri: str, name: str, line: int, vec, fp: str = FP, h: str | None = None) -> IndexEntry:
    return IndexEntry(
        uri=uri,
        name=name,
        start_line=line,
        start_col=0,
        end_line=line + 3,
        end_col=1,
        name_start_line=line,
        name_start_col=4,
        name_end_line=line,
        name_end_col=4 + len(name),
        language="c",
        hash=h or f"{uri}#{name}",
        fingerprint=fp,
        embedding=np.asarray(vec, dtype=np.float32),
    )


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path):
    s = IndexStore(tmp_path / "db" / "index.sqlite")
    yield s
    s.close()


# -- paths and permissions -------------------------------------------------------------------
def test_cache_dir_from_env_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPINE_LSP_CACHE_DIR", str(tmp_path / "a" / "cache"))
    d = cache_dir()
    assert d == tmp_path / "a" / "cache" and d.is_dir()
    assert mode(d) == 0o700


def test_index_db_path_is_per_resolved_root(tmp_path: Path) -> None:
    (tmp_path / "w1").mkdir()
    (tmp_path / "w2").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "w1")
    p1 = index_db_path(tmp_path / "w1")
    assert p1 == index_db_path(tmp_path / "link") == index_db_path(tmp_path / "w1" / ".")
    assert p1 != index_db_path(tmp_path / "w2")
    assert p1.parent.parent == cache_dir()
    assert mode(p1.parent) == 0o700


def test_database_files_are_0600(tmp_path: Path) -> None:
    path = index_db_path(tmp_path)
    with IndexStore(path) as s:
        s.replace_file("file:///a.c", [entry("file:///a.c", "f", 0, [1, 0, 0])])
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert path in files and len(files) >= 2  # the database and its WAL
        assert {mode(p) for p in files} == {0o600}


# -- store semantics ---------------------------------------------------------------------------
def test_replace_and_remove(store: IndexStore) -> None:
    a, b = "file:///a.c", "file:///b.c"
    store.replace_file(a, [entry(a, "f", 0, [1, 0, 0]), entry(a, "g", 10, [0, 1, 0])])
    store.replace_file(b, [entry(b, "h", 0, [0, 0, 1])])
    assert store.count() == 3
    assert store.files() == {a: {f"{a}#f", f"{a}#g"}, b: {f"{b}#h"}}
    store.replace_file(a, [entry(a, "k", 5, [1, 1, 0])])  # replaces all of a's rows
    assert store.files()[a] == {f"{a}#k"}
    assert store.query([1, 1, 0], 5, FP)[0].name == "k"
    store.remove_file(a)
    assert set(store.files()) == {b} and store.count() == 1
    assert [m.name for m in store.query([1, 1, 0], 5, FP)] == ["h"]
    store.replace_file(b, [])
    assert store.files() == {} and store.query([0, 0, 1], 5, FP) == []


def test_query_order_topk_exclusion_and_min_score(store: IndexStore) -> None:
    a, b = "file:///a.c", "file:///b.c"
    store.replace_file(
        a,
        [
            entry(a, "self", 0, [1, 0, 0, 0]),
            entry(a, "near", 10, [1, 0.1, 0, 0]),
            entry(a, "mid", 20, [1, 1, 0, 0]),
        ],
    )
    store.replace_file(
        b, [entry(b, "far", 0, [0, 1, 0, 0]), entry(b, "opposite", 5, [-1, 0, 0, 0])]
    )
    q = [1, 0, 0, 0]
    got = store.query(q, 10, FP, exclude=(a, 0))
    assert [m.name for m in got] == ["near", "mid", "far"]  # negative scores fall below 0.0
    assert all(x.score >= y.score for x, y in itertools.pairwise(got))
    assert got[0].score == pytest.approx(float(unit([1, 0.1, 0, 0])[0]), abs=1e-6)
    m = got[0]
    assert (m.uri, m.start_line, m.start_col, m.end_line, m.end_col) == (a, 10, 0, 13, 1)
    assert [m.name for m in store.query(q, 2, FP, exclude=(a, 0))] == ["near", "mid"]
    assert [m.name for m in store.query(q, 1, FP)] == ["self"]
    assert store.query(q, 0, FP) == []
    assert [m.name for m in store.query(q, 10, FP, exclude=(a, 0), min_score=0.9)] == ["near"]
    assert len(store.query(q, 10, FP, min_score=-1.0)) == 5
    assert store.query(np.zeros(4), 10, FP) == []  # a vector with no direction finds nothing
    # a query of another dimension sees nothing of this one
    assert store.query([1, 0, 0], 10, FP) == []


def test_fingerprints_are_isolated(store: IndexStore) -> None:
    a, b = "file:///a.c", "file:///b.c"
    store.replace_file(a, [entry(a, "old", 0, [1, 0], fp="old-model", h="h1")])
    store.replace_file(b, [entry(b, "new", 0, [1, 0], fp="new-model", h="h1")])
    assert [m.name for m in store.query([1, 0], 5, "new-model")] == ["new"]
    assert [m.name for m in store.query([1, 0], 5, "old-model")] == ["old"]
    assert store.query([1, 0], 5, "other") == []
    assert store.count("new-model") == 1 and store.count() == 2
    assert store.files("new-model") == {a: set(), b: {"h1"}}
    assert set(store.cached_embeddings("old-model", ["h1", "h2"])) == {"h1"}
    assert store.cached_embeddings("none", ["h1"]) == {}


def test_matrix_follows_writes_between_queries(store: IndexStore) -> None:
    rng = np.random.default_rng(1)
    expected: dict[tuple[str, int], np.ndarray] = {}

    def put(uri: str, n: int) -> None:
        rows = [rng.standard_normal(8) for _ in range(n)]
        for key in [k for k in expected if k[0] == uri]:
            del expected[key]
        expected.update({(uri, i): unit(v) for i, v in enumerate(rows)})
        store.replace_file(uri, [entry(uri, f"f{i}", i, v) for i, v in enumerate(rows)])

    def check() -> None:
        assert store.count() == len(expected)
        keys = list(expected)
        matrix = np.stack([expected[k] for k in keys])
        for _ in range(3):
            q = unit(rng.standard_normal(8))
            want = [keys[i] for i in np.argsort(-(matrix @ q))[:7]]
            got = [(m.uri, m.start_line) for m in store.query(q, 7, FP, min_score=-1)]
            assert got == want

    for f in range(40):
        put(f"file:///{f}.c", 60)
    check()  # the matrix is built here; from now on writes update it in place
    built = store._matrix
    for f in range(0, 40, 4):
        store.remove_file(f"file:///{f}.c")
        expected = {k: v for k, v in expected.items() if k[0] != f"file:///{f}.c"}
    check()
    for f in range(1, 40, 4):
        put(f"file:///{f}.c", 5)
    for f in range(40, 45):
        put(f"file:///{f}.c", 10)
    check()
    matrix = store._matrix
    assert matrix is built  # never re-read from SQLite (our own commits are not "external")
    assert matrix is not None and len(matrix.rows) < 40 * 60  # dead rows were compacted away
    assert matrix.dead == len(matrix.rows) - len(expected)


def test_preload_and_writes_from_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    a, b = "file:///a.c", "file:///b.c"
    with IndexStore(path) as s1, IndexStore(path) as s2:
        s1.replace_file(a, [entry(a, "f", 0, [1, 0])])
        assert s1.preload(FP, 2) == 1
        s2.replace_file(b, [entry(b, "g", 0, [1, 0.1])])  # e.g. a second editor's server
        assert {m.name for m in s1.query([1, 0], 5, FP)} == {"f", "g"}


def test_cached_embeddings_survive_moves_and_restarts(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    a, b = "file:///a.c", "file:///b.c"
    with IndexStore(path) as s:
        s.replace_file(a, [entry(a, "f", 0, [3, 4], h="hf"), entry(a, "g", 9, [0, 2], h="hg")])
        got = s.cached_embeddings(FP, ["hf", "hg", "nope"])
        assert set(got) == {"hf", "hg"}
        np.testing.assert_allclose(got["hf"], [0.6, 0.8], rtol=1e-6)  # stored unit length
        assert got["hf"].dtype == np.float32
        s.replace_file(a, [entry(a, "g", 0, [0, 2], h="hg")])  # f cut from a ...
        assert set(s.cached_embeddings(FP, ["hf"])) == {"hf"}  # ... and still cached for b
    with IndexStore(path) as s:  # a restart
        assert set(s.cached_embeddings(FP, ["hf", "hg"])) == {"hf", "hg"}
        s.replace_file(b, [entry(b, "f", 4, s.cached_embeddings(FP, ["hf"])["hf"], h="hf")])
        assert [m.uri for m in s.query([3, 4], 1, FP)] == [b]
        assert s.files() == {a: {"hg"}, b: {"hf"}}


def test_closed_store_is_inert(tmp_path: Path) -> None:
    s = IndexStore(tmp_path / "i.sqlite")
    s.close()
    s.replace_file("file:///a.c", [entry("file:///a.c", "f", 0, [1, 0])])
    assert s.query([1, 0], 3, FP) == [] and s.count() == 0 and s.files() == {}
    s.close()


def test_threads_share_one_store(store: IndexStore) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        rng = np.random.default_rng(t)
        try:
            for i in range(30):
                uri = f"file:///{t}-{i % 5}.c"
                rows = [entry(uri, "f", j, rng.standard_normal(16)) for j in range(4)]
                store.replace_file(uri, rows)
                store.query(rng.standard_normal(16), 3, FP, exclude=(uri, 0))
                store.files()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.count() == 4 * 5 * 4


# -- damage and schema changes ---------------------------------------------------------------
def test_garbage_database_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    with IndexStore(path) as s:
        s.replace_file("file:///a.c", [entry("file:///a.c", "f", 0, [1, 0])])
    path.write_bytes(os.urandom(64) + b"this is not a database" * 500)
    with IndexStore(path) as s:
        assert not s.in_memory
        assert s.count() == 0 and s.query([1, 0], 3, FP) == []
        s.replace_file("file:///b.c", [entry("file:///b.c", "g", 0, [1, 0])])
        assert [m.name for m in s.query([1, 0], 3, FP)] == ["g"]
    assert (tmp_path / "i.sqlite.corrupt").exists()
    with IndexStore(path) as s:
        assert s.count() == 1  # the rebuilt file is a good database


def test_damage_found_later_rebuilds_and_retries(store: IndexStore) -> None:
    store.replace_file("file:///a.c", [entry("file:///a.c", "f", 0, [1, 0])])

    class Damaged:
        def __init__(self, real: sqlite3.Connection) -> None:
            self.real = real

        def execute(self, *a, **k):
            raise sqlite3.DatabaseError("database disk image is malformed")

        def close(self) -> None:
            self.real.close()

    store._db = Damaged(store._db)  # type: ignore[assignment]
    store.replace_file("file:///b.c", [entry("file:///b.c", "g", 0, [1, 0])])  # retried
    assert store.files() == {"file:///b.c": {"file:///b.c#g"}}
    assert store.db_path.with_name("index.sqlite.corrupt").exists()


def test_busy_database_is_not_mistaken_for_damage(store: IndexStore) -> None:
    store.replace_file("file:///a.c", [entry("file:///a.c", "f", 0, [1, 0])])
    real = store._db

    class Busy:
        def execute(self, *a, **k):
            raise sqlite3.OperationalError("database is locked")

    store._db = Busy()  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError):
        store.count()
    store._db = real
    assert store.count() == 1 and not store.db_path.with_name("index.sqlite.corrupt").exists()


def test_schema_version_mismatch_rebuilds(tmp_path: Path) -> None:
    path = tmp_path / "i.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE functions (x)")
    db.execute("INSERT INTO functions VALUES (1)")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with IndexStore(path) as s:
        assert s.count() == 0
        s.replace_file("file:///a.c", [entry("file:///a.c", "f", 0, [1, 0])])
        assert s.count() == 1


# -- a large index ----------------------------------------------------------------------------
def test_query_over_100k_functions_matches_brute_force(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n, dim, per_file = 100_000, 64, 5_000
    vecs = rng.standard_normal((n, dim), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    target = 73_123
    vecs[target + 1] = unit(vecs[target] + 0.05 * rng.standard_normal(dim))  # a near twin
    with IndexStore(tmp_path / "big.sqlite") as s:
        for f in range(n // per_file):
            uri = f"file:///{f}.c"
            s.replace_file(
                uri,
                [
                    entry(uri, f"fn{i}", i, vecs[f * per_file + i], h=str(f * per_file + i))
                    for i in range(per_file)
                ],
            )
        assert s.count() == n

        def loc(i: int) -> tuple[str, int]:
            return f"file:///{i // per_file}.c", i % per_file

        got = s.query(vecs[target], 5, FP, exclude=loc(target))
        assert (got[0].uri, got[0].start_line) == loc(target + 1) and got[0].score > 0.9
        for _ in range(3):
            q = unit(rng.standard_normal(dim))
            want = np.argsort(-(vecs @ q))[:10]
            got = s.query(q, 10, FP, min_score=-1)
            assert [(m.uri, m.start_line) for m in got] == [loc(int(i)) for i in want]
            np.testing.assert_allclose([m.score for m in got], (vecs @ q)[want], atol=1e-5)


# -- workspace files --------------------------------------------------------------------------
def write(root: Path, rel: str, data: str | bytes = "int f(void) { return 0; }\n") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return p


def listed(root: Path, **kw) -> list[str]:
    return [p.relative_to(root.resolve()).as_posix() for p in iter_source_files(root, **kw)]


def test_gitignore_root_and_nested(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, ".gitignore", "build/\n*.gen.c\n/top_only.c\n")
    write(root, "main.c")
    write(root, "top_only.c")
    write(root, "sub/top_only.c")  # the anchored pattern binds to the root only
    write(root, "build/out.c")
    write(root, "x.gen.c")
    write(root, "sub/.gitignore", "secret/\n!keep.gen.c\nlocal.py\n")
    write(root, "sub/keep.gen.c")  # re-included by the nested file
    write(root, "sub/drop.gen.c")
    write(root, "sub/local.py")
    write(root, "local.py")  # the nested pattern does not reach up
    write(root, "sub/secret/s.c")
    write(root, "sub/deeper/build/b.c")
    write(root, ".git/info/exclude", "excluded.c\n")
    write(root, "excluded.c")
    write(root, ".git/objects/x.c")
    for skip in ("node_modules", ".venv", "__pycache__", "sub/node_modules"):
        write(root, f"{skip}/m.js")
    write(root, "README.md")
    write(root, "noext")
    assert listed(root) == ["local.py", "main.c", "sub/keep.gen.c", "sub/top_only.c"]


def test_binary_oversized_and_language_filter(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write(root, "ok.py", "def f():\n    return 1\n")
    write(root, "bin.c", b"\x7fELF" + b"\0" * 20 + b"int f();")
    write(root, "late_nul.c", b"x" * 9000 + b"\0")  # only the first 8 KiB are probed
    write(root, "big.c", "int x;\n" * 2000)
    write(root, "app.ts", "function f() {}\n")
    assert listed(root, max_file_size=10_000) == ["app.ts", "late_nul.c", "ok.py"]
    assert "big.c" in listed(root)
    assert listed(root, max_file_size=10_000, languages=["python", "TypeScript"]) == [
        "app.ts",
        "ok.py",
    ]


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "secret.c")
    root = tmp_path / "ws"
    write(root, "a.c")
    (root / "to_outside").symlink_to(outside, target_is_directory=True)
    (root / "file_link.c").symlink_to(outside / "secret.c")
    (root / "loop").symlink_to(root, target_is_directory=True)
    assert listed(root) == ["a.c"]
    assert listed(tmp_path / "nope") == []


def _table(store: IndexStore) -> list[tuple]:
    db = store._db
    assert db is not None
    return sorted(db.execute("SELECT * FROM functions").fetchall(), key=repr)


def test_update_file_rewrites_only_what_changed_and_equals_replace(tmp_path: Path) -> None:
    """An edited document's rows are updated in place; the table and the matrix end up as a
    full replace_file of the same entries leaves them, through small and large changes."""
    rng = np.random.default_rng(5)
    uri = "file:///big.c"
    vecs = {i: rng.standard_normal(8) for i in range(400)}
    a, b = IndexStore(tmp_path / "a.sqlite"), IndexStore(tmp_path / "b.sqlite")
    try:
        for s in (a, b):
            s.replace_file("file:///other.c", [entry("file:///other.c", "o", 0, vecs[0])])
            s.query(unit(vecs[0]), 1, FP)  # build the matrix: writes now update it in place
        lines = list(range(200))
        names = {i: f"f{i}" for i in range(400)}

        def entries() -> list[IndexEntry]:
            return [
                entry(uri, names[i], k * 5, vecs[i], h=f"{names[i]}@{i}")
                for k, i in enumerate(lines)
            ]

        steps = [
            lambda: names.__setitem__(7, "g7"),  # one function changes
            lambda: names.__setitem__(150, "g150"),
            lambda: lines.insert(3, 300),  # one added: everything after moves (large change)
            lambda: names.__setitem__(9, "g9"),
            lambda: lines.remove(50),  # one removed: the same
            lambda: None,  # nothing changed
        ]
        a.update_file(uri, entries())
        b.replace_file(uri, entries())
        full = []
        real = a.replace_file
        a.replace_file = lambda *args, **kw: (full.append(1), real(*args, **kw))[1]
        for k, step in enumerate(steps):
            step()
            before = len(full)
            a.update_file(uri, entries())
            b.replace_file(uri, entries())
            assert _table(a) == _table(b)
            assert (len(full) > before) == (k in (2, 4))  # only the moves rewrote it all
            q = unit(rng.standard_normal(8))
            got = [(m.uri, m.name, m.start_line) for m in a.query(q, 10, FP, min_score=-1)]
            want = [(m.uri, m.name, m.start_line) for m in b.query(q, 10, FP, min_score=-1)]
            assert got == want
        assert a.count() == b.count() == len(lines) + 1
        a.remove_file(uri)  # forgets the kept rows: the next update writes everything
        a.update_file(uri, entries())
        assert _table(a) == _table(b)
    finally:
        a.close()
        b.close()


def test_edits_keep_the_matrix_and_the_written_set_bounded(store: IndexStore) -> None:
    """Each edit replaces one function's row: its old column is a tombstone that compaction
    reclaims, so thousands of edits leave the matrix near the file's size, and search still
    sees exactly the current functions."""
    rng = np.random.default_rng(3)
    uri = "file:///edited.c"
    base = [rng.standard_normal(8) for _ in range(10)]
    store.update_file(uri, [entry(uri, f"f{i}", i * 5, v, h=f"h{i}") for i, v in enumerate(base)])
    store.query(unit(base[0]), 1, FP)  # build the matrix: edits now update it in place
    vecs = list(base)
    for k in range(3000):
        i = k % 10
        vecs[i] = rng.standard_normal(8)
        store.update_file(
            uri,
            [
                entry(uri, f"f{j}", j * 5, v, h=f"h{j}" if j != i else f"h{j}-{k}")
                for j, v in enumerate(vecs)
            ],
        )
    m = store._matrix
    assert m is not None
    assert len(m.rows) - m.dead == 10 and len(m.rows) <= 10 + 257
    assert m.columns.shape[1] == 10 + 1024  # the load's headroom absorbed it: never grown
    assert len(store._stored[uri]) <= 20  # not one entry per edit
    for i in range(10):
        (hit,) = store.query(unit(vecs[i]), 1, FP)
        assert (hit.name, hit.start_line) == (f"f{i}", i * 5)
