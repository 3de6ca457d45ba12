"""ParsedDocument: LSP range edits, tree.edit bookkeeping and incremental re-parsing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parsing import check_consistent, lsp_offset
from tree_sitter import Node, Tree

from alpine_lsp.parsing import ParsedDocument, changed_functions, extract_functions

C_SAMPLE = (
    "#include <stdio.h>\r\n"
    "/* ünïcödé 😀 */ int add(int a, int b) {\r\n"
    "    return a + b;\r\n"
    "}\r\n"
    "\n"
    "static const char *name(void) {\n"
    '    return "中文";\n'
    "}\n"
    "struct point { int x; };\n"
    "int main(void) { if (add(1, 2)) { return 0; } return 1; }\n"
)
PY_SAMPLE = (
    "import os\r\n"
    "\r\n"
    "class Café:\r\n"
    "    def größe(self):\r\n"
    "        return '😀'\r\n"
    "\n"
    "def outer(x):\n"
    "    def inner():\n"
    "        return x  # 中文\n"
    "    return inner\n"
    "\n"
    "async def fetch():\n"
    "    pass\n"
)
PIECES = [
    "x", " ", "\t", "\n", "\r\n", "\r", "é", "😀", "中", "{", "}", "(", ")", ";", ":", "'", '"',
    "/*", "*/", "#", "//", "return 1;", "int k(void) {", "def q():\n    ", "class B:\n",
    "\ud800", "\0",
]  # fmt: skip

edits = st.lists(
    st.tuples(
        st.integers(0, 16),  # start line (past the end on purpose: positions clamp)
        st.integers(0, 60),
        st.integers(0, 16),
        st.integers(0, 60),
        st.lists(st.sampled_from(PIECES), max_size=4).map("".join),
        st.booleans(),  # parse after this edit, or let edits pile up on the old tree
    ),
    min_size=1,
    max_size=8,
)


def apply_reference(text: str, sl: int, sc: int, el: int, ec: int, new: str) -> str:
    start, end = lsp_offset(text, sl, sc), lsp_offset(text, el, ec)
    start, end = min(start, end), max(start, end)
    return text[:start] + new + text[end:]


def leaves(tree: Tree) -> list[Node]:
    found, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.child_count == 0:
            found.append(node)
        else:
            stack.extend(reversed(node.children))
    return found


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # lone surrogates: 3 bytes, as for tree-sitter


def point(data: bytes, offset: int) -> tuple[int, int]:
    head = data[:offset]
    return head.count(b"\n"), len(head) - (head.rfind(b"\n") + 1)


def check_tree_edit(doc: ParsedDocument, sl: int, sc: int, el: int, ec: int, new: str) -> None:
    """Apply one edit and check that tree.edit moved every untouched token to where its text
    now is, in bytes and in tree-sitter points."""
    before_text = doc.text
    before = [(n.start_byte, n.end_byte) for n in leaves(doc.tree)]
    old_data = utf8(before_text)
    start, end = lsp_offset(before_text, sl, sc), lsp_offset(before_text, el, ec)
    start, end = min(start, end), max(start, end)
    start_byte, old_end_byte = len(utf8(before_text[:start])), len(utf8(before_text[:end]))
    doc.apply_change(sl, sc, el, ec, new)
    new_data = utf8(doc.text)
    delta = len(new_data) - len(old_data)
    edited = doc._edited_tree()  # edited, not re-parsed: exactly what tree.edit produced
    if edited is None or before_text == doc.text:
        return
    after = leaves(edited)
    assert len(after) == len(before)
    for (old_start, old_end), node in zip(before, after, strict=True):
        if old_end < start_byte:
            assert (node.start_byte, node.end_byte) == (old_start, old_end)
        elif old_start > old_end_byte:
            assert (node.start_byte, node.end_byte) == (old_start + delta, old_end + delta)
            assert new_data[node.start_byte : node.end_byte] == old_data[old_start:old_end]
            assert tuple(node.start_point) == point(new_data, node.start_byte)
            assert tuple(node.end_point) == point(new_data, node.end_byte)


def test_apply_change_edits_text_and_functions() -> None:
    doc = ParsedDocument("int a() { return 1; }\n", "c")
    assert [f.name for f in doc.functions()] == ["a"]
    doc.apply_change(1, 0, 1, 0, "int b() { return 2; }\n")
    doc.apply_change(0, 4, 0, 5, "first")
    assert doc.text == "int first() { return 1; }\nint b() { return 2; }\n"
    assert [f.name for f in doc.functions()] == ["first", "b"]
    assert doc.functions() == extract_functions(doc.text, "c")


def test_return_1_to_return_2_is_a_change() -> None:
    doc = ParsedDocument("int a() { return 1; }\nint b() { return 1; }\n", "c")
    old = doc.functions()
    col = doc.text.index("1")
    doc.apply_change(0, col, 0, col + 1, "2")
    new = doc.functions()
    assert [f.name for f in changed_functions(old, new)] == ["a"]
    assert [(f.start_line, f.end_col) for f in new] == [(f.start_line, f.end_col) for f in old]


def test_columns_are_code_points_in_edits() -> None:
    doc = ParsedDocument("s = '😀中'\r\ndef f():\r\n    return 1\r\n", "python")
    doc.apply_change(0, 6, 0, 7, "é")  # replaces 中, after a 1-code-point emoji
    assert doc.text.startswith("s = '😀é'\r\n")
    doc.apply_change(2, 11, 2, 12, "22")
    assert "return 22\r\n" in doc.text
    (f,) = doc.functions()
    assert (f.start_line, f.end_line, f.end_col) == (1, 2, len("    return 22"))
    assert doc.functions() == extract_functions(doc.text, "python")


def test_out_of_range_positions_clamp() -> None:
    doc = ParsedDocument("int a;\r\nint b;", "c")
    doc.apply_change(0, 99, 0, 99, "/*x*/")  # past the line end: before the \r\n
    assert doc.text == "int a;/*x*/\r\nint b;"
    doc.apply_change(50, 0, 60, 3, "\nint c() { return 3; }")  # past the document end
    assert doc.text.endswith("int b;\nint c() { return 3; }")
    doc.apply_change(1, 2, 0, 0, "")  # reversed range
    assert doc.text.startswith("t b;")
    assert [f.name for f in doc.functions()] == ["c"]


def test_functions_are_cached_until_a_change() -> None:
    doc = ParsedDocument("def a():\n    return 1\n", "python")
    first = doc.functions()
    assert doc.functions()[0] is first[0]
    tree = doc.tree
    doc.apply_change(0, 0, 0, 0, "")  # no-op edit
    assert doc.tree is tree and doc.functions()[0] is first[0]
    doc.apply_change(1, 11, 1, 12, "2")
    assert doc.functions()[0] is not first[0]
    assert doc.functions()[0].text == "def a():\n    return 2"


def test_replace_text_matches_a_fresh_parse() -> None:
    doc = ParsedDocument(C_SAMPLE, "c")
    doc.functions()
    new_text = C_SAMPLE.replace("return a + b;", "return a - b; /* 🙂 */")
    doc.replace_text(new_text)
    assert doc.text == new_text
    assert doc.functions() == extract_functions(new_text, "c")
    doc.replace_text("")
    assert doc.text == "" and doc.functions() == []


def test_replace_text_edits_the_tree_over_the_difference() -> None:
    doc = ParsedDocument(C_SAMPLE, "c")
    doc.functions()
    tree = doc._tree
    doc.replace_text(C_SAMPLE.replace("return 1;", "return 12;"))
    assert doc._tree is tree and len(doc._edits) == 1  # kept, the edit queued: incremental
    assert doc.functions() == extract_functions(doc.text, "c")


@pytest.mark.parametrize("language", ["c", "python", "javascript"])
def test_unicode_and_crlf_edit_moves_tokens_correctly(language: str) -> None:
    text = {"c": C_SAMPLE, "python": PY_SAMPLE, "javascript": "const a = '😀';\r\nlet b = 2;\n"}
    doc = ParsedDocument(text[language], language)
    check_tree_edit(doc, 1, 2, 1, 5, "中\r\n😀")
    check_tree_edit(doc, 0, 0, 0, 0, "\r\n")
    check_tree_edit(doc, 2, 1, 3, 0, "é")


@pytest.mark.parametrize("language, sample", [("c", C_SAMPLE), ("python", PY_SAMPLE)])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=edits)
def test_random_edits_move_tokens_correctly(language: str, sample: str, steps: list) -> None:
    doc = ParsedDocument(sample, language)
    for sl, sc, el, ec, new, _ in steps:
        check_tree_edit(doc, sl, sc, el, ec, new)


@pytest.mark.parametrize("language, sample", [("c", C_SAMPLE), ("python", PY_SAMPLE)])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=edits)
def test_random_edits_match_a_fresh_parse(language: str, sample: str, steps: list) -> None:
    doc = ParsedDocument(sample, language)
    expected = sample
    doc.functions()
    for sl, sc, el, ec, new, parse_now in steps:
        doc.apply_change(sl, sc, el, ec, new)
        expected = apply_reference(expected, sl, sc, el, ec, new)
        assert doc.text == expected
        if parse_now:
            assert doc.functions() == extract_functions(expected, language)
    functions = doc.functions()
    assert functions == extract_functions(expected, language)
    check_consistent(expected, functions)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=edits)
def test_random_full_syncs_match_a_fresh_parse(steps: list) -> None:
    doc = ParsedDocument(C_SAMPLE, "c")
    expected = C_SAMPLE
    for sl, sc, el, ec, new, parse_now in steps:
        expected = apply_reference(expected, sl, sc, el, ec, new)
        doc.replace_text(expected)
        assert doc.text == expected
        if parse_now:
            assert doc.functions() == extract_functions(expected, "c")
    assert doc.functions() == extract_functions(expected, "c")


def test_language_ids_are_accepted_and_unknown_languages_rejected() -> None:
    assert ParsedDocument("", "typescriptreact").language == "tsx"
    assert ParsedDocument("", "cpp").language == "cpp"
    with pytest.raises(ValueError):
        ParsedDocument("", "cobol")
