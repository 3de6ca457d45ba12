"""`alpine-lsp check`: the server's findings for files and folders, for CI.

Parsing, model, score cache, flag rule and similar-code lookup are the engine's, as in the
server (engine/analysis.py). Folders are walked as the server's indexer walks a workspace
(`.gitignore` honoured; binary, oversized and unsupported files left out); files named on the
command line are checked even when ignored.

Listed: flagged functions, and with --similar functions with similar-code hits (every function
with --all). Similar code is off by default here (it is on in the server): exact copies, near
copies and semantic neighbours among the checked files, at most --max-similar per function.
Exit codes: 0 done, 1 something flagged with --fail-on-findings, 2 usage or set-up errors (bad
flag or value, a path that does not exist, a model that cannot be loaded).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

    from ..engine.analysis import Finding
    from ..engine.settings import Settings
    from ..index import Match

PROG = "alpine-lsp check"
# The editor's quick fixes, in words, for people who meet the findings in a terminal first.
QUICK_FIX = (
    "quick fix: a comment `alpine: ignore` on the line above a function (`// alpine: ignore`,"
    " `# alpine: ignore` in Python) silences it; `alpine: ignore-file` silences a file. In an"
    " editor both are code actions on the finding: Ignore this function, Ignore this file."
)


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _args(argv: list[str]) -> argparse.Namespace:
    from ..engine.settings import SimilaritySettings

    ap = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("paths", nargs="+", metavar="PATH")
    ap.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    ap.add_argument(
        "--all",
        action="store_true",
        help="list every function, not only flagged ones and ones with similar-code hits",
    )
    ap.add_argument("--threshold", type=float, help="defect threshold (default: the model's)")
    ap.add_argument(
        "--flag-budget", type=float, default=0.03,
        help="flag at most this share of the functions checked (default 0.03; 1 = no budget)",
    )  # fmt: skip
    ap.add_argument(
        "--languages", help="comma-separated languages that get defect hints even where the "
        "model's measured figure is too low (alpine.languages)",
    )  # fmt: skip
    ap.add_argument(
        "--similarity-threshold", type=float, help="cosine in [-1, 1] (default: the model's)"
    )
    ap.add_argument(
        "--max-similar",
        type=int,
        default=SimilaritySettings().max_results,
        help="similar-code matches per function, as the server's similarity.maxResults "
        "(default %(default)s)",
    )
    ap.add_argument(
        "--similar", action="store_true", help="also report similar code (off by default)"
    )
    ap.add_argument("--no-similar", action="store_true", help=argparse.SUPPRESS)  # the default
    ap.add_argument(
        "--no-line-hints", action="store_true", help="defect-risk on the name, not the top line"
    )
    ap.add_argument("--fail-on-findings", action="store_true", help="exit 1 if anything flagged")
    ap.add_argument("--model", help="model directory (default: the bundled model)")
    ap.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the model runs (default auto: CUDA if present, else CPU)",
    )
    ap.add_argument("--threads", type=int, help="CPU threads for the model (default: automatic)")
    ap.add_argument(
        "--max-file-size",
        type=int,
        default=2_000_000,
        metavar="BYTES",
        help="skip files larger than this (default 2000000)",
    )
    ap.add_argument("--output", "-o", help="write the report here instead of stdout")
    ap.add_argument("--no-cache", action="store_true", help="do not read or write the score cache")
    ap.add_argument("--stats", action="store_true", help=argparse.SUPPRESS)  # counters to stderr
    args = ap.parse_args(argv)
    # `not a <= x <= b` also rejects NaN.
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        ap.error("--threshold must be in [0, 1]")
    if not 0 <= args.flag_budget <= 1:
        ap.error("--flag-budget must be in [0, 1]")
    if args.similarity_threshold is not None and not -1 <= args.similarity_threshold <= 1:
        ap.error("--similarity-threshold must be in [-1, 1]")
    if args.max_similar < 0:
        ap.error("--max-similar must be 0 or more")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be at least 1")
    if args.max_file_size < 1:
        ap.error("--max-file-size must be at least 1")
    if args.model is not None and not Path(args.model).expanduser().is_dir():
        ap.error(f"--model: no such directory: {args.model}")
    return args


def _collect(into: list[str]):
    return lambda directory, _error: into.append(directory)


def _files(paths: list[str], max_size: int) -> tuple[list[Path], list[str], list[str]]:
    """(files to check, notes about skipped files, paths that do not exist). Folders are
    walked as the server's indexer walks a workspace; files named are checked even when a
    .gitignore leaves them out, under the same admission rule (index.refusal)."""
    from ..index import BINARY_PROBE, iter_source_files, refusal
    from ..parsing import language_for

    files: list[Path] = []
    notes: list[str] = []
    missing: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            # Depth first in name order; reported as found under the path given ("src/x.c").
            top = p.expanduser().resolve()
            unreadable: list[str] = []
            found = list(iter_source_files(top, max_size, on_unreadable=_collect(unreadable)))
            files += [p / f.relative_to(top) for f in found]
            if unreadable:
                notes.append(
                    f"warning: {len(unreadable)} directories under {p} could not be read and "
                    f"were skipped (first: {unreadable[0]})"
                )
        elif p.is_file():
            if language_for(p.name) is None:
                notes.append(f"{p}: skipped: no grammar for this file type")
                continue
            try:
                with p.open("rb") as f:
                    head = f.read(BINARY_PROBE)
                size = p.stat().st_size
            except OSError as e:
                notes.append(f"{p}: skipped: {e.strerror or e}")
                continue
            refused = refusal(head, size, max_size, "--max-file-size")
            if refused:
                notes.append(f"{p}: skipped: {refused}")
            else:
                files.append(p)
        elif p.exists():
            notes.append(f"{p}: skipped: not a regular file")
        else:
            missing.append(str(p))
    seen, out = set(), []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            out.append(f)
    return out, notes, missing


def _progress(total: int) -> tqdm:
    """A one-line bar on stderr, only when stderr is a terminal and there is more than a file."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        file=sys.stderr,
        disable=not (total > 1 and sys.stderr.isatty()),
        bar_format="[{bar:30}] {n_fmt}/{total_fmt} {desc}",
        ascii=".#",
        leave=False,
        mininterval=0.1,
        # A fixed size: tqdm hides the bar on a terminal that reports no rows (a bare pty).
        ncols=90,
        nrows=24,
    )


def _settings(args: argparse.Namespace) -> Settings:
    """check's flags as the server's settings: the same names mean the same rules."""
    from ..engine.settings import Settings, SimilaritySettings

    opted = tuple(x.strip() for x in args.languages.split(",")) if args.languages else None
    return Settings(
        threshold=args.threshold,
        flag_budget=args.flag_budget,
        languages=opted,
        max_file_size=args.max_file_size,
        similarity=SimilaritySettings(
            enabled=args.similar and not args.no_similar,
            threshold=args.similarity_threshold,
            max_results=args.max_similar,
        ),
        line_hints=not args.no_line_hints,
    )


def _similar_json(m: Match, names: dict[str, str]) -> dict:
    from ..engine.similar import describe

    where = names.get(m.uri, m.uri)
    return {
        "path": where,
        "name": m.name,
        "start_line": m.start_line + 1,
        "kind": m.kind,
        "score": round(m.score, 4),
        "message": describe(m, f"{where}:{m.start_line + 1}"),
    }


def _function_json(fd: Finding, similar: list[dict], lines: list[str], line_hints: bool) -> dict:
    from .defect_report import defect_json

    f, s = fd.function, fd.score
    return {
        "name": f.name,
        "start_line": f.start_line + 1,
        "end_line": f.end_line + 1,
        # Where the name is: what the server underlines. 1-based, end exclusive, columns in
        # code points.
        "name_range": {
            "start_line": f.name_start_line + 1,
            "start_col": f.name_start_col + 1,
            "end_line": f.name_end_line + 1,
            "end_col": f.name_end_col + 1,
        },
        "defect_probability": round(s.probability, 4),
        # The fused score's halves, when the model has a lexical half.
        **({"parts": {k: round(v, 4) for k, v in s.parts.items()}} if s.parts else {}),
        "flagged": fd.flagged,
        "ignored": fd.ignored,
        "similar": similar,
        # Where to look and what it may be: flagged functions only.
        **({"defect": defect_json(f, s, lines, line_hints)} if fd.flagged else {}),
    }


def run_check(args: argparse.Namespace) -> tuple[dict, int]:
    from ..engine.analysis import WorkspaceAnalysis
    from ..engine.cache import default_cache_path
    from ..engine.memory import tune_allocator

    tune_allocator()  # as the server: big activations on mmap, handed back when freed
    files, notes, missing = _files(args.paths, args.max_file_size)
    if missing:
        for m in missing:
            _say(f"{m}: no such file or directory")
        return {}, 2
    for n in notes:
        _say(n)
    try:
        from ..model import ModelLoadError, load_model  # torch loads here

        model = load_model(args.model, device=args.device, threads=args.threads)
    except ModelLoadError as e:
        _say(f"cannot load the model: {e}")
        return {}, 2
    except Exception as e:  # torch/transformers errors: still a set-up problem, not a crash
        _say(f"cannot load the model: {type(e).__name__}: {e}")
        return {}, 2
    settings = _settings(args)
    cache_path = None if args.no_cache else default_cache_path()
    skipped = sum(not n.startswith("warning:") for n in notes)
    report_files = []
    off_said: dict[str, str] = {}
    flagged_any = False
    progress = _progress(len(files))
    analysis = WorkspaceAnalysis(model, settings, cache_path, "--max-file-size")
    try:
        for path in files:
            why = analysis.add(path)
            if why is not None:
                _say(f"{path}: skipped: {why}")
                skipped += 1
                continue
            progress.set_description_str(str(path)[-40:], refresh=False)
            progress.update(1)
        progress.refresh()  # the last state drawn, whatever the interval
        # Paths as given, for the hints that point at them.
        names = {uri: str(p) for uri, p in analysis.paths.items()}
        for ff in analysis.findings():
            if ff.defect_off and ff.language not in off_said:
                off_said[ff.language] = ff.defect_off
                _say(ff.defect_off)
            rows = []
            for fd in ff.findings:
                similar = [_similar_json(m, names) for m in fd.similar]
                flagged_any |= fd.flagged
                if args.all or fd.flagged or similar:
                    rows.append(_function_json(fd, similar, ff.lines, settings.line_hints))
            if rows or args.all:
                entry = {"path": str(ff.path), "language": ff.language, "functions": rows}
                if ff.defect_off:
                    entry["defect_off"] = ff.defect_off
                report_files.append(entry)
    finally:
        progress.close()
        analysis.close()

    report = {
        "model": {
            **model.info(),
            "threshold": analysis.threshold,
            # the override, else the model's fallback
            "similarity_threshold": settings.cosine_threshold(model),
            "similarity_thresholds": model.similarity_thresholds,  # per language
            "flag_budget": args.flag_budget,
            "budget_cutoff": analysis.cutoff,
        },
        "defect_off": off_said,
        "files": report_files,
        "summary": {
            "files": analysis.files,
            "skipped": skipped,
            "functions": analysis.functions,
            "flagged": sum(fn["flagged"] for f in report_files for fn in f["functions"]),
        },
    }
    if args.stats:
        c = analysis.stats.snapshot()
        keys = ("functions_parsed", "functions_scored", "cache_hits", "model_forwards", "errors")
        counters = {"files": analysis.files, "skipped": skipped, **{k: c[k] for k in keys}}
        _say("stats " + json.dumps(counters))
    code = 1 if (args.fail_on_findings and flagged_any) else 0
    return report, code


def to_text(report: dict) -> str:
    out = []
    for f in report["files"]:
        for fn in f["functions"]:
            mark = "defect-risk" if fn["flagged"] else "ignored" if fn["ignored"] else "ok"
            where = fn["start_line"]
            said = ""
            if fn["flagged"] and fn.get("defect"):
                said = f": {fn['defect']['message']}"
                where = fn["defect"]["lines"][0]["line"] if fn["defect"]["lines"] else where
            out.append(
                f"{f['path']}:{where}: {mark} {fn['name']} p={fn['defect_probability']:.2f}{said}"
            )
            if fn["similar"]:  # one line per function, all its matches
                out.append(
                    f"{f['path']}:{fn['start_line']}: similar-code {fn['name']}: "
                    + "; ".join(s["message"] for s in fn["similar"])
                )
    s = report["summary"]
    m = report["model"]
    out.extend(report.get("defect_off", {}).values())
    out.append(
        f"{s['files']} files, {s['functions']} functions, {s['flagged']} flagged "
        f"(model {m['name']}, threshold {m['threshold']:.2f})"
    )
    if s["flagged"]:
        out.append(QUICK_FIX)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = _args(list(sys.argv[1:] if argv is None else argv))
    report, code = run_check(args)
    if not report:
        return code
    if args.format == "json":
        text = json.dumps(report, indent=2)
    elif args.format == "sarif":
        from .sarif import to_sarif

        text = json.dumps(to_sarif(report), indent=2)
    else:
        text = to_text(report)
    if args.output:
        try:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        except OSError as e:
            _say(f"cannot write {args.output}: {e.strerror or e}")
            return 2
    else:
        print(text)
    return code
