"""`check` and the server share one definition of a finding: engine.analysis.WorkspaceAnalysis
(what `check` reports) must find, for a file read from disk, what the server's worker finds for
the same text opened as a document: scores, flags under a flag budget that bites, ignore marks
and similar-code hints (into the same file), where the server shows none for ignored
functions."""

from __future__ import annotations

from pathlib import Path

from alpine_lsp.engine.analysis import WorkspaceAnalysis
from alpine_lsp.engine.engine import Engine
from alpine_lsp.engine.settings import Settings, SimilaritySettings
from alpine_lsp.index import refusal
from alpine_lsp.model import load_model
from tests.test_engine_splice import initial


def _text() -> str:
    parts = initial(60)
    parts[3] = "// alpine: ignore\n" + parts[3]
    parts[7] = parts[7].replace("int total = 0;", "int total = 1;")  # a near copy of fn_0
    return "".join(parts)


def test_check_and_the_server_find_the_same(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "ws" / "a.c"
    path.parent.mkdir()
    path.write_text(_text(), encoding="utf-8")
    settings = Settings(
        model=str(tiny_model_dir),
        threshold=0.0,  # the budget decides
        flag_budget=0.1,
        debounce_ms=600_000,
        similarity=SimilaritySettings(enabled=True, threshold=0.9999, max_results=3),
    )
    engine = Engine(settings, cache_path=tmp_path / "server" / "scores.sqlite")
    engine.start(tmp_path / "ws")
    try:
        assert engine.holder.ready.wait(60) and engine.holder.model is not None
        uri = path.resolve().as_uri()
        engine.open(uri, path.read_text(encoding="utf-8"), "c", 1)
        engine.worker.stop()
        engine._analyze(uri)
        result = engine.docs[uri].result
        assert result is not None and result.scored
        server = [
            (
                fr.function.name,
                fr.function.start_line,
                fr.function.ignored,
                fr.score.probability if fr.score else None,
                fr.flagged,
                # the server shows no hints for ignored functions (server/diagnostics.py)
                ()
                if fr.function.ignored
                else tuple((m.uri, m.name, m.start_line, m.kind) for m in fr.similar),
            )
            for fr in result.functions
        ]
    finally:
        engine.stop()

    model = load_model(str(tiny_model_dir), device="cpu")
    with WorkspaceAnalysis(model, settings, tmp_path / "check" / "scores.sqlite") as analysis:
        assert analysis.add(path) is None
        (ff,) = list(analysis.findings())
        check = [
            (
                fd.function.name,
                fd.function.start_line,
                fd.ignored,
                fd.score.probability,
                fd.flagged,
                tuple((m.uri, m.name, m.start_line, m.kind) for m in fd.similar),
            )
            for fd in ff.findings
        ]
        assert analysis.cutoff > 0.0  # the budget bites
    assert check == server
    flags = [row[4] for row in check]
    assert 0 < sum(flags) < len(flags)
    assert any(row[5] for row in check) and any(row[2] for row in check)


def test_one_admission_rule() -> None:
    assert refusal(b"int x;", 6, 6) is None
    assert refusal(b"int x;", 7, 6, "--max-file-size") == (
        "file larger than --max-file-size (6 bytes)"
    )
    assert refusal(b"a\x00b", 3, 10) == "binary file (NUL bytes)"
    assert refusal("a\x00b", 3, 10) == "binary file (NUL bytes)"  # decoded text alike
    assert refusal(b"x" * 8192 + b"\x00", 8193, 10_000) is None  # past the probe: text


def test_check_skips_what_the_server_skips_by_budget(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The per-document budgets cut in `check` as in the editor: a minified bundle gets no
    findings in either, with the same words."""
    from alpine_lsp.engine.documents import BUDGET, MAX_LINE_CHARS, skip_reason

    body = "var a=[" + ",".join(["1"] * (MAX_LINE_CHARS // 2 + 10)) + "];"
    text = "function f(){" + body + "}\nfunction g(x) { return x + 1; }\n"
    path = tmp_path / "bundle.min.js"
    path.write_text(text, encoding="utf-8")
    settings = Settings(model=str(tiny_model_dir))
    server = skip_reason(text, settings, "javascript")
    assert server is not None and server.startswith(BUDGET)
    model = load_model(str(tiny_model_dir), device="cpu")
    with WorkspaceAnalysis(model, settings, None) as analysis:
        assert analysis.add(path) == server.removeprefix(BUDGET)
        assert analysis.files == 0
        small = tmp_path / "ok.js"
        small.write_text("function g(x) { return x + 1; }\n", encoding="utf-8")
        assert analysis.add(small) is None and analysis.files == 1
