"""One loader for every labelled defect source in ../shared/data, with label leaks removed.

Every source comes back as `Row`s carrying the split (from the source's split.json), the
language and the text a model may see. Leaks are removed here, before any training or
evaluation code reads the text:

- juliet_java: comments go (FLAW / FIX / POTENTIAL FLAW sit in both kinds of method), every
  `bad*`/`good*`/`helperBad*`/`helperGood*` identifier becomes one neutral name, and class or
  identifier names that carry the CWE (`CWE113_HTTP_Response_Splitting__..._06`) become one
  neutral class name.
- semgrep_tests: comments go (`// ok`, `# ruleid` leftovers) and identifiers such as `bad6`,
  `ok10`, `goodNormal`, `test_bad` become one neutral name.

A missing or corrupt file, or a row without the fields, raises SourceError naming the file and
the row, before any caller can start a training step.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The shared row format (README of ../shared/data); Devign and c_corpus have their own.
ROW_SOURCES = (
    "sven",
    "manysstubs4j",
    "juliet_java",
    "semgrep_tests",
    "cyberseceval",
    "vuldetectbench",
)
LABELLED = ("devign", *ROW_SOURCES)
ALL_SOURCES = (*LABELLED, "c_corpus")
# Sources that no training reads, and why (the one list: `train defect` and the fused head).
UNTRAINABLE = {"vuldetectbench": "a test set only", "c_corpus": "unlabelled"}
TRAINABLE = tuple(s for s in LABELLED if s not in UNTRAINABLE)
LANGS = ("c", "cpp", "java", "python", "javascript", "typescript", "go", "rust")
REQUIRED = ("id", "language", "func", "target")


class SourceError(ValueError):
    """A source file that cannot be used, with the file and row named."""


@dataclass(frozen=True)
class Row:
    id: str
    source: str
    project: str
    language: str
    text: str  # leak-free text: what every model and baseline sees
    target: int  # 1 vulnerable/buggy, 0 not, -1 unlabelled (c_corpus)
    pair: str | None
    split: str  # train | valid | test | none


# -- comments -------------------------------------------------------------------------------
_C_LIKE = re.compile(
    r"""(?P<s>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`)"""
    r"""|(?P<c>//[^\n]*|/\*.*?\*/)""",
    re.S,
)
_PY = re.compile(
    r"""(?P<s>[rRbBuUfF]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))"""
    r"""|(?P<c>\#[^\n]*)""",
    re.S,
)


def strip_comments(code: str, language: str) -> str:
    """Remove comments, leaving strings alone; a block comment keeps its newlines so line
    numbers stay valid. Lines left blank by a removed comment are kept (as empty lines)."""
    pattern = _PY if language == "python" else _C_LIKE

    def repl(m: re.Match) -> str:
        if m.group("s") is not None:
            return m.group("s")
        return "\n" * m.group("c").count("\n")

    out = pattern.sub(repl, code)
    return "\n".join(line.rstrip() for line in out.split("\n"))


# -- leaky names ----------------------------------------------------------------------------
_JULIET_NAME = re.compile(r"\b(?:helper)?(?:[Bb]ad|[Gg]ood)[A-Za-z0-9_]*\b")
_JULIET_CLASS = re.compile(r"\bCWE\d+_[A-Za-z0-9_]*\b")
# bad6, ok10, goodNormal, test_bad, badFunc, unsafe_1 ... but not `unsafe` (Go's package,
# a real signal) or words that merely start the same (`okay`, `goodness` stay).
_SEMGREP_NAME = re.compile(
    r"\b(?i:(?:test_?)?(?:bad|good|ok|safe|unsafe|vuln|vulnerable|insecure|secure|noncompliant|"
    r"compliant|tp|fp|tn|fn|true_?positive|false_?positive))(?:[_0-9][A-Za-z0-9_]*|[A-Z][A-Za-z0-9_]*)"
    r"\b|\b(?i:test_?(?:bad|good|ok|safe|vuln|insecure|secure))\b|\b(?:bad|good|ok)\b"
)


def clean_juliet(code: str) -> str:
    code = strip_comments(code, "java")
    code = _JULIET_CLASS.sub("TestCase", code)
    return _JULIET_NAME.sub("method", code)


def clean_semgrep(code: str, language: str) -> str:
    code = strip_comments(code, language)
    return _SEMGREP_NAME.sub("fn_name", code)


def clean_text(source: str, code: str, language: str) -> str:
    if source == "juliet_java":
        return clean_juliet(code)
    if source == "semgrep_tests":
        return clean_semgrep(code, language)
    return code


# -- reading --------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    if not path.is_file():
        raise SourceError(f"{path}: file is missing")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SourceError(f"{path}: row {n}: not valid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise SourceError(f"{path}: row {n}: not a JSON object")
                yield n, obj
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: corrupt or not gzip ({e})") from None


def _read_split(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise SourceError(f"{path}: file is missing")
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(split, dict) or not all(k in split for k in ("train", "valid", "test")):
        raise SourceError(f"{path}: expected an object with train, valid and test id lists")
    out: dict[str, str] = {}
    for name in ("train", "valid", "test"):
        ids = split[name]
        if not isinstance(ids, list):
            raise SourceError(f"{path}: {name} is not a list of ids")
        for i in ids:
            out[str(i)] = name
    return out


def _check_row(path: Path, n: int, obj: dict, fields: tuple[str, ...]) -> None:
    missing = [k for k in fields if k not in obj]
    if missing:
        raise SourceError(f"{path}: row {n}: missing field(s) {', '.join(missing)}")
    if not isinstance(obj["func"], str) or not obj["func"].strip():
        raise SourceError(f"{path}: row {n}: func is not a non-empty string")
    if "target" in fields and obj["target"] not in (0, 1):
        raise SourceError(f"{path}: row {n}: target must be 0 or 1, got {obj['target']!r}")
    if "language" in fields and obj["language"] not in LANGS:
        raise SourceError(f"{path}: row {n}: unknown language {obj['language']!r}")


def load_source(name: str, data_root: str | Path, limit: int = 0, seed: int = 7) -> list[Row]:
    """Rows of one source, leak-free. `limit` > 0 keeps a seeded sample (c_corpus: required
    in practice, it holds 120,000 functions)."""
    root = Path(data_root)
    if name not in ALL_SOURCES:
        raise SourceError(f"unknown source {name!r}; known: {', '.join(ALL_SOURCES)}")
    d = root / name
    if not d.is_dir():
        raise SourceError(f"{d}: source folder is missing")
    rows: list[Row] = []
    if name == "devign":
        path = d / "devign.jsonl.gz"
        split = _read_split(d / "split.json")
        for n, obj in _read_jsonl(path):
            _check_row(path, n, obj, ("id", "func", "target"))
            rid = str(obj["id"])
            rows.append(
                Row(
                    rid,
                    "devign",
                    str(obj.get("project", "")),
                    "c",
                    obj["func"],
                    int(obj["target"]),
                    None,
                    split.get(rid, "none"),
                )
            )
    elif name == "c_corpus":
        path = d / "functions.jsonl.gz"
        for n, obj in _read_jsonl(path):
            _check_row(path, n, obj, ("id", "func"))
            rows.append(
                Row(
                    str(obj["id"]),
                    name,
                    str(obj.get("source", "")),
                    "c",
                    obj["func"],
                    -1,
                    None,
                    "none",
                )
            )
    else:
        path = d / "functions.jsonl.gz"
        split = _read_split(d / "split.json")
        for n, obj in _read_jsonl(path):
            _check_row(path, n, obj, REQUIRED)
            rid, lang = str(obj["id"]), str(obj["language"])
            pair = obj.get("pair")
            rows.append(
                Row(
                    rid,
                    name,
                    str(obj.get("project") or ""),
                    lang,
                    clean_text(name, obj["func"], lang),
                    int(obj["target"]),
                    str(pair) if pair else None,
                    split.get(rid, "none"),
                )
            )
    if not rows:
        raise SourceError(f"{d}: no rows")
    if limit and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    return rows


def load_sources(
    names: Iterable[str], data_root: str | Path, limits: dict[str, int] | None = None
) -> dict[str, list[Row]]:
    """Every named source read and checked before anything else runs."""
    limits = limits or {}
    return {n: load_source(n, data_root, limits.get(n, 0)) for n in names}


def parse_weights(spec: str) -> dict[str, float]:
    """`devign:1,sven:3` -> {"devign": 1.0, "sven": 3.0}; a bare name weighs 1."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, w = part.partition(":")
        if name not in ALL_SOURCES:
            raise SourceError(f"unknown source {name!r}; known: {', '.join(ALL_SOURCES)}")
        try:
            out[name] = float(w) if w else 1.0
        except ValueError:
            raise SourceError(f"weight of {name} is not a number: {w!r}") from None
    return out


def pairs_of(rows: list[Row]) -> list[tuple[int, int]]:
    """(index of the vulnerable half, index of its fix) for every complete pair in `rows`."""
    by_pair: dict[str, dict[int, int]] = {}
    for i, r in enumerate(rows):
        if r.pair is not None and r.target in (0, 1):
            by_pair.setdefault(r.pair, {})[r.target] = i
    return [(h[1], h[0]) for h in by_pair.values() if 0 in h and 1 in h]
