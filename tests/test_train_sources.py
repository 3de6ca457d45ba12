"""train defect --sources: language markers, pairs kept whole, weighted sources, resume; and
`eval encoder` over the same synthetic sources."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alpine_lsp.cli.main import main as cli_main
from alpine_lsp.model import load_model
from alpine_lsp.model.files import ModelMeta, read_meta
from alpine_lsp.model.tiny import create_tiny_model
from alpine_lsp.model.tokenize import CodeTokenizer
from alpine_lsp.train.defect import cap_rows, unit_batches
from alpine_lsp.train.sources import Row
from tests.test_eval_defect import synthetic_devign, write_devign
from tests.test_sources import row, write_source

BAD_C = "char buf[8]; strcpy(buf, src); return buf[len];"
GOOD_C = "char buf[8]; if (len >= 8) return -1; strncpy(buf, src, 7); return buf[len];"
BAD_PY = "return subprocess.call(cmd, shell=True)"
GOOD_PY = "return subprocess.call(shlex.split(cmd))"


def paired_rows(n_pairs: int) -> tuple[list[dict], dict]:
    rows, split = [], {"train": [], "valid": [], "test": []}
    for p in range(n_pairs):
        lang = "c" if p % 2 else "python"
        for target in (1, 0):
            if lang == "c":
                func = f"int copy_{p}(char *src, int len) {{ {BAD_C if target else GOOD_C} }}"
            else:
                func = f"def run_{p}(cmd):\n    {BAD_PY if target else GOOD_PY}\n"
            r = row(2 * p + target, target, func, lang, pair=f"pair{p}")
            rows.append(r)
            part = "train" if p < n_pairs - 6 else "valid" if p < n_pairs - 3 else "test"
            split[part].append(r["id"])
    return rows, split


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sources")
    data = root / "data"
    write_devign(data / "devign", synthetic_devign(40))
    rows, split = paired_rows(16)
    write_source(data, "sven", rows, split)
    return create_tiny_model(root / "base"), data


def tokenizer(model_dir: Path) -> CodeTokenizer:
    meta = read_meta(model_dir)
    return CodeTokenizer.from_file(str(model_dir / "tokenizer.json"), meta.specials)


def test_marker_goes_after_the_content_and_moves_no_position(setup):
    tok = tokenizer(setup[0])
    code = "int add(int a, int b) { return a + b; }"
    plain = tok.batch([code], 64)
    marked = tok.batch([code], 64, languages=["java"])
    m_ids, m_toks = tok.marker("java")
    assert m_ids, "the marker is made of tokens"
    p = plain.input_ids[0, : int(plain.attention_mask[0].sum())].tolist()
    m = marked.input_ids[0, : int(marked.attention_mask[0].sum())].tolist()
    assert m == [*p[:-1], *m_ids, tok.sep_id]
    assert marked.tokens[0] == [*plain.tokens[0][:-1], *m_toks, tok.sep_token]
    # Offsets (content tokens only) are what line ranking and the hover read: unchanged.
    assert marked.offsets == plain.offsets
    assert marked.full_lengths == plain.full_lengths


def test_marker_shares_the_token_budget(setup):
    tok = tokenizer(setup[0])
    code = " ".join(f"x{i} = {i};" for i in range(200))
    marked = tok.batch([code], 32, languages=["python"])
    n = int(marked.attention_mask[0].sum())
    assert n <= 32 and marked.truncated == [True]
    m_ids, _ = tok.marker("python")
    assert marked.input_ids[0, n - 1 - len(m_ids) : n].tolist() == [*m_ids, tok.sep_id]
    with pytest.raises(ValueError, match="one language per code"):
        tok.batch([code, code], 32, languages=["python"])


def test_language_marker_round_trips_in_alpine_json():
    meta = ModelMeta(name="m", specials={}, language_marker=True)
    d = meta.to_dict()
    assert d["language_marker"] is True
    assert ModelMeta.from_dict(d).language_marker is True
    plain = ModelMeta(name="m", specials={}).to_dict()
    assert "language_marker" not in plain  # older readers see the file they know
    assert ModelMeta.from_dict(plain).language_marker is False
    assert "language_marker" not in ModelMeta.from_dict(d).extra


def _rows(n_pairs: int, singles: int) -> list[Row]:
    rows = []
    for p in range(n_pairs):
        for t in (1, 0):
            rows.append(Row(f"p{p}-{t}", "s", "x", "c", "f()", t, f"pair{p}", "train"))
    for i in range(singles):
        rows.append(Row(f"s{i}", "s", "x", "c", "g()", i % 2, None, "train"))
    return rows


def test_capping_keeps_pairs_whole():
    rows = _rows(30, 20)
    kept = cap_rows(rows, 25, random.Random(1))
    assert 25 <= len(kept) <= 26
    halves: dict[str, int] = {}
    for r in kept:
        if r.pair:
            halves[r.pair] = halves.get(r.pair, 0) + 1
    assert halves and set(halves.values()) == {2}
    assert kept == [r for r in rows if r in kept], "source order kept"
    assert cap_rows(rows, 0, random.Random(1)) == rows


def test_batches_never_split_a_pair():
    rng = random.Random(5)
    units, lengths, n = [], [], 0
    for _ in range(200):
        size = rng.choice((1, 2))
        units.append(list(range(n, n + size)))
        n += size
    lengths = [rng.randint(5, 300) for _ in range(n)]
    batches = unit_batches(units, lengths, 4, random.Random(2))
    where = {i: b for b, batch in enumerate(batches) for i in batch}
    assert sorted(where) == list(range(n)), "every row exactly once"
    assert sum(len(b) for b in batches) == n
    for u in units:
        assert len({where[i] for i in u}) == 1
    assert max(len(b) for b in batches) <= 4


def train(base: Path, data: Path, out: Path, *extra: str) -> int:
    args = ["train", "defect", "--data", str(data), "--base", str(base), "--out", str(out)]
    args += ["--sources", "devign:1,sven:2", "--batch-size", "4", "--threads", "1"]
    args += ["--seed", "3", "--source-cap", "30", *extra]
    return cli_main(args)


def test_sources_run_reads_markers_and_resumes_to_the_same_weights(setup, tmp_path):
    base, data = setup
    assert train(base, data, tmp_path / "one") == 0
    assert train(base, data, tmp_path / "two", "--stop-at-step", "3") == 0
    assert train(base, data, tmp_path / "two", "--resume") == 0
    a = load_file(str(tmp_path / "one.ckpt" / "net.safetensors"))
    b = load_file(str(tmp_path / "two.ckpt" / "net.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    meta = json.loads((tmp_path / "one" / "alpine.json").read_text())
    assert meta["language_marker"] is True
    per = meta["valid"]["per_source"]
    assert set(per) == {"devign", "sven"} and per["sven"]["rows"] == 6
    model = load_model(tmp_path / "one", device="cpu")
    assert model.meta.language_marker
    # The marker reaches the score: the same text read as another language scores otherwise.
    code = "def run(cmd):\n    return subprocess.call(cmd, shell=True)\n"
    py, c = model.score([code], "python")[0], model.score([code], "c")[0]
    assert py.probability != c.probability


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("devign,vuldetectbench", "vuldetectbench is a test set only"),
        ("c_corpus", "c_corpus is unlabelled"),
        ("devign,nosuch", "unknown source 'nosuch'"),
    ],
)
def test_sources_that_cannot_be_trained_on_are_refused(setup, tmp_path, spec, message):
    base, data = setup
    args = ["train", "defect", "--data", str(data), "--base", str(base)]
    args += ["--out", str(tmp_path / "m"), "--sources", spec]
    with pytest.raises(SystemExit) as exited:
        cli_main(args)
    assert message in str(exited.value.code)
    assert not (tmp_path / "m").exists()


def test_eval_encoder_scores_every_model_beside_the_baselines(setup, tmp_path, capsys):
    base, data = setup
    assert train(base, data, tmp_path / "m") == 0
    capsys.readouterr()
    out = tmp_path / "report.md"
    rc = cli_main(
        [
            "eval",
            "encoder",
            "--data",
            str(data),
            "--model",
            f"base={base}",
            "--model",
            f"trained={tmp_path / 'm'}",
            "--json",
            "--out",
            str(out),
            "--threads",
            "1",
            "--sources",
            "devign,sven",
            "--fit-sources",
            "devign,sven",
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["scorers"] == ["length", "tfidf", "risky", "base", "trained"]
    sven = res["per_source"]["sven"]
    assert sven["trained"]["n"] == 6 and sven["trained"]["pairs"] == 3
    for name in res["scorers"]:
        assert 0.0 <= sven[name]["roc_auc"] <= 1.0
        assert 0.0 <= sven[name]["pair_higher"] <= 1.0
    assert "## ROC-AUC, per source" in out.read_text()


def test_eval_encoder_bad_input_is_a_message(setup, tmp_path, capsys):
    base, data = setup
    common = ["eval", "encoder", "--data", str(data), "--sources", "sven", "--fit-sources", "sven"]
    assert cli_main([*common, "--model", str(base)]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli_main([*common, "--model", f"x={tmp_path / 'none'}"])
    assert "is not a model directory" in str(exited.value.code)
    with pytest.raises(SystemExit) as exited:
        cli_main([*common, "--sources", "manysstubs4j", "--model", f"x={base}"])
    assert "source folder is missing" in str(exited.value.code)
