"""alpine-lsp: defect and similar-code hints from an ALPINE-pruned Transformer."""

__version__ = "0.1.0"


def load_model(path=None, **kwargs):
    """Load the bundled model, or the model directory at `path`. See alpine_lsp.model.load_model."""
    from .model import load_model as _load

    return _load(path, **kwargs)


__all__ = ["__version__", "load_model"]
