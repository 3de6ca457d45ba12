"""The ALPINE rule on tensors: token importance, the keep band, and the repack.

Every function here works on whole batches with no per-row Python loop. A row's result never
depends on the other rows of its batch: padding is excluded from scores, statistics and merges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TokenState:
    """Per-position bookkeeping that travels with the hidden states.

    valid:    (B, L) bool, real (non-padding) positions.
    special:  (B, L) bool, the first and closing tokens; always kept, never in statistics.
    size:     (B, L) float, how many original tokens a position stands for (0 for padding).
    origin:   (B, L) long, original token index of a position, -1 for merged tokens and padding.
    """

    valid: torch.Tensor
    special: torch.Tensor
    size: torch.Tensor
    origin: torch.Tensor

    @classmethod
    def initial(
        cls, attention_mask: torch.Tensor, special: torch.Tensor | None = None
    ) -> TokenState:
        valid = attention_mask.bool()
        if special is None:
            special = default_specials(valid)
        length = valid.shape[1]
        origin = torch.arange(length, device=valid.device).expand_as(valid)
        origin = torch.where(valid, origin, torch.full_like(origin, -1))
        return cls(valid=valid, special=special & valid, size=valid.float(), origin=origin)

    @property
    def lengths(self) -> torch.Tensor:
        return self.valid.sum(dim=1)


def default_specials(valid: torch.Tensor) -> torch.Tensor:
    """First and last valid position of each row (``[CLS]``/``<s>``, ``[SEP]``/``</s>``).

    Assumes right padding, which is what every tokenizer in this project produces.
    """
    special = torch.zeros_like(valid)
    special[:, 0] = valid[:, 0]
    last = (valid.sum(dim=1) - 1).clamp(min=0)
    special.scatter_(1, last.unsqueeze(1), valid.gather(1, last.unsqueeze(1)))
    return special


def importance(probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Attention each token receives, averaged over heads and over the valid query rows.

    probs: (B, H, L, L) attention probabilities (rows = queries); valid: (B, L).
    Returns (B, L); padding positions get 0.
    """
    with torch.no_grad():
        if bool(valid.all()):  # no padding (every batch of one): a plain sum, one pass
            return probs.sum(dim=(1, 2)) / (probs.shape[1] * probs.shape[2])
        q = valid.to(probs.dtype)
        # Sum over heads first (one pass over the probabilities), then over valid query rows.
        received = torch.bmm(q.unsqueeze(1), probs.sum(dim=1)).squeeze(1)
        denom = (q.sum(dim=1, keepdim=True) * probs.shape[1]).clamp(min=1)
        return (received / denom) * valid.to(probs.dtype)


def keep_band(scores: torch.Tensor, state: TokenState, alpha: float) -> torch.Tensor:
    """Which positions survive: specials always, content tokens inside mu +- alpha*sigma.

    The statistics are the unweighted population mean and std over the row's content tokens
    (valid, not special). Returns (B, L) bool; padding is never kept.
    """
    with torch.no_grad():
        scores = scores.float()
        content = state.valid & ~state.special
        n = content.sum(dim=1, keepdim=True).clamp(min=1).float()
        masked = torch.where(content, scores, torch.zeros_like(scores))
        mean = masked.sum(dim=1, keepdim=True) / n
        dev = torch.where(content, scores - mean, torch.zeros_like(scores))
        std = (dev.pow(2).sum(dim=1, keepdim=True) / n).sqrt()
        # A small tolerance so identical scores (std 0) keep everything despite rounding.
        tol = 1e-6 * mean.abs() + 1e-12
        inside = dev.abs() <= alpha * std + tol
        return state.special | (content & inside)


def repack(
    hidden: torch.Tensor,
    state: TokenState,
    keep: torch.Tensor,
    merge: bool,
    carry: torch.Tensor | None = None,
) -> tuple[torch.Tensor, TokenState, torch.Tensor | None]:
    """Shrink the sequence to the kept positions, optionally appending one merged token per row.

    The merged token is the size-weighted mean of the row's pruned content tokens and carries
    their total size; it is only added to rows that pruned something. Kept tokens keep their
    order; padding moves to the end. The new length is the longest row.
    """
    batch, _, width = hidden.shape
    one_row = batch == 1 and hidden.shape[1] > 0 and bool(state.valid.all())
    if one_row and (merge or bool(keep.any())):
        return _repack_one(hidden, state, keep, merge, carry)
    keep = keep & state.valid
    pruned = state.valid & ~keep
    n_keep = keep.sum(dim=1)
    has_merge = pruned.any(dim=1) if merge else torch.zeros_like(n_keep, dtype=torch.bool)
    new_len = int((n_keep + has_merge.long()).max().item()) if batch else 0
    new_len = max(new_len, 1)

    # Stable sort puts kept positions first, in their original order.
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :new_len]
    if order.shape[1] < new_len:  # only when new_len exceeds the old length (cannot happen)
        raise AssertionError("repack grew the sequence")
    slot = torch.arange(new_len, device=hidden.device).expand(batch, new_len)
    kept_slot = slot < n_keep.unsqueeze(1)

    def take(t: torch.Tensor, fill) -> torch.Tensor:
        got = t.gather(1, order)
        return torch.where(kept_slot, got, torch.full_like(got, fill))

    new_hidden = hidden.gather(1, order.unsqueeze(-1).expand(batch, new_len, width))
    new_hidden = new_hidden * kept_slot.unsqueeze(-1).to(hidden.dtype)
    size = take(state.size, 0.0)
    special = take(state.special, False)
    origin = take(state.origin, -1)
    valid = kept_slot.clone()
    carried = take(carry, 0) if carry is not None else None

    if merge:
        weights = (state.size * pruned.to(state.size.dtype)).to(hidden.dtype)
        total = weights.sum(dim=1)
        merged = torch.einsum("bl,blh->bh", weights, hidden) / total.clamp(min=1e-12).unsqueeze(-1)
        merge_slot = (slot == n_keep.unsqueeze(1)) & has_merge.unsqueeze(1)
        new_hidden = torch.where(merge_slot.unsqueeze(-1), merged.unsqueeze(1), new_hidden)
        size = torch.where(merge_slot, total.to(size.dtype).unsqueeze(1), size)
        valid = valid | merge_slot

    return new_hidden, TokenState(valid, special, size, origin), carried


def _repack_one(
    hidden: torch.Tensor,
    state: TokenState,
    keep: torch.Tensor,
    merge: bool,
    carry: torch.Tensor | None,
) -> tuple[torch.Tensor, TokenState, torch.Tensor | None]:
    """`repack` for one row without padding (the editor's usual batch) by plain indexing instead
    of sort, gather and masks: the same result in fewer tensor operations, which matters when a
    whole layer of a small model takes a few milliseconds. Assumes something survives."""
    row = keep[0]
    # index_select, not t[:, idx]: advanced indexing costs several times more per call here.
    idx = row.nonzero().squeeze(1)
    new_hidden = hidden.index_select(1, idx)
    size = state.size.index_select(1, idx)
    special = state.special.index_select(1, idx)
    origin = state.origin.index_select(1, idx)
    carried = carry.index_select(1, idx) if carry is not None else None
    gone = (~row).nonzero().squeeze(1)
    if merge and gone.numel():
        w = state.size[0].index_select(0, gone).to(hidden.dtype)
        total = w.sum()
        merged = (w @ hidden[0].index_select(0, gone)) / total.clamp(min=1e-12)
        new_hidden = torch.cat([new_hidden, merged.view(1, 1, -1)], dim=1)
        size = torch.cat([size, total.to(size.dtype).view(1, 1)], dim=1)
        special = torch.cat([special, special.new_zeros(1, 1)], dim=1)
        origin = torch.cat([origin, origin.new_full((1, 1), -1)], dim=1)
        if carried is not None:
            carried = torch.cat([carried, carried.new_zeros(1, 1)], dim=1)
    valid = torch.ones_like(special)
    return new_hidden, TokenState(valid, special, size, origin), carried


def spread(scores: torch.Tensor, state: TokenState, where: torch.Tensor) -> torch.Tensor:
    """Per original token, the importance of the position that stands for it, divided by that
    position's size: a merged token shares what it received evenly among the tokens it merged.

    where: (B, L0) long, the current position of each original token, -1 when it is gone
    (dropped, or padding). Returns (B, L0); gone tokens get 0.
    """
    with torch.no_grad():
        per = scores.float() / state.size.float().clamp(min=1.0)
        got = per.gather(1, where.clamp(min=0))
        return torch.where(where >= 0, got, torch.zeros_like(got))


def relocate(
    where: torch.Tensor, state: TokenState, keep: torch.Tensor, merge: bool
) -> torch.Tensor:
    """`where` after `repack(..., keep, merge)`: kept positions move to their rank among the kept
    ones, pruned ones to the merged token appended after them (merge) or nowhere (-1, drop)."""
    with torch.no_grad():
        keep = keep & state.valid
        rank = keep.long().cumsum(dim=1) - 1
        n_keep = keep.sum(dim=1, keepdim=True)
        pruned = state.valid & ~keep
        gone = torch.full_like(rank, -1)
        moved = torch.where(keep, rank, torch.where(pruned, n_keep, gone) if merge else gone)
        got = moved.gather(1, where.clamp(min=0))
        return torch.where(where >= 0, got, torch.full_like(got, -1))
