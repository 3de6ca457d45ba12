"""Label leaks out of the rows of the shared sets (the dataset README's caveats), line numbers kept.

Juliet and the Semgrep rule tests give their labels away in comments (`FLAW`, `// ok`), in names
(`bad`, `goodG2B`, `ok10`) and, in Juliet, in class names that contain the CWE. Before a model
sees such a row: comments become spaces (newlines kept, so `lines` still point at the right
line), leaking identifiers are renamed, consistently within the row.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

LINE_SETS = ("sven", "juliet_java", "semgrep_tests", "manysstubs4j", "cyberseceval")
CWE_SETS = ("sven", "juliet_java", "semgrep_tests", "cyberseceval")
LEAKY = ("juliet_java", "semgrep_tests")

_HASH_COMMENT = ("python",)
# Names that carry the label in these sets (bad*, good*, helperBad*, ok*, CWE123_*, ...).
_LEAK_NAME = re.compile(
    r"\b(?:[A-Za-z0-9]*_)?(?:(?:[Bb]ad|BAD|[Gg]ood|GOOD|helper(?:Bad|Good)|[Nn]on[Cc]ompliant"
    r"|[Cc]ompliant)[A-Za-z0-9_]*|(?:ok|Ok|OK|todook)(?:[0-9_A-Z][A-Za-z0-9_]*)?)\b"
    r"|\bCWE[0-9]+[A-Za-z0-9_]*\b"
)
# Real API names the pattern would catch (OkHttp appears in the rules' own tests).
_KEEP_PREFIX = ("okhttp",)


def _blank(s: str) -> str:
    return "".join(c if c in "\r\n" else " " for c in s)


def strip_comments(code: str, language: str) -> str:
    """Comments replaced by spaces, line breaks kept; strings are skipped over, not touched."""
    out: list[str] = []
    i, n = 0, len(code)
    hash_lang = language in _HASH_COMMENT
    while i < n:
        c = code[i]
        if (hash_lang and c == "#") or (not hash_lang and code.startswith("//", i)):
            j = code.find("\n", i)
            j = n if j < 0 else j
            out.append(_blank(code[i:j]))
            i = j
        elif not hash_lang and code.startswith("/*", i):
            j = code.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(_blank(code[i:j]))
            i = j
        elif c in "\"'`":
            quote = code[i : i + 3] if hash_lang and code[i : i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and not code.startswith(quote, j):
                if code[j] == "\\":
                    j += 1
                elif code[j] == "\n" and len(quote) == 1 and c != "`":
                    break  # an unterminated string ends at the line (a char like '"' in C)
                j += 1
            j = min(n, j + len(quote))
            out.append(code[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def rename_leaks(code: str) -> str:
    """Each distinct leaking identifier becomes `name1`, `name2`, ... in order of appearance."""
    seen: dict[str, str] = {}

    def sub(m: re.Match) -> str:
        w = m.group(0)
        if w.lower().startswith(_KEEP_PREFIX):
            return w
        if w not in seen:
            seen[w] = f"name{len(seen) + 1}"
        return seen[w]

    return _LEAK_NAME.sub(sub, code)


def clean(row: dict) -> str:
    """The text of a row as it may be shown to a model: unchanged, or without the leaks."""
    code = row["func"]
    if row.get("source") in LEAKY:
        code = rename_leaks(strip_comments(code, row.get("language", "")))
    return code


def load_rows(data_dir: str | Path) -> dict[str, list[dict]]:
    """Rows of a shared set in the common format, by split (train/valid/test)."""
    d = Path(data_dir)
    if not (d / "functions.jsonl.gz").is_file() or not (d / "split.json").is_file():
        raise FileNotFoundError(f"{d} lacks functions.jsonl.gz and split.json")
    rows = {}
    with gzip.open(d / "functions.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            rows[r["id"]] = r
    split = json.loads((d / "split.json").read_text())
    return {name: [rows[i] for i in ids if i in rows] for name, ids in split.items()}
