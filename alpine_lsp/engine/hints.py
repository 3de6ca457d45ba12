"""What a defect hint says and where it points: the top-ranked line of a flagged function, the
next lines, the CWE guess, and the top line in words. Shared by the server and `check`; no LSP.

Positions are 0-based document lines and code-point columns (the engine's own units); callers
convert to the client's encoding. Words come from whole identifiers of the source line, never
from the tokenizer's sub-word pieces.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from ..model.cwe import OTHER, describe
from ..model.score import FunctionScore
from ..parsing.functions import Function
from .positions import lsp_lines

_IDENT = re.compile(r"[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*")
_CALL = re.compile(
    r"((?:[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*\s*(?:\.|->|::)\s*)*"
    r"[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*)\s*\("
)
_STRING = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'")
_NOT_CALLS = {
    "if",
    "for",
    "while",
    "switch",
    "return",
    "sizeof",
    "catch",
    "function",
    "elif",
    "and",
    "or",
    "not",
    "in",
    "def",
    "fn",
    "func",
    "assert",
    "print",
    "typeof",
    "new",
    "throw",
    "with",
    "lambda",
    "await",
    "yield",
    "defined",
    "alignof",
    "decltype",
    "foreach",
    "until",
    "match",
}
_KEYWORDS = _NOT_CALLS | {
    "int",
    "char",
    "void",
    "long",
    "short",
    "unsigned",
    "signed",
    "const",
    "static",
    "struct",
    "else",
    "do",
    "break",
    "continue",
    "goto",
    "case",
    "default",
    "true",
    "false",
    "null",
    "NULL",
    "None",
    "True",
    "False",
    "nullptr",
    "public",
    "private",
    "protected",
    "final",
    "try",
    "finally",
    "var",
    "let",
    "auto",
    "double",
    "float",
    "bool",
    "boolean",
    "String",
    "self",
    "this",
    "is",
    "pass",
    "import",
    "from",
    "class",
    "enum",
    "union",
    "extern",
    "size_t",
    "byte",
    "throws",
    "volatile",
    "register",
    "inline",
    "string",
}
MAX_RELATED = 2
SHOWN_LINES = 5  # lines a hover or `check` lists; a diagnostic needs 1 + MAX_RELATED
# Below this the CWE head's best guess stays in the hover and JSON, out of the message.
CWE_MIN = 0.25


@dataclass
class LineRef:
    line: int  # 0-based document line
    start_col: int  # first non-blank code point (the line's own text starts here)
    end_col: int  # end of the line's text, trailing blanks trimmed
    share: float
    words: str


@dataclass
class DefectHint:
    probability: float
    top: LineRef | None = None  # None: no ranked line, or line hints are off
    related: list[LineRef] = field(default_factory=list)
    lines: list[LineRef] = field(default_factory=list)  # every ranked line that maps back
    cwe: str | None = None  # best category, None without a CWE head or when it is "other"
    cwe_probability: float = 0.0
    cwe_name: str = ""
    cwes: list[tuple[str, float]] = field(default_factory=list)

    @property
    def weakness(self) -> str:
        return describe(self.cwe) if self.cwe else "defect"

    def message(self) -> str:
        head = f"possible {self.weakness}"
        head += (
            f" ({self.cwe}, p={self.probability:.2f})"
            if self.cwe
            else f" (p={self.probability:.2f})"
        )
        return f"{head}: {self.top.words}" if self.top and self.top.words else head


def parameters(function_text: str) -> list[str]:
    """Parameter names from a function's header (the text before its body), best effort."""
    return list(_parameters(function_text))


def _parameters(function_text: str) -> tuple[str, ...]:
    head = re.split(r"[{]|:\s*(?:\n|$)|=>", function_text, maxsplit=1)[0]
    if "(" not in head:
        return ()
    inner = head[head.index("(") + 1 : head.rindex(")") if ")" in head else len(head)]
    names = []
    for part in inner.split(","):
        part = part.split("=", 1)[0]
        # "b: int" (Python, TS) names first; "const char *src" (C, Java) names last.
        ids = [w for w in _IDENT.findall(part.split(":", 1)[0]) if w not in _KEYWORDS]
        if ids:
            names.append(ids[-1])
    return tuple(names)


def describe_line(text: str, params: list[str] | None = None, own: str = "") -> str:
    """A few words for what a source line does: 'memcpy with len from the caller', 'call to
    strcpy', 'write to buf[...]', 'condition on len'. Empty for a line without identifiers."""
    return _describe_line(text, tuple(params or ()), own)


CACHED_LINE = 300  # longer lines (minified code) are described anew, not kept


def _describe_line(text: str, params: tuple[str, ...], own: str) -> str:
    if len(text) <= CACHED_LINE:
        return _describe_short(text, params, own)
    return _describe(text, params, own)


# Every publish rebuilds the hints of all flagged functions, though an edit changes one: the
# words of unchanged lines come from here (keyed by the text itself, so never stale).
@functools.lru_cache(maxsize=4096)
def _describe_short(text: str, params: tuple[str, ...], own: str) -> str:
    return _describe(text, params, own)


def _describe(text: str, params: tuple[str, ...], own: str) -> str:
    code = _STRING.sub('""', text)
    code = re.split(r"//|#(?!include)|/\*", code, maxsplit=1)[0]
    if own and "{" in code and own in code.split("{", 1)[0]:
        code = code.split("{", 1)[1]  # a one-line function: say what its body does
    calls = []
    for m in _CALL.finditer(code):
        name = re.sub(r"\s+", "", m.group(1))
        last = re.split(r"\.|->|::", name)[-1]
        if last in _NOT_CALLS or name in calls or name == own:  # own: the function's header
            continue
        calls.append(name)
    idents = [w for w in _IDENT.findall(code) if w not in _KEYWORDS]
    from_caller = [p for p in params if p in idents]
    if calls:
        first = calls[0]
        if from_caller:
            args = [p for p in from_caller if p != first][:2]
            if args:
                return f"{first} with {' and '.join(args)} from the caller"
        if len(calls) == 1:
            return f"call to {first}"
        return f"calls to {', '.join(calls[:2])}" + (" and more" if len(calls) > 2 else "")
    stripped = code.strip()
    first_word = stripped.split(None, 1)[0] if stripped else ""
    names = list(dict.fromkeys(idents))
    if not names:
        return "return statement" if first_word == "return" else ""
    if first_word in ("if", "while", "for", "elif", "switch", "else"):
        return f"condition on {', '.join(names[:3])}"
    if first_word == "return":
        return f"return of {', '.join(names[:2])}"
    m = re.search(r"([\w\u00c0-\uffff.\->]+)\s*\[[^\]]*\]\s*(?:[-+*/|&^]|<<|>>)?=(?!=)", code)
    if m:
        return f"write to {m.group(1)}[…]"
    m = re.search(r"([\w\u00c0-\uffff.\->]+)\s*(?:[-+*/|&^]|<<|>>)?=(?!=)", code)
    if m and m.group(1) in names:
        rest = [n for n in names if n != m.group(1)][:2]
        return f"assignment to {m.group(1)}" + (f" from {', '.join(rest)}" if rest else "")
    return f"uses {', '.join(names[:3])}"


def build_hint(
    function: Function,
    score: FunctionScore,
    doc_lines: list[str] | None = None,
    line_hints: bool = True,
    shown: int = SHOWN_LINES,
) -> DefectHint:
    """The hint for one scored function; `doc_lines` are the document's LSP lines (for columns
    and clamping); without them the function's own text stands in. At most `shown` lines are
    described (the ranking carries up to MAX_LINES)."""
    hint = DefectHint(probability=score.probability, cwes=list(score.cwe))
    if score.cwe:
        best, p = score.cwe[0]
        if best != OTHER and p >= CWE_MIN:
            hint.cwe, hint.cwe_probability, hint.cwe_name = best, p, describe(best)
    if not line_hints or not score.lines:
        return hint
    own = lsp_lines(function.text)
    params = _parameters(function.text)
    for ln, share in score.lines:
        if len(hint.lines) >= shown:
            break
        if not 1 <= ln <= len(own):
            continue
        doc_line = function.start_line + ln - 1
        if doc_lines is not None:
            if not 0 <= doc_line < len(doc_lines):
                continue
            text = doc_lines[doc_line]
            lo = function.start_col if ln == 1 else 0
        else:
            text, lo = own[ln - 1], 0
        lo = max(0, min(lo, len(text)))
        start = lo + (len(text[lo:]) - len(text[lo:].lstrip()))
        end = len(text.rstrip())
        if end <= start:
            continue
        words = _describe_line(text[start:end], params, function.name)
        hint.lines.append(LineRef(doc_line, start, end, share, words))
    if hint.lines:
        hint.top = hint.lines[0]
        hint.related = hint.lines[1 : 1 + MAX_RELATED]
    return hint
