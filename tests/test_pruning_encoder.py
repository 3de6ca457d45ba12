"""ALPINE pruning inside tiny random BERT/RoBERTa encoders: equivalence, padding, batches, grads."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    RobertaConfig,
    RobertaModel,
)

import alpine_lsp.pruning.encoder as encoder_mod
from alpine_lsp.pruning import (
    NO_PRUNING,
    PruningConfig,
    apply,
    base_model,
    encode,
    encoder_flops,
    remove,
)

VOCAB = 60
PAD = 1  # RoBERTa's padding_idx; BERT ignores it for positions
ATOL = 1e-5
KINDS = ("bert", "roberta")
NUM_LAYERS = {"bert": 3, "roberta": 4}

_common = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    pad_token_id=PAD,
    # Ten times the usual init spread: attention is peaked enough that scores differ clearly
    # (with 0.02 every row is near-uniform and the keep band splits near-ties).
    initializer_range=0.2,
)


def _build(kind: str, layers: int, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "bert":
        model = BertModel(BertConfig(num_hidden_layers=layers, **_common))
    else:
        model = RobertaModel(RobertaConfig(num_hidden_layers=layers, **_common))
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tensors here are tiny: intra-op threads only add overhead, and on a busy 2-core box
    # they make each forward ~10x slower. Restored afterwards for other test modules.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models():
    # Module scope: hypothesis runs many examples against the same (read-only) models.
    return {kind: _build(kind, NUM_LAYERS[kind], seed=i) for i, kind in enumerate(KINDS)}


def _batch(lengths: list[int], seed: int, pad_ids: bool = True):
    """Right-padded ids/mask; content ids avoid the pad id so RoBERTa positions are plain."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, VOCAB, (len(lengths), width), generator=gen)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    if pad_ids:
        ids[mask == 0] = PAD
    return ids, mask


def _valid_rows(out):
    """Per row, the final hidden states at its valid positions (they form a prefix)."""
    rows = []
    for b in range(out.hidden.shape[0]):
        n = int(out.state.valid[b].sum())
        assert out.state.valid[b, :n].all() and not out.state.valid[b, n:].any()
        rows.append(out.hidden[b, :n])
    return rows


# ---------------------------------------------------------------------------------------------
# Equivalence with the stock model


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "cfg",
    [NO_PRUNING, PruningConfig(alpha=1e9, layers="all"), PruningConfig(alpha=1e9, mode="drop")],
    ids=["none", "huge-alpha-merge", "huge-alpha-drop"],
)
def test_no_pruning_matches_stock(models, kind, cfg):
    model = models[kind]
    ids, mask = _batch([9, 5, 2, 7], seed=1)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = encode(model, ids, mask, cfg)
    valid = mask.bool()
    assert out.hidden.shape == ref.shape
    assert torch.allclose(out.hidden[valid], ref[valid], atol=ATOL)
    assert torch.all(out.hidden[~valid] == 0)
    assert (out.lengths == mask.sum(1, keepdim=True)).all()
    assert torch.equal(out.state.valid, valid)


@pytest.mark.parametrize("kind", KINDS)
def test_apply_remove_round_trip(models, kind):
    model = _build(kind, 2, seed=3)  # own copy: apply patches in place
    stock_cls = type(model)
    ids, mask = _batch([8, 6, 3], seed=2)
    valid = mask.bool()
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask)

        assert apply(model, NO_PRUNING) is model
        patched_cls = type(model)
        off = model(input_ids=ids, attention_mask=mask)
        assert torch.allclose(off.last_hidden_state[valid], ref.last_hidden_state[valid], atol=ATOL)
        assert torch.allclose(off.pooler_output, ref.pooler_output, atol=ATOL)
        assert model.alpine_last is not None

        # Applying again only changes the settings: same class, no double wrapping.
        cfg = PruningConfig(alpha=0.0, layers="all", mode="drop")
        apply(model, cfg)
        assert type(model) is patched_cls
        assert model.alpine_config == cfg and model.alpine_last is None
        assert [c.__name__ for c in type(model).__mro__].count("_AlpineMixin") == 1
        on = model(input_ids=ids, attention_mask=mask)
        assert on.last_hidden_state.shape[1] < ids.shape[1]
        assert (model.alpine_last.lengths[:, -1] < mask.sum(1)).any()

        remove(model)
        assert type(model) is stock_cls
        assert not hasattr(model, "alpine_config") and not hasattr(model, "alpine_last")
        back = model(input_ids=ids, attention_mask=mask)
    # Stock forward again, padded positions included.
    assert torch.equal(back.last_hidden_state, ref.last_hidden_state)
    assert torch.equal(back.pooler_output, ref.pooler_output)
    remove(model)  # removing twice is harmless
    assert type(model) is stock_cls


def test_apply_patches_encoder_inside_task_model():
    torch.manual_seed(5)
    cfg = BertConfig(num_hidden_layers=2, num_labels=3, **_common)
    model = BertForSequenceClassification(cfg).eval()
    ids, mask = _batch([7, 4], seed=4)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits
        apply(model, PruningConfig(alpha=1e9))
        assert base_model(model) is model.bert and hasattr(model.bert, "alpine_config")
        got = model(input_ids=ids, attention_mask=mask).logits
        remove(model)
    assert torch.allclose(got, ref, atol=ATOL)
    with pytest.raises(TypeError):
        base_model(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------
# The spec written out once more, slowly, for a single unpadded row


def _reference(model, ids: torch.Tensor, cfg: PruningConfig):
    """One row, float64 statistics, Python lists: attention at full length -> add & norm ->
    keep band -> merge/drop -> FFN on the kept tokens -> add & norm."""
    x = model.embeddings(input_ids=ids[None])[0]
    n = x.shape[0]
    size = [1.0] * n
    origin = list(range(n))
    special = [j in (0, n - 1) for j in range(n)]
    layers = model.encoder.layer
    margins = []
    for i, layer in enumerate(layers):
        sa = layer.attention.self
        heads = sa.num_attention_heads
        d = x.shape[1] // heads
        q, k, v = (f(x).view(-1, heads, d).transpose(0, 1) for f in (sa.query, sa.key, sa.value))
        probs = ((q @ k.transpose(1, 2)) / d**0.5).softmax(-1)  # (heads, n, n)
        ctx = (probs @ v).transpose(0, 1).reshape(x.shape)
        out = layer.attention.output
        x = out.LayerNorm(out.dense(ctx) + x)
        if cfg.prunes(i, len(layers)):
            score = probs.double().mean(dim=(0, 1))  # over heads and query rows
            content = [j for j in range(len(size)) if not special[j]]
            if content:
                s = score[content]
                mu, sigma = s.mean(), s.std(unbiased=False)
                if len(content) > 2:  # one or two tokens sit exactly on mu / the edge
                    margins += (((s - mu).abs() - cfg.alpha * sigma).abs() / mu).tolist()
            keep = [
                special[j] or bool((score[j] - mu).abs() <= cfg.alpha * sigma + 1e-9)
                for j in range(len(size))
            ]
            gone = [j for j in range(len(size)) if not keep[j]]
            kept = [j for j in range(len(size)) if keep[j]]
            rows, new_size = [x[kept]], [size[j] for j in kept]
            if gone and cfg.mode == "merge":
                w = torch.tensor([size[j] for j in gone])
                rows.append(((w[:, None] * x[gone]).sum(0) / w.sum())[None])
                new_size.append(float(w.sum()))
            x = torch.cat(rows)
            origin = [origin[j] for j in kept] + [-1] * (len(new_size) - len(kept))
            special = [special[j] for j in kept] + [False] * (len(new_size) - len(kept))
            size = new_size
        ffn = layer.output
        x = ffn.LayerNorm(ffn.dense(layer.intermediate(x)) + x)
    return x, size, origin, margins


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["merge", "drop"])
@pytest.mark.parametrize(("alpha", "layers"), [(0.5, "all"), (1.0, "odd"), (0.8, [0, 2])])
def test_matches_slow_reference(models, kind, mode, alpha, layers):
    model = models[kind]
    cfg = PruningConfig(alpha=alpha, layers=layers, mode=mode)
    ids, mask = _batch([13, 10], seed=14)
    with torch.no_grad():
        out = encode(model, ids, mask, cfg)
        rows = _valid_rows(out)
        for b, n in enumerate([13, 10]):
            x, size, origin, margins = _reference(model, ids[b, :n], cfg)
            # The fixed inputs keep every score clear of the band edges (relative to mu), so
            # float32 vs float64 rounding cannot flip a decision.
            assert min(margins, default=1.0) > 1e-5, min(margins)
            assert out.state.size[b, : len(size)].tolist() == size
            assert out.state.origin[b, : len(origin)].tolist() == origin
            assert torch.allclose(rows[b], x, atol=ATOL)
    assert (out.lengths[:, -1] < out.lengths[:, 0]).any(), "the case should prune"


# ---------------------------------------------------------------------------------------------
# Specials and padding


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["merge", "drop"])
def test_specials_survive_every_layer(models, kind, mode, monkeypatch):
    model = models[kind]
    lengths = [12, 9, 5, 3]
    ids, mask = _batch(lengths, seed=6)
    seen = []

    def spy(scores, state, alpha):
        keep = real(scores, state, alpha)
        seen.append((keep.clone(), state.special.clone()))
        return keep

    real = encoder_mod.keep_band
    monkeypatch.setattr(encoder_mod, "keep_band", spy)
    with torch.no_grad():
        out = encode(model, ids, mask, PruningConfig(alpha=0.0, layers="all", mode=mode))
    assert len(seen) == NUM_LAYERS[kind]
    for keep, special in seen:
        assert (special.sum(1) == 2).all()
        assert (keep | ~special).all(), "a special token was pruned"
    assert (out.state.special.sum(1) == 2).all()
    for b, n in enumerate(lengths):
        origins = out.state.origin[b][out.state.special[b]].tolist()
        assert origins == [0, n - 1]
    # alpha = 0 prunes hard: something must actually have gone in the long rows.
    assert (out.lengths[:2, -1] < torch.tensor(lengths[:2])).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["merge", "drop"])
def test_padding_changes_nothing(models, kind, mode):
    model = models[kind]
    lengths = [11, 6, 3]
    ids, mask = _batch(lengths, seed=7)
    cfg = PruningConfig(alpha=0.5, layers="all", mode=mode)
    with torch.no_grad():
        clean = encode(model, ids, mask, cfg)

        # 1) other token ids at padded positions
        noisy_ids = ids.clone()
        gen = torch.Generator().manual_seed(8)
        noisy_ids[mask == 0] = torch.randint(0, VOCAB, (int((mask == 0).sum()),), generator=gen)
        other = encode(model, noisy_ids, mask, cfg)

        # 2) garbage hidden values at padded positions: after the embeddings and after every
        #    attention add & norm (i.e. right before the keep band / repack / FFN).
        def pad_noise(valid_len):
            def hook(_module, _inputs, output):
                pos = torch.arange(output.shape[1])
                pad = (pos[None, :] >= valid_len[:, None]).unsqueeze(-1)
                return torch.where(pad, torch.full_like(output, 50.0), output)

            return hook

        handles = [model.embeddings.register_forward_hook(pad_noise(clean.lengths[:, 0]))]
        for i, layer in enumerate(model.encoder.layer):
            ln = layer.attention.output.LayerNorm
            handles.append(ln.register_forward_hook(pad_noise(clean.lengths[:, i])))
        try:
            garbage = encode(model, ids, mask, cfg)
        finally:
            for h in handles:
                h.remove()

    for out in (other, garbage):
        assert torch.equal(out.lengths, clean.lengths)
        assert torch.equal(out.state.origin, clean.state.origin)
        assert torch.equal(out.state.size, clean.state.size)
        for a, b in zip(_valid_rows(out), _valid_rows(clean), strict=True):
            assert torch.allclose(a, b, atol=ATOL)
    assert (clean.state.size.sum(1) <= torch.tensor(lengths)).all()


# ---------------------------------------------------------------------------------------------
# Batch independence


@st.composite
def _layer_policy(draw, num_layers: int):
    named = st.sampled_from(["none", "all", "even", "odd"])
    explicit = st.lists(st.integers(0, num_layers - 1), max_size=num_layers)
    return draw(st.one_of(named, explicit))


@st.composite
def _scenario(draw):
    kind = draw(st.sampled_from(KINDS))
    return {
        "kind": kind,
        "lengths": draw(st.lists(st.integers(1, 14), min_size=1, max_size=4)),
        "alpha": draw(st.floats(0.0, 3.0)),
        "layers": draw(_layer_policy(NUM_LAYERS[kind])),
        "mode": draw(st.sampled_from(["merge", "drop"])),
        "seed": draw(st.integers(0, 2**16)),
        "pad_ids": draw(st.booleans()),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=_scenario())
def test_batch_independence(models, sc):
    model = models[sc["kind"]]
    cfg = PruningConfig(alpha=sc["alpha"], layers=sc["layers"], mode=sc["mode"])
    ids, mask = _batch(sc["lengths"], sc["seed"], pad_ids=sc["pad_ids"])
    with torch.no_grad():
        batch = encode(model, ids, mask, cfg)
        batch_rows = _valid_rows(batch)
        for b, n in enumerate(sc["lengths"]):
            alone = encode(model, ids[b : b + 1, :n], mask[b : b + 1, :n], cfg)
            (row,) = _valid_rows(alone)
            assert torch.equal(alone.lengths[0], batch.lengths[b])
            m = row.shape[0]
            assert torch.equal(alone.state.origin[0, :m], batch.state.origin[b, :m])
            assert torch.equal(alone.state.size[0, :m], batch.state.size[b, :m])
            assert torch.equal(alone.state.special[0, :m], batch.state.special[b, :m])
            assert torch.allclose(row, batch_rows[b], atol=ATOL), (row - batch_rows[b]).abs().max()
    assert not torch.isnan(batch.hidden).any()


# ---------------------------------------------------------------------------------------------
# Lengths per layer


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=_scenario())
def test_lengths_follow_keep_counts(models, sc):
    model = models[sc["kind"]]
    cfg = PruningConfig(alpha=sc["alpha"], layers=sc["layers"], mode=sc["mode"])
    ids, mask = _batch(sc["lengths"], sc["seed"])
    kept = []
    real = encoder_mod.keep_band

    def spy(scores, state, alpha):
        keep = real(scores, state, alpha)
        kept.append(keep.sum(1))
        return keep

    # monkeypatch is function-scoped; hypothesis needs the patch undone by hand per example.
    encoder_mod.keep_band = spy
    try:
        with torch.no_grad():
            out = encode(model, ids, mask, cfg)
    finally:
        encoder_mod.keep_band = real

    n_layers = NUM_LAYERS[sc["kind"]]
    prunes = cfg.pruning_layers(n_layers)
    assert len(kept) == len(prunes)
    lengths = out.lengths
    assert lengths.shape == (len(sc["lengths"]), n_layers + 1)
    assert (lengths[:, 0] == torch.tensor(sc["lengths"])).all()
    assert (lengths[:, 1:] <= lengths[:, :-1]).all(), "lengths must never grow"
    for i in range(n_layers):
        before, after = lengths[:, i], lengths[:, i + 1]
        if i not in prunes:
            assert torch.equal(after, before)
            continue
        k = kept[prunes.index(i)]
        if cfg.mode == "drop":
            assert torch.equal(after, k)
        else:
            assert (after <= k + 1).all()
            assert torch.equal(after, k + (k < before).long())
    if cfg.mode == "merge":  # every original token is accounted for exactly once
        assert torch.equal(out.state.size.sum(1), torch.tensor(sc["lengths"], dtype=torch.float))
    else:
        assert torch.equal(out.state.size.sum(1), lengths[:, -1].float())


# ---------------------------------------------------------------------------------------------
# Training and scores


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["merge", "drop"])
def test_gradient_flows_in_train_mode(kind, mode):
    model = _build(kind, 2, seed=9).train()
    ids, mask = _batch([10, 7, 4], seed=10)
    torch.manual_seed(11)  # dropout
    out = encode(model, ids, mask, PruningConfig(alpha=0.5, layers="all", mode=mode))
    assert (out.lengths[:, -1] < out.lengths[:, 0]).any(), "the test should actually prune"
    loss = out.pooled().pow(2).sum() + out.hidden.sum()
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if "pooler" not in name}
    assert model.embeddings.word_embeddings.weight.grad is not None
    for name, grad in grads.items():
        assert grad is not None, f"no gradient for {name}"
        assert torch.isfinite(grad).all(), f"non-finite gradient for {name}"
    for layer in model.encoder.layer:
        assert layer.attention.self.query.weight.grad.abs().sum() > 0


def test_track_scores(models):
    model = models["bert"]
    ids, mask = _batch([10, 6], seed=12)
    with torch.no_grad():
        # Only the last layer prunes, so the merged token is made there and has no score yet.
        last = PruningConfig(alpha=0.3, layers=[NUM_LAYERS["bert"] - 1], track_scores=True)
        out = encode(model, ids, mask, last)
        plain = encode(model, ids, mask, PruningConfig(layers="none", track_scores=True))
        off = encode(model, ids, mask, PruningConfig(alpha=0.3, layers="all"))
    assert off.scores is None
    for o in (out, plain):
        assert o.scores.shape == o.state.valid.shape
        assert torch.all(o.scores[~o.state.valid] == 0)
        assert torch.all(o.scores[o.state.valid & (o.state.origin >= 0)] > 0)
    # The merged token (origin -1 but valid) carries no score of its own.
    merged = out.state.valid & (out.state.origin < 0)
    assert merged.any() and torch.all(out.scores[merged] == 0)
    # Over the full-length rows scores are a distribution over keys.
    sums = plain.scores.sum(1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# FLOPs at the lengths that ran


@pytest.mark.parametrize("kind", KINDS)
def test_pruning_lowers_flops(models, kind):
    model = models[kind]
    ids, mask = _batch([14, 9], seed=13)
    width = model.config.hidden_size
    inter = model.config.intermediate_size
    with torch.no_grad():
        full = encode(model, ids, mask, NO_PRUNING)
        pruned = encode(model, ids, mask, PruningConfig(alpha=0.5, layers="all"))
    for b, n in enumerate([14, 9]):
        base = encoder_flops(full.lengths[b].tolist(), width, inter)
        assert base == encoder_flops([n] * (NUM_LAYERS[kind] + 1), width, inter)
        cut = encoder_flops(pruned.lengths[b].tolist(), width, inter)
        assert all(c <= f for c, f in zip(cut, base, strict=True))
        assert pruned.lengths[b, -1] < n
        assert sum(cut) < sum(base)
