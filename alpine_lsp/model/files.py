"""The model directory format and its loading: safetensors weights, a tokenizer.json, JSON configs.

Nothing here executes code from the directory: no pickle, no trust_remote_code, no custom classes.
Layout of a model directory:
  config.json        the encoder's transformers config (model_type bert or roberta)
  tokenizer.json     a `tokenizers` tokenizer
  model.safetensors  encoder.*, defect_head.*, embed_head.* tensors (fp16 or fp32)
  alpine.json        name, special tokens, whitespace handling, pruning, max_tokens, truncation,
                     thresholds, metrics,
                     and "fusion" weights when the lexical half is present
  lexical.json, lexical.safetensors   optional: the TF-IDF + logistic-regression half (lexical.py)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..pruning import PruningConfig
from .bounds import (
    MAX_JSON_BYTES,
    MAX_PARAMETERS,
    check_config,
    check_lexical,
    check_tokenizer,
    open_regular,
    read_bounded_json,
    safetensors_layout,
)
from .encoder import KINDS, EncoderConfig, uninitialised
from .lexical import JSON_NAME as LEXICAL_JSON
from .lexical import WEIGHTS_NAME as LEXICAL_WEIGHTS
from .lexical import LexicalModel
from .network import AlpineNetwork
from .score import ModelLoadError
from .tokenize import WHITESPACE, CodeTokenizer

FORMAT = 1
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
REQUIRED = ("config.json", "tokenizer.json", "model.safetensors", "alpine.json")


@dataclass
class ModelMeta:
    name: str
    specials: dict
    embed_dim: int = 256
    max_tokens: int = 512
    truncation: str = "head_tail"
    # "keep" for models from before whitespace handling existed (their tokenizers decide).
    whitespace: str = "keep"
    pruning: PruningConfig = field(default_factory=PruningConfig)
    threshold: float = 0.5
    # None: the embeddings do not rank similar code well enough to offer hints by default.
    similarity_threshold: float | None = 0.8
    # Per language {"near": Jaccard, "cosine": cosine or None}; see engine/similar.py.
    similarity_thresholds: dict = field(default_factory=dict)
    # True: the encoder was trained reading each function's language marker (tokenize.py).
    language_marker: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "name": self.name,
            "specials": self.specials,
            "embed_dim": self.embed_dim,
            "max_tokens": self.max_tokens,
            "truncation": self.truncation,
            "whitespace": self.whitespace,
            "pruning": self.pruning.to_dict(),
            "threshold": self.threshold,
            "similarity_threshold": self.similarity_threshold,
            **(
                {"similarity_thresholds": self.similarity_thresholds}
                if self.similarity_thresholds
                else {}
            ),
            **({"language_marker": True} if self.language_marker else {}),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelMeta:
        known = {
            "format",
            "name",
            "specials",
            "embed_dim",
            "max_tokens",
            "truncation",
            "whitespace",
            "pruning",
            "threshold",
            "similarity_threshold",
            "similarity_thresholds",
            "language_marker",
        }
        if d.get("whitespace", "keep") not in WHITESPACE:
            raise ValueError(f"whitespace must be one of {WHITESPACE}, got {d['whitespace']!r}")
        return cls(
            name=str(d.get("name", "unnamed")),
            specials=dict(d.get("specials", {})),
            embed_dim=int(d.get("embed_dim", 256)),
            max_tokens=int(d.get("max_tokens", 512)),
            truncation=str(d.get("truncation", "head_tail")),
            whitespace=str(d.get("whitespace", "keep")),
            pruning=PruningConfig.from_dict(d.get("pruning", {})),
            threshold=float(d.get("threshold", 0.5)),
            similarity_threshold=(
                None
                if d.get("similarity_threshold", 0.8) is None
                else float(d.get("similarity_threshold", 0.8))
            ),
            similarity_thresholds=_similarity_thresholds(d.get("similarity_thresholds", {})),
            language_marker=d.get("language_marker", False) is True,
            extra={k: v for k, v in d.items() if k not in known},
        )


def _similarity_thresholds(raw: object) -> dict:
    """{"c": {"near": 0.6, "near_identifiers": 0.5, "cosine": 0.99}, ...}, checked (null: that
    tier gives no hints)."""
    if not isinstance(raw, dict):
        raise ValueError("similarity_thresholds must be an object of languages")
    out = {}
    for lang, t in raw.items():
        if not isinstance(t, dict):
            raise ValueError(f"similarity_thresholds.{lang} must be an object")
        near = None if t.get("near") is None else float(t["near"])
        cosine = None if t.get("cosine") is None else float(t["cosine"])
        names = float(t.get("near_identifiers") or 0.0)  # absent: k-grams alone decide
        if not isinstance(t.get("centred", False), bool):
            raise ValueError(f"similarity_thresholds.{lang}.centred must be true or false")
        if (
            (near is not None and not 0.0 <= near <= 1.0)
            or (cosine is not None and not -1.0 <= cosine <= 1.0)
            or not 0.0 <= names <= 1.0
        ):
            raise ValueError(f"similarity_thresholds.{lang} is out of range")
        out[str(lang)] = {**t, "near": near, "cosine": cosine, "near_identifiers": names}
    return out


def check_dir(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelLoadError(f"model directory {p} does not exist")
    if not p.is_dir():
        raise ModelLoadError(f"model path {p} is not a directory")
    missing = [f for f in REQUIRED if not (p / f).is_file()]
    if missing:
        raise ModelLoadError(f"model directory {p} lacks {', '.join(missing)}")
    return p


def _read_json(path: Path) -> dict:
    return read_bounded_json(path, MAX_JSON_BYTES.get(path.name, 1 << 20))


def weights_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_meta(path: str | os.PathLike) -> ModelMeta:
    """The checked `alpine.json` of a model directory, without building anything."""
    p = check_dir(path)
    meta_d = _read_json(p / "alpine.json")
    if int(meta_d.get("format", FORMAT)) > FORMAT:
        raise ModelLoadError(f"{p} uses model format {meta_d['format']}; upgrade alpine-lsp")
    try:
        return ModelMeta.from_dict(meta_d)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{p / 'alpine.json'}: {e}") from None


_EMBED_TABLE = "embeddings.word_embeddings.weight"


def read_dir(path: str | os.PathLike) -> tuple[AlpineNetwork, CodeTokenizer, ModelMeta, str]:
    """Build the network from a directory: (network fp32 on CPU, tokenizer, meta, digest)."""
    p = check_dir(path)
    meta = read_meta(p)
    cfg_d = _read_json(p / "config.json")
    kind = cfg_d.get("model_type")
    if kind not in KINDS:
        raise ModelLoadError(f"{p / 'config.json'}: model_type {kind!r} is not bert or roberta")
    # Untrusted input: sizes, the weights file and every regex checked before anything is built.
    check_config(cfg_d, p / "config.json", meta.embed_dim, meta.max_tokens)
    weights = p / "model.safetensors"
    if weights.stat().st_size > 4 * MAX_PARAMETERS + (1 << 20):
        raise ModelLoadError(f"{weights} is larger than any model this server loads")
    tokenizer_json = check_tokenizer(p / "tokenizer.json")
    try:  # the plain-torch encoder (encoder.py): no transformers import at run time
        config = EncoderConfig.from_dict(cfg_d)
        with uninitialised():  # the weights are replaced at once (encoder.py says why)
            net = AlpineNetwork.from_config(config, meta.embed_dim)
    except (TypeError, ValueError) as e:
        raise ModelLoadError(f"{p / 'config.json'}: {e}") from None
    # The header against the network before any tensor is read: a lying header (a million
    # tiny tensors, offsets past the end) costs milliseconds, not gigabytes.
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    state = _read_weights_or_fail(weights, expected)
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:4])
        raise ModelLoadError(
            f"{p / 'model.safetensors'} does not fit config.json: {detail}"
        ) from None
    try:
        tok = CodeTokenizer.from_str(tokenizer_json, meta.specials, meta.whitespace)
        del tokenizer_json
    except Exception as e:  # tokenizers raises its own Exception type
        raise ModelLoadError(f"{p / 'tokenizer.json'} cannot be used: {e}") from None
    return net.eval(), tok, meta, weights_digest(p / "model.safetensors")


_TORCH_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}


def read_weights(path: Path, expected: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """model.safetensors as the network computes with it: fp32, except that the word-embedding
    table may stay fp16, as shipped (only the rows looked up are widened, exactly: 8 MB of the
    bundled model kept off the heap).

    Read here, tensor by tensor, after its header was checked against the network
    (bounds.safetensors_layout, on the same descriptor), not with safetensors' load_file: that
    maps the file, and converting its fp16 tensors keeps every mapped page resident until the
    last is done (the largest model allowed: 300 MB of fp16 pages beside 600 MB of fp32). Here
    each fp16 buffer is freed as soon as it is widened. Plain reads also give the GIL up."""
    out: dict[str, torch.Tensor] = {}
    with open_regular(path) as f:
        _start, layout = safetensors_layout(f, path, expected, "config.json")
        for name, (dtype, shape, lo, hi) in sorted(layout.items(), key=lambda kv: kv[1][2]):
            buf = bytearray(hi - lo)
            f.seek(lo)
            if hi > lo and f.readinto(buf) != hi - lo:
                raise ModelLoadError(f"{path} is damaged or truncated: {name} is cut short")
            t = torch.frombuffer(buf, dtype=_TORCH_DTYPES[dtype]) if buf else torch.empty(0)
            t = t.reshape(shape)
            if dtype != "F32" and not (name.endswith(_EMBED_TABLE) and dtype == "F16"):
                t = t.float()  # a new tensor: `buf` goes with the loop variable
            out[name] = t
            del buf, t
    return out


def _read_weights_or_fail(path: Path, expected: dict[str, tuple[int, ...]]):
    try:
        return read_weights(path, expected)
    except OSError as e:
        raise ModelLoadError(f"{path} is damaged or truncated: {e}") from None


@dataclass
class Fusion:
    """p = sigmoid(encoder * encoder_logit + lexical * lexical_logit + bias)."""

    encoder: float
    lexical: float
    bias: float

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "lexical": self.lexical, "bias": self.bias}


def read_lexical(p: Path, meta: ModelMeta) -> tuple[LexicalModel | None, Fusion | None, str]:
    """The optional lexical half: (model, fusion weights, digest), or (None, None, "")."""
    has = [(p / n).is_file() for n in (LEXICAL_JSON, LEXICAL_WEIGHTS)]
    if not any(has):
        return None, None, ""
    if not all(has):
        raise ModelLoadError(
            f"model directory {p} has only one of {LEXICAL_JSON}, {LEXICAL_WEIGHTS}"
        )
    f = meta.extra.get("fusion")
    try:
        fusion = Fusion(float(f["encoder"]), float(f["lexical"]), float(f["bias"]))
    except (TypeError, KeyError, ValueError):
        raise ModelLoadError(
            f"{p / 'alpine.json'} lacks valid fusion weights for the lexical half"
        ) from None
    # Bounded, and its token_pattern (run on every function) linear only.
    checked = check_lexical(p / LEXICAL_JSON)
    try:
        lex = LexicalModel.load(p, meta=checked)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{p / LEXICAL_WEIGHTS} or {LEXICAL_JSON} is damaged: {e}") from None
    return lex, fusion, weights_digest(p / LEXICAL_WEIGHTS) + weights_digest(p / LEXICAL_JSON)


def write_dir(
    net: AlpineNetwork,
    tokenizer_json: str,
    meta: ModelMeta,
    out: str | os.PathLike,
    half: bool = True,
) -> Path:
    """Save a model directory; fp16 weights by default (the bundled model ships that way)."""
    p = Path(out)
    p.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(p / "model.safetensors"))
    net.encoder.config.to_json_file(str(p / "config.json"))
    (p / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    (p / "alpine.json").write_text(json.dumps(meta.to_dict(), indent=2) + "\n", encoding="utf-8")
    return p
