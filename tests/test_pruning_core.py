"""Unit tests for the ALPINE rule on hand-made tensors: config, scores, keep band, repack, FLOPs.

No model is built here; tests/test_pruning_encoder.py runs the rule inside real tiny encoders.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alpine_lsp.pruning import (
    NO_PRUNING,
    PruningConfig,
    TokenState,
    default_specials,
    encoder_flops,
    importance,
    keep_band,
    layer_flops,
    parse_layers,
    repack,
)

# ---------------------------------------------------------------------------------------------
# PruningConfig / parse_layers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0,2,5", (0, 2, 5)),
        (" 5 , 0 ", (0, 5)),
        ("2,2,1", (1, 2)),
        ([5, 0], (0, 5)),
        ((3, 1, 3), (1, 3)),
        ("even", "even"),
        ("ODD", "odd"),
        (" all ", "all"),
        ("none", "none"),
    ],
)
def test_parse_layers_accepts(spec, expected):
    assert parse_layers(spec) == expected
    assert PruningConfig(layers=spec).layers == expected


@pytest.mark.parametrize("spec", ["evn", "1;2", "0,x", "1.5", "even,1", "first"])
def test_parse_layers_rejects_garbage_with_clear_message(spec):
    with pytest.raises(ValueError, match=r"none, all, even, odd") as err:
        PruningConfig(layers=spec)
    assert repr(spec) in str(err.value)


@pytest.mark.parametrize("spec", ["-1", "0,-3"])
def test_parse_layers_rejects_negative_string(spec):
    with pytest.raises(ValueError, match=r">= 0"):
        parse_layers(spec)


@pytest.mark.parametrize("spec", [[-1], (0, -2)])
def test_parse_layers_rejects_negative_list(spec):
    # A list must be checked like the string "0,-2": a negative index would otherwise be accepted
    # and silently never prune.
    with pytest.raises(ValueError, match=r">= 0"):
        parse_layers(spec)


@pytest.mark.parametrize("spec", ["", " ", ",", " , "])
def test_parse_layers_rejects_empty_list_string(spec):
    # An empty spec is neither a policy nor a list of indices; it must not silently mean "none".
    with pytest.raises(ValueError, match=r"none, all, even, odd"):
        parse_layers(spec)


def test_config_rejects_bad_mode_and_alpha():
    with pytest.raises(ValueError, match="mode"):
        PruningConfig(mode="average")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        PruningConfig(alpha=-0.1)
    with pytest.raises(ValueError, match="alpha"):
        PruningConfig(alpha=float("nan"))


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ("none", []),
        ("all", [0, 1, 2, 3, 4]),
        ("even", [0, 2, 4]),
        ("odd", [1, 3]),
        ("0,3", [0, 3]),
        ([4, 1, 9], [1, 4]),  # indices past the last layer never prune
    ],
)
def test_layer_policies(layers, expected):
    cfg = PruningConfig(layers=layers)
    assert cfg.pruning_layers(5) == expected
    assert [i for i in range(7) if cfg.prunes(i, 5)] == expected
    assert NO_PRUNING.pruning_layers(5) == []


def test_config_dict_round_trip():
    for cfg in (PruningConfig(alpha=0.25, layers=[2, 0], mode="drop"), PruningConfig()):
        assert PruningConfig.from_dict(cfg.to_dict()) == cfg
    assert PruningConfig.from_dict({}) == PruningConfig()


# ---------------------------------------------------------------------------------------------
# default_specials / TokenState


def test_default_specials_first_and_last_valid():
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    expected = torch.tensor([[1, 0, 0, 0, 1], [1, 0, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(default_specials(mask.bool()), expected)
    state = TokenState.initial(mask)
    assert torch.equal(state.special, expected)
    assert state.size.tolist() == mask.float().tolist()
    assert state.origin.tolist()[1] == [0, 1, 2, -1, -1]
    assert state.lengths.tolist() == [5, 3, 1]


# ---------------------------------------------------------------------------------------------
# importance


def test_importance_hand_computed_and_ignores_padding():
    gen = torch.Generator().manual_seed(0)
    batch, heads, length = 2, 3, 5
    valid = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    logits = torch.randn(batch, heads, length, length, generator=gen)
    probs = logits.masked_fill(~valid[:, None, None, :], -1e9).softmax(-1)

    got = importance(probs, valid)

    p = probs.numpy().astype(np.float64)
    expected = np.zeros((batch, length))
    for b in range(batch):
        n = int(valid[b].sum())
        # mean over heads and over the n valid query rows of the column for key k
        expected[b, :n] = p[b, :, :n, :n].mean(axis=(0, 1))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)
    assert torch.all(got[~valid] == 0)

    # Garbage in padded query rows and in padded key columns changes nothing.
    dirty = probs.clone()
    dirty[1, :, 3:, :] = 7.0
    dirty[1, :, :, 3:] = 0.5
    assert torch.allclose(importance(dirty, valid), got, atol=1e-7)
    assert torch.all(importance(dirty, valid)[~valid] == 0)


def test_importance_uniform_attention():
    valid = torch.tensor([[1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    probs = torch.zeros(1, 4, 6, 6)
    probs[..., :4] = 0.25
    got = importance(probs, valid)
    assert torch.allclose(got, torch.tensor([[0.25, 0.25, 0.25, 0.25, 0.0, 0.0]]))


# ---------------------------------------------------------------------------------------------
# keep_band


def _state(mask: list[list[int]]) -> TokenState:
    return TokenState.initial(torch.tensor(mask))


def _numpy_band(scores: np.ndarray, content: np.ndarray, alpha: float) -> np.ndarray:
    s = scores[content].astype(np.float64)
    mu, sigma = s.mean(), s.std(ddof=0)  # population std
    keep = np.zeros_like(content)
    keep[content] = (s >= mu - alpha * sigma) & (s <= mu + alpha * sigma)
    return keep


def test_keep_band_hand_computed():
    # Row: [CLS]=0.9, content 0.10 0.20 0.30 0.35 0.05, [SEP]=0.8, two padding slots.
    scores = torch.tensor([[0.9, 0.10, 0.20, 0.30, 0.35, 0.05, 0.8, 5.0, 5.0]])
    state = _state([[1, 1, 1, 1, 1, 1, 1, 0, 0]])
    content = np.array([[0, 1, 1, 1, 1, 1, 0, 0, 0]], dtype=bool)
    # mu = 0.2; deviations -0.1 0 0.1 0.15 -0.15; population var = 0.065 / 5 = 0.013,
    # sigma = 0.11402. With alpha = 1.2 the band is 0.2 +- 0.13682: 0.35 and 0.05 fall out.
    # (The sample std 0.12748 would give +-0.15298 and keep them, so this pins ddof=0.)
    alpha = 1.2
    keep = keep_band(scores, state, alpha)
    assert keep.tolist() == [[True, True, True, True, False, False, True, False, False]]
    hand = _numpy_band(scores.numpy()[0], content[0], alpha)
    assert np.array_equal(keep.numpy()[0] & content[0], hand)

    # Specials and padding do not enter the statistics: moving their scores changes nothing.
    moved = scores.clone()
    moved[0, [0, 6]] = torch.tensor([-3.0, 40.0])
    moved[0, 7:] = torch.tensor([-100.0, 0.2])
    assert torch.equal(keep_band(moved, state, alpha), keep)


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(st.floats(0.0, 1.0, width=32), min_size=0, max_size=12),
    pad=st.integers(0, 3),
    alpha=st.floats(0.0, 3.0),
)
def test_keep_band_matches_numpy(data, pad, alpha):
    n = len(data) + 2
    raw = [0.5, *data, 0.5] + [9.0] * pad
    scores = torch.tensor([raw], dtype=torch.float32)
    state = _state([[1] * n + [0] * pad])
    keep = keep_band(scores, state, alpha).numpy()[0]
    content = np.zeros(n + pad, dtype=bool)
    content[1 : n - 1] = True
    assert keep[0] and keep[n - 1], "specials are always kept"
    assert not keep[n:].any(), "padding is never kept"
    if not data:
        assert keep.sum() == 2
        return
    hand = _numpy_band(scores.numpy()[0], content, alpha)
    s = scores.numpy()[0].astype(np.float64)
    mu, sigma = s[content].mean(), s[content].std()
    # Away from the band edges (float32 vs float64 rounding) the two must agree exactly.
    clear = np.abs(np.abs(s - mu) - alpha * sigma) > 1e-5
    assert np.array_equal((keep & content)[clear], hand[clear])


def test_keep_band_identical_scores_keep_all():
    for value in (1 / 3, 0.1, 1e-4, 0.7):
        scores = torch.full((2, 8), value)
        scores[:, 0] = 0.9
        state = _state([[1] * 8, [1] * 6 + [0] * 2])
        keep = keep_band(scores, state, alpha=0.0)
        assert keep[0].all()
        assert keep[1, :6].all() and not keep[1, 6:].any()


def test_keep_band_only_specials_and_single_token():
    scores = torch.tensor([[0.6, 0.4, 0.0, 0.0], [0.3, 0.3, 0.4, 0.0], [1.0, 0.0, 0.0, 0.0]])
    state = _state([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    keep = keep_band(scores, state, alpha=0.0)
    assert keep.tolist() == [
        [True, True, False, False],
        [True, True, True, False],  # one content token: sigma = 0, it is the mean
        [True, False, False, False],
    ]
    assert not torch.isnan(keep.float()).any()


# ---------------------------------------------------------------------------------------------
# repack


def _hidden(batch: int, length: int, width: int = 3) -> torch.Tensor:
    return torch.arange(batch * length * width, dtype=torch.float32).view(batch, length, width)


def test_repack_merge_weighted_mean_and_order():
    hidden = _hidden(2, 5)
    state = _state([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    state.size = torch.tensor([[1.0, 2.0, 1.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0, 0.0]])
    hidden[1, 4] = 1e6  # padding garbage
    keep = torch.tensor([[1, 0, 1, 0, 1], [1, 1, 1, 1, 0]], dtype=torch.bool)

    new, st_, carried = repack(hidden, state, keep, merge=True)

    assert carried is None
    assert new.shape == (2, 4, 3)
    # Row 0: kept 0, 2, 4 in order, then the merge of 1 (size 2) and 3 (size 3).
    assert torch.equal(new[0, :3], hidden[0, [0, 2, 4]])
    assert torch.allclose(new[0, 3], (2 * hidden[0, 1] + 3 * hidden[0, 3]) / 5)
    assert st_.size[0].tolist() == [1.0, 1.0, 1.0, 5.0]
    assert st_.origin[0].tolist() == [0, 2, 4, -1]
    assert st_.special[0].tolist() == [True, False, True, False]
    assert st_.valid[0].tolist() == [True, True, True, True]
    # Row 1 pruned nothing: no merge token, padding stays padding, nothing NaN.
    assert torch.equal(new[1, :4], hidden[1, :4])
    assert st_.valid[1].tolist() == [True, True, True, True]
    assert st_.size[1].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert st_.origin[1].tolist() == [0, 1, 2, 3]
    assert not torch.isnan(new).any()
    # Total size is conserved in merge mode.
    assert torch.equal(st_.size.sum(1), state.size.sum(1))


def test_repack_merge_ignores_padding_and_pads_short_rows():
    hidden = _hidden(2, 6)
    state = _state([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    hidden[1, 4:] = -1e6
    state.size[1, 4:] = 7.0  # even a bogus size on padding must not be counted
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 0, 1, 1, 1]], dtype=torch.bool)

    new, st_, _ = repack(hidden, state, keep, merge=True)

    assert new.shape == (2, 6, 3)
    assert torch.allclose(new[1, 2], (hidden[1, 1] + hidden[1, 2]) / 2)
    assert st_.size[1].tolist() == [1.0, 1.0, 2.0, 0.0, 0.0, 0.0]
    assert st_.valid[1].tolist() == [True, True, True, False, False, False]
    assert st_.origin[1].tolist() == [0, 3, -1, -1, -1, -1]
    assert torch.all(new[1, 3:] == 0)
    assert torch.equal(new[0], hidden[0])


def test_repack_nothing_pruned_anywhere():
    hidden = _hidden(2, 4)
    state = _state([[1, 1, 1, 1], [1, 1, 0, 0]])
    new, st_, _ = repack(hidden, state, state.valid.clone(), merge=True)
    assert new.shape == hidden.shape
    assert not torch.isnan(new).any()
    assert torch.equal(new[0], hidden[0]) and torch.equal(new[1, :2], hidden[1, :2])
    assert torch.equal(st_.valid, state.valid)
    assert torch.equal(st_.size, state.size)


def test_repack_drop_removes():
    hidden = _hidden(2, 5)
    state = _state([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    keep = torch.tensor([[1, 0, 1, 0, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    new, st_, _ = repack(hidden, state, keep, merge=False)
    assert new.shape == (2, 3, 3)
    assert torch.equal(new[0], hidden[0, [0, 2, 4]])
    assert torch.equal(new[1], hidden[1, :3])
    assert st_.origin.tolist() == [[0, 2, 4], [0, 1, 2]]
    assert st_.size.tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    assert st_.valid.all()


def test_repack_carry_moves_with_tokens():
    hidden = _hidden(1, 5)
    state = _state([[1, 1, 1, 1, 1]])
    carry = torch.tensor([[0.5, 0.1, 0.2, 0.3, 0.4]])
    keep = torch.tensor([[1, 0, 1, 1, 1]], dtype=torch.bool)
    _, _, merged = repack(hidden, state, keep, merge=True, carry=carry)
    assert torch.allclose(merged, torch.tensor([[0.5, 0.2, 0.3, 0.4, 0.0]]))
    _, _, dropped = repack(hidden, state, keep, merge=False, carry=carry)
    assert torch.allclose(dropped, torch.tensor([[0.5, 0.2, 0.3, 0.4]]))


@settings(max_examples=60, deadline=None)
@given(
    keep_bits=st.lists(st.booleans(), min_size=1, max_size=12),
    merge=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_repack_single_row_matches_batched(keep_bits, merge, seed):
    """A batch of one takes an indexing shortcut; it must give what the general path gives for
    the same row inside a padded batch (row 1 there is padding-heavy so the general path runs)."""
    length = len(keep_bits)
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(1, length, 4, generator=gen)
    keep = torch.tensor([keep_bits])
    if not merge and not keep.any():
        keep[0, 0] = True  # the shortcut assumes something survives; the encoder's always does
    one = _state([[1] * length])
    one.size = torch.rand(1, length, generator=gen) + 0.5
    carry = torch.rand(1, length, generator=gen)

    two = _state([[1] * length, [1] + [0] * (length - 1)])
    two.size = torch.cat([one.size, torch.ones(1, length)])
    got = repack(hidden, one, keep, merge, carry)
    ref = repack(
        torch.cat([hidden, torch.zeros_like(hidden)]),
        two,
        torch.cat([keep, torch.ones_like(keep)]),
        merge,
        torch.cat([carry, torch.zeros_like(carry)]),
    )
    n = got[0].shape[1]
    assert int(ref[1].valid[0].sum()) == n
    assert torch.allclose(got[0][0], ref[0][0, :n], atol=1e-6)
    assert torch.allclose(got[1].size[0], ref[1].size[0, :n])  # merged sizes: summing order
    for name in ("special", "origin", "valid"):
        assert torch.equal(getattr(got[1], name)[0], getattr(ref[1], name)[0, :n]), name
    assert torch.allclose(got[2][0], ref[2][0, :n])


def test_importance_without_padding_matches_padded_path():
    gen = torch.Generator().manual_seed(3)
    probs = torch.randn(1, 2, 6, 6, generator=gen).softmax(-1)
    full = importance(probs, torch.ones(1, 6, dtype=torch.bool))
    # The same row beside a padded one takes the masked path.
    both = torch.cat([probs, probs])
    valid = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.allclose(full[0], importance(both, valid)[0], atol=1e-7)


# ---------------------------------------------------------------------------------------------
# FLOPs


def test_layer_flops_hand_computed():
    n_in, n_out, h, i = 10, 6, 32, 64
    qkv = 3 * 2 * 10 * 32 * 32  # 61_440
    scores = 2 * 10 * 10 * 32  # 6_400
    context = 2 * 10 * 10 * 32  # 6_400
    proj = 2 * 10 * 32 * 32  # 20_480
    ffn = 2 * 2 * 6 * 32 * 64  # 49_152 (two matrices, at the length after pruning)
    assert qkv + scores + context + proj + ffn == 143_872
    assert layer_flops(n_in, n_out, h, i) == 143_872


def test_encoder_flops_hand_computed():
    # Lengths entering layers 0, 1, 2 and leaving layer 2: 10 -> 6 -> 6 -> 4.
    got = encoder_flops([10, 6, 6, 4], hidden=32, intermediate=64)
    layer0 = 143_872
    # n_in = n_out = 6: 36_864 + 2_304 + 2_304 + 12_288 + 2*2*6*32*64 (49_152)
    layer1 = 36_864 + 2_304 + 2_304 + 12_288 + 49_152
    # n_in = 6, n_out = 4: same attention part, FFN 2*2*4*32*64 = 32_768
    layer2 = 36_864 + 2_304 + 2_304 + 12_288 + 32_768
    assert got == [layer0, layer1, layer2] == [143_872, 102_912, 86_528]
    assert encoder_flops(torch.tensor([10, 6, 6, 4]), 32, 64) == got
    assert encoder_flops([7], 32, 64) == []


def test_flops_shrink_with_shorter_lengths():
    full = sum(encoder_flops([12, 12, 12, 12], 32, 64))
    pruned = sum(encoder_flops([12, 8, 5, 5], 32, 64))
    assert pruned < full
    assert layer_flops(12, 8, 32, 64) < layer_flops(12, 12, 32, 64)
