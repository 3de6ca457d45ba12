"""The fast clone-key walk against the reference one it replaced (a plain cursor walk with string
tests per node, kept here verbatim): the same tokens and the same key values, per language, on
tricky snippets, on this project's own code and, where ../shared/data is beside the clone, on
real functions in C, C++, Java, Python, JavaScript, TypeScript and Go. The index stores these
keys, so their values are also pinned: a change of value needs `SCHEMA_VERSION` in
index/store.py bumped, so that old rows get their keys recomputed instead of mixing."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.parsing import clones as ck
from alpine_lsp.parsing import extract_functions
from alpine_lsp.parsing.languages import get_parser

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


# -- the reference path (the walk and hashing before the fast one) ---------------------------
def reference_tokens(text: str, language: str) -> list[tuple[str, str]]:
    prefix, suffix = "", ""
    if language in ck._WRAP and not (language != "java" and text.lstrip().startswith(ck._JS_PLAIN)):
        prefix, suffix = ck._WRAP[language]
    data = (prefix + text + suffix).encode("utf-8", "surrogatepass")
    lo, hi = len(prefix.encode()), len(data) - len(suffix.encode())
    tree = get_parser(language).parse(data)
    out: list[tuple[str, str]] = []
    python = language == "python"
    cursor = tree.walk()
    leaving: list[int] = []
    depth = 0
    while True:
        node = cursor.node
        assert node is not None
        t = node.type
        descend = True
        if node.end_byte <= lo or node.start_byte >= hi:
            descend = node.start_byte < lo and node.end_byte > lo
        elif "comment" in t:
            descend = False
        elif node.is_named and ck._is_literal(t):
            out.append((data[node.start_byte : node.end_byte].decode("utf-8", "replace"), "$L"))
            descend = False
        elif node.child_count == 0:
            s = data[node.start_byte : node.end_byte].decode("utf-8", "replace").strip()
            if s:
                ident = node.is_named and "identifier" in t and t not in ck._KEEP_IDENTIFIERS
                out.append((s, "$I" if ident else s))
        elif python and t == "block":
            out.append(("{", "{"))
            leaving.append(depth)
        if descend and cursor.goto_first_child():
            depth += 1
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return out
            depth -= 1
            if leaving and leaving[-1] == depth:
                leaving.pop()
                out.append(("}", "}"))


def reference_digest(parts: list[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def reference_signature(seq: list[str], k: int = ck.SHINGLE) -> np.ndarray:
    if len(seq) < k:
        return np.full(ck.NUM_PERM, 0xFFFFFFFF, dtype=np.uint32)
    ids = np.array([ck._token_id(t) for t in seq], dtype=np.uint64)
    n = len(ids) - k + 1
    h = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * np.uint64(0x100000001B3) + ids[j : j + n]
        sh = np.unique(h)
        v = sh[None, :] * ck._A[:, None] + ck._B[:, None]
    return (v.min(axis=1) >> np.uint64(32)).astype(np.uint32)


def assert_same(text: str, language: str) -> None:
    ref = reference_tokens(text, language)
    assert ck.tokens(text, language) == ref, (language, text[:200])
    keys = ck.clone_keys(text, language)
    assert keys.n_tokens == len(ref)
    assert keys.type1 == reference_digest([t for t, _ in ref])
    assert keys.type2 == reference_digest([n for _, n in ref])
    assert np.array_equal(keys.signature, reference_signature([n for _, n in ref]))


# -- snippets: comments inside expressions, literals with parts, blocks, wrappers, errors ------
SNIPPETS: dict[str, list[str]] = {
    "c": [
        "static int f(const char *s /* in */, size_t n) {\n  char c = 'x'; // é\n"
        '  if (n > 0x10) return strlen("a\\"b" "c");\n#ifdef X\n  n++;\n#endif\n'
        "  return sizeof(int) + (int)1.5e3 + n;\n}\n",
        "int broken(int x) { if (x > { return 1; }\n",
        "void v(void) { uint8_t b = 0; size_t s; my_t t; }",
        "",
        'int lone(void) { return "\udcff"[0]; }',
    ],
    "cpp": [
        "template <typename T> T A::get(const T &x) const { // c\n"
        '  auto s = u8"ü" + std::string("x"); return x * 2; }',
        'void B::f() { std::vector<int> v{1, 2}; for (auto &i : v) { i += 1; } R"(raw)"; }',
    ],
    "java": [
        "public int add(int a, int b) {\n    // sum\n    return a + b * 2;\n}",
        "  @Override\n  protected String name(/* none */) { return \"é\" + 'c' + 1L + 0x1F; }",
        'void t() { String s = """\n    block\n    """; int[] a = {1, 2}; a[0]++; }',
        "public Foo() { super(); this.x = null; }",
        "void broken( { return; }",
        "int x = 1;",
        "  public void g() { run(); }\n",  # strictly inside the wrapper: its siblings are not
        "\n  void h(int[] a) { if (a.length > 1) { a[0] = 2; } }\n\n",
        "  void open( {\n",
    ],
    "python": [
        "def f(self, xs):\n    # total\n    t = 0\n    for x in xs:\n        t += x\n"
        "    if t: return t\n    return f'{t!r} é' + 'a' 'b' + b'c'\n",
        "@decorator(1)\nasync def g(a: int = 2, *args, **kw) -> None:\n"
        "    while True:\n        try:\n            pass\n        except E as e:\n"
        "            raise\n    lambda y: y + 1.5j\n",
        "def h():\n    class C:\n        def m(self): return None\n    return C\n",
        "def bad(:\n    return\n",
        "def empty():\n    ...\n",
    ],
    "javascript": [
        "function f(a, b) { /* c */ return `x${a + `y${b}`}z` + 'é' + /re+/g.source; }",
        "async load(url) { const r = await fetch(url); return r.ok ? r.json() : null; }",
        "const g = (x) => { let y = x ?? 0; return y++; };",
        "(function () { var z = [1, 2].map((i) => i * 2); })",
        "get size() { return this.#n; }",
        "  static create(a) { return new this(a, `t`); }\n",
    ],
    "typescript": [
        "function f<T extends object>(x: T, n: number = 1): T[] { return [x as T]; }",
        "public m(a: string): void { const b: Record<string, number> = {}; b[a] = 1; }",
    ],
    "tsx": [
        'function C(p: { n: string }) { return <div className="x">{p.n}</div>; }',
    ],
    "go": [
        "func (s *Server) Handle(w http.ResponseWriter, r *http.Request) error {\n"
        '\t// c\n\tif r == nil { return fmt.Errorf("nil: %d", 1) }\n'
        '\tfor i := range s.items { _ = i }\n\tx := `raw` + "é"\n\treturn nil\n}\n',
        "func f[T any](xs []T) (n int) { defer func() { n++ }(); return len(xs) }",
    ],
    "rust": [
        "fn f<'a>(x: &'a str) -> Option<u32> { // c\n  let v = vec![1u32, 2]; "
        "if x.is_empty() { return None; } Some(v[0] + 'c' as u32 + r\"raw\".len() as u32) }",
        "#[test]\nfn t() { assert_eq!(1 + 1, 2); }",
    ],
}


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_fast_walk_equals_reference_on_snippets(language: str) -> None:
    for text in SNIPPETS[language]:
        assert_same(text, language)


def test_fast_walk_equals_reference_on_this_project() -> None:
    n = 0
    for path in sorted((ROOT / "alpine_lsp").rglob("*.py"))[:40]:
        for f in extract_functions(path.read_text(encoding="utf-8"), "python"):
            assert_same(f.text, "python")
            n += 1
    for path in sorted((ROOT / "alpine_lsp" / "examples").glob("*.c")):
        for f in extract_functions(path.read_text(encoding="utf-8"), "c"):
            assert_same(f.text, "c")
            n += 1
    assert n > 100


def _rows(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
def test_fast_walk_equals_reference_on_real_functions() -> None:
    rng = random.Random(18)
    per: dict[str, list[str]] = {}
    for r in _rows(SHARED / "semgrep_tests" / "functions.jsonl.gz"):
        per.setdefault(r["language"], []).append(r["func"])
    per["cpp"] = [r["func"] for r in _rows(SHARED / "sven" / "functions.jsonl.gz")
                  if r["language"] == "cpp"]  # fmt: skip
    bcb = _rows(SHARED / "bigclonebench" / "functions.jsonl.gz")
    per["java"] += [r["code"] for r in rng.sample(bcb, 300)]
    c_corpus = _rows(SHARED / "c_corpus" / "functions.jsonl.gz")[:5000]
    per["c"] += [r["func"] for r in rng.sample(c_corpus, 300)]
    for language in ("c", "cpp", "java", "python", "javascript", "typescript", "go"):
        texts = per[language]
        assert len(texts) >= 40, language
        for text in rng.sample(texts, min(150, len(texts))):
            assert_same(text, language)


PINNED = """
import hashlib, json
from alpine_lsp.parsing.clones import clone_keys
from tests.test_clones import C_ORIG
k = clone_keys(C_ORIG, "c")
print(json.dumps([k.n_tokens, k.type1, k.type2,
                  hashlib.blake2b(k.signature.tobytes(), digest_size=8).hexdigest()]))
"""


def test_key_values_are_pinned_across_processes() -> None:
    """Keys are stored in the index: a new value needs SCHEMA_VERSION bumped (index/store.py)."""
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", PINNED], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        107,
        "b0159c30f9d55194e8bd9bc454fa73f8",
        "9b7e2ddc8c01c52cf6c717cb6dac3ac4",
        "35201068bcc803cc",
    ]
