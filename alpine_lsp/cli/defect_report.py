"""The defect part of `check`'s JSON report: the top-ranked lines, the hint in words, the CWE.

Built from the engine's `build_hint`, as the server's diagnostic is, so both say the same.
JSON positions are 1-based; columns count code points and the end column is exclusive.
"""

from __future__ import annotations

from ..engine.hints import build_hint, describe
from ..model.score import FunctionScore
from ..parsing.functions import Function


def defect_json(f: Function, s: FunctionScore, text_lines: list[str], line_hints: bool) -> dict:
    hint = build_hint(f, s, text_lines, line_hints)
    return {
        "message": hint.message(),
        "cwe": [{"id": c, "name": describe(c), "probability": round(p, 4)} for c, p in hint.cwes],
        "lines": [
            {
                "line": r.line + 1,
                "start_col": r.start_col + 1,
                "end_col": r.end_col + 1,
                "share": round(r.share, 4),
                "words": r.words,
            }
            for r in hint.lines[:5]
        ],
    }
