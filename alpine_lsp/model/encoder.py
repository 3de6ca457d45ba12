"""The BERT/RoBERTa encoder as the server runs it, in plain torch: no transformers import.

Importing transformers' BertModel costs seconds (it pulls in generation utilities, torch's
dynamo and distributed packages, and scikit-learn when that is installed), and the package
with its own dependencies weighs on every install. Scoring needs only the modules that
`pruning.encode` walks: embeddings, then per layer attention (query/key/value, output),
intermediate and output. These have transformers' parameter names, so a model directory's
`model.safetensors` loads into either (strict), and training keeps transformers' classes.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("bert", "roberta")
_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)
_DEFAULTS: dict[str, Any] = {
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "position_embedding_type": "absolute",
    "is_decoder": False,
}
_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


_INIT_NAMES = ("normal_", "uniform_", "kaiming_uniform_", "xavier_uniform_", "ones_", "zeros_")
_INIT_LOCK = threading.Lock()


@contextlib.contextmanager
def uninitialised() -> Iterator[None]:
    """Build modules whose weights are replaced at once, without initialising them.

    torch.empty leaves pages untouched (not resident) until the real weights are assigned,
    so a large config costs no memory before the weights are checked. The alternative, the
    meta device, sends `normal_` through torch's Python reference kernels, whose first call
    imports torch._dynamo and sympy: 2.2 s and about 60 MB on every model load.
    """
    with _INIT_LOCK:
        saved = {n: getattr(nn.init, n) for n in _INIT_NAMES}
        try:
            for n in _INIT_NAMES:
                setattr(nn.init, n, lambda tensor, *a, **k: tensor)
            yield
        finally:
            for n, f in saved.items():
                setattr(nn.init, n, f)


class EncoderConfig:
    """A model directory's config.json, read as attributes (what transformers' config offers
    to the code here), and written back unchanged."""

    def __init__(self, values: dict[str, Any]) -> None:
        kind = values.get("model_type")
        if kind not in KINDS:
            raise ValueError(f"model_type {kind!r} is not bert or roberta")
        missing = [k for k in _REQUIRED if not isinstance(values.get(k), int)]
        if missing:
            raise ValueError(f"missing or not an integer: {', '.join(missing)}")
        if values.get("hidden_act", "gelu") not in _ACTIVATIONS:
            raise ValueError(f"hidden_act {values.get('hidden_act')!r} is not supported")
        if values["hidden_size"] % values["num_attention_heads"]:
            raise ValueError("hidden_size is not a multiple of num_attention_heads")
        self._values = {**_DEFAULTS, "pad_token_id": 1 if kind == "roberta" else 0, **values}
        self.__dict__.update(self._values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncoderConfig:
        return cls(dict(values))

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def to_json_file(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self._values, indent=2, sort_keys=True) + "\n")


class Embeddings(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.roberta = c.model_type == "roberta"
        self.padding_idx = c.pad_token_id
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(
            c.max_position_embeddings,
            c.hidden_size,
            padding_idx=c.pad_token_id if self.roberta else None,
        )
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.roberta:  # positions count non-padding tokens, starting after padding_idx
            mask = input_ids.ne(self.padding_idx).int()
            positions = torch.cumsum(mask, dim=1).type_as(mask) * mask + self.padding_idx
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        # The table may be stored fp16 (model/files.py); widening the rows looked up is exact.
        words = self.word_embeddings(input_ids).to(self.LayerNorm.weight.dtype)
        x = words + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions.long())
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.num_attention_heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout = nn.Dropout(c.attention_probs_dropout_prob)


class DenseNorm(nn.Module):
    """dense → dropout → add & LayerNorm (attention.output and output)."""

    def __init__(self, c: EncoderConfig, width_in: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)


class Attention(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.self = SelfAttention(c)
        self.output = DenseNorm(c, c.hidden_size)


class Intermediate(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.intermediate_act_fn = _ACTIVATIONS[c.hidden_act]


class Layer(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.attention = Attention(c)
        self.intermediate = Intermediate(c)
        self.output = DenseNorm(c, c.intermediate_size)


class Layers(nn.Module):
    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(c) for _ in range(c.num_hidden_layers))


class Encoder(nn.Module):
    """Embeddings and layers; run by `pruning.encode` (the ALPINE loop), which owns the maths."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Layers(config)

    def forward(self, *args, **kwargs):
        raise TypeError("run this encoder through alpine_lsp.pruning.encode")
