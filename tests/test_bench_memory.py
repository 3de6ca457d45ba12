"""`bench memory`: the generated workspace, and one real run on a tiny model (figures exist and
are sane; the targets themselves are read from the printed figures, not asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from alpine_lsp.bench.all import table
from alpine_lsp.bench.memory import _count_functions, generated_workspace, main


def test_generated_workspace_has_the_functions_asked_for(tmp_path: Path) -> None:
    assert generated_workspace(tmp_path, 45) == 45
    assert _count_functions(tmp_path) == 45
    texts = [p.read_text() for p in tmp_path.iterdir()]
    assert len(texts) == 3 and sum(t.count("fn_") for t in texts) == 45


def test_bench_memory_runs_and_reports(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    assert main(["--model", str(tiny_model_dir), "--functions", "40", "--json"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    load = r["model_load"]
    assert load["load_s"] > 0
    # torch.hub imports tqdm by itself where it is installed (the dev extra); these two not.
    assert not {"transformers", "sklearn"} & set(load["heavy_modules"])
    assert 50 < r["server_one_file"]["rss_mb"] < 4000
    assert r["server_indexed"]["functions"] == 40
    assert r["server_indexed"]["index_functions"] == 40
    assert r["check"]["exit"] == 0 and r["check"]["peak_mb"] > 50
    rows = table({"memory": r})
    assert "server RSS after indexing 40 functions (MB)" in rows
