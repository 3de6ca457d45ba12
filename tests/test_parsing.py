"""Function extraction, languages, ignore comments and robustness, on the real grammars."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alpine_lsp.parsing import (
    LANGUAGES,
    Function,
    changed_functions,
    comment_prefix,
    extract_functions,
    file_ignored,
    get_parser,
    language_for,
)


def lsp_lines(text: str) -> list[tuple[int, int]]:
    """(start, content end) of each line, splitting on \\r\\n, \\r and \\n; written by hand so it
    does not share code with the implementation."""
    lines, start, i = [], 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "\n" or ch == "\r":
            lines.append((start, i))
            i += 2 if text[i : i + 2] == "\r\n" else 1
            start = i
        else:
            i += 1
    lines.append((start, len(text)))
    return lines


def lsp_offset(text: str, line: int, col: int) -> int:
    lines = lsp_lines(text)
    if line >= len(lines):
        return len(text)
    start, end = lines[line]
    return start + min(col, end - start)


def lsp_slice(text: str, sl: int, sc: int, el: int, ec: int) -> str:
    return text[lsp_offset(text, sl, sc) : lsp_offset(text, el, ec)]


def name_text(text: str, f: Function) -> str:
    return lsp_slice(text, f.name_start_line, f.name_start_col, f.name_end_line, f.name_end_col)


def check_consistent(text: str, functions: list[Function]) -> None:
    """Every range must cut out exactly the function text, and the name must lie inside it."""
    for f in functions:
        assert lsp_slice(text, f.start_line, f.start_col, f.end_line, f.end_col) == f.text
        assert (f.start_line, f.start_col) <= (f.name_start_line, f.name_start_col)
        assert (f.name_end_line, f.name_end_col) <= (f.end_line, f.end_col)


# language -> (source, [(name, kind, identifier under the name range)])
SAMPLES: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "c": (
        "#include <stdio.h>\n"
        "int add(int a, int b) {\n"
        "    return a + b;\n"
        "}\n"
        "static char *\n"
        "dup(const char *s) { return 0; }\n"
        "void (*signal(int sig, void (*h)(int)))(int) { return 0; }\n"
        "int prototype(void);\n",
        [
            ("add", "function", "add"),
            ("dup", "function", "dup"),
            ("signal", "function", "signal"),
        ],
    ),
    "cpp": (
        "namespace ns {\n"
        "class Widget {\n"
        " public:\n"
        "  Widget() {}\n"
        "  ~Widget() {}\n"
        "  int& size() const { return n_; }\n"
        "  Widget(const Widget&) = default;\n"
        "};\n"
        "int* Widget::data(int i) { return nullptr; }\n"
        "Widget::Widget(int n) : n_(n) {}\n"
        "}\n"
        "template <class T> T twice(T x) { return x + x; }\n"
        "bool operator==(const A& a, const A& b) { return true; }\n",
        [
            ("ns::Widget::Widget", "constructor", "Widget"),
            ("ns::Widget::~Widget", "method", "~Widget"),
            ("ns::Widget::size", "method", "size"),
            ("ns::Widget::data", "method", "data"),
            ("ns::Widget::Widget", "constructor", "Widget"),
            ("twice", "function", "twice"),
            ("operator==", "function", "operator=="),
        ],
    ),
    "java": (
        "package a;\n"
        "public class Shop {\n"
        "    public Shop() {}\n"
        "    @Override\n"
        "    public int price(int n) { return n * 2; }\n"
        "    abstract void pending();\n"
        "    interface Api { void call(); default void ping() {} }\n"
        "    record Point(int x) { Point { } }\n"
        "}\n",
        [
            ("Shop.Shop", "constructor", "Shop"),
            ("Shop.price", "method", "price"),
            ("Shop.Api.ping", "method", "ping"),
            ("Shop.Point.Point", "constructor", "Point"),
        ],
    ),
    "python": (
        "import os\n"
        "\n"
        "def top(a):\n"
        "    def inner():\n"
        "        return a\n"
        "    return inner\n"
        "\n"
        "class Box:\n"
        "    @property\n"
        "    def size(self):\n"
        "        return 1\n"
        "\n"
        "    async def fetch(self):\n"
        "        pass\n"
        "\n"
        "square = lambda x: x * x\n",
        [
            ("top", "function", "top"),
            ("top.inner", "function", "inner"),
            ("Box.size", "method", "size"),
            ("Box.fetch", "method", "fetch"),
        ],
    ),
    "javascript": (
        "function plain(a) { return a; }\n"
        "function* gen() { yield 1; }\n"
        "const arrow = (x) => x + 1;\n"
        "let expr = function () { return 2; };\n"
        "module.exports.handler = async () => {};\n"
        "class Cart {\n"
        "  constructor() { this.items = []; }\n"
        "  total() { return 0; }\n"
        "  onClick = () => { function helper() {} };\n"
        "}\n"
        "const api = { get(id) { return id; }, put: (v) => v };\n"
        "[1, 2].map((n) => n * 2);\n",
        [
            ("plain", "function", "plain"),
            ("gen", "function", "gen"),
            ("arrow", "function", "arrow"),
            ("expr", "function", "expr"),
            ("module.exports.handler", "function", "handler"),
            ("Cart.constructor", "constructor", "constructor"),
            ("Cart.total", "method", "total"),
            ("Cart.onClick", "method", "onClick"),
            ("Cart.onClick.helper", "function", "helper"),
            ("get", "method", "get"),
            ("put", "method", "put"),
        ],
    ),
    "typescript": (
        "export function greet(name: string): string { return name; }\n"
        "function over(a: string): void;\n"
        "function over(a: any) {}\n"
        "namespace Util { export const id = <T,>(x: T): T => x; }\n"
        "abstract class Shape {\n"
        "  abstract area(): number;\n"
        "  describe(): string { return 'shape'; }\n"
        "  private scale = (k: number): number => k;\n"
        "}\n"
        "interface Named { name(): string; }\n",
        [
            ("greet", "function", "greet"),
            ("over", "function", "over"),
            ("Util.id", "function", "id"),
            ("Shape.describe", "method", "describe"),
            ("Shape.scale", "method", "scale"),
        ],
    ),
    "tsx": (
        "export function App(props: { n: number }) {\n"
        "  return <div>{props.n}</div>;\n"
        "}\n"
        "const Item = ({ label }: { label: string }) => <li>{label}</li>;\n",
        [("App", "function", "App"), ("Item", "function", "Item")],
    ),
    "go": (
        "package main\n"
        "\n"
        "func Add(a, b int) int { return a + b }\n"
        "func (s *Stack[T]) Push(v T) { s.items = append(s.items, v) }\n"
        "func (Queue) Len() int { return 0 }\n"
        "func asmOnly()\n",
        [
            ("Add", "function", "Add"),
            ("Stack.Push", "method", "Push"),
            ("Queue.Len", "method", "Len"),
        ],
    ),
    "rust": (
        "fn main() {\n"
        "    fn helper() {}\n"
        "}\n"
        "impl<T> Stack<T> {\n"
        "    pub fn push(&mut self, v: T) {}\n"
        "}\n"
        "impl Display for crate::Point { fn fmt(&self) {} }\n"
        "trait Shape { fn area(&self) -> f64; fn name(&self) -> u8 { 0 } }\n"
        "mod util { #[inline]\n"
        "pub fn clamp() {} }\n",
        [
            ("main", "function", "main"),
            ("main::helper", "function", "helper"),
            ("Stack::push", "method", "push"),
            ("Point::fmt", "method", "fmt"),
            ("Shape::name", "method", "name"),
            ("util::clamp", "function", "clamp"),
        ],
    ),
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_sample_names_kinds_and_ranges(language: str) -> None:
    text, expected = SAMPLES[language]
    functions = extract_functions(text, language)
    got = [(f.name, f.kind, name_text(text, f)) for f in functions]
    assert got == expected
    check_consistent(text, functions)
    assert all(len(f.hash) == 32 and not f.ignored for f in functions)


def test_c_exact_ranges() -> None:
    text = SAMPLES["c"][0]
    add, dup, sig = extract_functions(text, "c")
    assert (add.start_line, add.start_col, add.end_line, add.end_col) == (1, 0, 3, 1)
    assert (add.name_start_line, add.name_start_col, add.name_end_line, add.name_end_col) == (
        1,
        4,
        1,
        7,
    )
    assert add.text == "int add(int a, int b) {\n    return a + b;\n}"
    # The return type on its own line belongs to the function; the name is on the next line.
    assert (dup.start_line, dup.start_col, dup.name_start_line, dup.name_start_col) == (4, 0, 5, 0)
    assert sig.name_start_col == len("void (*")


def test_python_decorators_belong_to_the_function() -> None:
    text = SAMPLES["python"][0]
    size = next(f for f in extract_functions(text, "python") if f.name == "Box.size")
    assert size.text.startswith("@property\n    def size(self):")
    assert (size.start_line, size.start_col, size.name_start_line) == (8, 4, 9)


def test_javascript_assigned_function_spans_the_declaration() -> None:
    text = SAMPLES["javascript"][0]
    by_name = {f.name: f for f in extract_functions(text, "javascript")}
    assert by_name["arrow"].text == "const arrow = (x) => x + 1;"
    assert by_name["module.exports.handler"].text == "module.exports.handler = async () => {};"
    assert by_name["put"].text == "put: (v) => v"


def test_rust_attributes_and_cpp_templates_belong_to_the_function() -> None:
    rust = {f.name: f for f in extract_functions(SAMPLES["rust"][0], "rust")}
    assert rust["util::clamp"].text == "#[inline]\npub fn clamp() {}"
    cpp = {f.name: f for f in extract_functions(SAMPLES["cpp"][0], "cpp")}
    assert cpp["twice"].text.startswith("template <class T> T twice")


SYNTAX_ERRORS = {
    "c": (
        "int good1(void) { return 1; }\nint broken( { ]] @@ ;\nint good2(int x) { return x; }\n",
        {"good1", "good2"},
    ),
    "python": (
        "def good1():\n    return 1\n\ndef broken(:\n    )))\n\ndef good2(x):\n    return x\n",
        {"good1", "good2"},
    ),
    "java": (
        "class A {\n  void good1() {}\n  void broken() { int x = ; @@ }\n"
        "  int good2() { return 2; }\n}\n",
        {"A.good1", "A.good2"},
    ),
    "javascript": (
        "function good1() { return 1; }\n"
        "function broken() { let = ; @@ }\n"
        "const good2 = () => 2;\n",
        {"good1", "good2"},
    ),
    "go": (
        "package p\nfunc Good1() {}\nfunc Broken( {\n}\nfunc Good2() int { return 2 }\n",
        {"Good1", "Good2"},
    ),
    "rust": ("fn good1() {}\nfn broken( -> {\nfn good2() -> u8 { 2 }\n", {"good1", "good2"}),
}


@pytest.mark.parametrize("language", sorted(SYNTAX_ERRORS))
def test_syntax_errors_keep_the_valid_functions(language: str) -> None:
    text, must_have = SYNTAX_ERRORS[language]
    assert get_parser(language).parse(text.encode()).root_node.has_error
    functions = extract_functions(text, language)
    assert must_have <= {f.name for f in functions}
    check_consistent(text, functions)


def test_changed_functions_is_hash_based() -> None:
    old = extract_functions("int a() { return 1; }\nint b() { return 1; }\n", "c")
    new = extract_functions("int a() { return 2; }\n\n\nint b() { return 1; }\n", "c")
    assert [f.name for f in changed_functions(old, new)] == ["a"]  # b only moved
    assert changed_functions(new, new) == []
    assert [f.name for f in changed_functions([], new)] == ["a", "b"]
    # Same text in another language is another function.
    assert extract_functions("int a() { return 1; }", "c")[0].hash != (
        extract_functions("int a() { return 1; }", "cpp")[0].hash
    )


def test_ignore_comment_above_or_on_first_line() -> None:
    text = (
        "// alpine: ignore\n"
        "int a() { return 1; }\n"
        "int b() { return 1; } // alpine: ignore\n"
        "// alpine: ignore\n"
        "\n"
        "int c() { return 1; }\n"
        "// alpine: ignore-file is not this\n"
        "int d() { return 1; }\n"
        "int e() {\n"
        "  return 1; // alpine: ignore (not the first line)\n"
        "}\n"
        "/* alpine: ignore */ int f() { return 1; }\n"
    )
    ignored = {f.name: f.ignored for f in extract_functions(text, "c")}
    assert ignored == {"a": True, "b": True, "c": False, "d": False, "e": False, "f": True}


def test_python_ignore_comment_above_decorators() -> None:
    text = "# alpine: ignore\n@cached\ndef a():\n    pass\n\n// alpine: ignore\ndef b():\n    pass"
    ignored = {f.name: f.ignored for f in extract_functions(text, "python")}
    assert ignored == {"a": True, "b": False}  # "//" is no comment in Python


def test_file_ignored() -> None:
    assert file_ignored("int a;\n// alpine: ignore-file\n")
    assert file_ignored("# alpine:ignore-file\nx = 1\n")
    assert file_ignored("/*\n * alpine: ignore-file\n */\n")
    assert not file_ignored("// alpine: ignore\nint a() {}\n")
    assert not file_ignored("// alpine: ignore-files\n")
    assert not file_ignored("")


def test_non_ascii_columns_are_code_points() -> None:
    text = "/* 😀 中文 */ int f(void) { return '€'; }\nint 变量() { return 0; }\n"
    f, g = extract_functions(text, "c")
    prefix = "/* 😀 中文 */ "
    assert (f.start_line, f.start_col) == (0, len(prefix))  # 12 code points, 21 bytes
    assert (f.name_start_col, f.name_end_col) == (len(prefix) + 4, len(prefix) + 5)
    assert f.end_col == len(text.split("\n")[0])
    assert g.name == "变量"
    assert (g.name_start_line, g.name_start_col, g.name_end_col) == (1, 4, 6)
    check_consistent(text, [f, g])


def test_crlf_and_lone_cr_line_breaks() -> None:
    text = "def a():\r\n    return 1\r\n\r\ndef b():\r\n    return 'é'\r\n"
    a, b = extract_functions(text, "python")
    assert (a.start_line, a.end_line, a.end_col) == (0, 1, len("    return 1"))
    assert (b.start_line, b.name_start_col, b.end_line, b.end_col) == (3, 4, 4, 14)
    check_consistent(text, [a, b])
    # A lone \r ends a line for LSP although tree-sitter rows only count \n.
    text = "int a() {\r  return 1;\r}\r\rint b() { return 'é'; }\r"
    a, b = extract_functions(text, "c")
    assert (a.start_line, a.end_line, a.end_col) == (0, 2, 1)
    assert (b.start_line, b.name_start_col, b.end_col) == (4, 4, len("int b() { return 'é'; }"))
    check_consistent(text, [a, b])


def test_language_for() -> None:
    assert language_for("file:///src/a.c") == "c"
    assert language_for("/x/y.H") == "c"
    assert language_for("file:///src/a%20b.hpp?x=1#frag") == "cpp"
    assert language_for(r"C:\code\Main.java") == "java"
    assert language_for("a.tsx") == "tsx"
    assert language_for("a.mjs") == "javascript"
    assert language_for("untitled:Untitled-1", "typescriptreact") == "tsx"
    assert language_for("x.txt", "javascriptreact") == "javascript"
    assert language_for("x.py", "plaintext") == "python"  # unknown id: the extension decides
    assert language_for("x.rb") is None
    assert language_for("Makefile") is None
    assert language_for(".py") is None
    for ext, lang in [(".cc", "cpp"), (".cxx", "cpp"), (".hh", "cpp"), (".cjs", "javascript")]:
        assert language_for("f" + ext) == lang
    ids = ["c", "cpp", "java", "python", "javascript", "typescript", "go", "rust"]
    assert all(language_for("", i) == i for i in ids)
    assert set(LANGUAGES) == {*ids, "tsx"}


def test_comment_prefix() -> None:
    assert comment_prefix("python") == "#"
    assert {comment_prefix(lang) for lang in LANGUAGES if lang != "python"} == {"//"}
    with pytest.raises(ValueError):
        comment_prefix("cobol")


def test_parsers_are_cached_per_thread() -> None:
    assert get_parser("c") is get_parser("c")
    other = []
    t = threading.Thread(target=lambda: other.append(get_parser("c")))
    t.start()
    t.join()
    assert other[0] is not get_parser("c")


@pytest.mark.parametrize("language", LANGUAGES)
def test_hostile_text_never_raises(language: str) -> None:
    nasty = [
        "",
        "\0",
        "int f() { return '\0'; }\0\0def g():\0",
        b"int f() { \xff\xfe\xed\xa0\x80 }\ndef g(): pass\n".decode("utf-8", "replace"),
        b"int f() { \xed\xa0\x80 }".decode("utf-8", "surrogateescape"),
        "int f() { return '\ud800'; }\ndef g():\n    return '\udfff'\n",
        "}}}{{{)))(((" * 50,
        "\r\r\n\n\r",
    ]
    for text in nasty:
        functions = extract_functions(text, language)
        check_consistent(text, functions)


def test_surrogates_keep_code_point_columns() -> None:
    text = "int f() { return '\ud800'; } int g() { return 0; }\n"
    _, g = extract_functions(text, "c")
    assert g.name_start_col == text.index("g()")
    assert len(g.hash) == 32


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    language=st.sampled_from(LANGUAGES),
    text=st.lists(
        st.sampled_from(
            [
                *"(){}[];:=,.<>\"'#/*\n\r\t fdeiclasnrtu0😀é\0\ud800",
                *["def ", "fn ", "func ", "int ", "class ", "function ", "=> ", "return "],
            ]
        ),
        max_size=80,
    ).map("".join),
)
def test_random_text_never_raises(language: str, text: str) -> None:
    check_consistent(text, extract_functions(text, language))


def test_large_c_file_is_fast() -> None:
    text = "".join(
        f"static int fn_{i}(int a) {{\n    int x = a * {i};\n    if (x > 3) {{\n"
        f"        return x; /* é */\n    }}\n    return a;\n}}\n\n"
        for i in range(2500)
    )
    assert text.count("\n") == 20_000
    extract_functions("int warm(void) { return 0; }", "c")
    started = time.perf_counter()
    functions = extract_functions(text, "c")
    elapsed = time.perf_counter() - started
    assert len(functions) == 2500 and functions[-1].name == "fn_2499"
    assert functions[-1].start_line == 19_992
    assert elapsed < 1.0, elapsed


def test_unsupported_language_extracts_nothing() -> None:
    assert extract_functions("int f() {}", "") == []
    assert extract_functions("int f() {}", "cobol") == []
