"""`alpine-lsp check`: the server's findings for files and folders, for CI.

Same parsing, model, score cache and similar-code index code as the server. Folders are walked
as the server's indexer walks a workspace (`.gitignore` honoured; binary, oversized and
unsupported files left out); files named on the command line are checked even when ignored.

Listed: flagged functions, and with --similar functions with similar-code hits (every function
with --all). Similar code is off by default here (it is on in the server): exact copies, near
copies and semantic neighbours among the checked files, at most 3 per function.
Exit codes: 0 done, 1 something flagged with --fail-on-findings, 2 usage or set-up errors (bad
flag or value, a path that does not exist, a model that cannot be loaded).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from .. import __version__

PROG = "alpine-lsp check"
BINARY_PROBE = 8192  # as the server: a NUL byte this early marks a binary file
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
SRCROOT = "%SRCROOT%"
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


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:BINARY_PROBE]


def _collect(into: list[str]):
    return lambda directory, _error: into.append(directory)


def _files(paths: list[str], max_size: int) -> tuple[list[Path], list[str], list[str]]:
    """(files to check, notes about skipped files, paths that do not exist)."""
    from ..index import iter_source_files
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
            if _is_binary(head):
                notes.append(f"{p}: skipped: binary file (NUL bytes)")
            elif size > max_size:
                notes.append(f"{p}: skipped: larger than --max-file-size ({max_size} bytes)")
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


class _Progress:
    """A one-line bar on stderr, only when stderr is a terminal and there is more than a file."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.on = total > 1 and sys.stderr.isatty()
        self.last = 0.0

    def step(self, done: int, label: str) -> None:
        now = time.monotonic()
        if not self.on or (now - self.last < 0.1 and done < self.total):
            return
        self.last = now
        width = 30
        filled = width * done // max(1, self.total)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {label[-40:]:<40}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.on:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def _light(functions: list, scores: list) -> tuple[list, list]:
    """What the report still needs once a file is indexed. Function texts stay: the defect
    hint words its top line from them (engine/hints.py)."""
    from dataclasses import replace

    return (
        functions,
        [replace(s, top_tokens=[], lexical_terms=[], tokens_per_layer=[]) for s in scores],
    )


def run_check(args: argparse.Namespace) -> tuple[dict, int]:
    from ..engine.cache import ScoreCache, default_cache_path
    from ..engine.engine import Scorer
    from ..engine.memory import release_memory, tune_allocator
    from ..engine.models import ModelHolder
    from ..engine.policy import budget_cutoff, language_off, language_table
    from ..engine.policy import flagged as policy_flagged
    from ..engine.similar import KeyCache, capped, describe, find, thresholds
    from ..engine.stats import Stats
    from ..index import IndexEntry, IndexStore, NotReadable, read_source_file
    from ..parsing import extract_functions, file_ignored, language_for
    from .defect_report import defect_json, doc_lines

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
    holder = ModelHolder()
    holder.model, holder.state = model, "ready"
    stats = Stats()
    cache = ScoreCache(None if args.no_cache else default_cache_path())
    scorer = Scorer(holder, cache, stats)
    threshold = model.threshold if args.threshold is None else args.threshold
    sim_threshold = (
        model.similarity_threshold
        if args.similarity_threshold is None
        else args.similarity_threshold
    )
    # The server's index class on a throw-away database: hits come from the checked files only.
    # Exact copies are found even when the model offers no cosine threshold (None).
    no_similar = args.no_similar or not args.similar
    key_cache = KeyCache()
    tmp = None if no_similar else tempfile.TemporaryDirectory(prefix="alpine-check-")
    index = None if tmp is None else IndexStore(Path(tmp.name) / "index.sqlite")

    progress = _Progress(len(files))
    per_file = []
    skipped = sum(not n.startswith("warning:") for n in notes)
    try:
        for i, path in enumerate(files):
            try:  # regular and under the limit, checked on the opened descriptor
                data = read_source_file(path, args.max_file_size)
            except NotReadable as e:
                _say(f"skipped: {e}")
                skipped += 1
                continue
            except OSError as e:
                _say(f"{path}: skipped: {e.strerror or e}")
                skipped += 1
                continue
            if _is_binary(data) or len(data) > args.max_file_size:  # changed since the walk
                _say(f"{path}: skipped: binary or larger than --max-file-size")
                skipped += 1
                continue
            text = data.decode("utf-8", errors="replace")
            language = language_for(path.name) or ""
            try:
                functions = extract_functions(text, language)
                scores = (scorer.score(functions, language) or []) if functions else []
            except Exception as e:  # one bad file must not end the run
                _say(f"{path}: skipped: {type(e).__name__}: {e}")
                stats.add("errors")
                skipped += 1
                continue
            keys = key_cache.many(functions, language) if index is not None else []
            stats.add("functions_parsed", len(functions))
            if index is not None and functions:
                uri = path.resolve().as_uri()
                keep = capped(str(path), keys)
                index.replace_file(
                    uri,
                    [
                        IndexEntry.from_function(
                            uri, language, f, model.fingerprint, s.embedding, k
                        )
                        for f, s, k, ok in zip(functions, scores, keys, keep, strict=True)
                        if ok
                    ],
                )
            # Held until every file is indexed (a hint may point at a later file): only what
            # the report uses, not each function's text and explanation.
            light = _light(functions, scores)
            per_file.append((path, language, *light, file_ignored(text), keys, doc_lines(text)))
            progress.step(i + 1, str(path))
            release_memory()  # one file's batches freed: return the heap pages (a few ms)

        names = {p.resolve().as_uri(): p for p, *_ in per_file}
        report_files = []
        flagged_any = False
        # The server's flag rule (engine/policy.py): threshold, budget, per-language gate.
        cutoff = budget_cutoff(
            [s.probability for row in per_file for s in row[3]], args.flag_budget
        )
        langs_table = language_table(model.path)
        opted = tuple(x.strip() for x in args.languages.split(",")) if args.languages else None
        off_said: dict[str, str] = {}
        for path, language, functions, scores, ignored_file, keys, text_lines in per_file:
            uri = path.resolve().as_uri()
            rows = []
            off = language_off(langs_table, language, opted)
            if off and language not in off_said:
                off_said[language] = off
                _say(off)
            hits = [[] for _ in functions]
            if index is not None and functions:
                limits = thresholds(model, language, args.similarity_threshold)
                embeddings = [s.embedding for s in scores]
                hits = find(index, uri, language, functions, keys, embeddings,
                            model.fingerprint, limits, args.max_similar)  # fmt: skip
            for f, s, found in zip(functions, scores, hits, strict=True):
                ignored = ignored_file or f.ignored
                flagged = (
                    not ignored and off is None and policy_flagged(s.probability, threshold, cutoff)
                )
                similar = []
                for m in found if not ignored else []:
                    where = str(names.get(m.uri, m.uri))
                    similar.append(
                        {
                            "path": where,
                            "name": m.name,
                            "start_line": m.start_line + 1,
                            "kind": m.kind,
                            "score": round(m.score, 4),
                            "message": describe(m, f"{where}:{m.start_line + 1}"),
                        }
                    )
                flagged_any |= flagged
                if args.all or flagged or similar:
                    rows.append(
                        {
                            "name": f.name,
                            "start_line": f.start_line + 1,
                            "end_line": f.end_line + 1,
                            # Where the name is: what the server underlines. 1-based, end
                            # exclusive, columns in code points.
                            "name_range": {
                                "start_line": f.name_start_line + 1,
                                "start_col": f.name_start_col + 1,
                                "end_line": f.name_end_line + 1,
                                "end_col": f.name_end_col + 1,
                            },
                            "defect_probability": round(s.probability, 4),
                            # The fused score's halves, when the model has a lexical half.
                            **(
                                {"parts": {k: round(v, 4) for k, v in s.parts.items()}}
                                if s.parts
                                else {}
                            ),
                            "flagged": flagged,
                            "ignored": ignored,
                            "similar": similar,
                            # Where to look and what it may be: flagged functions only.
                            **(
                                {"defect": defect_json(f, s, text_lines, not args.no_line_hints)}
                                if flagged
                                else {}
                            ),
                        }
                    )
            if rows or args.all:
                entry = {"path": str(path), "language": language, "functions": rows}
                if off:
                    entry["defect_off"] = off
                report_files.append(entry)
    finally:
        progress.close()
        cache.close()
        if index is not None:
            index.close()
        if tmp is not None:
            tmp.cleanup()

    report = {
        "model": {
            **model.info(),
            "threshold": threshold,
            "similarity_threshold": sim_threshold,  # the override, else the model's fallback
            "similarity_thresholds": model.similarity_thresholds,  # per language
            "flag_budget": args.flag_budget,
            "budget_cutoff": cutoff,
        },
        "defect_off": off_said,
        "files": report_files,
        "summary": {
            "files": len(per_file),
            "skipped": skipped,
            "functions": sum(len(x[2]) for x in per_file),
            "flagged": sum(fn["flagged"] for f in report_files for fn in f["functions"]),
        },
    }
    if args.stats:
        c = stats.snapshot()
        keys = ("functions_parsed", "functions_scored", "cache_hits", "model_forwards", "errors")
        counters = {"files": len(per_file), "skipped": skipped, **{k: c[k] for k in keys}}
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
    from .defect_report import cwe_taxonomy, sarif_defect

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
                results.append(sarif_defect(fn, artifact, loc, _md))
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
                **({"taxonomies": [taxonomy]} if (taxonomy := cwe_taxonomy(results)) else {}),
                "originalUriBaseIds": {SRCROOT: {"uri": base}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = _args(list(sys.argv[1:] if argv is None else argv))
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
        try:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        except OSError as e:
            _say(f"cannot write {args.output}: {e.strerror or e}")
            return 2
    else:
        print(text)
    return code
