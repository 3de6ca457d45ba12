"""Edits cost O(edit): the rope of skipped documents, positions without line tables, and
parsing that never holds the document while edits come in."""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpine_lsp.engine import rawtext
from alpine_lsp.engine.positions import client_offset, to_codepoint
from alpine_lsp.engine.rawtext import RawText
from alpine_lsp.parsing import ParsedDocument, document
from alpine_lsp.parsing.text import LineIndex, char_offset, encode

_EOL = re.compile(r"\r\n|\r|\n")


def ref_offset(text: str, line: int, character: int, encoding: str) -> int:
    """The obvious way: a full line table (what the message loop used to build per edit)."""
    if line < 0:
        return 0
    starts = [0, *(m.end() for m in _EOL.finditer(text))]
    if line >= len(starts):
        return len(text)
    m = _EOL.search(text, starts[line])
    end = m.start() if m else len(text)
    return starts[line] + to_codepoint(text[starts[line] : end], max(0, character), encoding)


pieces = st.sampled_from(["a", "bc", "\n", "\r", "\r\n", "😀", "é", "\x00", "  "])
texts = st.lists(pieces, max_size=40).map("".join)
position = st.tuples(st.integers(-1, 12), st.integers(-1, 12))
edit = st.tuples(position, position, texts)
encodings = st.sampled_from(["utf-8", "utf-16", "utf-32"])


@pytest.mark.parametrize("chunk", [1, 3, 7, 16])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(start=texts, steps=st.lists(edit, max_size=8), encoding=encodings)
def test_rope_matches_a_plain_string(monkeypatch, chunk, start, steps, encoding) -> None:
    monkeypatch.setattr(rawtext, "CHUNK", chunk)  # many chunks, seams everywhere (same each run)
    rope, plain = RawText(start), start
    for (l1, c1), (l2, c2), new in steps:
        a, b = ref_offset(plain, l1, c1, encoding), ref_offset(plain, l2, c2, encoding)
        assert rope.offset(l1, c1, encoding) == a
        assert client_offset(plain, l1, c1, encoding) == a
        a, b = min(a, b), max(a, b)
        plain = plain[:a] + new + plain[b:]
        rope.splice((l1, c1, l2, c2), new, encoding)
        assert str(rope) == plain and rope == plain and len(rope) == len(plain)
        # No \r\n pair straddles two chunks: per-chunk break counts add up.
        for left, right in zip(rope._chunks, rope._chunks[1:], strict=False):
            assert not (left.endswith("\r") and right.startswith("\n"))
    assert rope.utf8_length() == len(plain.encode("utf-8", "surrogatepass"))
    assert rope.longest_line() == max(map(len, plain.split("\n")))
    assert rope.head(5) == plain[:5]


@settings(max_examples=100, deadline=None)
@given(text=texts, line=st.integers(-1, 12), col=st.integers(-1, 12))
def test_char_offset_matches_the_line_index(text, line, col) -> None:
    assert char_offset(text, line, col) == LineIndex(text, encode(text)).offset(line, col)


def test_a_big_rope_edits_in_place() -> None:
    text = "int f(void) { return 1; }\n" * 20_000
    rope = RawText(text)
    chunks = list(rope._chunks)
    rope.splice((10_000, 4, 10_000, 5), "g", "utf-16")
    changed = sum(a is not b for a, b in zip(chunks, rope._chunks, strict=True))
    assert changed <= 2  # the chunk edited (and a neighbour it may merge with), not the rest
    assert str(rope) == text[: 10_000 * 26 + 4] + "g" + text[10_000 * 26 + 5 :]


def test_edits_wait_for_no_parse(monkeypatch) -> None:
    """A parse runs outside the document's lock: an edit made meanwhile is applied at once,
    the parse's functions are those of the text it started from, and the next call sees the
    edit."""
    doc = ParsedDocument("int a(void) { return 1; }\n", "c")
    started, release = threading.Event(), threading.Event()
    real = document._parse

    def slow_parse(*args):
        started.set()
        assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(document, "_parse", slow_parse)
    got: list = []
    worker = threading.Thread(target=lambda: got.append(doc.functions()))
    worker.start()
    assert started.wait(30)
    editor = threading.Thread(target=doc.apply_change, args=(0, 4, 0, 5, "b"))
    editor.start()
    editor.join(10)
    edited_while_parsing = not editor.is_alive()
    release.set()
    worker.join(30)
    editor.join(30)
    assert edited_while_parsing
    assert [f.name for f in got[0]] == ["a"]  # the snapshot it parsed
    monkeypatch.setattr(document, "_parse", real)
    assert [f.name for f in doc.functions()] == ["b"]
    assert doc.functions() == document.extract_functions(doc.text, "c")


@settings(max_examples=200, deadline=None)
@given(text=texts)
def test_line_index_fast_path_matches_the_regex_one(text) -> None:
    """Texts without \r take the numpy path, the others the regex one: both give the table
    a full regex scan gives."""
    fast = LineIndex(text, encode(text))
    starts = [0, *(m.end() for m in _EOL.finditer(text))]
    ends = [*(m.start() for m in _EOL.finditer(text)), len(text)]
    assert fast._char_starts == starts and fast._content_ends == ends
    assert fast._byte_starts == [len(encode(text[:s])) for s in starts]
    for off in range(len(text) + 1):
        assert fast.byte_to_char(fast.char_to_byte(off)) == off


SOURCES = {
    "c": "".join(
        f"{'// alpine: ignore' if i % 3 == 0 else '/* f */'}\nstatic int fn_{i}(int a)\n"
        f"{{\n    return a + {i};\n}}\n"
        for i in range(12)
    ),
    "python": "".join(
        f"# alpine: ignore\ndef f{i}(a):\n    return a + {i}\n\n"
        if i % 2
        else f"class C{i}:\n    def m(self):\n        return {i}\n\n"
        for i in range(10)
    ),
    "javascript": "".join(
        f"const f{i} = (a) => a + {i};\nfunction g{i}() {{ return () => {i}; }}\n"
        for i in range(10)
    ),
}
inserts = st.sampled_from(
    ["x", "\n", "\n\n", "// alpine: ignore\n", "}", "{", "int q(void) { return 0; }\n", " ", ""]
)
edits_many = st.lists(
    st.tuples(st.integers(0, 70), st.integers(0, 30), st.integers(0, 2), inserts),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("language", sorted(SOURCES))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=edits_many, batch=st.booleans())
def test_functions_after_edits_equal_a_fresh_extraction(language, steps, batch) -> None:
    """Reusing the functions of top-level nodes an edit left alone gives exactly what a fresh
    parse and walk of the whole text give."""
    doc = ParsedDocument(SOURCES[language], language)
    doc.functions()
    for line, col, span, new in steps:
        doc.apply_change(line, col, line + (span == 2), col + span, new)
        if not batch:  # one extraction per edit, or several edits between extractions
            assert doc.functions() == document.extract_functions(doc.text, language)
    assert doc.functions() == document.extract_functions(doc.text, language)


def test_an_edit_rewalks_only_the_function_it_touches() -> None:
    text = "".join(f"int fn_{i}(int a)\n{{\n    return a + {i};\n}}\n" for i in range(200))
    doc = ParsedDocument(text, "c")
    before = doc.functions()
    doc.apply_change(100 * 4 + 2, 15, 100 * 4 + 2, 15, " * 2")  # inside fn_100's body
    after = doc.functions()
    assert after == document.extract_functions(doc.text, "c")
    same = [a is b for a, b in zip(before, after, strict=True)]
    assert [i for i, kept in enumerate(same) if not kept] == [100]  # the others kept as is
    doc.apply_change(100 * 4 + 2, 0, 100 * 4 + 2, 0, "\n")  # a line more inside fn_100
    moved = doc.functions()
    assert moved == document.extract_functions(doc.text, "c")
    assert all(a is b for a, b in zip(after[:100], moved, strict=False))
    assert [f.start_line for f in moved[101:]] == [f.start_line + 1 for f in after[101:]]


def test_memoised_similar_hints_follow_edits(tmp_path, tiny_model_dir, monkeypatch) -> None:
    """Hints kept from the last analysis must not go stale: when a copy stops being one, its
    twin loses the hint; when a new copy appears, the function it copies gains one."""
    import time

    from alpine_lsp.engine.engine import Engine
    from alpine_lsp.engine.settings import Settings, SimilaritySettings
    from tests.lsp_util import TWIN

    monkeypatch.setenv("ALPINE_LSP_CACHE_DIR", str(tmp_path / "cache"))
    other = "static int other(int a)\n{\n    return a * 3 - 1;\n}\n"
    root = tmp_path / "ws"
    root.mkdir()
    settings = Settings(
        model=str(tiny_model_dir),
        debounce_ms=0,
        similarity=SimilaritySettings(threshold=0.9999),
    )
    engine = Engine(settings, cache_path=tmp_path / "scores.sqlite")
    engine.start(root)
    uri = (root / "t.c").as_uri()

    def hints(version: int) -> dict[str, list[int]]:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            r = engine.result(uri)
            if r is not None and r.version == version and r.scored:
                return {f.function.name: [m.start_line for m in f.similar] for f in r.functions}
            time.sleep(0.02)
        raise AssertionError(f"no result for version {version}")

    try:
        while engine.holder.model is None:
            time.sleep(0.05)
        twin_b = TWIN.replace("sum_positive", "sum_b")
        engine.open(uri, TWIN + other + twin_b, "c", 1)
        first = hints(1)
        b_line = (TWIN + other).count("\n")
        assert first["sum_positive"] == [b_line] and first["sum_b"] == [0]
        assert first["other"] == []
        # sum_positive stops being a copy: sum_b's kept hint must go.
        engine.change(uri, 2, [((2, 4, 2, 4), "long extra = 1; ")], encoding="utf-16")
        second = hints(2)
        assert second["sum_positive"] == [] and second["sum_b"] == []
        # A new copy of sum_b at the end: sum_b, unchanged, gains the hint.
        end_line = (TWIN + other + twin_b).count("\n")
        twin_c = TWIN.replace("sum_positive", "sum_c")
        engine.change(uri, 3, [((end_line, 0, end_line, 0), twin_c)], encoding="utf-16")
        third = hints(3)
        assert third["sum_c"] == [b_line] and third["sum_b"] == [end_line]
    finally:
        engine.stop()
