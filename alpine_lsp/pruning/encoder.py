"""Run a Hugging Face BERT- or RoBERTa-family encoder with ALPINE pruning, sharing its weights.

The layer maths is written out here (instead of patching transformers internals, which change
between releases) using the model's own submodules, so every BERT/RoBERTa layout works:
MiniLM, CodeBERT, GraphCodeBERT, UniXcoder. Layers that do not prune use SDPA; a pruning layer
computes the attention probabilities once, uses them for the output and (detached) for the score,
a few batch rows at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import PruningConfig
from .core import TokenState, importance, keep_band, relocate, repack, spread


@dataclass
class AlpineOutput:
    hidden: torch.Tensor  # (B, L', H) hidden states after the last layer
    state: TokenState  # bookkeeping for the L' final positions
    lengths: torch.Tensor  # (B, num_layers + 1) valid length before layer 0 and after each layer
    scores: torch.Tensor | None  # (B, L') importance at the last layer, when it was computed
    # (B, L) importance in the first layer for every input position, when scores were tracked:
    # what the model looked at before anything was pruned.
    first_scores: torch.Tensor | None = None
    # (B, P, L) with `cfg.track_lines`: per input position, the importance it received at each
    # of the P scoring layers (a merged token's share spread over the tokens it stands for).
    token_scores: torch.Tensor | None = None

    def pooled(self) -> torch.Tensor:
        """Size-weighted mean of the final positions: each stands for `size` original tokens."""
        w = self.state.size.to(self.hidden.dtype).unsqueeze(-1)
        return (self.hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-6)


def base_model(model: nn.Module) -> nn.Module:
    """The bare encoder (BertModel/RobertaModel) inside a task model, or the model itself."""
    inner = getattr(model, "base_model", model)
    if not hasattr(inner, "embeddings") or not hasattr(inner, "encoder"):
        raise TypeError(f"{type(model).__name__} is not a BERT- or RoBERTa-family encoder")
    return inner


def check_supported(model: nn.Module) -> None:
    cfg = model.config
    kind = getattr(cfg, "position_embedding_type", "absolute")
    if kind != "absolute":
        raise TypeError(f"position_embedding_type={kind!r} is not supported (absolute only)")
    if getattr(cfg, "is_decoder", False):
        raise TypeError("decoder models are not supported")
    layer = model.encoder.layer[0]
    for attr in ("attention", "intermediate", "output"):
        if not hasattr(layer, attr):
            raise TypeError(f"{type(layer).__name__} lacks .{attr}: not a BERT-style layer")


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, seq, width = x.shape
    return x.view(b, seq, n_heads, width // n_heads).transpose(1, 2)


# A pruning layer needs the attention matrix itself (B x H x L x L), which it writes and reads
# several times. At batch 16 and 512 tokens that is 67 MB a pass, so a pruned batch ran slower
# than an unpruned one (whose SDPA never builds the matrix); in slices of about 4 MB it stays
# in cache. A batch of one is a single slice.
SLICE_BYTES = 4 << 20


def _scored_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    valid: torch.Tensor,
    full: bool,
    p_drop: float,
    training: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output and each token's importance, a few batch rows at a time."""
    batch, heads, length, dim = q.shape
    step = max(1, SLICE_BYTES // max(1, heads * length * length * q.element_size()))
    # Scaling q (L x d) instead of the logits (L x L) saves one pass over the square.
    q = q * (1.0 / math.sqrt(dim))
    ctxs, scores = [], []
    for lo in range(0, batch, step):
        rows = slice(lo, lo + step)
        logits = q[rows] @ k[rows].transpose(-1, -2)
        if not full:  # a batch without padding (every batch of one) needs no key mask
            key_ok = valid[rows, None, None, :]
            logits = logits.masked_fill_(~key_ok, torch.finfo(logits.dtype).min)
        probs = logits.softmax(dim=-1)
        scores.append(importance(probs.detach(), valid[rows]))
        ctxs.append(F.dropout(probs, p_drop, training) @ v[rows])
    if len(ctxs) == 1:
        return ctxs[0], scores[0]
    return torch.cat(ctxs), torch.cat(scores)


def _layer(
    layer: nn.Module,
    hidden: torch.Tensor,
    state: TokenState,
    prune: bool,
    want_scores: bool,
    cfg: PruningConfig,
    track: list | None = None,
) -> tuple[torch.Tensor, TokenState, torch.Tensor | None, torch.Tensor | None]:
    """(hidden, state, scores moved with the surviving positions, scores of the positions that
    came in). The scores are None unless the layer prunes or `want_scores`.

    `track` ([where, per-layer list]) follows each input position through the layer and records
    the importance it received here, when the layer computes scores."""
    attn = layer.attention
    sa = attn.self
    n_heads = sa.num_attention_heads
    q = _heads(sa.query(hidden), n_heads)
    k = _heads(sa.key(hidden), n_heads)
    v = _heads(sa.value(hidden), n_heads)
    full = bool(state.valid.all())
    p_drop = sa.dropout.p if sa.training else 0.0
    scores = None
    if prune or want_scores:
        ctx, scores = _scored_attention(q, k, v, state.valid, full, p_drop, sa.training)
    else:
        mask = None if full else state.valid[:, None, None, :]
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p_drop)
    ctx = ctx.transpose(1, 2).reshape(hidden.shape)
    out = attn.output
    hidden = out.LayerNorm(out.dropout(out.dense(ctx)) + hidden)

    incoming = scores
    if track is not None and scores is not None:
        track[1].append(spread(scores, state, track[0]))
    if prune:
        keep = keep_band(scores, state, cfg.alpha)
        if track is not None:
            track[0] = relocate(track[0], state, keep, cfg.mode == "merge")
        # Scores move with their tokens; the merged token gets 0 (it is not one code token).
        carry = scores if want_scores else None
        hidden, state, scores = repack(hidden, state, keep, cfg.mode == "merge", carry)

    inter = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(hidden))
    ffn = layer.output
    hidden = ffn.LayerNorm(ffn.dropout(ffn.dense(inter)) + hidden)
    return hidden, state, scores, incoming


def encode(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cfg: PruningConfig,
    special: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
) -> AlpineOutput:
    """Embed and run every layer with the ALPINE rule of `cfg`.

    `special` marks the always-kept positions; by default the first and the last valid token.
    With `cfg.track_scores`, the importance at the last layer is returned for the final positions,
    and the first layer's for every input position.
    """
    bert = base_model(model)
    layers = bert.encoder.layer
    n = len(layers)
    state = TokenState.initial(attention_mask, special)
    hidden = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    lengths = [state.lengths]
    last_scores = first_scores = None
    # Line ranking rides on the pruning layers' scores; with no pruning layer, layer 0 scores.
    track = [state.origin.clone(), []] if cfg.track_lines else None
    none_prune = not cfg.pruning_layers(n)
    for i, layer in enumerate(layers):
        prune = cfg.prunes(i, n)
        want = cfg.track_scores and i in (0, n - 1)
        want = want or (track is not None and none_prune and i == 0)
        hidden, state, scores, incoming = _layer(layer, hidden, state, prune, want, cfg, track)
        if want and i == 0:
            first_scores = incoming
        lengths.append(state.lengths)
        if want and i == n - 1:
            last_scores = scores
        # Keep padded positions at exact zero so nothing can leak through them.
        if not bool(state.valid.all()):
            hidden = hidden * state.valid.unsqueeze(-1).to(hidden.dtype)
    token_scores = torch.stack(track[1], dim=1) if track and track[1] else None
    return AlpineOutput(
        hidden, state, torch.stack(lengths, dim=1), last_scores, first_scores, token_scores
    )


# ---------------------------------------------------------------------------------------------
# apply / remove: turn a loaded model into a pruning one in place, and back.


class _AlpineMixin:
    """Mixed into the class of a patched BertModel/RobertaModel (ToMe-style class swap)."""

    alpine_config: PruningConfig
    alpine_last: AlpineOutput | None

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if input_ids is None:
            raise ValueError("ALPINE-patched encoders take input_ids")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = encode(self, input_ids, attention_mask, self.alpine_config, None, token_type_ids)
        self.alpine_last = out
        pooler = getattr(self, "pooler", None)
        pooled = pooler(out.hidden) if pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=out.hidden, pooler_output=pooled)


def apply(model: nn.Module, cfg: PruningConfig | None = None) -> nn.Module:
    """Make `model` (or the encoder inside it) prune with `cfg`. No weights are copied.

    Calling it again only changes the settings. After each forward, the encoder's
    `alpine_last` holds lengths per layer and which original positions survived.
    """
    cfg = cfg or PruningConfig()
    bert = base_model(model)
    check_supported(bert)
    cls = type(bert)
    if not isinstance(bert, _AlpineMixin):
        bert.__class__ = type(f"Alpine{cls.__name__}", (_AlpineMixin, cls), {"_alpine_base": cls})
    bert.alpine_config = cfg
    bert.alpine_last = None
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo `apply`: the encoder runs the stock transformers forward again."""
    bert = base_model(model)
    if isinstance(bert, _AlpineMixin):
        bert.__class__ = bert._alpine_base  # type: ignore[attr-defined]
        del bert.alpine_config
        del bert.alpine_last
    return model
