"""Code → token ids with a `tokenizers` tokenizer, and the policy for inputs longer than the model.

Long functions keep their head and their tail (the signature and the early checks, and the
cleanup/return paths), dropping the middle; see MODEL.md for the measurement behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tokenizers import Tokenizer

STRATEGIES = ("head", "head_tail")


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) right-padded
    attention_mask: torch.Tensor  # (B, L)
    tokens: list[list[str]]  # the kept token strings, specials included, per row
    full_lengths: list[int]  # content tokens before truncation
    truncated: list[bool]


class CodeTokenizer:
    def __init__(
        self, tokenizer: Tokenizer, cls_token: str, sep_token: str, pad_token: str
    ) -> None:
        self.tok = tokenizer
        self.tok.no_truncation()
        self.tok.no_padding()
        ids = [tokenizer.token_to_id(t) for t in (cls_token, sep_token, pad_token)]
        if any(i is None for i in ids):
            raise ValueError("tokenizer lacks one of its special tokens")
        self.cls_id, self.sep_id, self.pad_id = ids
        self.cls_token, self.sep_token = cls_token, sep_token

    @classmethod
    def from_file(cls, path: str, specials: dict) -> CodeTokenizer:
        return cls(
            Tokenizer.from_file(path),
            specials.get("cls", "[CLS]"),
            specials.get("sep", "[SEP]"),
            specials.get("pad", "[PAD]"),
        )

    def content(self, codes: list[str]) -> list[tuple[list[int], list[str]]]:
        encs = self.tok.encode_batch(list(codes), add_special_tokens=False)
        return [(e.ids, e.tokens) for e in encs]

    def batch(self, codes: list[str], max_tokens: int, strategy: str = "head_tail") -> Batch:
        if strategy not in STRATEGIES:
            raise ValueError(f"truncation strategy must be one of {STRATEGIES}")
        budget = max(1, max_tokens - 2)
        rows, toks, full, trunc = [], [], [], []
        for ids, tokens in self.content(codes):
            full.append(len(ids))
            trunc.append(len(ids) > budget)
            if len(ids) > budget:
                if strategy == "head":
                    ids, tokens = ids[:budget], tokens[:budget]
                else:
                    tail = budget // 4
                    head = budget - tail
                    ids, tokens = ids[:head] + ids[-tail:], tokens[:head] + tokens[-tail:]
            rows.append([self.cls_id, *ids, self.sep_id])
            toks.append([self.cls_token, *tokens, self.sep_token])
        width = max(len(r) for r in rows) if rows else 2
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return Batch(input_ids, mask, toks, full, trunc)
