"""Line ranking: the pruning bookkeeping that follows each input token, the offset map back to the
original text, and the ranked lines `score()` returns (tiny and bundled models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import BertConfig, BertModel

from alpine_lsp import load_model
from alpine_lsp.engine.cache import ScoreCache, _from_row, _to_row
from alpine_lsp.model.lines import collapse_map, rank_lines, token_lines
from alpine_lsp.model.tiny import tiny_tokenizer
from alpine_lsp.model.tokenize import CodeTokenizer, normalize_code
from alpine_lsp.pruning import PruningConfig, encode
from alpine_lsp.pruning.core import TokenState, relocate, repack, spread


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------
# relocate / spread against repack


def _members_match(state: TokenState, where: torch.Tensor, original: TokenState) -> None:
    """Every current position stands for exactly the originals that point at it."""
    for b in range(where.shape[0]):
        for p in range(state.valid.shape[1]):
            if not state.valid[b, p]:
                assert not (where[b] == p).any()
                continue
            pointing = (where[b] == p).nonzero().squeeze(1)
            assert float(original.size[b, pointing].sum()) == pytest.approx(float(state.size[b, p]))
            if state.origin[b, p] >= 0:
                assert pointing.tolist() == [int(state.origin[b, p])]


@settings(max_examples=25, deadline=None)
@given(
    bits=st.lists(st.lists(st.booleans(), min_size=8, max_size=8), min_size=2, max_size=2),
    merge=st.booleans(),
    batch=st.sampled_from([1, 2]),
)
def test_relocate_follows_two_repacks(bits, merge, batch):
    """Two pruning steps in a row (so a merged token can itself be kept or merged again)."""
    mask = [[1] * 8, [1] * 5 + [0] * 3][:batch]
    state = TokenState.initial(torch.tensor(mask))
    original = state
    hidden = torch.randn(batch, 8, 4)
    where = state.origin.clone()
    for step in bits:
        width = state.valid.shape[1]
        keep = torch.tensor([step[:width]] * batch) | state.special
        if not merge:
            keep[:, 0] = True
        new_where = relocate(where, state, keep, merge)
        hidden, state, _ = repack(hidden, state, keep, merge)
        where = new_where
        _members_match(state, where, original)
    if not merge:  # dropped tokens are gone
        assert ((where >= 0) == (where >= 0) & original.valid).all()


def test_spread_shares_a_merged_token_evenly():
    state = TokenState.initial(torch.ones(1, 5, dtype=torch.long))
    keep = torch.tensor([[True, False, True, False, True]])
    where = relocate(state.origin.clone(), state, keep, merge=True)
    _, state2, _ = repack(torch.randn(1, 5, 2), state, keep, merge=True)
    assert where.tolist() == [[0, 3, 1, 3, 2]]  # 1 and 3 went into the merged slot 3
    scores = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    got = spread(scores, state2, where)
    assert torch.allclose(got, torch.tensor([[0.1, 0.2, 0.2, 0.2, 0.3]]))
    assert float(got.sum()) == pytest.approx(float(scores.sum()))


def _bert(layers: int = 3):
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        num_hidden_layers=layers,
        max_position_embeddings=64,
        initializer_range=0.2,
    )
    return BertModel(cfg).eval()


@pytest.mark.parametrize("mode", ["merge", "drop"])
@pytest.mark.parametrize("layers", ["all", "none", "odd"])
def test_encode_tracks_lines_without_changing_results(mode, layers):
    model = _bert()
    ids = torch.randint(3, 50, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    cfg = PruningConfig(alpha=0.3, layers=layers, mode=mode)
    with torch.no_grad():
        plain = encode(model, ids, mask, cfg)
        tracked = encode(model, ids, mask, PruningConfig(0.3, layers, mode, track_lines=True))
    assert plain.token_scores is None
    # Equal up to rounding (with no pruning layer, layer 0 runs explicit attention, not SDPA).
    assert torch.allclose(plain.hidden, tracked.hidden, atol=1e-5)
    ts = tracked.token_scores
    scoring = max(1, len(cfg.pruning_layers(3)))
    assert ts.shape == (2, scoring, 12)
    assert torch.all(ts[1, :, 8:] == 0)  # padding receives nothing
    sums = ts.sum(dim=2)
    if mode == "merge":  # every layer's attention (a distribution) is handed out in full
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    else:
        assert torch.all(sums <= 1 + 1e-5) and torch.allclose(sums[:, 0], torch.ones(2))


# ---------------------------------------------------------------------------------------------
# offsets back to the original text


@pytest.mark.parametrize(
    "code",
    [
        "int f(void)\n{\n\treturn 1;\n}",
        "  \t lead\r\n\r\n  x = y;   \r\n\t\tz()  ",
        "one line only",
        "def ünïcode(ä):\n    return ä * 2  # ☃\n",
        "\n\n\n",
        "",
    ],
)
def test_collapse_map_points_at_the_source(code):
    text, src = collapse_map(code)
    assert text == normalize_code(code, "collapse")
    assert len(src) == len(text)
    for ch, i in zip(text, src, strict=True):
        assert code[i] == ch or (ch == " " and code[i].isspace())


@pytest.mark.parametrize("whitespace", ["collapse", "keep"])
def test_token_lines_with_tabs_crlf_and_non_ascii(whitespace):
    tok = CodeTokenizer(tiny_tokenizer(), "[CLS]", "[SEP]", "[PAD]", whitespace)
    code = "int\tgröße(int a)\r\n{\r\n\r\n\tint ñ = a;\r\n\treturn ñ;\r\n}"
    _, _, offsets = tok.pieces([code])[0]
    lines = token_lines(code, offsets, whitespace)
    text = normalize_code(code, whitespace)
    truth = code.replace("\r\n", "\n").split("\n")
    for (a, b), ln in zip(offsets, lines, strict=True):
        piece = text[a:b].strip()
        assert piece and piece in truth[ln - 1]
    assert sorted(set(lines.tolist())) == [1, 2, 4, 5, 6]  # line 3 is blank


def test_rank_lines_shares_and_ties():
    lines = np.array([1, 1, 2, 3, 3, 0])
    scores = np.array([0.1, 0.1, 0.2, 0.3, 0.1, 5.0])  # line 0 = no line: ignored
    ranked = rank_lines(lines, scores)
    assert [ln for ln, _ in ranked] == [3, 1, 2]  # 1 and 2 tie at 0.2: the earlier first
    assert sum(s for _, s in ranked) == pytest.approx(1.0)
    assert rank_lines(np.array([0, 0]), np.array([1.0, 1.0])) == []


# ---------------------------------------------------------------------------------------------
# score(): ranked lines from the same forward pass

CODE = """int copy(char *dst, const char *src, size_t len)
{
    char buf[16];
    if (len == 0)
        return 0;
    memcpy(buf, src, len);
    strcpy(dst, buf);
    return 1;
}"""


def _check(s, code):
    n_lines = code.count("\n") + 1
    assert s.lines, "no ranked lines"
    assert all(1 <= ln <= n_lines for ln, _ in s.lines)
    assert len({ln for ln, _ in s.lines}) == len(s.lines)
    # Highest first, except the first line (the signature), which is ranked last by design.
    shares = [w for ln, w in s.lines if ln != 1]
    assert shares == sorted(shares, reverse=True)
    assert sum(w for _, w in s.lines) <= 1 + 1e-9
    if len(s.lines) > 1 and any(ln == 1 for ln, _ in s.lines):
        assert s.lines[-1][0] == 1


def test_bundled_model_ranks_lines_and_layout_does_not_move_them():
    m = load_model(device="cpu", threads=1)
    crlf = CODE.replace("\n", "\r\n").replace("    ", "\t")
    a, b, one = m.score([CODE, crlf, "int f(){return 1;}"], "c", explain=True)
    _check(a, CODE)
    assert [ln for ln, _ in a.lines] == [ln for ln, _ in b.lines]  # same tokens, same lines
    assert one.lines == [(1, pytest.approx(1.0))]
    blank = {2, 9}  # "{" and "}" lines still hold tokens; nothing is on a line that is absent
    assert {ln for ln, _ in a.lines} <= set(range(1, 10)) | blank
    # Off when asked, and off without explain: the probability does not move.
    (c,) = m.score([CODE], "c", explain=True, lines=False)
    (d,) = m.score([CODE], "c")
    assert c.lines == [] and d.lines == []
    assert c.probability == pytest.approx(a.probability, abs=1e-6)
    assert d.probability == pytest.approx(a.probability, abs=1e-6)


def test_lines_when_everything_but_the_specials_is_merged(tiny_model_dir):
    """alpha 0 prunes every content token at the first layer: the lines come from the merged
    token's share, spread back over the tokens it stands for."""
    m = load_model(tiny_model_dir, device="cpu", pruning=PruningConfig(alpha=0.0))
    code = "int f(int a)\n{\n  return a;\n}"
    (s,) = m.score([code], "c", explain=True)
    assert s.tokens_per_layer[-1] <= 4
    _check(s, code)
    assert {ln for ln, _ in s.lines} == {1, 2, 3, 4}
    m.configure(pruning=PruningConfig(alpha=0.0, mode="drop"))
    (d,) = m.score([code], "c", explain=True)
    _check(d, code)  # the first layer saw every token before it was dropped


def test_truncated_function_ranks_only_lines_the_model_read(tiny_model_dir):
    m = load_model(tiny_model_dir, device="cpu", max_tokens=40)
    code = "int f(void) {\n" + "  x = x + 1;\n" * 100 + "  return x;\n}"
    (s,) = m.score([code], "c", explain=True)
    assert s.truncated
    _check(s, code)
    read = {ln for ln, _ in s.lines}
    assert read and not read & set(range(30, 90))  # the middle was not read


def test_cache_round_trip_and_old_rows(tmp_path, tiny_model_dir):
    m = load_model(tiny_model_dir, device="cpu")
    (s,) = m.score([CODE], "c", explain=True)
    s.cwe = [("CWE-787", 0.5)]
    back = _from_row(*_to_row(s))
    assert back.lines == s.lines and back.cwe == s.cwe
    cache = ScoreCache(tmp_path / "c.sqlite")
    cache.put_many("fp", "c", {"h": s})
    cache.memory.clear()
    assert cache.get_many("fp", "c", ["h"])["h"].lines == s.lines
    # A row written before lines existed still loads, with none.
    prob, meta, emb = _to_row(s)
    import json

    old = json.loads(meta)
    del old["lines"], old["cwe"]
    legacy = _from_row(prob, json.dumps(old), emb)
    assert legacy.lines == [] and legacy.cwe == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=list("ab ;\t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u3000é🙂"), max_size=40))
def test_collapse_map_any_whitespace(code):
    text, src = collapse_map(code)
    assert text == normalize_code(code, "collapse") and len(src) == len(text)
    assert all(
        code[i] == ch or (ch == " " and code[i].isspace()) for ch, i in zip(text, src, strict=True)
    )


def test_whitespace_mask_agrees_with_str_isspace_on_every_code_point() -> None:
    from alpine_lsp.model.lines import _spaces

    points = [*range(0xD800), *range(0xE000, 0x110000)]  # all but lone surrogates
    text = "".join(map(chr, points))
    mask = _spaces(text)
    wrong = [hex(p) for p, m in zip(points, mask, strict=True) if bool(m) != chr(p).isspace()]
    assert not wrong
