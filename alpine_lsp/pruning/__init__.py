"""ALPINE token pruning (Saad et al., FSE 2025) for BERT/RoBERTa-family encoders.

No LSP knowledge lives here. `encode` runs a model with pruning; `apply`/`remove` patch a
loaded transformers model in place; `encoder_flops` counts the work at the lengths that ran.
Names load lazily so that importing `PruningConfig` does not import torch.
"""

from importlib import import_module

from .config import NO_PRUNING, PruningConfig, parse_layers

_LAZY = {
    "TokenState": ".core",
    "default_specials": ".core",
    "importance": ".core",
    "keep_band": ".core",
    "repack": ".core",
    "AlpineOutput": ".encoder",
    "apply": ".encoder",
    "base_model": ".encoder",
    "encode": ".encoder",
    "remove": ".encoder",
    "encoder_flops": ".flops",
    "layer_flops": ".flops",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["NO_PRUNING", "PruningConfig", "parse_layers", *_LAZY]
