"""No pseudo-functions from preprocessor-split C: a fixture of the `#if` shapes real C uses
(tests/fixtures/ifdef_shapes.c, written here), keyword names, nested C fragments, and
incremental edits that move a branch."""

from __future__ import annotations

from pathlib import Path

from alpine_lsp.parsing import ParsedDocument, extract_functions, get_parser
from alpine_lsp.parsing.functions import functions_from_tree
from alpine_lsp.parsing.preproc import mask
from alpine_lsp.parsing.text import LineIndex, encode

FIXTURE = (Path(__file__).parent / "fixtures" / "ifdef_shapes.c").read_text()
REAL = [
    "real_chain",
    "real_two_headers",
    "real_split_open",
    "real_switch",
    "real_loop_heads",
    "real_if_else_split",
    "real_sizes",
    "real_after",
]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines()) if needle in line)


def test_fixture_gives_exactly_the_real_functions_c_and_cpp() -> None:
    for language in ("c", "cpp"):
        functions = extract_functions(FIXTURE, language)
        assert [f.name for f in functions] == REAL, language


def test_functions_keep_their_whole_source_directives_included() -> None:
    by_name = {f.name: f for f in extract_functions(FIXTURE, "c")}
    chain = by_name["real_chain"]
    assert "#ifdef HAVE_EXTRA" in chain.text and "else if (kind == 2)" in chain.text
    assert chain.text.rstrip().endswith("return r;\n}")
    # One function does not swallow the next (split opening braces).
    split = by_name["real_split_open"]
    assert split.end_line == line_of(FIXTURE, "/* 4. A switch") - 2
    assert "real_switch" not in split.text
    # Two headers for one body: the function begins at the first header.
    two = by_name["real_two_headers"]
    assert two.start_line == line_of(FIXTURE, "void *handle")
    assert "int fd" in two.text
    for f in by_name.values():  # names point at the real name in the source
        assert FIXTURE.splitlines()[f.name_start_line][f.name_start_col :].startswith(f.name)


def test_if_zero_keeps_the_else_branch() -> None:
    text = "#if 0\nint old_one(void)\n#else\nint new_one(void)\n#endif\n{\n    return 1;\n}\n"
    assert [f.name for f in extract_functions(text, "c")] == ["new_one"]


def test_mask_keeps_every_offset_and_newline() -> None:
    data = encode("int é(void);\n#ifdef X\nint a;\n#else\nint b; /* ü */\n#endif\n")
    out, ranges = mask(data)
    assert len(out) == len(data) and ranges
    assert out.count(b"\n") == data.count(b"\n")
    assert b"int a;" in out and b"int b;" not in out and b"#" not in out
    assert mask(b"int x;\n") == (b"int x;\n", ())


def test_keyword_names_are_never_functions_even_unmasked() -> None:
    # Parsed without the mask, tree-sitter makes `else if (b) {}` a function named `if`.
    text = "void g(void)\n{\n  if (a) {\n  }\n#ifdef X\n  else if (b) {\n  }\n#endif\n}\n"
    data = encode(text)
    tree = get_parser("c").parse(data)
    names = [f.name for f in functions_from_tree(tree, "c", LineIndex(text, data))]
    assert names == ["g"]


def test_edits_that_move_branches_match_a_fresh_parse() -> None:
    doc = ParsedDocument(FIXTURE, "c")
    assert [f.name for f in doc.functions()] == REAL
    # Insert an #else that drops the rest of real_chain's branch, then take it out again.
    at = line_of(FIXTURE, "else if (kind == 2)")
    doc.apply_change(at, 0, at, 0, "#else\n")
    fresh = [(f.name, f.start_line, f.end_line, f.hash) for f in extract_functions(doc.text, "c")]
    assert [(f.name, f.start_line, f.end_line, f.hash) for f in doc.functions()] == fresh
    assert not any(name.endswith("if") for name, *_ in fresh)
    doc.apply_change(at, 0, at + 1, 0, "")
    assert doc.text == FIXTURE
    assert [f.name for f in doc.functions()] == REAL


def test_typing_directives_char_by_char_matches_a_fresh_parse() -> None:
    """Every keystroke, anywhere (before, inside and after #if groups, typing a new #else):
    the incremental document gives what a fresh parse of its text gives."""
    doc = ParsedDocument(FIXTURE, "c")
    doc.functions()
    spots = [
        (line_of(FIXTURE, "int r = 0;"), "    int pad = 1;\n"),  # before a group
        (line_of(FIXTURE, "else if (kind == 2)"), "#else\n"),  # a new branch, typed
        (line_of(FIXTURE, "return done;"), "#if defined(X)\n#endif\n"),  # a new group
        (len(FIXTURE.splitlines()) - 1, "/* tail */\n"),  # after everything
    ]
    for line, typed in spots:  # original line numbers: earlier insertions shift them, fine
        col = 0
        for ch in typed:
            doc.apply_change(line, col, line, col, ch)
            line, col = (line + 1, 0) if ch == "\n" else (line, col + 1)
            got = [(f.name, f.start_line, f.end_line, f.hash) for f in doc.functions()]
            fresh = extract_functions(doc.text, "c")
            assert got == [(f.name, f.start_line, f.end_line, f.hash) for f in fresh], repr(ch)
