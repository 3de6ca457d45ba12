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
import json.decoder
import json.scanner
import os
import re
import stat
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
MAX_JSON_BYTES = {
    "config.json": 1 << 20,
    "alpine.json": 1 << 20,
    "tokenizer.json": 64 << 20,
    "fused_head.json": 1 << 20,
    "cwe.json": 16 << 20,
}
# The bundled lexical.json holds 200k terms in 3 MB; 64 MB is 2M terms of 28 bytes. Parsed, a
# file at the limit takes about 450 MB for a moment (was 256 MB: over 1 GB with the server).
MAX_LEXICAL_JSON_BYTES = 64 << 20
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


# Up to this size a JSON file is parsed by json.loads in one C call, which holds the GIL
# throughout (about 65 ms per MB for the slowest shape, an object of small entries, measured on
# 2 busy cores): at most about a quarter second in which the server answers nothing. Larger
# files go through `loads_yielding`, which gives the GIL up between values.
FAST_JSON_BYTES = 4 << 20
# Values (scalars, containers and object keys) a file above FAST_JSON_BYTES may hold: a few
# bytes of JSON (`0,`) become a 32-byte object and an 8-byte pointer, so a size bound alone
# lets a file under it take gigabytes once parsed.
MAX_JSON_VALUES = {"tokenizer.json": 6_000_000}
DEFAULT_MAX_VALUES = 1_000_000
MAX_JSON_DEPTH = 64


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. Opened without blocking (a FIFO
    swapped in after a check cannot hang the load), checked on the open descriptor, and never
    read past the limit (a file that grows meanwhile is refused, not read whole)."""
    with open_regular(path) as f:
        st = os.fstat(f.fileno())
        if st.st_size > limit:
            raise ModelLoadError(f"{path} is {st.st_size} bytes, over the {limit}-byte limit")
        chunks, got = [], 0
        while got <= limit:  # each read releases the GIL
            chunk = f.read(min(1 << 22, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    if got > limit:
        raise ModelLoadError(f"{path} grew past the {limit}-byte limit while being read")
    return b"".join(chunks)


def read_bounded_json(path: Path, limit: int, max_values: int | None = None) -> dict:
    """A JSON object from a file of at most `limit` bytes; above FAST_JSON_BYTES parsed so
    that the GIL is given up between values, with at most `max_values` values."""
    return _read_json_text(path, limit, max_values)[0]


def _read_json_text(path: Path, limit: int, max_values: int | None = None) -> tuple[dict, str]:
    raw = read_bounded(path, limit)
    try:
        text = raw.decode("utf-8")
        del raw
        if len(text) <= FAST_JSON_BYTES:
            data = json.loads(text)
        else:
            cap = max_values or MAX_JSON_VALUES.get(path.name, DEFAULT_MAX_VALUES)
            data = loads_yielding(text, cap)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError too
        raise ModelLoadError(f"{path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data, text


_WS = re.compile(r"[ \t\n\r]*")
_SCANNER = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


def loads_yielding(s: str, max_values: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, but containers are walked here, in Python, and only scalars are left to the
    C scanner: the thread runs bytecode between values, so it gives the GIL up every switch
    interval (5 ms) instead of holding it for the whole file, and the number of values and the
    nesting are counted as it goes (ValueError past `max_values` or `max_depth`). About 5x
    slower than json.loads; used only for large files."""
    scan = _SCANNER  # scalars only: strings, numbers, true/false/null, NaN
    scanstring = json.decoder.scanstring  # type: ignore[attr-defined]
    ws = _WS.match
    n = len(s)
    stack: list = []  # open containers, innermost last
    keys: list[str] = []  # the key awaiting its value, per open object
    count = 0

    def key_at(i: int) -> tuple[str, int]:
        if s.startswith('"', i):
            k, i = scanstring(s, i + 1)
            i = ws(s, i).end()
            if s.startswith(":", i):
                return k, ws(s, i + 1).end()
        raise ValueError(f"expecting a property name and ':' at char {i}")

    i = ws(s, 0).end()
    while True:
        count += 1
        if count > max_values:
            raise ValueError(f"more than {max_values} values")
        c = s[i : i + 1]
        if c == "{" or c == "[":
            if len(stack) >= max_depth:
                raise ValueError(f"nested deeper than {max_depth}")
            i = ws(s, i + 1).end()
            if s.startswith("}" if c == "{" else "]", i):
                value: Any = {} if c == "{" else []
                i += 1
            else:
                stack.append({} if c == "{" else [])
                if c == "{":
                    k, i = key_at(i)
                    keys.append(k)
                    count += 1
                continue  # the container's first value
        else:
            try:
                value, i = scan(s, i)
            except StopIteration:
                raise ValueError(f"expecting a value at char {i}") from None
        # `value` is complete: put it in its container; close the containers it completes.
        while True:
            if not stack:
                if ws(s, i).end() != n:
                    raise ValueError(f"extra data at char {i}")
                return value
            top = stack[-1]
            if type(top) is list:
                top.append(value)
            else:
                top[keys.pop()] = value
            i = ws(s, i).end()
            c = s[i : i + 1]
            if c == ",":
                i = ws(s, i + 1).end()
                if type(top) is dict:
                    k, i = key_at(i)
                    keys.append(k)
                    count += 1
                break  # the next value of `top`
            if c != ("]" if type(top) is list else "}"):
                raise ValueError(f"expecting ',' or a closing bracket at char {i}")
            i += 1
            value = stack.pop()


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


# dtype name -> bytes per element, for the dtypes a model directory's weights may have
SAFETENSORS_DTYPES = {"F16": 2, "BF16": 2, "F32": 4}


def open_regular(path: Path):
    """A regular file opened for reading (binary, unbuffered), or ModelLoadError. Opened
    without blocking, so a FIFO swapped in after a check cannot hang the load, and checked
    on the descriptor, so what is read is what was checked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ModelLoadError(f"{path}: {e.strerror or e}") from None
    f = os.fdopen(fd, "rb", buffering=0)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise ModelLoadError(f"{path} is not a regular file")
    return f


def safetensors_layout(
    f, path: Path, expected: dict[str, tuple[int, ...] | None], fits: str
) -> tuple[int, dict[str, tuple[str, tuple[int, ...], int, int]]]:
    """The header of an open safetensors file, checked before any tensor is read: exactly the
    tensors `expected` (name -> shape, None: any shape), float dtypes, offsets that tile the
    data inside the file. A lying header (a million tiny tensors, offsets past the end, a huge
    length) is refused in milliseconds instead of being turned into tensors. Names or shapes
    that differ raise "does not fit `fits`"; a broken header "damaged or truncated".
    Returns (where the data starts, {name: (dtype, shape, start, end)}), offsets into the file.
    """

    def damaged(why: str) -> ModelLoadError:
        return ModelLoadError(f"{path} is damaged or truncated: {why}")

    size = os.fstat(f.fileno()).st_size
    limit = 4096 + 256 * len(expected)  # a header entry is under 200 bytes
    head = f.read(8)
    if len(head) < 8:
        raise damaged("shorter than a safetensors header")
    n = int.from_bytes(head, "little")
    if n > limit or 8 + n > size:
        raise damaged(f"header length {n} (at most {min(limit, size - 8)} here)")
    raw = f.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise damaged(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise damaged("header is not a JSON object")
    header.pop("__metadata__", None)
    names, want = set(header), set(expected)
    if names != want:
        missing, extra = sorted(want - names), sorted(names - want)
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors ({', '.join(missing[:3])})")
        if extra:
            parts.append(f"{len(extra)} unexpected ({', '.join(extra[:3])})")
        raise ModelLoadError(f"{path} does not fit {fits}: {'; '.join(parts)}")
    layout = {}
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise damaged(f"tensor {name} has no description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise damaged(f"tensor {name} has dtype {dtype!r} (float16, bfloat16, float32 only)")
        if not (
            isinstance(shape, list)
            and len(shape) <= 8
            and all(type(d) is int and 0 <= d <= MAX_PARAMETERS for d in shape)
        ):
            raise damaged(f"tensor {name} has shape {shape!r}")
        if expected[name] is not None and tuple(shape) != tuple(expected[name]):  # type: ignore[arg-type]
            raise ModelLoadError(
                f"{path} does not fit {fits}: {name} has shape {shape}, "
                f"the network's is {list(expected[name])}"  # type: ignore[arg-type]
            )
        numel = 1
        for d in shape:
            numel *= d
        ok = (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(x) is int for x in offsets)
            and offsets[0] >= 0
            and offsets[1] - offsets[0] == numel * SAFETENSORS_DTYPES[dtype]
        )
        if not ok:
            raise damaged(f"tensor {name} has data_offsets {offsets!r} for its shape")
        layout[name] = (dtype, tuple(shape), 8 + n + offsets[0], 8 + n + offsets[1])
    at = 8 + n
    for _dtype, _shape, lo, hi in sorted(layout.values(), key=lambda t: t[2]):
        if lo != at:
            raise damaged("tensor data overlaps or leaves gaps")
        at = hi
    if at > size:
        raise damaged(f"the header describes {at - 8 - n} bytes of data, the file holds less")
    return 8 + n, layout


def check_safetensors(path: Path, expected: dict[str, tuple[int, ...] | None], fits: str) -> None:
    """safetensors_layout on a path: for the small files read by safetensors itself."""
    with open_regular(path) as f:
        safetensors_layout(f, path, expected, fits)


def check_tokenizer(path: Path) -> str:
    """Every regex in tokenizer.json (pre-tokenizers, normalizers: `Regex` entries). Returns
    the text checked, for the tokenizer to be built from (never a second read of the file,
    which could have been swapped meanwhile)."""
    data, text = _read_json_text(path, MAX_JSON_BYTES["tokenizer.json"])
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
    return text


def check_lexical(path: Path) -> dict:
    """lexical.json (or the fused head's fused_lexical.json): bounded, its token_pattern linear,
    its vocabulary and n-gram range within limits. Returns the parsed file, for the model to be
    built from (never a second read)."""
    data = read_bounded_json(path, MAX_LEXICAL_JSON_BYTES, MAX_LEXICAL_VOCAB + 100)
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
    return data
