"""Code → token ids with a `tokenizers` tokenizer, and the policy for inputs longer than the model.

Long functions keep their head and their tail (the signature and the early checks, and the
cleanup/return paths), dropping the middle; see MODEL.md for the measurement behind it.

Whitespace: Devign stores every function with doubled newlines ("\n\n" where the source had
"\n"). A model whose tokenizer sees layout learns that artefact and then scores ordinary code as
out of distribution (every function flagged). Models trained here therefore read code with each
run of whitespace collapsed to one space (`whitespace: "collapse"` in alpine.json), in training
and at inference alike, so layout can never move a score.

Language marker: a model trained on several languages may read a short marker naming the
function's language (`language_marker: true` in alpine.json). It goes after the content, just
before the closing separator, so content tokens keep positions 1..n and everything that maps
positions back to code (line ranking, the hover's words) is unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer

STRATEGIES = ("head", "head_tail")
WHITESPACE = ("keep", "collapse")
_SPACE = re.compile(r"\s+")


def marker_text(language: str) -> str:
    """The text of the language marker a multi-language model reads after the code."""
    return f" <lang:{language}>"


def normalize_code(code: str, whitespace: str = "keep") -> str:
    """The text a model reads: unchanged, or with every whitespace run made one space."""
    if whitespace == "collapse":
        return _SPACE.sub(" ", code).strip()
    return code


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) right-padded
    attention_mask: torch.Tensor  # (B, L)
    tokens: list[list[str]]  # the kept token strings, specials included, per row
    full_lengths: list[int]  # content tokens before truncation
    truncated: list[bool]
    # Per row, (start, end) of each kept content token (specials excluded) in the text the
    # model read (normalize_code): line ranking maps them back to the original lines.
    offsets: list[list[tuple[int, int]]] = field(default_factory=list)


class CodeTokenizer:
    def __init__(
        self,
        tokenizer: Tokenizer,
        cls_token: str,
        sep_token: str,
        pad_token: str,
        whitespace: str = "keep",
    ) -> None:
        if whitespace not in WHITESPACE:
            raise ValueError(f"whitespace must be one of {WHITESPACE}, got {whitespace!r}")
        self.whitespace = whitespace
        self.tok = tokenizer
        self.tok.no_truncation()
        self.tok.no_padding()
        ids = [tokenizer.token_to_id(t) for t in (cls_token, sep_token, pad_token)]
        if any(i is None for i in ids):
            raise ValueError("tokenizer lacks one of its special tokens")
        self.cls_id, self.sep_id, self.pad_id = ids
        self.cls_token, self.sep_token = cls_token, sep_token
        self._markers: dict[str, tuple[list[int], list[str]]] = {}

    def marker(self, language: str) -> tuple[list[int], list[str]]:
        """Ids and token strings of `language`'s marker (cached: every row of a batch reads it)."""
        if language not in self._markers:
            enc = self.tok.encode(marker_text(language), add_special_tokens=False)
            self._markers[language] = (list(enc.ids), list(enc.tokens))
        return self._markers[language]

    @classmethod
    def from_file(cls, path: str, specials: dict, whitespace: str = "keep") -> CodeTokenizer:
        return cls.from_str(Path(path).read_text(encoding="utf-8"), specials, whitespace)

    @classmethod
    def from_str(cls, text: str, specials: dict, whitespace: str = "keep") -> CodeTokenizer:
        """From the text of a tokenizer.json (the one bounds.check_tokenizer checked)."""
        return cls(
            Tokenizer.from_str(text),
            specials.get("cls", "[CLS]"),
            specials.get("sep", "[SEP]"),
            specials.get("pad", "[PAD]"),
            whitespace,
        )

    def content(self, codes: list[str]) -> list[tuple[list[int], list[str]]]:
        return [(ids, tokens) for ids, tokens, _ in self.pieces(codes)]

    def pieces(self, codes: list[str]) -> list[tuple[list[int], list[str], list[tuple[int, int]]]]:
        """Ids, token strings and character offsets into the normalised text, per code."""
        texts = [normalize_code(c, self.whitespace) for c in codes]
        encs = self.tok.encode_batch(texts, add_special_tokens=False)
        return [(e.ids, e.tokens, e.offsets) for e in encs]

    def batch(
        self,
        codes: list[str],
        max_tokens: int,
        strategy: str = "head_tail",
        languages: list[str] | None = None,
    ) -> Batch:
        """Rows of [cls, content, sep], content cut to fit `max_tokens`; with `languages` (one
        per code) each row reads its language marker between the content and sep."""
        if strategy not in STRATEGIES:
            raise ValueError(f"truncation strategy must be one of {STRATEGIES}")
        if languages is not None and len(languages) != len(codes):
            raise ValueError("languages must name one language per code")
        rows, toks, full, trunc, offs = [], [], [], [], []
        for n, (ids, tokens, spans) in enumerate(self.pieces(codes)):
            m_ids, m_toks = self.marker(languages[n]) if languages is not None else ([], [])
            budget = max(1, max_tokens - 2 - len(m_ids))
            full.append(len(ids))
            trunc.append(len(ids) > budget)
            if len(ids) > budget:
                if strategy == "head":
                    ids, tokens, spans = ids[:budget], tokens[:budget], spans[:budget]
                else:
                    tail = budget // 4
                    head = budget - tail
                    ids, tokens = ids[:head] + ids[-tail:], tokens[:head] + tokens[-tail:]
                    spans = spans[:head] + spans[-tail:]
            offs.append(list(spans))
            rows.append([self.cls_id, *ids, *m_ids, self.sep_id])
            toks.append([self.cls_token, *tokens, *m_toks, self.sep_token])
        width = max(len(r) for r in rows) if rows else 2
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = 1
        return Batch(input_ids, mask, toks, full, trunc, offs)
