"""Clone tiers through the real tree-sitter grammars and a real SQLite index: type-1 and type-2
keys, near copies by MinHash, no hint for unrelated or tiny functions, per-language thresholds
from alpine.json, the generated-file cap, and migration of a version-1 index database."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.engine import similar
from alpine_lsp.index import IndexEntry, IndexStore, Match
from alpine_lsp.index.store import SCHEMA_VERSION
from alpine_lsp.parsing import extract_functions
from alpine_lsp.parsing.clones import MIN_TOKENS, clone_keys, estimate_jaccard, tokens

FP = "fp"

C_ORIG = """\
static int parse_header(const char *buf, size_t len, struct header *out)
{
    size_t i = 0;
    if (len < 4)
        return -1;
    out->version = buf[0];
    out->flags = buf[1];
    out->length = (buf[2] << 8) | buf[3];
    for (i = 4; i < len && i < out->length; i++) {
        out->payload[i - 4] = buf[i];
    }
    return 0;
}
"""
# The same code, reformatted, with comments.
C_TYPE1 = """\
static int parse_header(const char *buf, size_t len, struct header *out) {
    size_t i = 0;  /* index */
    if (len < 4) return -1;   // too short
    out->version = buf[0]; out->flags = buf[1];
    out->length = (buf[2] << 8) | buf[3];
    for (i = 4; i < len && i < out->length; i++) { out->payload[i - 4] = buf[i]; }
    return 0;
}
"""
# Renamed identifiers and changed literals.
C_TYPE2 = """\
static int read_record(const char *data, size_t n, struct record *rec)
{
    size_t k = 1;
    if (n < 6)
        return -2;
    rec->kind = data[0];
    rec->mode = data[1];
    rec->size = (data[2] << 16) | data[3];
    for (k = 6; k < n && k < rec->size; k++) {
        rec->body[k - 6] = data[k];
    }
    return 1;
}
"""
# A near copy: one statement added, one changed.
C_TYPE3 = """\
static int parse_header(const char *buf, size_t len, struct header *out)
{
    size_t i = 0;
    if (buf == NULL || len < 4)
        return -1;
    out->version = buf[0];
    out->flags = buf[1];
    out->length = (buf[2] << 8) | buf[3];
    out->checksum = 0;
    for (i = 4; i < len && i < out->length; i++) {
        out->payload[i - 4] = buf[i];
    }
    return 0;
}
"""
C_UNRELATED = """\
void list_free(struct node *head, void (*free_value)(void *))
{
    while (head != NULL) {
        struct node *next = head->next;
        if (free_value)
            free_value(head->value);
        free(head);
        head = next;
    }
}
"""
C_TINY = "int get_x(struct p *p) { return p->x; }\n"


def keys(code: str, language: str = "c"):
    return clone_keys(code, language)


def test_type1_ignores_layout_and_comments_and_type2_ignores_names_and_literals() -> None:
    a, b, c = keys(C_ORIG), keys(C_TYPE1), keys(C_TYPE2)
    assert a.n_tokens >= MIN_TOKENS
    assert a.type1 == b.type1 and a.type2 == b.type2
    assert a.type1 != c.type1 and a.type2 == c.type2
    assert keys(C_TYPE3).type2 != a.type2 and keys(C_UNRELATED).type2 != a.type2


def test_type1_in_java_and_python() -> None:
    java = "public int add(int a, int b) {\n    // sum\n    return a + b * 2;\n}"
    java_fmt = "public int add(int a,int b){return a+b*2;}"
    assert keys(java, "java").type1 == keys(java_fmt, "java").type1
    assert [t for t, _ in tokens(java, "java")][:3] == ["public", "int", "add"]  # no wrapper
    head = "def f(self, xs):\n        t = 0\n        for x in xs:\n            t += x\n"
    py = head.replace("        t = 0", "        # total\n        t = 0") + "        return t\n"
    py_moved = head + "            return t\n"
    # Python blocks have no brackets: the keys mark them, so moving `return` into the loop
    # is a different function, while a comment is not.
    assert keys(py, "python").type1 != keys(py_moved, "python").type1
    assert keys(py, "python").type1 == keys(head + "        return t\n", "python").type1


def test_near_copy_estimate_separates_near_copies_from_unrelated_code() -> None:
    a, near, other = keys(C_ORIG), keys(C_TYPE3), keys(C_UNRELATED)
    assert estimate_jaccard(a.signature, near.signature) >= 0.5
    assert estimate_jaccard(a.signature, other.signature) < 0.2


def entry(uri: str, code: str, vec, language: str = "c") -> IndexEntry:
    f = extract_functions(code, language)[0]
    return IndexEntry.from_function(uri, language, f, FP, np.asarray(vec, np.float32), keys(code))


@pytest.fixture
def store(tmp_path: Path):
    s = IndexStore(tmp_path / "index.sqlite")
    s.replace_file("file:///src/io.c", [entry("file:///src/io.c", C_ORIG, [1, 0, 0])])
    s.replace_file("file:///b.c", [entry("file:///b.c", C_TYPE1, [0, 1, 0])])
    s.replace_file("file:///c.c", [entry("file:///c.c", C_TYPE2, [0, 0, 1])])
    s.replace_file("file:///d.c", [entry("file:///d.c", C_TYPE3, [1, 1, 0])])
    s.replace_file("file:///e.c", [entry("file:///e.c", C_UNRELATED, [1, 0, 1])])
    s.replace_file("file:///t.c", [entry("file:///t.c", C_TINY, [1, 0, 0])])
    s.replace_file("file:///u.c", [entry("file:///u.c", C_TINY, [1, 0, 0])])
    yield s
    s.close()


def hints(store: IndexStore, uri: str, code: str, vec, limits, k: int = 3) -> list[Match]:
    f = extract_functions(code, "c")[0]
    e = np.asarray(vec, np.float32)
    return similar.find(store, uri, "c", [f], [keys(code)], [e], FP, limits, k)[0]


def test_tiers_through_sqlite(store: IndexStore) -> None:
    limits = similar.Thresholds(near=0.5, cosine=None)
    got = hints(store, "file:///src/io.c", C_ORIG, [1, 0, 0], limits)
    assert [(m.uri, m.kind) for m in got] == [
        ("file:///b.c", "identical"),
        ("file:///c.c", "renamed"),
        ("file:///d.c", "near"),
    ]
    assert similar.describe(got[0], "b.c:1") == "copy of parse_header in b.c:1 (identical)"
    assert similar.describe(got[1], "c.c:1") == "copy of read_record in c.c:1 (renamed identifiers)"
    assert got[2].score >= 0.5
    assert similar.lens_title(got) == "2 copies, 1 near copy"
    # At most maxResults, strongest tier first.
    assert [m.kind for m in hints(store, "file:///src/io.c", C_ORIG, [1, 0, 0], limits, 1)] == [
        "identical"
    ]


def test_no_hint_for_unrelated_or_tiny_functions(store: IndexStore) -> None:
    limits = similar.Thresholds(near=0.5, cosine=0.9)
    assert hints(store, "file:///e.c", C_UNRELATED, [0, 1, 1], limits) == []
    # t.c and u.c hold the same tiny function with the same vector: still no hint either way.
    assert hints(store, "file:///t.c", C_TINY, [1, 0, 0], limits) == []
    got = hints(store, "file:///x.c", C_ORIG, [1, 0, 0], similar.Thresholds(0.5, 0.99))
    assert "file:///t.c" not in {m.uri for m in got}


def test_semantic_tier_uses_the_cosine_threshold(store: IndexStore) -> None:
    code = C_UNRELATED.replace("list_free", "queue_free")  # a renamed copy of e.c
    got = hints(store, "file:///q.c", code, [1, 0, 0.99], similar.Thresholds(0.99, 0.99))
    assert (got[0].uri, got[0].kind) == ("file:///e.c", "renamed")
    other = C_UNRELATED.replace("free(head);", "release(head, 1);\n        count++;")
    got = hints(store, "file:///q.c", other, [1, 0, 0.99], similar.Thresholds(0.99, 0.99))
    assert [m.kind for m in got] == ["semantic"] and got[0].uri == "file:///e.c"
    assert similar.describe(got[0], "e.c:1").startswith("similar to list_free in e.c:1 (cosine ")


def test_score_text_has_three_digits_and_never_rounds_up() -> None:
    m = Match("u", "f", 0, 0, 1, 0, score=0.99963, kind="semantic")
    assert similar.score_text(m) == "0.999"
    assert similar.score_text(Match("u", "f", 0, 0, 1, 0, score=1.0, kind="near")) == "1.000"


def test_generated_file_is_capped_with_a_log_line(caplog) -> None:
    ks = [keys(C_ORIG)] * 50 + [keys(C_UNRELATED)]
    with caplog.at_level(logging.INFO):
        keep = similar.capped("file:///gen.c", ks)
    assert sum(keep) == similar.MAX_SAME_KEY + 1 and keep[-1]
    assert "generated file" in caplog.text


def test_per_language_thresholds_from_alpine_json(tmp_path: Path) -> None:
    from alpine_lsp.model import load_model
    from alpine_lsp.model.tiny import create_tiny_model

    d = create_tiny_model(tmp_path / "m", similarity_threshold=0.5)
    meta = json.loads((d / "alpine.json").read_text())
    meta["similarity_thresholds"] = {
        "c": {"near": 0.61, "cosine": 0.97},
        "java": {"near": 0.72, "cosine": 0.995},
    }
    (d / "alpine.json").write_text(json.dumps(meta))
    model = load_model(d, device="cpu")
    assert similar.thresholds(model, "c") == similar.Thresholds(0.61, 0.97)
    assert similar.thresholds(model, "java") == similar.Thresholds(0.72, 0.995)
    assert similar.thresholds(model, "java", cosine_override=0.9).cosine == 0.9  # the setting
    fallback = similar.thresholds(model, "go")  # uncalibrated: above every calibrated one
    assert fallback.near >= 0.8 and fallback.cosine >= 0.999
    meta["similarity_thresholds"] = {"c": {"near": 3}}
    (d / "alpine.json").write_text(json.dumps(meta))
    from alpine_lsp.model import ModelLoadError

    with pytest.raises(ModelLoadError, match="out of range"):
        load_model(d, device="cpu")


V1_SCHEMA = (
    """CREATE TABLE functions (uri TEXT NOT NULL, name TEXT NOT NULL,
        start_line INTEGER NOT NULL, start_col INTEGER NOT NULL, end_line INTEGER NOT NULL,
        end_col INTEGER NOT NULL, name_start_line INTEGER NOT NULL,
        name_start_col INTEGER NOT NULL, name_end_line INTEGER NOT NULL,
        name_end_col INTEGER NOT NULL, language TEXT NOT NULL, hash TEXT NOT NULL,
        fingerprint TEXT NOT NULL)""",
    "CREATE INDEX functions_uri ON functions(uri)",
    "CREATE INDEX functions_key ON functions(fingerprint, hash)",
    """CREATE TABLE vectors (fingerprint TEXT NOT NULL, hash TEXT NOT NULL, dim INTEGER NOT NULL,
        embedding BLOB NOT NULL, used REAL NOT NULL, UNIQUE (fingerprint, hash))""",
    "CREATE INDEX vectors_used ON vectors(used)",
)


def test_version_1_index_is_migrated_keeping_embeddings(tmp_path: Path, caplog) -> None:
    import time

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for stmt in V1_SCHEMA:
        db.execute(stmt)
    vec = np.array([1, 0, 0], np.float32).tobytes()
    db.execute("INSERT INTO vectors VALUES (?, ?, 3, ?, ?)", (FP, "h1", vec, time.time()))
    db.execute(
        "INSERT INTO functions VALUES ('file:///a.c', 'f', 0, 0, 3, 0, 0, 4, 0, 5, 'c', 'h1', ?)",
        (FP,),
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with caplog.at_level(logging.INFO), IndexStore(path) as s:
        assert "migrated" in caplog.text
        assert s.cached_embeddings(FP, ["h1"]).keys() == {"h1"}  # nothing to re-embed
        assert s.files() == {}  # locations forgotten: the walk re-reads files for their keys
        s.replace_file("file:///src/io.c", [entry("file:///src/io.c", C_ORIG, [1, 0, 0])])
        got = s.exact(keys(C_TYPE1), "c", 3)
        assert [(m.name, m.kind) for m in got] == [("parse_header", "identical")]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_version_2_index_forgets_its_keys_and_keeps_embeddings(tmp_path: Path, caplog) -> None:
    """Version 3 changed the keys' values (boolean and null literals): a version-2 file's keys
    are stale, so its rows go and its embeddings stay."""
    path = tmp_path / "v2.sqlite"
    with IndexStore(path) as s:
        s.replace_file("file:///src/io.c", [entry("file:///src/io.c", C_ORIG, [1, 0, 0])])
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with caplog.at_level(logging.INFO), IndexStore(path) as s:
        assert "index schema 2 migrated" in caplog.text
        assert s.files() == {}
        assert len(s.cached_embeddings(FP, [e.hash for e in [entry("u", C_ORIG, [1, 0, 0])]])) == 1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("language", "a", "b"),
    [
        (
            "java",
            "static void copy(InputStream in, OutputStream out) throws IOException {\n"
            "    IOUtils.copy(in, out, false);\n    if (in == null) { log(null, 0); }\n}\n",
            "static void copy(InputStream src, OutputStream dst) throws IOException {\n"
            '    IOUtils.copy(src, dst, true);\n    if (src == null) { log("x", 1); }\n}\n',
        ),
        (
            "python",
            "def f(a, b):\n    if a is None:\n        return False\n    return g(a, b, True)\n",
            "def h(x, y):\n    if x is None:\n        return True\n    return g(x, y, False)\n",
        ),
        (
            "javascript",
            "function f(a) { if (a === undefined) { return false; } return g(a, null); }",
            "function h(b) { if (b === undefined) { return true; } return g(b, 0); }",
        ),
        (
            "c",
            "int f(char *p) { if (p == NULL) return false; return g(p, true); }",
            "int h(char *q) { if (q == NULL) return true; return g(q, false); }",
        ),
    ],
)
def test_boolean_and_null_literals_are_literals_to_the_type2_key(language, a, b) -> None:
    ka, kb = clone_keys(a, language), clone_keys(b, language)
    assert ka.type1 != kb.type1 and ka.type2 == kb.type2
    words = {"true", "false", "null", "none", "undefined"}
    seen = [(t, n) for t, n in tokens(a, language) if t.lower() in words]
    assert seen and all(n == "$L" for _, n in seen), seen


# Two unrelated functions of one repetitive shape: their type-2 k-grams are nearly the same
# set, their names are not (the false near copies read in the pools looked like this).
C_SHAPE_A = """\
void clear_window_options(struct winopt *wop)
{
    clear_string_option(&wop->wo_fdi);
    clear_string_option(&wop->wo_fdm);
    clear_string_option(&wop->wo_fdt);
    clear_string_option(&wop->wo_fmr);
    clear_string_option(&wop->wo_scl);
    clear_string_option(&wop->wo_rlc);
    clear_string_option(&wop->wo_stl);
    clear_string_option(&wop->wo_cc);
}
"""
C_SHAPE_B = """\
void reset_registers(struct cpu_state *cpu)
{
    zero_register(&cpu->eax);
    zero_register(&cpu->ebx);
    zero_register(&cpu->ecx);
    zero_register(&cpu->edx);
    zero_register(&cpu->esi);
    zero_register(&cpu->edi);
    zero_register(&cpu->ebp);
    zero_register(&cpu->esp);
    zero_register(&cpu->eip);
}
"""


def test_identifier_signature_tells_one_shape_from_a_copy() -> None:
    a, b = keys(C_SHAPE_A), keys(C_SHAPE_B)
    assert estimate_jaccard(a.signature, b.signature) >= 0.6  # k-grams: "a near copy"
    assert estimate_jaccard(a.identifiers, b.identifiers) < 0.2  # names: nothing shared
    orig, near = keys(C_ORIG), keys(C_TYPE3)
    assert estimate_jaccard(orig.identifiers, near.identifiers) >= 0.5  # a real near copy
    # Literals and layout do not touch the names; renaming does.
    assert np.array_equal(orig.identifiers, keys(C_TYPE1).identifiers)
    assert estimate_jaccard(orig.identifiers, keys(C_TYPE2).identifiers) < 0.5


def test_near_tier_needs_shared_names_through_sqlite(tmp_path: Path) -> None:
    with IndexStore(tmp_path / "i.sqlite") as s:
        s.replace_file("file:///a.c", [entry("file:///a.c", C_SHAPE_A, [1, 0, 0])])
        s.replace_file("file:///io.c", [entry("file:///io.c", C_ORIG, [0, 1, 0])])

        def near(code: str, names: float) -> list[str]:
            limits = similar.Thresholds(near=0.5, cosine=None, near_identifiers=names)
            return [m.name for m in hints(s, "file:///q.c", code, [0, 0, 1], limits)]

        assert near(C_SHAPE_B, 0.0) == ["clear_window_options"]  # k-grams alone: a false hint
        assert near(C_SHAPE_B, 0.5) == []
        assert near(C_TYPE3, 0.5) == ["parse_header"]  # the real near copy stays


def test_version_3_index_forgets_its_short_signatures_and_keeps_embeddings(
    tmp_path: Path, caplog
) -> None:
    """Version 4 added the identifier MinHash to the signature blob: a version-3 file's blobs
    are too short, so its rows go (the walk re-reads the files) and its embeddings stay."""
    path = tmp_path / "v3.sqlite"
    e = entry("file:///src/io.c", C_ORIG, [1, 0, 0])
    with IndexStore(path) as s:
        s.replace_file("file:///src/io.c", [e])
    db = sqlite3.connect(path)
    db.execute("UPDATE functions SET signature = substr(signature, 1, 288)")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    with caplog.at_level(logging.INFO), IndexStore(path) as s:
        assert "index schema 3 migrated" in caplog.text
        assert s.files() == {}
        assert s.cached_embeddings(FP, [e.hash]).keys() == {e.hash}
        s.replace_file("file:///src/io.c", [e])
        got = s.near(keys(C_TYPE3), "c", 3, FP, 3, 0.5, min_identifiers=0.5)
        assert [m.name for m in got] == ["parse_header"]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_near_identifiers_read_from_alpine_json(tmp_path: Path) -> None:
    from alpine_lsp.model import ModelLoadError, load_model
    from alpine_lsp.model.tiny import create_tiny_model

    d = create_tiny_model(tmp_path / "m", similarity_threshold=0.5)
    meta = json.loads((d / "alpine.json").read_text())
    meta["similarity_thresholds"] = {
        "c": {"near": 0.7, "near_identifiers": 0.5, "cosine": 0.99},
        "java": {"near": 0.8, "cosine": 0.995},  # an older table: no names rule
    }
    (d / "alpine.json").write_text(json.dumps(meta))
    model = load_model(d, device="cpu")
    assert similar.thresholds(model, "c") == similar.Thresholds(0.7, 0.99, 0.5)
    assert similar.thresholds(model, "java").near_identifiers == 0.0
    assert similar.thresholds(model, "go").near_identifiers == 0.5  # the strictest of the table
    meta["similarity_thresholds"]["c"]["near_identifiers"] = 1.5
    (d / "alpine.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="out of range"):
        load_model(d, device="cpu")


def test_small_functions_get_exact_hints_but_no_near_copies(tmp_path: Path) -> None:
    from alpine_lsp.parsing.clones import NEAR_MIN_TOKENS

    small = (
        "int on_close(uv_handle_t *h, int status)\n{\n    close_cb_called++;\n"
        "    free(h->data);\n    h->data = NULL;\n    last = status;\n    return 0;\n}\n"
    )
    near = small.replace("    return 0;", "    log_close(h);\n    return 0;")
    renamed = small.replace("close_cb_called", "closed").replace("on_close", "done")
    assert MIN_TOKENS <= keys(small).n_tokens < NEAR_MIN_TOKENS
    assert estimate_jaccard(keys(small).signature, keys(near).signature) >= 0.5
    limits = similar.Thresholds(near=0.5, cosine=None, near_identifiers=0.0)
    with IndexStore(tmp_path / "i.sqlite") as s:
        s.replace_file("file:///a.c", [entry("file:///a.c", small, [1, 0, 0])])
        assert hints(s, "file:///q.c", near, [0, 1, 0], limits) == []  # too small for "near"
        got = hints(s, "file:///r.c", renamed, [0, 1, 0], limits)
        assert [m.kind for m in got] == ["renamed"]  # exact copies keep the 30-token minimum


def test_bundled_thresholds_through_the_analysis_tell_a_near_copy_from_one_shape(
    tmp_path: Path,
) -> None:
    """The shipped rule end to end (the bundled model's alpine.json, the engine's analysis,
    a real index): a near copy is hinted, two unrelated functions of one shape are not."""
    from alpine_lsp.engine.analysis import WorkspaceAnalysis
    from alpine_lsp.engine.settings import Settings, SimilaritySettings
    from alpine_lsp.model import load_model

    near = C_TYPE3.replace("return 0;\n}", "log_header(out);\n    return 0;\n}")
    files = {"a.c": C_SHAPE_A, "b.c": C_SHAPE_B, "io.c": C_ORIG, "io_copy.c": near}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    settings = Settings(similarity=SimilaritySettings(enabled=True, max_results=3))
    model = load_model(device="cpu", threads=1)
    a, b = keys(C_SHAPE_A), keys(C_SHAPE_B)
    assert a.type2 != b.type2 and estimate_jaccard(a.signature, b.signature) >= 0.9
    hits = {}
    with WorkspaceAnalysis(model, settings, None) as analysis:
        for name in files:
            assert analysis.add(tmp_path / name) is None
        for ff in analysis.findings():
            for fd in ff.findings:
                hits[ff.path.name] = {(Path(m.uri).name, m.kind) for m in fd.similar}
    assert hits["a.c"] == set() and hits["b.c"] == set()  # k-grams alike, names not
    assert hits["io.c"] == {("io_copy.c", "near")} and hits["io_copy.c"] == {("io.c", "near")}
