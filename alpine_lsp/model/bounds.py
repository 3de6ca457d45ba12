"""Bounds on a model directory, checked before anything is built from it.

A model directory can come from settings, so it is untrusted input: a config with huge sizes
would allocate gigabytes, and a regex with catastrophic backtracking run by Python's `re` holds
the GIL and freezes the whole server. Here sizes are checked against limits (and the parameter
count they imply against a memory budget) and every regex is checked for a shape that Python's
backtracking engine runs in linear time:
- no backreferences, lookarounds, conditionals or possessive/atomic tricks;
- an unbounded (or large) repeat applies to one character (a literal, a class, `.`, `\\w`...)
  and ends its alternative, so a greedy match never has to give characters back;
- small bounded repeats (`?`, `{0,4}`) of one character anywhere.
Every regex of the bundled model passes; `(a+)+b`, `(a|aa)*c`, `\\d+\\d+x` do not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .score import ModelLoadError

try:  # Python 3.11+: the regex parser lives in re._parser
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

MAX_PATTERN_CHARS = 2_000
SMALL_REPEAT = 4
MAX_JSON_BYTES = {"config.json": 1 << 20, "alpine.json": 1 << 20, "tokenizer.json": 64 << 20}
MAX_LEXICAL_JSON_BYTES = 256 << 20
CONFIG_LIMITS = {
    "num_hidden_layers": (1, 48),
    "hidden_size": (8, 4096),
    "intermediate_size": (8, 16_384),
    "num_attention_heads": (1, 64),
    "vocab_size": (8, 1_000_000),
    "max_position_embeddings": (8, 16_384),
    "type_vocab_size": (1, 16),
}
MAX_PARAMETERS = 150_000_000  # fp32 on CPU: 600 MB, under the 1 GB the server may use
MAX_LEXICAL_VOCAB = 2_000_000
MAX_NGRAM = 4

_ONE_CHAR = {_c.LITERAL, _c.NOT_LITERAL, _c.IN, _c.ANY, _c.CATEGORY}
_FORBIDDEN = {_c.GROUPREF, _c.GROUPREF_EXISTS, _c.ASSERT, _c.ASSERT_NOT}
_REPEATS = {_c.MAX_REPEAT, _c.MIN_REPEAT}


def check_regex(pattern: Any, where: str) -> None:
    """Raise ModelLoadError unless `pattern` is a regex Python's engine runs in linear time."""
    if not isinstance(pattern, str):
        raise ModelLoadError(f"{where}: a regex must be a string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ModelLoadError(f"{where}: regex longer than {MAX_PATTERN_CHARS} characters")
    try:
        tree = _sre_parse.parse(pattern)
    except Exception as e:  # re.error, RecursionError on absurd nesting
        raise ModelLoadError(f"{where}: not a valid regex: {e}") from None
    reason = _linear(list(tree), depth=0)
    if reason:
        raise ModelLoadError(f"{where}: regex {pattern[:80]!r} refused: {reason}")


def _linear(seq: list, depth: int) -> str | None:
    if depth > 20:
        return "nested too deeply"
    for i, (op, arg) in enumerate(seq):
        last = i == len(seq) - 1
        if op in _FORBIDDEN or str(op) in ("ATOMIC_GROUP", "POSSESSIVE_REPEAT"):
            return f"{str(op).lower()} is not allowed"
        if op in _REPEATS:
            _lo, hi, body = arg
            body = list(body)
            one_char = len(body) == 1 and body[0][0] in _ONE_CHAR
            if not one_char:
                return "a repeat of more than one character (nested or overlapping quantifiers)"
            if (hi is _c.MAXREPEAT or hi > SMALL_REPEAT) and not last:
                return "an unbounded repeat that is not at the end of its alternative"
        elif op is _c.BRANCH:
            for alt in arg[1]:
                if reason := _linear(list(alt), depth + 1):
                    return reason
            if not last:
                return "an alternation followed by more pattern"
        elif op is _c.SUBPATTERN:
            body = list(arg[-1])
            if reason := _linear(body, depth + 1):
                return reason
            if not last and any(o in _REPEATS or o is _c.BRANCH for o, _ in body):
                return "a group with repeats or alternatives followed by more pattern"
    return None


def read_bounded_json(path: Path, limit: int) -> dict:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelLoadError(f"{path}: {e.strerror or e}") from None
    if size > limit:
        raise ModelLoadError(f"{path} is {size} bytes, over the {limit}-byte limit")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise ModelLoadError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def _int(cfg: dict, key: str, where: Path) -> int:
    v = cfg.get(key)
    lo, hi = CONFIG_LIMITS[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ModelLoadError(f"{where}: {key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def check_config(cfg: dict, where: Path, embed_dim: int, max_tokens: int) -> None:
    """Sizes within limits and a parameter count within the memory budget."""
    n = {k: _int(cfg, k, where) for k in CONFIG_LIMITS if k in cfg or k != "type_vocab_size"}
    h, layers = n["hidden_size"], n["num_hidden_layers"]
    if h % n["num_attention_heads"]:
        raise ModelLoadError(f"{where}: hidden_size is not a multiple of num_attention_heads")
    if not 1 <= embed_dim <= 4096:
        raise ModelLoadError(f"alpine.json: embed_dim must be in [1, 4096], got {embed_dim}")
    if not 1 <= max_tokens <= n["max_position_embeddings"]:
        raise ModelLoadError(
            f"alpine.json: max_tokens {max_tokens} is outside [1, max_position_embeddings]"
        )
    params = (
        (n["vocab_size"] + n["max_position_embeddings"] + n.get("type_vocab_size", 1)) * h
        + layers * (4 * h * h + 2 * h * n["intermediate_size"] + 9 * h)
        + 2 * h * embed_dim
    )
    if params > MAX_PARAMETERS:
        raise ModelLoadError(
            f"{where}: these sizes mean {params / 1e6:.0f}M parameters, over the "
            f"{MAX_PARAMETERS / 1e6:.0f}M this server loads"
        )


def check_tokenizer(path: Path) -> None:
    """Every regex in tokenizer.json (pre-tokenizers, normalizers: `Regex` entries)."""
    data = read_bounded_json(path, MAX_JSON_BYTES["tokenizer.json"])
    stack: list[tuple[Any, str]] = [({k: v for k, v in data.items() if k != "model"}, "")]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "Regex":
                    check_regex(v, f"{path}{at}/Regex")
                else:
                    stack.append((v, f"{at}/{k}"))
        elif isinstance(node, list):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(node))


def check_lexical(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ModelLoadError(f"{path}: {e.strerror or e}") from None
    if size > MAX_LEXICAL_JSON_BYTES:
        raise ModelLoadError(f"{path} is {size} bytes, over the {MAX_LEXICAL_JSON_BYTES} limit")
    data = read_bounded_json(path, MAX_LEXICAL_JSON_BYTES)
    check_regex(data.get("token_pattern"), f"{path}: token_pattern")
    vocab = data.get("vocabulary")
    if not isinstance(vocab, list) or len(vocab) > MAX_LEXICAL_VOCAB:
        raise ModelLoadError(f"{path}: vocabulary must be a list of at most {MAX_LEXICAL_VOCAB}")
    ngrams = data.get("ngram_range")
    ok = (
        isinstance(ngrams, list)
        and len(ngrams) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in ngrams)
        and 1 <= ngrams[0] <= ngrams[1] <= MAX_NGRAM
    )
    if not ok:
        raise ModelLoadError(f"{path}: ngram_range must be [lo, hi] with 1 <= lo <= hi <= 4")
