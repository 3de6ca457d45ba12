"""The lexical scorer reproduces scikit-learn's TF-IDF + logistic regression from stored data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from alpine_lsp.model import ModelLoadError, load_model
from alpine_lsp.model.lexical import LexicalModel, Vocabulary
from alpine_lsp.model.tiny import create_tiny_model
from alpine_lsp.train import eval_defect
from alpine_lsp.train import lexical as train_lexical
from alpine_lsp.train.report import tfidf
from tests.test_eval_defect import BAD, GOOD, synthetic_devign, write_devign


def fitted(n: int = 120):
    rows = synthetic_devign(n, seed=4)
    codes = [r["func"] for r in rows]
    y = np.array([r["target"] for r in rows])
    vec = tfidf(len(codes))
    clf = LogisticRegression(C=3.0, max_iter=2000, solver="liblinear").fit(
        vec.fit_transform(codes), y
    )
    return vec, clf, codes


def test_matches_sklearn_after_a_round_trip(tmp_path):
    vec, clf, codes = fitted()
    LexicalModel.from_sklearn(vec, clf).save(tmp_path)
    lex = LexicalModel.load(tmp_path)
    unseen = [
        "int g(char *p) { strcpy(p, q); return -1; }",
        "",
        "/* only a comment */",
        "é ☃ ->->-> x++ <<= 0x1F",
    ]
    expected = clf.decision_function(vec.transform(codes + unseen))
    np.testing.assert_allclose(lex.logits(codes + unseen), expected, rtol=1e-4, atol=1e-5)


def test_explain_names_the_terms_that_raised_the_score(tmp_path):
    vec, clf, _ = fitted()
    lex = LexicalModel.from_sklearn(vec, clf)
    terms = [t for t, _ in lex.explain("void f(char *d) { strcpy(buf, src); gets(line); }")]
    # The synthetic vulnerable functions are exactly the ones calling strcpy/gets.
    assert terms and {"strcpy", "gets"} & {w for t in terms for w in t.split()}
    assert all(w > 0 for _, w in lex.explain("return 0;"))


@pytest.fixture(scope="module")
def fused_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fused")
    base = create_tiny_model(root / "base")
    data = write_devign(root / "devign", synthetic_devign(160, seed=2))
    assert (
        train_lexical.main(["--model", str(base), "--data", str(data), "--out", str(root / "m")])
        == 0
    )
    return root / "m"


def test_train_lexical_fuses_and_the_api_uses_it(fused_model, tmp_path):
    m = load_model(fused_model, device="cpu")
    assert m.lexical is not None and m.info()["lexical"]["terms"] > 10
    bad = f"static int f(char *src, int len)\n{{\n    {BAD}\n}}"
    good = f"static int f(char *src, int len)\n{{\n    {GOOD}\n}}"
    p_bad, p_good = m.defect_probability([bad, good], "c")
    # A random encoder cannot tell them apart; the fused score can.
    assert p_bad > m.threshold > p_good
    (s,) = m.score([bad], "c", explain=True)
    assert set(s.parts) == {"encoder", "lexical"} and s.lexical_terms
    fused_fp = m.fingerprint
    m.configure(lexical=False)
    assert m.fingerprint != fused_fp and m.score([bad], "c")[0].parts == {}


def test_fingerprint_covers_fusion_weights(fused_model, tmp_path):
    # The fusion weights live in alpine.json, outside every weight digest: a recalibrated
    # fusion must not reuse scores cached under the old one.
    copy = tmp_path / "m2"
    shutil.copytree(fused_model, copy)
    meta = json.loads((copy / "alpine.json").read_text())
    meta["fusion"]["lexical"] += 0.5
    (copy / "alpine.json").write_text(json.dumps(meta))
    old = load_model(fused_model, device="cpu").fingerprint
    assert load_model(copy, device="cpu").fingerprint != old


def test_eval_defect_shows_the_encoder_alone(fused_model, tmp_path, capsys):
    data = write_devign(tmp_path / "devign", synthetic_devign(80, seed=9))
    rc = eval_defect.main(
        ["--model", str(fused_model), "--data", str(data), "--json", "--latency-n", "3"]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["pruned"]["accuracy"] > 0.9
    assert res["encoder_only"]["accuracy"] < res["pruned"]["accuracy"]


@pytest.mark.parametrize("damage", ["drop_json", "drop_fusion", "truncate"])
def test_damaged_lexical_half_is_a_clear_error(fused_model, tmp_path, damage):
    d = tmp_path / "m"
    shutil.copytree(fused_model, d)
    if damage == "drop_json":
        (d / "lexical.json").unlink()
    elif damage == "drop_fusion":
        meta = json.loads((d / "alpine.json").read_text())
        del meta["fusion"]
        (d / "alpine.json").write_text(json.dumps(meta))
    else:
        w = d / "lexical.safetensors"
        w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ModelLoadError, match=r"lexical|fusion"):
        load_model(d, device="cpu")


async def test_hover_shows_both_halves(fused_model, tmp_path):

    from tests.lsp_util import hover, neovim_caps, open_doc, start, stop
    from tests.test_server import pull, settings

    root = tmp_path / "ws"
    root.mkdir()
    path = root / "copy.c"
    text = f"int copy(char *src, int len)\n{{\n    {BAD}\n}}\n"
    path.write_text(text)
    client = await start(root, tmp_path / "cache", settings(fused_model), caps=neovim_caps())
    try:
        open_doc(client, path, text)
        await pull(client, path)
        shown = await hover(client, path, 0, 5)
        value = shown.contents.value
        assert "lexical n-grams" in value and "encoder" in value
        assert "raised the lexical score most" in value and "`strcpy" in value
    finally:
        await stop(client)


def test_check_json_reports_both_halves(fused_model, tmp_path):
    from tests.test_check import check

    (tmp_path / "a.c").write_text(f"int copy(char *src, int len)\n{{\n    {BAD}\n}}\n")
    run = check(
        tmp_path, tmp_path / "cache", "a.c", "--model", str(fused_model), "--format", "json"
    )
    assert run.code == 0, run.err
    (fn,) = run.json()["files"][0]["functions"]
    assert set(fn["parts"]) == {"encoder", "lexical"}
    assert fn["parts"]["lexical"] > 0.5  # the synthetic training data calls strcpy a defect


def test_vocabulary_finds_terms_in_order_and_nothing_else():
    terms = ["a b", "c", "é ü", "x"]
    v = Vocabulary(terms)
    assert len(v) == 4 and list(v) == terms and v[2] == "é ü"
    assert v.find(["x", "nope", "c", "x", "a  b", ""]) == [3, 1, 3]
    assert Vocabulary([]).find(["a"]) == []


def test_vocabulary_with_colliding_hashes_matches_by_text():
    # Force every term onto one hash: lookups must still compare the text.
    v = Vocabulary(["a b", "c", "d"])
    v._hashes[:] = hash("c")
    v._order[:] = [0, 1, 2]
    v._shared[:] = [True, True, False]
    assert v.find(["c", "c", "q"]) == [1, 1]  # "a b" comes first in the run and is passed over
    v._order[:] = [0, 2, 1]
    assert v.find(["c"]) == [1]
