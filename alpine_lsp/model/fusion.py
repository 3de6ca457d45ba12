"""The fused defect head: one linear layer over the encoder's logit and embedding, two lexical
logits (the Devign half and one trained on every source) and the code metrics.

Trained on the train splits of every labelled source (train/fusion_train.py) on top of the
frozen encoder; stored beside it as fused_head.json (feature names, record),
fused_head.safetensors (mean, scale, weights, bias) and fused_lexical.{json,safetensors} (the
all-source TF-IDF half): data only, numpy only. Being linear, each input's share of the logit
is its weight times its standardised value, which is what the hover shows for the metrics.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..parsing.metrics import METRIC_NAMES, function_metrics, metric_vector

JSON_NAME = "fused_head.json"
WEIGHTS_NAME = "fused_head.safetensors"
LEXICAL_STEM = "fused_lexical"
BASE_FEATURES = ("encoder_logit", "lexical_logit", "source_lexical_logit")
N_BASE = len(BASE_FEATURES)


def feature_names(embed_dim: int = 256) -> list[str]:
    return [
        *BASE_FEATURES,
        *(f"metric:{m}" for m in METRIC_NAMES),
        *(f"emb:{i}" for i in range(embed_dim)),
    ]


def features(
    enc_logit: float,
    lex_logit: float,
    src_lex_logit: float,
    metrics: dict[str, float],
    emb: np.ndarray,
) -> np.ndarray:
    return np.concatenate(
        [[enc_logit, lex_logit, src_lex_logit], metric_vector(metrics), emb]
    ).astype(np.float64)


class FusedHead:
    def __init__(
        self,
        names: list[str],
        mean: np.ndarray,
        scale: np.ndarray,
        weight: np.ndarray,
        bias: float,
        record: dict | None = None,
    ) -> None:
        if not (len(names) == len(mean) == len(scale) == len(weight)):
            raise ValueError("fused head: names, mean, scale and weight differ in length")
        if names != feature_names(len(names) - N_BASE - len(METRIC_NAMES)):
            raise ValueError(f"fused head: features {names} are not this version's")
        self.names = list(names)
        self.mean = np.asarray(mean, float)
        self.scale = np.where(np.asarray(scale, float) > 1e-9, np.asarray(scale, float), 1.0)
        self.weight = np.asarray(weight, float)
        self.bias = float(bias)
        self.record = record or {}
        self.lexical = None  # the all-source lexical half (LexicalModel), set by load()

    def logits(self, x: np.ndarray) -> np.ndarray:
        """x: (n, features) raw features -> (n,) logits."""
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    def with_size_prior(self, beta: float) -> FusedHead:
        """The same head with `beta` x (log(1 + lines) - its mean on the fit rows) added to its
        logit: longer functions rank higher, and a function of average size keeps its score.
        Linear, so it folds into the lines weight: the stored format does not change and the
        hover's share for `lines` includes it."""
        i = self.names.index("metric:lines")
        weight = self.weight.copy()
        weight[i] += beta * self.scale[i]
        head = FusedHead(self.names, self.mean, self.scale, weight, self.bias, dict(self.record))
        head.lexical = self.lexical
        return head

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """(n, features): each input's share of the logit (relative to an average function)."""
        return ((x - self.mean) / self.scale) * self.weight

    def score(
        self,
        codes: list[str],
        language: str,
        enc_logits: np.ndarray,
        lex_logits: np.ndarray,
        embeddings: np.ndarray,
    ) -> tuple[np.ndarray, list[dict[str, float]]]:
        """Logits and, per function, the metrics' shares of the logit (largest first)."""
        src_lex = self.lexical.logits(codes) if self.lexical is not None else np.zeros(len(codes))
        rows = []
        for i, code in enumerate(codes):
            try:
                m = function_metrics(code, language)
            except ValueError:  # a language without a grammar: every count 0
                m = {}
            rows.append(features(enc_logits[i], lex_logits[i], src_lex[i], m, embeddings[i]))
        x = np.stack(rows) if rows else np.zeros((0, len(self.names)))
        contrib = self.contributions(x)
        out = []
        for r in contrib:
            d = {
                n[7:]: float(v)
                for n, v in zip(self.names, r, strict=True)
                if n.startswith("metric:")
            }
            out.append(dict(sorted(d.items(), key=lambda kv: -abs(kv[1]))))
        return self.logits(x), out

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=8)
        for a in (self.mean, self.scale, self.weight, np.array([self.bias])):
            h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
        if self.lexical is not None:
            h.update(np.ascontiguousarray(self.lexical.coef).tobytes())
        return h.hexdigest()

    def save(self, directory: str | Path) -> None:
        from safetensors.numpy import save_file

        d = Path(directory)
        if self.lexical is not None:
            self.lexical.save(d, LEXICAL_STEM)
        meta = {"format": 1, "features": self.names, "record": self.record}
        (d / JSON_NAME).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        save_file(
            {
                "mean": self.mean.astype(np.float32),
                "scale": self.scale.astype(np.float32),
                "weight": self.weight.astype(np.float32),
                "bias": np.array([self.bias], dtype=np.float32),
            },
            str(d / WEIGHTS_NAME),
        )

    @classmethod
    def load(cls, directory: str | Path) -> FusedHead | None:
        """None when the directory has no fused head; ValueError/OSError when it is damaged."""
        from safetensors.numpy import load_file

        d = Path(directory)
        if not (d / JSON_NAME).is_file() and not (d / WEIGHTS_NAME).is_file():
            return None
        from .bounds import MAX_JSON_BYTES, check_safetensors, read_bounded_json

        meta = read_bounded_json(d / JSON_NAME, MAX_JSON_BYTES["fused_head.json"])
        names = dict.fromkeys(("mean", "scale", "weight", "bias"))
        check_safetensors(d / WEIGHTS_NAME, names, JSON_NAME)  # a lying header: refused
        w = load_file(str(d / WEIGHTS_NAME))
        head = cls(
            [str(n) for n in meta["features"]],
            w["mean"].astype(np.float64),
            w["scale"].astype(np.float64),
            w["weight"].astype(np.float64),
            float(w["bias"][0]),
            meta.get("record") or {},
        )
        if (d / f"{LEXICAL_STEM}.json").is_file():
            from .lexical import LexicalModel

            head.lexical = LexicalModel.load(d, LEXICAL_STEM)
        return head
