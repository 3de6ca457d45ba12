"""`eval defect --sources --report`: the Markdown names the size prior and carries two plots."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from alpine_lsp.train import eval_sources

pytest.importorskip("matplotlib", reason="plots need the train extra (matplotlib)")

NAMES = eval_sources.SCORERS


def _fig(auc: float) -> dict:
    return {"n": 100, "roc_auc": auc, "pr_auc": 0.5, "prec_at_2pct": 0.5, "pairs": 0,
            "pair_higher": math.nan, "pair_both_sides": math.nan}  # fmt: skip


def _res() -> dict:
    per = {s: {n: _fig(0.5 + 0.05 * i) for i, n in enumerate(NAMES)} for s in ("devign", "sven")}
    per["cyberseceval"] = {n: _fig(math.nan) for n in NAMES}  # one class: no ROC-AUC
    buckets = [
        {"lines": b, "n": 10, "flagged": f, "old_flagged": 0.1}
        for b, f in (("0-5", 0.0), ("6-20", 0.01), ("21-50", 0.03), (">50", 0.07))
    ]
    return {
        "hparams": {"embedding": True, "l2": 0.01, "pair_weight": 0.0, "mean": 0.7},
        "threshold": 0.84, "size_prior": 0.5, "size_prior_chosen": True,
        "valid_at_threshold": {"flagged": 0.05, "precision": 0.8},
        "per_source": per, "per_language": {}, "loso": {"sven": per["sven"]},
        "c_corpus": {"n": 40, "flagged": 0.03, "old_flagged": 0.1, "buckets": buckets},
    }  # fmt: skip


def test_report_names_the_prior_and_plots_sources_and_length(tmp_path: Path) -> None:
    res = _res()
    text = eval_sources.markdown(res)
    assert "Size prior 0.5 x log(1 + lines)" in text and "chosen on c_corpus half A" in text
    pngs = eval_sources.plot_report(res, tmp_path / "out" / "r.md")
    assert [p.name for p in pngs] == ["r_sources.png", "r_length.png"]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
