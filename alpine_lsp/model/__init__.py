"""Model loading, heads, the bundled model and the public API (`load_model`).

Heavy names (anything that needs torch) load lazily, so the server can answer `initialize`
before torch is imported.
"""

import os
from importlib import import_module

# Offline by construction, and the one place that says so: every import of model code passes
# here first, before anything imports transformers or huggingface_hub (they read these once).
# Forced, not defaulted: nothing in this package may reach a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from .score import FunctionScore, ModelLoadError

_LAZY = {
    "AlpineModel": ".api",
    "load_model": ".api",
    "pick_device": ".api",
    "BUNDLED_DIR": ".files",
    "ModelMeta": ".files",
    "read_dir": ".files",
    "write_dir": ".files",
    "AlpineNetwork": ".network",
    "CodeTokenizer": ".tokenize",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FunctionScore", "ModelLoadError", *_LAZY]
