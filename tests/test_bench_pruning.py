"""bench pruning on the tiny random model: JSON shape, input discovery, missing bundled model."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest

from alpine_lsp.bench import pruning
from alpine_lsp.cli.main import main as cli_main
from alpine_lsp.evalkit.measure import sample, summarize
from alpine_lsp.model.tiny import create_tiny_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return create_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_bench_json_on_tiny_model(tiny, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.c").write_text(pruning.BUILTIN_C[3])
    (src / "b.c").write_text(pruning.BUILTIN_C[4])
    rc = pruning.main(
        ["--model", str(tiny), "--data", str(src), "--n", "4", "--json", "--threads", "1"]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    for key in (
        "speedup_batch1",
        "speedup_batch16",
        "flops_ratio",
        "tokens_per_layer",
        "latency_ms",
        "batch16",
        "flops_per_function",
        "source",
    ):
        assert key in res, key
    assert "2 C file(s)" in res["source"]
    tl = res["tokens_per_layer"]
    assert len(tl["none"]) == len(tl["pruned"]) == 3
    assert len(set(tl["none"])) == 1
    assert all(b <= a + 1e-9 for a, b in pairwise(tl["pruned"]))
    assert res["flops_ratio"] >= 1.0
    for name in ("none", "pruned"):
        lat = res["latency_ms"][name]
        assert 0 < lat["median"] <= lat["p95"] and lat["n"] == 4
        assert res["batch16"]["latency_ms"][name]["n"] >= pruning.MIN_BATCH16_RUNS
    assert res["speedup_batch1"] > 0 and res["speedup_batch16"] > 0


def test_inputs_fall_back_to_builtin_snippets(tmp_path):
    codes, source = pruning.find_inputs(str(tmp_path / "empty.d"), 7)
    assert len(codes) == 7 and all(codes)
    if source == "built-in C snippets":
        assert codes[0] in pruning.BUILTIN_C


def test_missing_bundled_model_exits_2(monkeypatch, tmp_path, capsys):
    import alpine_lsp.model.api as api

    monkeypatch.setattr(api, "BUNDLED_DIR", tmp_path / "no-model")
    assert cli_main(["bench", "pruning", "--json"]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "--model" in err


def test_summary_helpers():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["p95"] > s["median"] and s["n"] == 5
    rows = list(range(50))
    picked = sample(rows, 10, seed=3)
    assert picked == sorted(picked) and len(set(picked)) == 10
    assert picked == sample(rows, 10, seed=3)
