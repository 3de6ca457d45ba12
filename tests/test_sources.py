"""train/sources.py: the row format, split.json, leak removal and clear errors for bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from alpine_lsp.train.sources import (
    SourceError,
    clean_juliet,
    clean_semgrep,
    load_source,
    load_sources,
    pairs_of,
    parse_weights,
    strip_comments,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_source(root: Path, name: str, rows: list[dict], split: dict | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / "functions.jsonl.gz", "wt", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    ids = [r["id"] for r in rows if isinstance(r, dict) and "id" in r]
    split = split or {"train": ids[:-1], "valid": ids[-1:], "test": []}
    (d / "split.json").write_text(json.dumps(split))
    return d


def row(i: int, target: int, func: str, lang: str = "java", pair: str | None = None) -> dict:
    return {
        "id": f"r{i}",
        "source": "x",
        "project": f"p{i % 2}",
        "language": lang,
        "func": func,
        "target": target,
        "pair": pair,
        "cwe": [],
        "lines": [],
    }


def test_juliet_names_comments_and_cwe_classes_are_removed(tmp_path: Path) -> None:
    bad = (
        "public void bad() throws Throwable {\n"
        "    /* FLAW: data is not checked */\n"
        "    badSink(data); // POTENTIAL FLAW\n"
        '    CWE190_Integer_Overflow__int_01_bad.helperBad("bad");\n'
        "}"
    )
    good = "public void goodG2B() {\n    /* FIX: checked */\n    goodG2BSink(data);\n}"
    write_source(tmp_path, "juliet_java", [row(0, 1, bad, pair="p"), row(1, 0, good, pair="p")])
    rows = load_source("juliet_java", tmp_path)
    text = "\n".join(r.text for r in rows)
    for leak in ("bad", "Bad", "good", "FLAW", "FIX", "CWE190"):
        assert leak not in text, leak
    # One neutral name everywhere (string literals too: Juliet prints its labels).
    assert rows[0].text.count("method") == 4 and "TestCase.method" in rows[0].text
    assert pairs_of(rows) == [(0, 1)]


def test_semgrep_label_names_and_ok_comments_go() -> None:
    code = "def bad6(x):\n    # ok: rule\n    return eval(x)  # ruleid\n\ndef ok10(): pass\n"
    out = clean_semgrep(code, "python")
    assert "bad6" not in out and "ok10" not in out and "# ok" not in out and "ruleid" not in out
    assert "eval(x)" in out
    js = "function goodNormal() { /* ok */ return a; } // ok\nconst okay = unsafe;"
    out = clean_semgrep(js, "javascript")
    assert "goodNormal" not in out and "ok */" not in out
    assert "okay" in out and "unsafe" in out  # ordinary words are left alone


def test_strip_comments_keeps_strings_and_line_numbers() -> None:
    c = 'int f() {\n  char *s = "// not a comment";\n  /* a\n  b */ return 1; // x\n}'
    out = strip_comments(c, "c")
    assert '"// not a comment"' in out and "/*" not in out and "// x" not in out
    assert out.count("\n") == c.count("\n")
    py = "x = '# kept'  # gone\ns = '''# kept too'''\n"
    out = strip_comments(py, "python")
    assert "'# kept'" in out and "gone" not in out and "'''# kept too'''" in out
    assert clean_juliet("int x; // FLAW") == "int x;"


def test_split_and_languages(tmp_path: Path) -> None:
    rows = [row(i, i % 2, f"int f{i}() {{ return {i}; }}", "c") for i in range(4)]
    write_source(tmp_path, "sven", rows, {"train": ["r0", "r1"], "valid": ["r2"], "test": ["r3"]})
    got = load_source("sven", tmp_path)
    assert [r.split for r in got] == ["train", "train", "valid", "test"]
    assert {r.language for r in got} == {"c"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"id": "r1", "language": "java", "target": 1}, r"row 2: missing field\(s\) func"),
        (
            {"id": "r1", "language": "java", "func": "x", "target": 2},
            "row 2: target must be 0 or 1",
        ),
        ({"id": "r1", "language": "cobol", "func": "x", "target": 1}, "row 2: unknown language"),
        ("{not json", "row 2: not valid JSON"),
    ],
)
def test_bad_rows_name_file_and_row(tmp_path: Path, bad, message: str) -> None:
    write_source(tmp_path, "sven", [row(0, 1, "int f() {}"), bad])
    with pytest.raises(SourceError, match=message) as e:
        load_source("sven", tmp_path)
    assert "functions.jsonl.gz" in str(e.value)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="source folder is missing"):
        load_source("sven", tmp_path)
    d = write_source(tmp_path, "sven", [row(0, 1, "int f() {}")])
    (d / "split.json").unlink()
    with pytest.raises(SourceError, match=r"split\.json: file is missing"):
        load_source("sven", tmp_path)
    d = write_source(tmp_path, "sven", [row(0, 1, "int f() {}")])
    (d / "functions.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(SourceError, match="corrupt or not gzip"):
        load_source("sven", tmp_path)
    with pytest.raises(SourceError, match="unknown source"):
        load_source("nope", tmp_path)


def test_every_source_checked_before_anything_runs(tmp_path: Path) -> None:
    write_source(tmp_path, "sven", [row(0, 1, "int f() {}")])
    with pytest.raises(SourceError, match="manysstubs4j"):
        load_sources(["sven", "manysstubs4j"], tmp_path)


def test_parse_weights() -> None:
    assert parse_weights("devign:1,sven:3,juliet_java") == {
        "devign": 1.0,
        "sven": 3.0,
        "juliet_java": 1.0,
    }
    with pytest.raises(SourceError, match="not a number"):
        parse_weights("sven:x")


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
def test_shared_juliet_and_semgrep_are_leak_free() -> None:
    import re

    juliet = load_source("juliet_java", SHARED)
    leak = re.compile(r"\b(?:helper)?(?:[Bb]ad|[Gg]ood)\w*|FLAW|FIX\b|\bCWE\d+_")
    assert not [r.id for r in juliet if leak.search(strip_comments(r.text, "java"))]
    semgrep = load_source("semgrep_tests", SHARED)
    names = re.compile(r"\b(?:bad|ok)\d+\b|\bgood[A-Z]\w*")
    assert not [r.id for r in semgrep if names.search(r.text)]
