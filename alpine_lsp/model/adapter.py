"""A per-repository adapter: a small head over the frozen model's outputs, blended with it.

`alpine-lsp learn` fits it on the repository's bug-fix history (alpine_lsp/history/); the engine
applies it after the model. Files, in the workspace's `.alpine-lsp/` folder (0700, files 0600):
  adapter.safetensors  mean, std (feature standardisation), w, b (linear head) and, for a head
                       with a hidden layer, w1, b1 (w then reads the hidden units)
  adapter.json         format, base model fingerprint, feature names, blend weight, the logit
                       moments the blend matches, commit range, counts, and the weights' digest
No pickle, nothing executed; numpy only, so applying it costs microseconds per function.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .score import FunctionScore

FORMAT = 1
DIR_NAME = ".alpine-lsp"
WEIGHTS_NAME = "adapter.safetensors"
JSON_NAME = "adapter.json"
PREVIOUS_NAME = ".adapter.previous.safetensors"  # the old weights while a new pair is renamed in
MAX_BYTES = 16 * 1024 * 1024  # a head over a few hundred features is ~10 KB; refuse anything huge
# The feature builder's columns after the embedding. Another half (code metrics) appends here.
SCALARS = ("global_logit", "encoder_logit", "lexical_logit", "log_lines", "log_tokens", "truncated")


class AdapterError(RuntimeError):
    """An adapter that cannot be used, with a message meant for a person."""


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def feature_names(embedding_dim: int) -> list[str]:
    return [f"emb{i}" for i in range(embedding_dim)] + list(SCALARS)


def build_features(scores: list[FunctionScore], codes: list[str]) -> np.ndarray:
    """(n, D + len(SCALARS)) float32: the one place features are made, in training and serving."""
    if not scores:
        return np.zeros((0, len(SCALARS)), np.float32)
    rows = []
    for s, code in zip(scores, codes, strict=True):
        g = _logit(s.probability)
        scalars = [
            g,
            _logit(s.parts["encoder"]) if "encoder" in s.parts else g,
            _logit(s.parts["lexical"]) if "lexical" in s.parts else g,
            math.log1p(code.count("\n") + 1),
            math.log1p(s.n_tokens),
            float(s.truncated),
        ]
        rows.append(np.concatenate([np.asarray(s.embedding, np.float32), scalars]))
    return np.stack(rows).astype(np.float32)


@dataclass
class Adapter:
    mean: np.ndarray
    std: np.ndarray
    w: np.ndarray
    b: float
    meta: dict
    digest: str
    w1: np.ndarray | None = None
    b1: np.ndarray | None = None
    path: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def blend(self) -> float:
        return float(self.meta["blend"]["weight"])

    @property
    def fixes(self) -> int:
        return int(self.meta.get("counts", {}).get("fix_commits", 0))

    def fingerprint(self, model_fingerprint: str) -> str:
        """The score-cache key of the model with this adapter applied."""
        key = f"{model_fingerprint}|adapter|{self.digest}"
        return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The head's own logits for feature rows."""
        z = (x - self.mean) / self.std
        if self.w1 is not None and self.b1 is not None:
            z = np.maximum(z @ self.w1 + self.b1, 0.0)
        return z @ self.w + self.b

    def blend_logits(self, global_logit: np.ndarray, adapter_logit: np.ndarray) -> np.ndarray:
        """Convex blend in logit space, the adapter rescaled to the global model's moments on the
        training rows, so the model's threshold keeps flagging a similar share of functions."""
        m = self.meta["blend"]
        a = (adapter_logit - m["adapter_mean"]) / m["adapter_std"] * m["global_std"]
        a = a + m["global_mean"]
        w = self.blend
        return (1 - w) * global_logit + w * a

    def apply(self, scores: list[FunctionScore], codes: list[str]) -> list[FunctionScore]:
        """Scores with the blended probability; the global and adapter ones stay in `parts`."""
        if not scores:
            return scores
        x = build_features(scores, codes)
        a = self.logits(x)
        g = x[:, -len(SCALARS)].astype(np.float64)
        z = self.blend_logits(g, a)
        out = []
        for s, zi, ai in zip(scores, z, a, strict=True):
            parts = {
                **s.parts,
                "global": s.probability,
                "adapter": float(1 / (1 + math.exp(-float(np.clip(ai, -60, 60))))),
                "adapter_fixes": float(self.fixes),
            }
            p = float(1 / (1 + math.exp(-float(np.clip(zi, -60, 60)))))
            out.append(replace(s, probability=p, parts=parts))
        return out


def adapter_dir(root: str | os.PathLike) -> Path:
    return Path(root) / DIR_NAME


def load_adapter(folder: str | os.PathLike, model_fingerprint: str | None = None) -> Adapter:
    """Read `folder/adapter.{json,safetensors}`; AdapterError says why one cannot be used."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    folder = Path(folder)
    jpath, wpath = folder / JSON_NAME, folder / WEIGHTS_NAME
    try:
        if jpath.stat().st_size > MAX_BYTES or wpath.stat().st_size > MAX_BYTES:
            raise AdapterError(f"{folder}: adapter files larger than {MAX_BYTES} bytes")
        jbytes, wbytes = jpath.read_bytes(), wpath.read_bytes()
    except FileNotFoundError as e:
        raise AdapterError(f"no adapter in {folder} ({Path(e.filename).name} missing)") from e
    except OSError as e:
        raise AdapterError(f"{folder}: adapter unreadable: {e}") from e
    try:
        meta = json.loads(jbytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AdapterError(f"{jpath}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise AdapterError(f"{jpath}: not an alpine-lsp adapter of format {FORMAT}")
    if meta.get("weights_sha256") != hashlib.sha256(wbytes).hexdigest():
        # Interrupted between the two renames: the old JSON still names the old weights.
        try:
            prev = (folder / PREVIOUS_NAME).read_bytes()
        except OSError:
            prev = b""
        if prev and meta.get("weights_sha256") == hashlib.sha256(prev).hexdigest():
            wbytes = prev
    if meta.get("weights_sha256") != hashlib.sha256(wbytes).hexdigest():
        raise AdapterError(
            f"{folder}: adapter.json does not describe this adapter.safetensors "
            "(a run was interrupted or the files were edited); run `alpine-lsp learn` again"
        )
    base = meta.get("base_fingerprint")
    if model_fingerprint is not None and base != model_fingerprint:
        raise AdapterError(
            f"{folder}: this adapter was made for another model (fingerprint {base}, the model "
            f"in use is {model_fingerprint}); run `alpine-lsp learn` again"
        )
    try:
        t = load(wbytes)
    except (SafetensorError, ValueError) as e:
        raise AdapterError(f"{wpath}: not a readable safetensors file ({e})") from e
    try:
        arrays = {k: np.asarray(t[k], np.float64) for k in ("mean", "std", "w", "b")}
        w1 = np.asarray(t["w1"], np.float64) if "w1" in t else None
        b1 = np.asarray(t["b1"], np.float64) if "b1" in t else None
        names = meta["features"]
        blend = meta["blend"]
        weight = float(blend["weight"])
        for k in ("adapter_mean", "adapter_std", "global_mean", "global_std"):
            float(blend[k])
    except (KeyError, TypeError, ValueError) as e:
        raise AdapterError(f"{folder}: adapter incomplete ({e})") from e
    n = len(names)
    hidden = arrays["w"].shape[0]
    shapes_ok = (
        arrays["mean"].shape == (n,)
        and arrays["std"].shape == (n,)
        and arrays["b"].size == 1
        and (w1 is None) == (b1 is None)
        and (
            (w1 is None and hidden == n)
            or (w1 is not None and w1.shape == (n, hidden) and b1.shape == (hidden,))
        )
    )
    if not shapes_ok or list(names[-len(SCALARS) :]) != list(SCALARS):
        raise AdapterError(f"{folder}: adapter tensors do not match its feature list")
    everything = [*arrays.values(), *(x for x in (w1, b1) if x is not None)]
    if not all(np.isfinite(a).all() for a in everything) or not 0.0 <= weight <= 1.0:
        raise AdapterError(f"{folder}: adapter holds non-finite values or a bad blend weight")
    if (arrays["std"] <= 0).any() or float(blend["adapter_std"]) <= 0:
        raise AdapterError(f"{folder}: adapter has a non-positive scale")
    digest = hashlib.blake2b(jbytes + b"\0" + wbytes, digest_size=12).hexdigest()
    return Adapter(
        mean=arrays["mean"],
        std=arrays["std"],
        w=arrays["w"],
        b=float(arrays["b"].reshape(-1)[0]),
        w1=w1,
        b1=b1,
        meta=meta,
        digest=digest,
        path=folder,
    )


def save_adapter(folder: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict) -> Path:
    """Write both files next to the old ones, then rename over them, weights first and JSON
    last. The JSON names its weights by digest, and the old weights stay linked as
    PREVIOUS_NAME until the new JSON is in place, so a run stopped at any point leaves a pair
    that loads as the previous adapter (or the new one), never a mix."""
    from safetensors.numpy import save

    folder = Path(folder)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)  # mkdir's mode goes through the umask
    wbytes = save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()})
    meta = {**meta, "format": FORMAT, "weights_sha256": hashlib.sha256(wbytes).hexdigest()}
    jbytes = (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode()
    tmp = []
    try:
        for name, data in ((WEIGHTS_NAME, wbytes), (JSON_NAME, jbytes)):
            path = folder / f".{name}.{os.getpid()}.tmp"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            tmp.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        prev = folder / PREVIOUS_NAME
        if (folder / WEIGHTS_NAME).is_file() and (folder / JSON_NAME).is_file():
            link = folder / f".{PREVIOUS_NAME}.{os.getpid()}.tmp"
            tmp.append(link)
            if link.exists():
                link.unlink()
            try:
                os.link(folder / WEIGHTS_NAME, link)
            except OSError:  # no hard links on this file system
                link.write_bytes((folder / WEIGHTS_NAME).read_bytes())
            os.replace(link, prev)
        os.replace(tmp[0], folder / WEIGHTS_NAME)
        os.replace(tmp[1], folder / JSON_NAME)
        if prev.exists():
            prev.unlink()
    finally:
        for path in tmp:
            if path.exists():
                path.unlink()
    return folder
