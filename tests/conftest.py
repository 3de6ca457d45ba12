"""Shared fixtures: a tiny model in the real directory format, isolated cache directories."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from alpine_lsp.model.tiny import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ALPINE_LSP_CACHE_DIR", str(cache))
    return cache


def shared_data(name: str) -> Path:
    """A dataset folder from ../shared/data, or skip the test with the reason."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} is absent (the shared datasets are not beside this clone)")
    return path
