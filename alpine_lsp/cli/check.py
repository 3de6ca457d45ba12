"""`alpine-lsp check`: the server's findings for files and folders, for CI.

Same parsing, model, score cache and similar-code index as the server. Exit codes: 0 done,
1 findings with --fail-on-findings, 2 usage or set-up errors (bad path, model not loadable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .. import __version__

RULES = {
    "defect-risk": (
        "Possible defect",
        "The defect model scores this function at or above the threshold.",
        "warning",
    ),
    "similar-code": (
        "Similar code elsewhere",
        "A function elsewhere in the checked files is "
        "nearly the same (cosine of the model's embeddings).",
        "note",
    ),
}


def _args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="alpine-lsp check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("paths", nargs="+", metavar="PATH")
    ap.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    ap.add_argument("--all", action="store_true", help="list every function, not only flagged")
    ap.add_argument("--threshold", type=float, help="defect threshold (default: the model's)")
    ap.add_argument("--similarity-threshold", type=float)
    ap.add_argument("--no-similar", action="store_true", help="skip similar-code hints")
    ap.add_argument("--fail-on-findings", action="store_true", help="exit 1 if anything flagged")
    ap.add_argument("--model", help="model directory (default: the bundled model)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int)
    ap.add_argument("--max-file-size", type=int, default=2_000_000)
    ap.add_argument("--output", "-o", help="write the report here instead of stdout")
    ap.add_argument("--no-cache", action="store_true", help="do not read or write the score cache")
    args = ap.parse_args(argv)
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        ap.error("--threshold must be in [0, 1]")
    return args


def _files(paths: list[str], max_size: int) -> tuple[list[Path], list[str]]:
    from ..index import iter_source_files
    from ..parsing import language_for

    files: list[Path] = []
    errors = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(iter_source_files(p, max_size))
        elif p.is_file():
            if language_for(str(p)) is None:
                errors.append(f"{p}: no grammar for this file type; skipped")
            else:
                files.append(p)
        else:
            errors.append(f"{p}: no such file or directory")
    seen, out = set(), []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(f)
    return out, errors


class _Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.on = sys.stderr.isatty() and total > 1
        self.t0 = time.perf_counter()

    def step(self, i: int, label: str) -> None:
        if self.on:
            width = 30
            done = int(width * i / max(1, self.total))
            sys.stderr.write(
                f"\r[{'#' * done}{'.' * (width - done)}] {i}/{self.total} {label[-40:]:<40}"
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def run_check(args: argparse.Namespace) -> tuple[dict, int]:
    from ..engine.cache import ScoreCache
    from ..engine.engine import Scorer
    from ..engine.models import ModelHolder
    from ..engine.stats import Stats
    from ..index import IndexEntry, IndexStore
    from ..index.paths import cache_dir
    from ..model import ModelLoadError, load_model
    from ..parsing import extract_functions, file_ignored, language_for

    files, errors = _files(args.paths, args.max_file_size)
    for e in errors:
        print(f"alpine-lsp check: {e}", file=sys.stderr)
    if not files and errors:
        return {}, 2
    try:
        model = load_model(args.model, device=args.device, threads=args.threads)
    except ModelLoadError as e:
        print(f"alpine-lsp check: {e}", file=sys.stderr)
        return {}, 2
    holder = ModelHolder()
    holder.model, holder.state = model, "ready"
    cache = ScoreCache(None if args.no_cache else cache_dir() / "scores.sqlite")
    scorer = Scorer(holder, cache, Stats())
    threshold = model.threshold if args.threshold is None else args.threshold
    sim_threshold = (
        model.similarity_threshold
        if args.similarity_threshold is None
        else args.similarity_threshold
    )
    index = IndexStore(Path(":memory:")) if not args.no_similar else None

    progress = _Progress(len(files))
    per_file = []
    for i, path in enumerate(files):
        progress.step(i, str(path))
        try:
            data = path.read_bytes()
        except OSError as e:
            print(f"alpine-lsp check: {path}: {e}", file=sys.stderr)
            continue
        if b"\x00" in data[:8192] or len(data) > args.max_file_size:
            continue
        text = data.decode("utf-8", errors="replace")
        language = language_for(str(path)) or ""
        functions = extract_functions(text, language)
        scores = scorer.score(functions, language) if functions else []
        per_file.append((path, language, functions, scores or [], file_ignored(text)))
        if index is not None and functions:
            uri = path.resolve().as_uri()
            index.replace_file(
                uri,
                [
                    IndexEntry(
                        uri=uri,
                        name=f.name,
                        start_line=f.start_line,
                        start_col=f.start_col,
                        end_line=f.end_line,
                        end_col=f.end_col,
                        name_start_line=f.name_start_line,
                        name_start_col=f.name_start_col,
                        name_end_line=f.name_end_line,
                        name_end_col=f.name_end_col,
                        language=language,
                        hash=f.hash,
                        fingerprint=model.fingerprint,
                        embedding=s.embedding,
                    )
                    for f, s in zip(functions, scores, strict=True)
                ],
            )
    progress.close()

    names = {p.resolve().as_uri(): p for p, *_ in per_file}
    report_files = []
    flagged_any = False
    for path, language, functions, scores, ignored_file in per_file:
        uri = path.resolve().as_uri()
        rows = []
        for f, s in zip(functions, scores, strict=True):
            flagged = not ignored_file and not f.ignored and s.probability >= threshold
            similar = []
            if index is not None and not ignored_file and not f.ignored:
                for m in index.query(
                    s.embedding,
                    3,
                    model.fingerprint,
                    exclude=(uri, f.start_line),
                    min_score=sim_threshold,
                ):
                    similar.append(
                        {
                            "path": str(names.get(m.uri, m.uri)),
                            "name": m.name,
                            "start_line": m.start_line + 1,
                            "score": round(m.score, 4),
                        }
                    )
            flagged_any |= flagged
            if args.all or flagged or similar:
                rows.append(
                    {
                        "name": f.name,
                        "start_line": f.start_line + 1,
                        "end_line": f.end_line + 1,
                        "start_col": f.name_start_col + 1,
                        "end_col": f.name_end_col + 1,
                        "defect_probability": round(s.probability, 4),
                        "flagged": flagged,
                        "ignored": f.ignored or ignored_file,
                        "similar": similar,
                    }
                )
        if rows or args.all:
            report_files.append({"path": str(path), "language": language, "functions": rows})
    cache.close()
    report = {
        "model": {**model.info(), "threshold": threshold, "similarity_threshold": sim_threshold},
        "files": report_files,
        "summary": {
            "files": len(per_file),
            "functions": sum(len(x[2]) for x in per_file),
            "flagged": sum(fn["flagged"] for f in report_files for fn in f["functions"]),
        },
    }
    code = 1 if (args.fail_on_findings and flagged_any) else 0
    return report, code


def to_text(report: dict) -> str:
    out = []
    for f in report["files"]:
        for fn in f["functions"]:
            mark = "defect-risk" if fn["flagged"] else "ok"
            out.append(
                f"{f['path']}:{fn['start_line']}: {mark} {fn['name']} "
                f"p={fn['defect_probability']:.2f}"
            )
            for s in fn["similar"]:
                out.append(
                    f"{f['path']}:{fn['start_line']}: similar-code {fn['name']} ~ "
                    f"{s['name']} in {s['path']}:{s['start_line']} ({s['score']:.2f})"
                )
    s = report["summary"]
    m = report["model"]
    out.append(
        f"{s['files']} files, {s['functions']} functions, {s['flagged']} flagged "
        f"(model {m['name']}, threshold {m['threshold']:.2f})"
    )
    return "\n".join(out)


def to_sarif(report: dict) -> dict:
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
        uri = Path(f["path"]).as_posix()
        for fn in f["functions"]:
            region = {
                "startLine": fn["start_line"],
                "startColumn": fn["start_col"],
                "endLine": fn["start_line"],
                "endColumn": max(fn["end_col"], fn["start_col"] + 1),
            }
            loc = [{"physicalLocation": {"artifactLocation": {"uri": uri}, "region": region}}]
            if fn["flagged"]:
                results.append(
                    {
                        "ruleId": "defect-risk",
                        "ruleIndex": 0,
                        "level": "warning",
                        "message": {
                            "text": f"possible defect in {fn['name']} "
                            f"(p={fn['defect_probability']:.2f})"
                        },
                        "locations": loc,
                        "properties": {"defectProbability": fn["defect_probability"]},
                    }
                )
            for s in fn["similar"]:
                results.append(
                    {
                        "ruleId": "similar-code",
                        "ruleIndex": 1,
                        "level": "note",
                        "message": {
                            "text": f"{fn['name']} is similar to {s['name']} in "
                            f"{s['path']}:{s['start_line']} ({s['score']:.2f})"
                        },
                        "locations": loc,
                        "relatedLocations": [
                            {
                                "id": 1,
                                "physicalLocation": {
                                    "artifactLocation": {"uri": Path(s["path"]).as_posix()},
                                    "region": {"startLine": s["start_line"]},
                                },
                            }
                        ],
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
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = _args(list(argv or []))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report, code = run_check(args)
    if not report:
        return code
    if args.format == "json":
        text = json.dumps(report, indent=2)
    elif args.format == "sarif":
        text = json.dumps(to_sarif(report), indent=2)
    else:
        text = to_text(report)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return code
