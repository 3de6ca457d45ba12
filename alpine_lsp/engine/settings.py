"""Typed settings of the server and the check command, read from the `alpine` section.

Unknown keys are ignored, bad values fall back with a message for the user (to the previous
value; to unset for the keys whose unset means "the model's own"), so a typo in an editor
config never stops the server. cattrs (pygls's own) structures the section: each client key is
named once, in `_KEYS`, with the check its value must pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, override

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


class _Bad(ValueError):
    """A value a check refused; its text follows `alpine.KEY ` in the message."""


def _number(lo: float, hi: float, kind: type = float) -> Callable[[Any, Any], Any]:
    def check(value: Any, _type: Any) -> Any:
        if value is None:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo <= value <= hi
        if not ok:
            raise _Bad(f"must be a number in [{lo}, {hi}], got {value!r}")
        return kind(value)

    return check


def _choice(choices: tuple[str, ...]) -> Callable[[Any, Any], str]:
    def check(value: Any, _type: Any) -> str:
        if str(value).lower() not in choices:
            raise _Bad(f"must be one of {', '.join(choices)}")
        return str(value).lower()

    return check


def _flag(value: Any, _type: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false, got {value!r}")
    return value


def _languages(value: Any, _type: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value):
        return tuple(x.lower() for x in value)
    raise _Bad("must be a list of language names")


def _pruning(value: Any, _type: Any) -> PruningConfig | None:
    if value is None or isinstance(value, PruningConfig):
        return value
    try:  # value: the current config's fields with the client's non-null ones over them
        return PruningConfig(
            alpha=float(value["alpha"]), layers=value["layers"], mode=value["mode"]
        )
    except (TypeError, ValueError) as e:
        raise _Bad(str(e)) from None


# field -> (client key, check); a key absent here is structured as its plain type.
_SIMILARITY_KEYS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "enabled": ("enabled", lambda v, _t: bool(v)),
    "threshold": ("threshold", _number(-1.0, 1.0)),
    "max_results": ("maxResults", _number(0, 100, int)),
}
_KEYS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "threshold": ("threshold", _number(0.0, 1.0)),
    "flag_budget": ("flagBudget", _number(0.0, 1.0)),
    "severity": ("severity", _choice(SEVERITIES)),
    "debounce_ms": ("debounceMs", _number(0, 60_000, int)),
    "device": ("device", _choice(DEVICES)),
    "threads": ("threads", _number(1, 256, int)),
    "model": ("model", lambda v, _t: str(v) if v else None),
    "max_tokens": ("maxTokens", _number(8, 100_000, int)),
    "max_file_size": ("maxFileSize", _number(1, 1 << 40, int)),
    "line_hints": ("lineHints", _flag),
    "languages": ("languages", _languages),
    "pruning": ("pruning", _pruning),
}
# Keys whose bad value means unset (the model's own) rather than the previous value.
_UNSET_IF_BAD = {"threshold", "threads", "max_tokens"}
# Keys that cannot be unset: null (an editor's declared default) keeps the previous value.
_KEEP_IF_NULL = {"flagBudget", "debounceMs", "maxFileSize", "similarity.maxResults"}


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)

    def hooks(keys: dict[str, tuple[str, Callable[[Any, Any], Any]]]) -> dict[str, Any]:
        return {f: override(rename=k, struct_hook=check) for f, (k, check) in keys.items()}

    conv.register_structure_hook(
        SimilaritySettings,
        make_dict_structure_fn(SimilaritySettings, conv, **hooks(_SIMILARITY_KEYS)),
    )
    conv.register_structure_hook(Settings, make_dict_structure_fn(Settings, conv, **hooks(_KEYS)))
    return conv


_CONVERTER = _converter()


def _client_form(base: Settings) -> dict[str, Any]:
    """`base` under the client's keys, the starting point every key of a message lands on."""
    out: dict[str, Any] = {k: getattr(base, f) for f, (k, _) in _KEYS.items()}
    out["similarity"] = {
        _SIMILARITY_KEYS[f.name][0]: getattr(base.similarity, f.name)
        for f in fields(SimilaritySettings)
    }
    return out


def _refused(e: cattrs.ClassValidationError, prefix: str = "") -> list[tuple[str, str, str]]:
    """(field path, client key, what was wrong) per refused value, nested sections included."""
    out = []
    for ex in e.exceptions:
        notes = [
            n for n in getattr(ex, "__notes__", []) if isinstance(n, cattrs.AttributeValidationNote)
        ]
        name = notes[0].name if notes else "?"
        keys = _SIMILARITY_KEYS if prefix else _KEYS
        key = prefix + keys.get(name, (name, None))[0]
        if isinstance(ex, cattrs.ClassValidationError):
            out += [(f"{name}.{p}", k, m) for p, k, m in _refused(ex, key + ".")]
        else:
            out.append((name, key, str(ex)))
    return out


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Settings from a client's JSON object (nested or dotted keys), each key over `base`.
    Returns (settings, errors)."""
    base = base or Settings()
    if raw is None:
        return base, []
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
    flat = {k: v for k, v in flat.items() if v is not None or k not in _KEEP_IF_NULL}
    data = _client_form(base)
    known = {k for k, _ in _KEYS.values()} - {"pruning"}
    data.update({k: v for k, v in flat.items() if k in known})
    data["similarity"].update(
        {k[11:]: v for k, v in flat.items() if k.startswith("similarity.") and k[11:] != ""}
    )
    # null means "the model's own setting" (editors send their declared defaults).
    prune = {k[8:]: v for k, v in flat.items() if k.startswith("pruning.") and v is not None}
    if prune:
        current = base.pruning or PruningConfig()
        data["pruning"] = {
            "alpha": current.alpha,
            "layers": current.layers,
            "mode": current.mode,
            **prune,
        }
    errors: list[str] = []
    for _ in range(len(data) + len(data["similarity"]) + 1):  # each round drops >= 1 value
        try:
            return _CONVERTER.structure(data, Settings), errors
        except cattrs.ClassValidationError as e:
            for path, key, why in _refused(e):
                errors.append(f"alpine.{key}: {why}" if key == "pruning" else f"alpine.{key} {why}")
                if "." in path:  # a similarity key
                    name = path.split(".", 1)[1]
                    old = None if name == "threshold" else getattr(base.similarity, name)
                    data["similarity"][_SIMILARITY_KEYS[name][0]] = old
                else:
                    data[key] = None if path in _UNSET_IF_BAD else getattr(base, path)
    return base, errors  # not reached: every value dropped is `base`'s own, which passes
