"""`--base scratch`: a small RoBERTa with a byte-level BPE vocabulary learned from training code.

The English WordPiece of MiniLM splits C into many pieces (more than half of Devign exceeds 512
tokens); a code vocabulary makes sequences shorter, and a small encoder makes every step cheaper,
at the price of starting without any pretraining.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import RobertaConfig

from ..model.network import AlpineNetwork

SPECIALS = {"cls": "<s>", "sep": "</s>", "pad": "<pad>"}


def code_tokenizer(texts: Iterable[str], vocab_size: int = 16_000) -> Tokenizer:
    """Byte-level BPE, so any file in any encoding still tokenizes without unknown tokens."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def scratch_network(
    vocab_size: int,
    embed_dim: int,
    layers: int = 4,
    hidden: int = 256,
    max_tokens: int = 512,
) -> AlpineNetwork:
    config = RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=hidden * 4,
        # RoBERTa numbers positions from padding_idx + 1, hence the two extra slots.
        max_position_embeddings=max_tokens + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    return AlpineNetwork.from_config(config, embed_dim)
