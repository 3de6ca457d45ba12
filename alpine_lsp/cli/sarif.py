"""`check`'s report as SARIF 2.1.0, for code-scanning dashboards.

Built from the JSON report (`check.run_check`), so both say the same: one `defect-risk`
result per flagged function (on its top-ranked line, or its name), one `similar-code` result
per function with matches (each match a related location), the CWE taxonomy of the results.
Paths are relative to %SRCROOT% (the working directory) when they lie under it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from .. import __version__
from ..engine.hints import describe

SRCROOT = "%SRCROOT%"
CWE_TAXONOMY = "CWE"
RULES = {
    "defect-risk": (
        "Possible defect",
        "The defect model scores this function at or above the threshold.",
        "warning",
    ),
    "similar-code": (
        "Similar code elsewhere",
        "A function elsewhere in the checked files is a copy (identical or with renamed "
        "identifiers), a near copy (token 5-gram overlap) or semantically close (cosine of "
        "the model's embeddings).",
        "note",
    ),
}


def _artifact(path: str, root: Path) -> dict:
    """A SARIF artifactLocation: relative to %SRCROOT% (the working directory) when the file
    lies under it, which is what code-scanning dashboards match against the repository, else
    an absolute file URI. Both percent-encoded."""
    resolved = Path(path).resolve()
    try:
        rel = resolved.relative_to(root)
    except ValueError:
        return {"uri": resolved.as_uri()}
    return {"uri": quote(rel.as_posix()), "uriBaseId": SRCROOT}


def _md(text: str) -> str:
    """Escape a name for a SARIF message, where `[text](id)` is an embedded link."""
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def to_sarif(report: dict, root: Path | None = None) -> dict:
    root = (root or Path.cwd()).resolve()
    base = root.as_uri()
    base += "" if base.endswith("/") else "/"  # a base URI must end with a slash
    rules = [
        {
            "id": rid,
            "name": rid,
            "shortDescription": {"text": short},
            "fullDescription": {"text": full},
            "defaultConfiguration": {"level": level},
        }
        for rid, (short, full, level) in RULES.items()
    ]
    results = []
    for f in report["files"]:
        artifact = _artifact(f["path"], root)
        for fn in f["functions"]:
            r = fn["name_range"]
            region = {"startLine": r["start_line"], "startColumn": r["start_col"]}
            if r["end_line"] > r["start_line"] or r["end_col"] > r["start_col"]:
                region.update(endLine=r["end_line"], endColumn=r["end_col"])
            loc = [{"physicalLocation": {"artifactLocation": artifact, "region": region}}]
            if fn["flagged"]:
                results.append(_defect(fn, artifact, loc))
            if fn["similar"]:  # one result per function; each match a related location
                sims = fn["similar"]
                links = "; ".join(
                    f"[{_md(s['name'])}]({i}) ({_md(s['message'])})"
                    for i, s in enumerate(sims, start=1)
                )
                results.append(
                    {
                        "ruleId": "similar-code",
                        "ruleIndex": 1,
                        "level": "note",
                        "message": {"text": f"{_md(fn['name'])} resembles {links}"},
                        "locations": loc,
                        "relatedLocations": [
                            {
                                "id": i,
                                "physicalLocation": {
                                    "artifactLocation": _artifact(s["path"], root),
                                    "region": {"startLine": s["start_line"]},
                                },
                                "message": {"text": s["message"]},
                            }
                            for i, s in enumerate(sims, start=1)
                        ],
                        "properties": {
                            "similarity": sims[0]["score"],
                            "kinds": [s["kind"] for s in sims],
                        },
                    }
                )
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "alpine-lsp",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                **({"taxonomies": [taxonomy]} if (taxonomy := _cwe_taxonomy(results)) else {}),
                "originalUriBaseIds": {SRCROOT: {"uri": base}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def _defect(fn: dict, artifact: dict, name_loc: list[dict]) -> dict:
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
        "message": {"text": f"{_md(message)} in {_md(fn['name'])}"},
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


def _cwe_taxonomy(results: list[dict]) -> dict | None:
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
