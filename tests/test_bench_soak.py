"""`bench soak`: the files it edits, and one short real run on the tiny model (the figures
exist and are sane; the memory targets themselves are read from a 10-minute run, not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from alpine_lsp.bench.soak import MARK, build_file, main, make_files, table
from alpine_lsp.parsing import extract_functions

TWO = [
    "static int add(int a, int b)\n{\n    return a + b;\n}",
    "int one_line(void) { return 1; }",  # no closing line of its own: left out
    "void zero(char *p, int n)\n{\n    while (n--)\n        *p++ = 0;\n}\n",
]


def test_each_function_gets_one_mark_inside_it() -> None:
    text, marks = build_file(TWO)
    lines = text.split("\n")
    assert len(marks) == 2 and all(lines[m] == MARK.format(0) for m in marks)
    functions = extract_functions(text, "c")
    assert [f.name for f in functions] == ["add", "zero"]
    for f, m in zip(functions, marks, strict=True):
        assert f.start_line < m < f.end_line


def test_files_cycle_through_the_functions() -> None:
    files = make_files(TWO, 3, 2)
    assert len(files) == 3 and all(len(marks) == 2 for _, marks in files)


def test_bench_soak_runs_and_reports(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    argv = ["--model", str(tiny_model_dir), "--minutes", "0.2", "--files", "4", "--per-file"]
    argv += ["3", "--sample-seconds", "2", "--settle-seconds", "2", "--json"]
    assert main(argv) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["files"] == 4 and r["functions"] == 12
    assert r["documents_open"] == 4 and r["documents_after_close"] == 0
    assert r["errors"] == 0 and r["pull"] and r["pull_errors"] == 0
    assert 0 < r["edits"] <= 10 * 12 + 1 and r["pulls"] >= 4
    assert r["functions_scored"] >= 12
    assert 50 < r["baseline_mb"] < 4000 and 50 < r["after_close_mb"] < 4000
    assert r["warmup_s"] == 6.0 and len(r["rss_mb"]) >= 3
    assert r["baseline_mb"] <= r["max_mb"] + 50 and r["final_mb"] <= r["max_mb"]
    assert r["growth_after_warmup_mb"] == round(r["final_mb"] - r["rss_at_warmup_mb"], 1)
    delta = r["after_close_minus_baseline_mb"]
    assert delta == round(r["after_close_mb"] - r["baseline_mb"], 1)
    assert set(r["met"]) == {"growth_after_warmup", "after_close"}
    assert all(isinstance(v, bool) for v in r["met"].values())
    assert set(r["rss_parts_mb"]) == {"baseline", "final", "after_close"}
    assert "after close - baseline" in table(r)
