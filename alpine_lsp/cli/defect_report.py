"""The defect part of `check`'s JSON and SARIF: the top-ranked lines, the hint in words, the CWE.

Built from the engine's `build_hint`, as the server's diagnostic is, so both say the same.
JSON positions are 1-based; columns count code points and the end column is exclusive.
"""

from __future__ import annotations

from ..engine.hints import build_hint, describe
from ..engine.positions import lsp_lines
from ..model.score import FunctionScore
from ..parsing.functions import Function

CWE_TAXONOMY = "CWE"


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


def doc_lines(text: str) -> list[str]:
    return lsp_lines(text)


def sarif_defect(fn: dict, artifact: dict, name_loc: list[dict], md) -> dict:
    """One SARIF result for a flagged function of the JSON report (`fn`)."""
    d = fn.get("defect") or {}
    lines = d.get("lines") or []
    loc = name_loc
    if lines:
        top = lines[0]
        region = {
            "startLine": top["line"],
            "startColumn": top["start_col"],
            "endLine": top["line"],
            "endColumn": top["end_col"],
        }
        loc = [{"physicalLocation": {"artifactLocation": artifact, "region": region}}]
    message = d.get("message") or f"possible defect (p={fn['defect_probability']:.2f})"
    result = {
        "ruleId": "defect-risk",
        "ruleIndex": 0,
        "level": "warning",
        "message": {"text": f"{md(message)} in {md(fn['name'])}"},
        "locations": loc,
        "properties": {"defectProbability": fn["defect_probability"]},
    }
    related = [
        {
            "id": i + 1,
            "physicalLocation": {
                "artifactLocation": artifact,
                "region": {
                    "startLine": r["line"],
                    "startColumn": r["start_col"],
                    "endLine": r["line"],
                    "endColumn": r["end_col"],
                },
            },
            "message": {"text": f"also attended ({r['share']:.0%}): {r['words'] or 'this line'}"},
        }
        for i, r in enumerate(lines[1:3])
    ]
    if related:
        result["relatedLocations"] = related
    cwes = [c for c in d.get("cwe") or [] if c["id"].startswith("CWE-")]
    if cwes and cwes[0] is (d.get("cwe") or [None])[0]:
        best = cwes[0]
        result["taxa"] = [
            {"id": best["id"].removeprefix("CWE-"), "toolComponent": {"name": CWE_TAXONOMY}}
        ]
        result["properties"]["cwe"] = best["id"]
        result["properties"]["cweProbability"] = best["probability"]
    return result


def cwe_taxonomy(results: list[dict]) -> dict | None:
    """The run's CWE taxonomy with every category a result references."""
    ids = sorted({t["id"] for r in results for t in r.get("taxa", [])}, key=int)
    if not ids:
        return None
    return {
        "name": CWE_TAXONOMY,
        "organization": "MITRE",
        "informationUri": "https://cwe.mitre.org/",
        "taxa": [
            {
                "id": i,
                "name": describe(f"CWE-{i}"),
                "shortDescription": {"text": describe(f"CWE-{i}")},
            }
            for i in ids
        ],
    }
