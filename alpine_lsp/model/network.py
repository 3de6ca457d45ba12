"""The network: a BERT/RoBERTa encoder run through ALPINE, plus a defect head and an embedding head.

One forward gives both the defect logit and the L2-normalised function embedding, so the server
pays for one encoder pass per changed function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..pruning import AlpineOutput, PruningConfig, encode
from .encoder import Encoder, EncoderConfig


def __getattr__(name: str) -> Any:
    # transformers' classes, for training only: loading a model directory needs none of them.
    if name == "ENCODERS":
        from transformers import BertConfig, BertModel, RobertaConfig, RobertaModel

        return {"bert": (BertConfig, BertModel), "roberta": (RobertaConfig, RobertaModel)}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class NetOutput:
    logit: torch.Tensor  # (B,) defect logit
    embedding: torch.Tensor  # (B, D) unit-length embedding
    alpine: AlpineOutput


class AlpineNetwork(nn.Module):
    def __init__(self, encoder: nn.Module, embed_dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        width = encoder.config.hidden_size
        self.defect_head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(width, width),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(width, 1),
        )
        self.embed_head = nn.Linear(width, embed_dim)

    @classmethod
    def from_config(cls, config: Any, embed_dim: int = 256) -> AlpineNetwork:
        """An `EncoderConfig` gives the plain-torch encoder (loading, scoring); a transformers
        config gives transformers' BertModel/RobertaModel (training from one)."""
        if isinstance(config, EncoderConfig):
            return cls(Encoder(config), embed_dim)
        kind = getattr(config, "model_type", None)
        encoders = __getattr__("ENCODERS")
        if kind not in encoders:
            raise ValueError(f"model_type {kind!r} is not supported (bert or roberta)")
        encoder = encoders[kind][1](config, add_pooling_layer=False)
        return cls(encoder, embed_dim)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, cfg: PruningConfig
    ) -> NetOutput:
        out = encode(self.encoder, input_ids, attention_mask, cfg)
        pooled = out.pooled()
        logit = self.defect_head(pooled).squeeze(-1)
        emb = F.normalize(self.embed_head(pooled), dim=-1)
        return NetOutput(logit, emb, out)
