"""Model loading, heads, the bundled model and the public API (`load_model`)."""

from .api import AlpineModel, FunctionScore, load_model, pick_device
from .files import BUNDLED_DIR, ModelLoadError, ModelMeta, read_dir, write_dir
from .network import AlpineNetwork
from .tokenize import CodeTokenizer

__all__ = [
    "BUNDLED_DIR",
    "AlpineModel",
    "AlpineNetwork",
    "CodeTokenizer",
    "FunctionScore",
    "ModelLoadError",
    "ModelMeta",
    "load_model",
    "pick_device",
    "read_dir",
    "write_dir",
]
