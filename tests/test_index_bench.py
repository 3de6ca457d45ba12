"""`alpine-lsp bench index` end to end on a tiny model and a tiny workspace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alpine_lsp.bench import index as bench_index


@pytest.fixture(autouse=True)
def _one_build_round(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_index, "BUILD_MIN_S", 0.0)  # one round is enough to check figures


def test_bench_index_json(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.c").write_text(
        "int add(int a, int b) { return a + b; }\n\nint twice(int x) { return add(x, x); }\n"
    )
    (ws / "b.py").write_text("def f(x):\n    return x + 1\n\n\ndef f2(x):\n    return x + 1\n")
    argv = [str(ws), "--model", str(tiny_model_dir), "--json", "--sizes", "300,1200"]
    assert bench_index.main([*argv, "--queries", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["build_functions"] == 4 and out["build_files"] == 2
    assert out["build_functions_per_s"] > 0
    assert 0 < out["build_clone_keys_ms_per_function"] < out["build_s"] * 1000 / 4
    assert out["build_embed_ms_per_function"] > 0
    assert out["warm_restart_embedded"] == 0 and out["warm_restart_functions"] == 4
    assert set(out["query_ms"]) == {"300", "1200"}
    assert out["query_ms"]["1200"]["n"] == 5 and out["query_ms"]["1200"]["p95"] >= 0
    assert out["stand_in_model"] is False


def test_bench_index_table(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.go").write_text("package a\n\nfunc F() int { return 1 }\n")
    argv = [str(ws), "--model", str(tiny_model_dir), "--sizes", "100", "--queries", "3"]
    assert bench_index.main(argv) == 0
    text = capsys.readouterr().out
    assert "functions/s" in text and "0 of 1 functions re-embedded" in text
    assert "per function: embedding" in text and "ms, clone keys" in text
