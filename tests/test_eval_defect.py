"""eval defect on a tiny random model and a small synthetic Devign in the real file format."""

from __future__ import annotations

import gzip
import json
import random
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.cli.main import main as cli_main
from alpine_lsp.evalkit.errors import CommandError
from alpine_lsp.model.tiny import create_tiny_model
from alpine_lsp.train import eval_defect
from alpine_lsp.train.eval_defect import defect_metrics, tfidf_baseline
from alpine_lsp.train.metrics import distinct_pairs, random_pair_cosines

EVAL = ["eval", "defect"]  # through the command line, which says a CommandError

BAD = "strcpy(buf, src); memcpy(dst, src, len); gets(line);"
GOOD = "strncpy(buf, src, sizeof(buf) - 1); if (len > cap) return -1; fgets(line, n, f);"


def synthetic_devign(n: int, seed: int = 0) -> list[dict]:
    """Vulnerable functions call the unchecked copies; safe ones the bounded ones."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        target = i % 2
        body = BAD if target else GOOD
        name = rng.choice(["parse", "decode", "read_packet", "init", "copy_frame"])
        noise = " ".join(f"x{rng.randint(0, 30)} = {rng.randint(0, 9)};" for _ in range(3))
        func = f"static int {name}_{i}(char *src, int len)\n{{\n    {noise}\n    {body}\n}}"
        project = "FFmpeg" if i % 4 < 2 else "qemu"
        rows.append({"id": f"{project}-{i}", "project": project, "target": target, "func": func})
    return rows


def write_devign(d: Path, rows: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / "devign.jsonl.gz", "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    ids = [r["id"] for r in rows]
    n = len(ids)
    split = {"train": ids[: n // 2], "valid": ids[n // 2 : 3 * n // 4], "test": ids[3 * n // 4 :]}
    (d / "split.json").write_text(json.dumps(split))
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return create_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_defect_json(tiny, tmp_path, capsys):
    data = write_devign(tmp_path / "devign", synthetic_devign(64))
    report = tmp_path / "out" / "defect.md"
    rc = eval_defect.main(
        [
            "--model",
            str(tiny),
            "--data",
            str(data),
            "--json",
            "--latency-n",
            "3",
            "--threads",
            "1",
            "--report",
            str(report),
            "--compare-truncation",
            "--alpha-sweep",
            "0.25,2.0",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    for key in (
        "pruned",
        "none",
        "baseline",
        "flops_ratio",
        "speedup_batch1",
        "memory_source",
        "truncation",
        "n",
        "plot",
        "report",
    ):
        assert key in res, key
    assert res["n"]["test"] == 16
    for name in ("pruned", "none"):
        m = res[name]
        for key in (
            "accuracy",
            "f1",
            "roc_auc",
            "precision_top10",
            "at_threshold",
            "tokens_per_layer",
            "flops_mean",
            "latency_ms",
            "peak_rss_mb",
        ):
            assert key in m, (name, key)
        assert 0.0 <= m["roc_auc"] <= 1.0
        assert 0.0 <= m["accuracy"] <= 1.0
        assert set(m["at_threshold"]) >= {"threshold", "accuracy", "precision", "recall"}
        assert m["latency_ms"]["median"] > 0 and m["latency_ms"]["p95"] >= 0
        assert m["latency_ms"]["n"] == 3
        assert m["peak_rss_mb"] > 0
    none, pruned = res["none"]["tokens_per_layer"], res["pruned"]["tokens_per_layer"]
    assert len(none) == len(pruned) == 3  # input + 2 layers
    assert len(set(none)) == 1
    assert all(b <= a + 1e-9 for a, b in pairwise(pruned))
    assert pruned[-1] < none[-1]
    assert res["flops_ratio"] >= 1.0
    assert set(res["truncation"]) == {"head", "head_tail"}
    lay, spread = res["robustness"]["layout"], res["robustness"]["embedding_spread"]
    # The tiny tokenizer splits on whitespace, so relaying out the code changes nothing.
    assert lay["max_abs_delta"] < 1e-5
    assert spread["pairs"] > 0 and -1.0 <= spread["cosine_median"] <= 1.0
    assert 0.0 <= spread["share_above_threshold"] <= 1.0
    assert Path(res["plot"]).is_file() and Path(res["plot"]).parent == report.parent
    text = report.read_text()
    assert "ROC-AUC" in text and Path(res["plot"]).name in text
    assert "single newlines, tab indents" in text
    sweep = res["alpha_sweep"]
    assert [r["alpha"] for r in sweep] == [0.25, 2.0, None]
    # A narrower band prunes more; no pruning saves nothing.
    assert sweep[0]["flops_mean"] < sweep[1]["flops_mean"] <= sweep[2]["flops_mean"]
    assert sweep[2]["flops_saved"] == 0.0
    assert "Keep-band width" in text


def test_bad_alpha_sweep_exits_2(tiny, tmp_path, capsys):
    data = write_devign(tmp_path / "devign", synthetic_devign(16))
    rc = cli_main([*EVAL, "--model", str(tiny), "--data", str(data), "--alpha-sweep", "x,-1"])
    assert rc == 2
    assert "--alpha-sweep wants numbers" in capsys.readouterr().err


def test_relayout_undoes_devign_newlines():
    code = "int f(void)\n\n{\n\n    if (x)\n\n        return 1;\n\n  y;\n\n}\n"
    assert eval_defect.relayout(code) == "int f(void)\n{\n\tif (x)\n\t\treturn 1;\n  y;\n}\n"


def test_tfidf_baseline_beats_chance():
    rows = synthetic_devign(120, seed=3)
    base = tfidf_baseline(rows[:80], rows[80:100], rows[100:])
    assert base["roc_auc"] > 0.9
    assert base["accuracy"] > 0.7
    assert str(base["C"]) in {str(c) for c in eval_defect.C_GRID}


def test_defect_metrics_values():
    probs = np.array([0.9, 0.8, 0.3, 0.1])
    labels = np.array([1, 0, 1, 0])
    m = defect_metrics(probs, labels, threshold=0.85)
    assert m["accuracy"] == 0.5
    assert m["roc_auc"] == 0.75
    assert m["at_threshold"]["precision"] == 1.0 and m["at_threshold"]["recall"] == 0.5


def test_missing_data_exits_2(tiny, tmp_path, capsys):
    assert cli_main([*EVAL, "--model", str(tiny), "--data", str(tmp_path / "nope")]) == 2
    assert "lacks" in capsys.readouterr().err
    # Below cli/ the command raises; only the command line turns it into an exit status.
    with pytest.raises(CommandError, match="lacks") as raised:
        eval_defect.main(["--model", str(tiny), "--data", str(tmp_path / "nope")])
    assert raised.value.code == 2


@pytest.mark.parametrize("rows", [2, 3, 17, 64])
def test_distinct_pairs_cover_all_pairs_once(rows):
    a, b = distinct_pairs(rows, 10**6, seed=5)
    got = sorted(zip(a.tolist(), b.tolist(), strict=True))
    assert got == [(i, j) for i in range(rows) for j in range(i + 1, rows)]


def test_distinct_pairs_sample_is_distinct_and_in_range():
    a, b = distinct_pairs(2719, 100_000, seed=31)
    assert len(a) == 100_000
    assert (a >= 0).all() and (a < b).all() and (b < 2719).all()
    assert len(set(zip(a.tolist(), b.tolist(), strict=True))) == 100_000
    assert distinct_pairs(1, 10, seed=0)[0].size == 0
    emb = np.eye(3)
    assert random_pair_cosines(emb, 10, seed=0).tolist() == [0.0, 0.0, 0.0]
