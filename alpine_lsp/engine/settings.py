"""Typed settings of the server and the check command, read from the `alpine` section.

Unknown keys are ignored, bad values fall back to the default with a message for the user,
so a typo in an editor config never stops the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..pruning import PruningConfig

SEVERITIES = ("error", "warning", "information", "hint")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class SimilaritySettings:
    enabled: bool = True
    threshold: float | None = None  # None: the model's calibrated threshold
    max_results: int = 3


@dataclass(frozen=True)
class Settings:
    threshold: float | None = None  # None: the model's calibrated threshold
    flag_budget: float = 0.03  # share of the workspace's functions that may be flagged (policy.py)
    severity: str = "warning"
    debounce_ms: int = 300
    device: str = "auto"
    threads: int | None = None
    model: str | None = None  # a local model directory; None: the bundled model
    pruning: PruningConfig | None = None  # None: the model's own pruning settings
    languages: tuple[str, ...] | None = None  # None: every supported language
    max_tokens: int | None = None
    max_file_size: int = 2_000_000
    similarity: SimilaritySettings = field(default_factory=SimilaritySettings)
    line_hints: bool = True  # defect-risk on the top-ranked line (False: on the name)

    def defect_threshold(self, model: Any) -> float | None:
        """The flag threshold: this setting, else the model's calibrated one (None: no model)."""
        if self.threshold is not None:
            return self.threshold
        return model.threshold if model is not None else None

    def cosine_threshold(self, model: Any) -> float | None:
        """The semantic-hint cosine: the setting, else the model's fallback (None: no model)."""
        if self.similarity.threshold is not None:
            return self.similarity.threshold
        return model.similarity_threshold if model is not None else None

    def model_key(self) -> tuple:
        """The settings that need the model reloaded or reconfigured when they change."""
        return (self.model, self.device, self.threads, self.pruning, self.max_tokens)


def _num(value: Any, lo: float, hi: float, name: str, errors: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        errors.append(f"alpine.{name} must be a number in [{lo}, {hi}], got {value!r}")
        return None
    return float(value)


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a client's JSON object (nested or dotted keys). Returns (settings, errors)."""
    base = base or Settings()
    errors: list[str] = []
    if raw is None:
        return base, errors
    if not isinstance(raw, dict):
        return base, [f"alpine settings must be an object, got {type(raw).__name__}"]
    if isinstance(raw.get("alpine"), dict):  # some clients wrap the section in its name
        raw = raw["alpine"]
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and key in ("pruning", "similarity"):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    out: dict[str, Any] = {}
    if "threshold" in flat:
        out["threshold"] = _num(flat["threshold"], 0.0, 1.0, "threshold", errors)
    if "flagBudget" in flat:
        v = _num(flat["flagBudget"], 0.0, 1.0, "flagBudget", errors)
        if v is not None:
            out["flag_budget"] = v
    if "severity" in flat:
        sev = str(flat["severity"]).lower()
        if sev in SEVERITIES:
            out["severity"] = sev
        else:
            errors.append(f"alpine.severity must be one of {', '.join(SEVERITIES)}")
    if "debounceMs" in flat:
        v = _num(flat["debounceMs"], 0, 60_000, "debounceMs", errors)
        if v is not None:
            out["debounce_ms"] = int(v)
    if "device" in flat:
        dev = str(flat["device"]).lower()
        if dev in DEVICES:
            out["device"] = dev
        else:
            errors.append(f"alpine.device must be one of {', '.join(DEVICES)}")
    if "threads" in flat:
        v = _num(flat["threads"], 1, 256, "threads", errors)
        out["threads"] = int(v) if v is not None else None
    if "model" in flat:
        m = flat["model"]
        out["model"] = str(m) if m else None
    if "maxTokens" in flat:
        v = _num(flat["maxTokens"], 8, 100_000, "maxTokens", errors)
        out["max_tokens"] = int(v) if v is not None else None
    if "maxFileSize" in flat:
        v = _num(flat["maxFileSize"], 1, 1 << 40, "maxFileSize", errors)
        if v is not None:
            out["max_file_size"] = int(v)
    if "lineHints" in flat:
        if isinstance(flat["lineHints"], bool):
            out["line_hints"] = flat["lineHints"]
        else:
            errors.append(f"alpine.lineHints must be true or false, got {flat['lineHints']!r}")
    if "languages" in flat:
        langs = flat["languages"]
        if langs is None:
            out["languages"] = None
        elif isinstance(langs, list) and all(isinstance(x, str) for x in langs):
            out["languages"] = tuple(x.lower() for x in langs)
        else:
            errors.append("alpine.languages must be a list of language names")
    # null means "the model's own setting" (editors send their declared defaults).
    prune = {
        k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("pruning.") and v is not None
    }
    if prune:
        current = base.pruning or PruningConfig()
        try:
            out["pruning"] = PruningConfig(
                alpha=float(prune.get("alpha", current.alpha)),
                layers=prune.get("layers", current.layers),
                mode=prune.get("mode", current.mode),
            )
        except (TypeError, ValueError) as e:
            errors.append(f"alpine.pruning: {e}")
    sim = {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith("similarity.")}
    if sim:
        s = base.similarity
        kw: dict[str, Any] = {}
        if "enabled" in sim:
            kw["enabled"] = bool(sim["enabled"])
        if "threshold" in sim:
            kw["threshold"] = _num(sim["threshold"], -1.0, 1.0, "similarity.threshold", errors)
        if "maxResults" in sim:
            v = _num(sim["maxResults"], 0, 100, "similarity.maxResults", errors)
            if v is not None:
                kw["max_results"] = int(v)
        out["similarity"] = replace(s, **kw)
    return replace(base, **out), errors
