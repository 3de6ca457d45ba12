"""The public model API used by the server, the CLI, notebooks and batch jobs alike."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..pruning import PruningConfig, encoder_flops
from .cwe import CweHead, read_cwe
from .files import BUNDLED_DIR, Fusion, read_dir, read_lexical
from .fusion import FusedHead
from .lexical import LexicalModel
from .lines import position_words, row_lines
from .network import AlpineNetwork
from .score import FunctionScore, ModelLoadError
from .similarity import SimilaritySpace, read_similarity
from .tokenize import CodeTokenizer, normalize_code

# Pieces that name nothing on their own (BPE splits identifiers, so a lone "_" appears too).
PUNCT_ONLY = set("()[]{};,.:+-*/%&|^!~<>=?\"'#\\@$`_")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise ModelLoadError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


# Fewer code tokens than this at the last layer: explain from the first layer instead.
MIN_FOCUS_TOKENS = 3


class AlpineModel:
    """A loaded model: defect probabilities and embeddings for lists of functions."""

    def __init__(
        self,
        net: AlpineNetwork,
        tokenizer: CodeTokenizer,
        meta,
        digest: str,
        path: Path,
        device: torch.device,
        lexical: LexicalModel | None = None,
        fusion: Fusion | None = None,
        head: FusedHead | None = None,
        cwe: CweHead | None = None,
        similarity: SimilaritySpace | None = None,
    ) -> None:
        self.net = net
        self.cwe = cwe
        # Where similar-code hints are measured: the embedding, centred per language.
        self.similarity = similarity or SimilaritySpace()
        # The fused head over encoder, lexical halves and code metrics (model/fusion.py);
        # used with the lexical half, in place of the two-input fusion.
        self.head = head if lexical is not None else None
        self.lexical = lexical
        self.fusion = fusion
        # Off only to measure the encoder alone (eval defect); the server always fuses.
        self.use_lexical = lexical is not None
        self.tokenizer = tokenizer
        self.meta = meta
        self.path = path
        self.device = device
        self._digest = digest
        self.pruning: PruningConfig = meta.pruning
        self.max_tokens: int = meta.max_tokens
        self.truncation: str = meta.truncation
        self.batch_size = 16
        self._lock = threading.Lock()
        self.forwards = 0

    # -- identity ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def threshold(self) -> float:
        if self.head is not None and self.use_lexical and "threshold" in self.head.record:
            return float(self.head.record["threshold"])
        return self.meta.threshold

    @property
    def similarity_threshold(self) -> float | None:
        return self.meta.similarity_threshold

    @property
    def similarity_thresholds(self) -> dict:
        """Per-language {"near", "cosine"} thresholds (alpine.json); {} when uncalibrated."""
        return self.meta.similarity_thresholds

    @property
    def embedding_dim(self) -> int:
        return self.meta.embed_dim

    @property
    def fingerprint(self) -> str:
        """Changes whenever a score could change: weights, their precision, pruning, input
        length, truncation, whitespace handling, and the fusion weights (they live in
        alpine.json, outside the weight digests)."""
        dtype = self.net.embed_head.weight.dtype  # the compute precision (not the table's)
        fusion = self.fusion.to_dict() if self.fusion is not None and self.use_lexical else None
        key = (
            f"{self._digest}|{self.pruning.to_dict()}|{self.max_tokens}|{self.truncation}"
            f"|{self.use_lexical}|{self.tokenizer.whitespace}|{dtype}|{fusion}"
        )
        return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()

    def info(self) -> dict:
        enc = self.net.encoder.config
        return {
            "name": self.name,
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "device": str(self.device),
            "layers": enc.num_hidden_layers,
            "hidden": enc.hidden_size,
            "pruning": self.pruning.to_dict(),
            "max_tokens": self.max_tokens,
            "threshold": self.threshold,
            "similarity_threshold": self.similarity_threshold,
            "lexical": (
                {"terms": len(self.lexical.vocabulary), "fusion": self.fusion.to_dict()}
                if self.lexical and self.fusion and self.use_lexical
                else None
            ),
        }

    def configure(
        self,
        pruning: PruningConfig | None = None,
        max_tokens: int | None = None,
        truncation: str | None = None,
        lexical: bool | None = None,
    ) -> None:
        if lexical is not None:
            self.use_lexical = bool(lexical) and self.lexical is not None
        if pruning is not None:
            self.pruning = pruning
        if max_tokens is not None:
            limit = self.net.encoder.config.max_position_embeddings - 2
            self.max_tokens = max(8, min(int(max_tokens), limit))
        if truncation is not None:
            self.truncation = truncation

    # -- scoring ----------------------------------------------------------------------------
    def score(
        self,
        codes: list[str],
        language: str = "c",
        explain: bool = False,
        lines: bool | None = None,
    ) -> list[FunctionScore]:
        """Score functions in length-sorted batches; results come back in input order.

        With `explain`, results also carry the tokens and (unless `lines` is False) the ranked
        lines the encoder attended to, from the same forward pass, and the CWE guess.

        `language` names the code's language: the fused head gates and weighs by it, and a model
        trained with language markers (alpine.json `language_marker`) reads it as one.
        """
        codes = list(codes)
        results: list[FunctionScore | None] = [None] * len(codes)
        if not codes:
            return []
        order = sorted(range(len(codes)), key=lambda i: len(codes[i]))
        want_lines = explain if lines is None else bool(lines)
        cfg = replace(self.pruning, track_scores=explain, track_lines=want_lines)
        enc = self.net.encoder.config
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            marks = [language] * len(idx) if self.meta.language_marker else None
            batch = self.tokenizer.batch(
                [codes[i] for i in idx], self.max_tokens, self.truncation, marks
            )
            ids = batch.input_ids.to(self.device)
            mask = batch.attention_mask.to(self.device)
            with self._lock, torch.inference_mode():
                t0 = time.perf_counter()
                out = self.net(ids, mask, cfg)
                enc_logits = out.logit.float().cpu().numpy().astype(np.float64)
                embs = out.embedding.float().cpu().numpy()
                lengths = out.alpine.lengths.cpu().numpy()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                ms = (time.perf_counter() - t0) * 1000
                self.forwards += 1
            probs, parts, terms = self._fuse(
                [codes[i] for i in idx], enc_logits, explain, language, embs
            )
            origins = out.alpine.state.origin.cpu().numpy()
            scores = out.alpine.scores.float().cpu().numpy() if explain else None
            first = out.alpine.first_scores
            first = first.float().cpu().numpy() if explain and first is not None else None
            per_tok = out.alpine.token_scores
            per_tok = per_tok.float().cpu().numpy() if want_lines and per_tok is not None else None
            cwes = None
            if explain and self.cwe is not None:
                cwes = self.cwe.top(embs, [codes[i] for i in idx])
            for row, i in enumerate(idx):
                lens = [int(x) for x in lengths[row]]
                top: list[tuple[str, float]] = []
                top_layer = 0
                words = None
                if explain:  # whole identifiers for the explanation, never sub-word pieces
                    text = normalize_code(codes[i], self.tokenizer.whitespace)
                    words = position_words(text, batch.offsets[row])
                    # Marker positions (after the content) are not code: no word.
                    words += [""] * (len(batch.tokens[row]) - len(words))
                if scores is not None:
                    top = _top_tokens(batch.tokens[row], origins[row], scores[row], words=words)
                    top_layer = len(lens) - 1
                if first is not None and len(top) < MIN_FOCUS_TOKENS:
                    # A narrow band can leave almost nothing at the last layer of a short
                    # function; then the first layer, which saw every token, says where it looked.
                    early = _top_tokens(
                        batch.tokens[row], np.arange(first.shape[1]), first[row], words=words
                    )
                    if len(early) > len(top):
                        top, top_layer = early, 1
                results[i] = FunctionScore(
                    probability=float(probs[row]),
                    embedding=embs[row].astype(np.float32),
                    tokens_per_layer=lens,
                    top_tokens=top,
                    top_tokens_layer=top_layer if top else 0,
                    n_tokens=batch.full_lengths[row],
                    truncated=batch.truncated[row],
                    flops=sum(encoder_flops(lens, enc.hidden_size, enc.intermediate_size)),
                    ms=ms,
                    parts={k: float(v[row]) for k, v in parts.items() if v[row] == v[row]},
                    lexical_terms=terms[row],
                    lines=(
                        row_lines(
                            codes[i], batch.offsets[row], per_tok[row], self.tokenizer.whitespace
                        )
                        if per_tok is not None
                        else []
                    ),
                    cwe=cwes[row] if cwes is not None else [],
                )
        return results  # type: ignore[return-value]

    def _fuse(
        self,
        codes: list[str],
        enc_logits: np.ndarray,
        explain: bool,
        language: str = "c",
        embs: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict, list[list[tuple[str, float]]]]:
        """Final probabilities, the halves' own probabilities when fused, and the lexical
        n-grams behind each score (explain only). With a fused head, parts also carries the
        metrics' summed share of the logit ("metrics") and the three largest ("metric:NAME")."""
        if not (self.use_lexical and self.lexical and self.fusion):
            return _sigmoid(enc_logits), {}, [[] for _ in codes]
        lex_logits, terms = self.lexical.score(codes, explain=5 if explain else 0)
        parts = {"encoder": _sigmoid(enc_logits), "lexical": _sigmoid(lex_logits)}
        if self.head is not None and embs is not None:
            return self._fuse_head(codes, enc_logits, lex_logits, language, embs, parts, terms)
        f = self.fusion
        fused = f.encoder * enc_logits + f.lexical * lex_logits + f.bias
        return _sigmoid(fused), parts, terms

    def _fuse_head(self, codes, enc_logits, lex_logits, language, embs, parts, terms):
        assert self.head is not None
        logits, contribs = self.head.score(codes, language, enc_logits, lex_logits, embs)
        parts["metrics"] = np.array([sum(c.values()) for c in contribs])
        for row, c in enumerate(contribs):
            for name, v in list(c.items())[:3]:
                parts.setdefault(f"metric:{name}", np.full(len(codes), np.nan))[row] = v
        return _sigmoid(logits), parts, terms

    def defect_probability(self, codes: list[str], language: str = "c") -> list[float]:
        return [s.probability for s in self.score(codes, language)]

    def embed(self, codes: list[str], language: str = "c") -> np.ndarray:
        scores = self.score(codes, language)
        if not scores:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return np.stack([s.embedding for s in scores])

    def similarity_vectors(
        self, embeddings: list[np.ndarray] | np.ndarray, language: str = "c"
    ) -> list[np.ndarray] | np.ndarray:
        """Embeddings (`FunctionScore.embedding`, `embed`) as the vectors similar-code hints
        compare: centred unit rows where the model has the language's mean, else the embeddings
        themselves. The semantic cut of `similarity_thresholds` is in this space."""
        if len(embeddings) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return self.similarity.vectors(embeddings, language)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _top_tokens(
    tokens: list[str], origins, scores, k: int = 5, words: list[str] | None = None
) -> list[tuple[str, float]]:
    """The highest-scoring code tokens among those that survived to the last layer (as the whole
    words they belong to, when `words` maps positions to them)."""
    picked: dict[str, float] = {}
    for pos in np.argsort(-scores):
        o = int(origins[pos])
        if o <= 0 or o >= len(tokens) - 1:  # merged token, padding, or a special
            continue
        text = words[o] if words is not None else tokens[o].removeprefix("##").lstrip("Ġ")
        if not text or set(text) <= PUNCT_ONLY or text in picked:
            continue
        picked[text] = float(scores[pos])
        if len(picked) == k:
            break
    return list(picked.items())


def read_head(where: Path) -> tuple[FusedHead | None, str]:
    """The fused head beside the model, if any, and its digest for the fingerprint."""
    try:
        head = FusedHead.load(where)
    except Exception as e:  # safetensors raises its own error type for a damaged header
        raise ModelLoadError(f"{where}: the fused head (fused_head.*) is damaged: {e}") from e
    return head, ("|head:" + head.digest()) if head is not None else ""


def load_model(
    path: str | os.PathLike | None = None,
    device: str = "auto",
    pruning: PruningConfig | None = None,
    threads: int | None = None,
    max_tokens: int | None = None,
) -> AlpineModel:
    """Load the bundled model (path None) or a model directory. Raises ModelLoadError with a
    message for a person when the directory is missing, incomplete, damaged or of the wrong shape.
    """
    where = Path(path).expanduser() if path is not None else BUNDLED_DIR
    if path is None and not (where / "model.safetensors").is_file():
        raise ModelLoadError("the bundled model is missing from this installation; reinstall")
    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    net, tok, meta, digest = read_dir(where)
    lexical, fusion, lex_digest = read_lexical(where, meta)
    head, head_digest = read_head(where)
    cwe, cwe_digest = read_cwe(where, meta.embed_dim)
    similarity, sim_digest = read_similarity(where, meta.similarity_thresholds, meta.embed_dim)
    if dev.type == "cuda":
        net = net.half()
    model = AlpineModel(
        net.to(dev),
        tok,
        meta,
        digest + lex_digest + head_digest + cwe_digest + sim_digest,
        where,
        dev,
        lexical,
        fusion,
        head,
        cwe,
        similarity,
    )
    model.configure(pruning=pruning, max_tokens=max_tokens)
    return model
