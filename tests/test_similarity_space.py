"""The similarity space: per-language mean-centred embeddings read from a real model directory
(safetensors, checked), used by the index and every query, calibrated by `eval clone --tiers`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.engine import similar
from alpine_lsp.model import ModelLoadError, load_model
from alpine_lsp.model.similarity import SIMILARITY_WEIGHTS, SimilaritySpace
from alpine_lsp.model.tiny import create_tiny_model

CODE = "int add(int a, int b)\n{\n    int s = a + b;\n    return s;\n}\n"


def centred_model(tmp_path: Path, mean: np.ndarray | None = None, langs=("c",)) -> Path:
    d = create_tiny_model(tmp_path / "m")
    meta = json.loads((d / "alpine.json").read_text())
    dim = int(meta["embed_dim"])
    meta["similarity_thresholds"] = {
        "c": {"near": 0.7, "near_identifiers": 0.6, "cosine": 0.9, "centred": True,
              "cosine_raw": 0.9995},
        "java": {"near": 0.7, "cosine": 0.98},
    }  # fmt: skip
    (d / "alpine.json").write_text(json.dumps(meta))
    m = mean if mean is not None else np.linspace(-0.1, 0.1, dim).astype(np.float32)
    SimilaritySpace({lang: m for lang in langs}).save(d)
    return d


def test_centred_vectors_are_what_the_index_gets(tmp_path: Path) -> None:
    d = centred_model(tmp_path)
    model = load_model(d, device="cpu")
    mean = model.similarity.means["c"]
    scores = model.score([CODE], "c")
    got = similar.vectors_of(model, scores, "c")[0]
    want = scores[0].embedding - mean
    assert np.allclose(got, want / np.linalg.norm(want), atol=1e-6)
    raw = similar.vectors_of(model, scores, "java")[0]  # no mean: the unit embedding itself
    assert np.allclose(raw, scores[0].embedding / np.linalg.norm(scores[0].embedding), atol=1e-6)
    assert model.similarity_vectors([], "c").shape == (0, model.embedding_dim)


def test_the_means_are_part_of_the_fingerprint(tmp_path: Path) -> None:
    first = load_model(centred_model(tmp_path / "a"), device="cpu")
    a = first.fingerprint
    other = np.zeros(first.embedding_dim, np.float32)
    other[0] = 0.5
    b = load_model(centred_model(tmp_path / "b", mean=other), device="cpu").fingerprint
    assert a != b  # stored vectors of one space are never compared with the other's


def test_uncalibrated_languages_use_the_raw_cut(tmp_path: Path) -> None:
    model = load_model(centred_model(tmp_path), device="cpu")
    assert similar.thresholds(model, "c").cosine == 0.9  # the centred cut
    # Go has no mean, so its vectors are raw: the highest raw cut (c's 0.9995), not 0.9.
    assert similar.thresholds(model, "go").cosine == 0.9995


def test_a_missing_or_ill_fitting_means_file_is_refused(tmp_path: Path) -> None:
    d = centred_model(tmp_path)
    (d / SIMILARITY_WEIGHTS).unlink()
    with pytest.raises(ModelLoadError, match="is missing"):
        load_model(d, device="cpu")
    dim = json.loads((d / "alpine.json").read_text())["embed_dim"]
    SimilaritySpace({"c": np.zeros(dim + 1, np.float32)}).save(d)  # another width
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_model(d, device="cpu")
    SimilaritySpace({"java": np.zeros(dim, np.float32)}).save(d)  # another language
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_model(d, device="cpu")
