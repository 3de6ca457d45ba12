"""The `alpine` settings section as clients send it: every key, its bounds, and a bad value
falling back to what was there with one message naming the key (a typo never stops the server)."""

from __future__ import annotations

import pytest

from alpine_lsp.engine.settings import Settings, SimilaritySettings, parse_settings
from alpine_lsp.pruning import PruningConfig

FULL = {
    "threshold": 0.7,
    "flagBudget": 0.1,
    "severity": "Hint",
    "debounceMs": 150,
    "device": "CPU",
    "threads": 2,
    "model": "/models/m",
    "maxTokens": 256,
    "maxFileSize": 1000,
    "lineHints": False,
    "languages": ["C", "python"],
    "pruning": {"alpha": 0.5, "layers": "0,2", "mode": "drop"},
    "similarity": {"enabled": False, "threshold": 0.9, "maxResults": 5},
}


def test_every_key_is_read() -> None:
    s, errors = parse_settings(FULL)
    assert not errors
    assert s == Settings(
        threshold=0.7,
        flag_budget=0.1,
        severity="hint",
        debounce_ms=150,
        device="cpu",
        threads=2,
        model="/models/m",
        max_tokens=256,
        max_file_size=1000,
        line_hints=False,
        languages=("c", "python"),
        pruning=PruningConfig(alpha=0.5, layers=(0, 2), mode="drop"),
        similarity=SimilaritySettings(enabled=False, threshold=0.9, max_results=5),
    )
    assert isinstance(s.debounce_ms, int) and isinstance(s.threshold, float)


def test_the_alpine_wrapper_and_dotted_keys_read_the_same() -> None:
    dotted = {k: v for k, v in FULL.items() if k not in ("pruning", "similarity")}
    dotted.update({f"pruning.{k}": v for k, v in FULL["pruning"].items()})
    dotted.update({f"similarity.{k}": v for k, v in FULL["similarity"].items()})
    want = parse_settings(FULL)
    assert parse_settings({"alpine": FULL}) == want
    assert parse_settings(dotted) == want


def test_nothing_or_not_an_object() -> None:
    base = Settings(debounce_ms=5)
    assert parse_settings(None, base) == (base, [])
    s, errors = parse_settings([1, 2], base)
    assert s == base and errors == ["alpine settings must be an object, got list"]
    assert parse_settings({"unknownKey": 1, "threshold": 0.5})[0].threshold == 0.5


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (
            {"threshold": 1.5},
            "threshold",
            "alpine.threshold must be a number in [0.0, 1.0], got 1.5",
        ),
        ({"threshold": "high"}, "threshold", "alpine.threshold must be a number"),
        ({"threshold": True}, "threshold", "alpine.threshold must be a number"),
        ({"flagBudget": -0.1}, "flag_budget", "alpine.flagBudget must be a number"),
        ({"severity": "loud"}, "severity", "alpine.severity must be one of error, warning"),
        ({"debounceMs": 70_000}, "debounce_ms", "alpine.debounceMs must be a number in [0, 60000]"),
        ({"device": "tpu"}, "device", "alpine.device must be one of auto, cpu, cuda"),
        ({"threads": 0}, "threads", "alpine.threads must be a number in [1, 256]"),
        ({"maxTokens": 4}, "max_tokens", "alpine.maxTokens must be a number in [8, 100000]"),
        ({"maxFileSize": 0}, "max_file_size", "alpine.maxFileSize must be a number"),
        ({"lineHints": "yes"}, "line_hints", "alpine.lineHints must be true or false, got 'yes'"),
        ({"languages": "c"}, "languages", "alpine.languages must be a list of language names"),
        ({"languages": ["c", 3]}, "languages", "alpine.languages must be a list of language names"),
        ({"pruning": {"alpha": -1}}, "pruning", "alpine.pruning: "),
        ({"pruning": {"mode": "squash"}}, "pruning", "alpine.pruning: "),
        ({"pruning": {"layers": "top"}}, "pruning", "alpine.pruning: "),
        ({"similarity": {"maxResults": 500}}, "similarity", "alpine.similarity.maxResults must"),
    ],
)
def test_a_bad_value_keeps_the_previous_one_and_says_which_key(raw, field, message) -> None:
    base, _ = parse_settings({**FULL, "threshold": 0.6, "threads": 3, "maxTokens": 300})
    s, errors = parse_settings({**raw, "debounceMs": 42} if "debounceMs" not in raw else raw, base)
    assert len(errors) == 1 and errors[0].startswith(message), errors
    if field in ("threshold", "threads", "max_tokens"):  # nullable: a bad value means "unset"
        assert getattr(s, field) is None
    else:
        assert getattr(s, field) == getattr(base, field)
    if "debounceMs" not in raw:
        assert s.debounce_ms == 42  # the other keys of the same message still apply


def test_null_means_the_default_or_the_models_own() -> None:
    base, _ = parse_settings(FULL)
    s, errors = parse_settings(
        {"threshold": None, "threads": None, "maxTokens": None, "model": "", "languages": None},
        base,
    )
    assert not errors
    assert (s.threshold, s.threads, s.max_tokens, s.model, s.languages) == (None,) * 5
    # Keys that cannot be unset keep what they had.
    keep = {"flagBudget": None, "debounceMs": None, "maxFileSize": None}
    s, errors = parse_settings({**keep, "similarity": {"maxResults": None}}, base)
    assert not errors and s == base
    # Editors send their declared defaults: a null pruning key keeps the current value.
    s, errors = parse_settings({"pruning": {"alpha": None, "layers": None, "mode": "merge"}}, base)
    assert not errors and s.pruning == PruningConfig(alpha=0.5, layers=(0, 2), mode="merge")
    s, _ = parse_settings({"similarity": {"threshold": None}}, base)
    assert s.similarity == SimilaritySettings(enabled=False, threshold=None, max_results=5)


def test_settings_build_on_the_previous_ones() -> None:
    base, _ = parse_settings(FULL)
    s, errors = parse_settings({"debounceMs": 10}, base)
    assert not errors and s == Settings(**{**base.__dict__, "debounce_ms": 10})
