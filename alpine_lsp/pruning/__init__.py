"""ALPINE token pruning (Saad et al., FSE 2025) for BERT/RoBERTa-family encoders.

No LSP knowledge lives here. `encode` runs a model with pruning; `apply`/`remove` patch a
loaded transformers model in place; `flops` counts the work at the lengths that ran.
"""

from .config import NO_PRUNING, PruningConfig, parse_layers
from .core import TokenState, default_specials, importance, keep_band, repack  # noqa: F401
from .encoder import AlpineOutput, apply, base_model, encode, remove
from .flops import encoder_flops, layer_flops

__all__ = [
    "NO_PRUNING",
    "AlpineOutput",
    "PruningConfig",
    "TokenState",
    "apply",
    "base_model",
    "default_specials",
    "encode",
    "encoder_flops",
    "importance",
    "keep_band",
    "layer_flops",
    "parse_layers",
    "remove",
]
