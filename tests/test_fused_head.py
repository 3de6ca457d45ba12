"""The fused head in a real model directory: score() parts, the fingerprint, the per-language
gate in `check` and in the real server's hover, and the flag budget in `check`."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.model import load_model
from alpine_lsp.model.fusion import FusedHead, feature_names
from alpine_lsp.model.tiny import create_tiny_model
from alpine_lsp.parsing.metrics import METRIC_NAMES
from alpine_lsp.train import lexical as train_lexical
from tests.test_eval_defect import BAD, synthetic_devign, write_devign

LANGS = {
    "c": {"fit_rows": 100, "test_roc_auc": 0.7, "enabled": True},
    "python": {"fit_rows": 50, "test_roc_auc": 0.52, "enabled": False},
}


@pytest.fixture(scope="module")
def head_model(tmp_path_factory) -> Path:
    """The tiny model + lexical half, plus a fused head that leans on string/memory calls."""
    root = tmp_path_factory.mktemp("head")
    base = create_tiny_model(root / "base")
    data = write_devign(root / "devign", synthetic_devign(160, seed=2))
    out = root / "m"
    assert train_lexical.main(["--model", str(base), "--data", str(data), "--out", str(out)]) == 0
    dim = load_model(out, device="cpu").embedding_dim
    names = feature_names(dim)
    w = np.zeros(len(names))
    w[names.index("lexical_logit")] = 1.0
    w[names.index("metric:string_calls")] = 2.0
    w[names.index("metric:memory_calls")] = 1.0
    head = FusedHead(names, np.zeros(len(names)), np.ones(len(names)), w, -1.0, {"threshold": 0.5})
    head.save(out)
    meta = json.loads((out / "alpine.json").read_text())
    meta["languages"] = LANGS
    (out / "alpine.json").write_text(json.dumps(meta))
    return out


def test_score_uses_the_head_and_shows_metrics(head_model: Path, tmp_path: Path) -> None:
    m = load_model(head_model, device="cpu")
    assert m.head is not None and m.threshold == 0.5
    bad = f"int f(char *src, int len)\n{{\n    {BAD}\n}}"
    (s,) = m.score([bad], "c", explain=True)
    assert {"encoder", "lexical", "metrics"} <= set(s.parts)
    pushed = [k for k in s.parts if k.startswith("metric:")]
    assert pushed[0] == "metric:string_calls" and len(pushed) == 3
    assert all(k[7:] in METRIC_NAMES for k in pushed)
    # The head, not the two-input fusion, made the probability.
    x = np.log1p(2) * 2 + np.log1p(1) * 1  # strcpy + gets, memcpy
    lex = np.log(s.parts["lexical"] / (1 - s.parts["lexical"]))
    assert s.probability == pytest.approx(1 / (1 + np.exp(-(lex + x - 1.0))), rel=1e-4)
    # Without the head: another fingerprint (cached scores do not carry over).
    plain = tmp_path / "plain"
    shutil.copytree(head_model, plain)
    (plain / "fused_head.json").unlink()
    (plain / "fused_head.safetensors").unlink()
    other = load_model(plain, device="cpu")
    assert other.head is None and other.fingerprint != m.fingerprint


def test_damaged_head_is_a_clear_error(head_model: Path, tmp_path: Path) -> None:
    from alpine_lsp.model import ModelLoadError

    d = tmp_path / "m"
    shutil.copytree(head_model, d)
    (d / "fused_head.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelLoadError, match="fused head"):
        load_model(d, device="cpu")


def test_check_gates_languages_and_applies_the_budget(
    head_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from alpine_lsp.cli import check

    # In-process (the subprocess form is covered by tests/test_check.py): one torch import.
    monkeypatch.setenv("ALPINE_LSP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.c").write_text(f"int copy(char *src, int len)\n{{\n    {BAD}\n}}\n")
    (tmp_path / "b.py").write_text("def f(x):\n    return eval(x)\n")
    # 60 more functions; budget 5% of 62: at most 3 flagged although threshold 0 passes all.
    body = "\n".join(
        f"int f{i}(char *s) {{ {'strcpy(b, s); ' * i}return {i}; }}" for i in range(60)
    )
    (tmp_path / "many.c").write_text(body + "\n")
    common = ["--model", str(head_model), "--threshold", "0", "--no-similar", "--threads", "1"]
    rc = check.main(["a.c", "b.py", "many.c", "--all", "--flag-budget", "0.05", *common])
    out = capsys.readouterr().out
    assert rc == 0
    assert "defect hints off for python: cross-project test ROC-AUC 0.52" in out
    assert "b.py:1: ok f" in out
    assert 1 <= out.count(": defect-risk ") <= 3
    rc = check.main(["b.py", "--format", "json", "--languages", "python", *common])
    report = json.loads(capsys.readouterr().out)
    assert report["files"][0]["functions"][0]["flagged"]  # opted in; pool too small for a budget


async def test_hover_says_why_a_language_is_off_and_which_metrics_pushed(
    head_model: Path, tmp_path: Path
) -> None:
    from tests.lsp_util import hover, neovim_caps, open_doc, start, stop
    from tests.test_server import pull, settings

    root = tmp_path / "ws"
    root.mkdir()
    c_path, py_path = root / "copy.c", root / "f.py"
    c_text = f"int copy(char *src, int len)\n{{\n    {BAD}\n}}\n"
    py_text = "def f(x):\n    return eval(x)\n"
    c_path.write_text(c_text)
    py_path.write_text(py_text)
    client = await start(root, tmp_path / "cache", settings(head_model), caps=neovim_caps())
    try:
        open_doc(client, c_path, c_text)
        open_doc(client, py_path, py_text, language="python")
        await pull(client, c_path)
        await pull(client, py_path)
        value = ""
        for _ in range(240):  # a busy machine can take minutes to load torch and the model
            shown = await hover(client, py_path, 0, 4)
            if shown is not None and "probability" in shown.contents.value:
                break
            await asyncio.sleep(0.5)
        value = (await hover(client, c_path, 0, 5)).contents.value
        assert "code metrics that moved the score: string_calls +" in value
        value = (await hover(client, py_path, 0, 4)).contents.value
        assert "defect hints off for python" in value
    finally:
        await stop(client)
