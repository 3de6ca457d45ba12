"""A tiny random model directory in the real format, for tests and smoke runs.

It goes through the same loading path as the bundled model; only its weights are random.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import BertConfig

from ..pruning import PruningConfig
from .files import ModelMeta, write_dir
from .network import AlpineNetwork

KEYWORDS = (
    "int char void return if else for while static struct const unsigned sizeof free malloc "
    "goto break null def class public private new this fn let func var function"
).split()


def tiny_tokenizer() -> Tokenizer:
    chars = [c for c in string.printable if not c.isspace()]
    vocab_list = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    vocab_list += [k for k in KEYWORDS if k not in vocab_list]
    vocab = {t: i for i, t in enumerate(vocab_list)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    return tok


def create_tiny_model(
    out: str | Path,
    layers: int = 2,
    hidden: int = 32,
    seed: int = 0,
    threshold: float = 0.5,
    similarity_threshold: float = 0.9,
    name: str = "tiny-random",
) -> Path:
    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=514,
    )
    net = AlpineNetwork.from_config(config, embed_dim=16)
    meta = ModelMeta(
        name=name,
        specials={"cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]"},
        embed_dim=16,
        max_tokens=256,
        pruning=PruningConfig(),
        threshold=threshold,
        similarity_threshold=similarity_threshold,
    )
    return write_dir(net, tok.to_str(), meta, out, half=False)
