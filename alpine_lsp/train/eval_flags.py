"""`alpine-lsp eval flags`: are the functions a ranking flags worth reading? A blind sample.

Labelled test splits cannot say whether a `defect-risk` hint deserves a developer's time on
real code; reading can. This command makes the reading repeatable:

    alpine-lsp check REPO --all --format json --output REPO.json   # once per repository
    alpine-lsp eval flags sample REPO.json... --out DIR [--per 10] [--seed 14]
    # reviewers write DIR/verdict*.json: [{"id": ..., "verdict": "yes"|"no", "reason": ...}]
    alpine-lsp eval flags tally DIR

`sample` takes, per report, the top `--share` of scored functions by each ranking (`score`:
the report's defect probability; `length`: lines; `risky`: eval defect's risky-call count,
parsing.metrics.RISKY_METRICS, ties by length; `flagged`: the functions the report flagged) and
`--per` random unflagged functions (`random`, the base rate), draws `--per` of each with one
seeded generator, and writes the distinct functions shuffled into `--batches` Markdown files
that do not say which ranking picked a function; `key.json` keeps that. `tally` counts the
"yes" verdicts per ranking and report. docs/defect-hints-judged.md is one such round.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from pathlib import Path

from ..evalkit.errors import CommandError

RANKINGS = ("score", "length", "risky", "flagged", "random")


def _functions(report: Path) -> tuple[str, list[dict]]:
    """(the report's name: its file stem, its scored functions with text, lines and risky-call
    count). Ids are `name:path:line`, the path relative to the folder holding every file."""
    from ..parsing.metrics import RISKY_METRICS, function_metrics

    try:
        data = json.loads(report.read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CommandError(
            f"{report}: not a `check --all --format json` report ({type(e).__name__}: {e})"
        ) from None
    paths = [str(Path(f["path"]).parent) for f in files if isinstance(f, dict) and "path" in f]
    try:  # the deepest folder holding every file: ids stay short
        root = Path(os.path.commonpath(paths)) if paths else Path(".")
    except ValueError:  # absolute and relative paths mixed
        root = Path(".")
    name = report.stem
    out = []
    for f in files:
        try:
            lines = Path(f["path"]).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as e:
            raise CommandError(f"{report}: cannot read {f['path']}: {e}") from None
        rel = os.path.relpath(f["path"], root).replace(os.sep, "/")
        for fn in f.get("functions", []):
            if fn.get("defect_probability") is None:
                continue  # language off or not scored: no ranking shows it
            code = "\n".join(lines[fn["start_line"] - 1 : fn["end_line"]])
            try:
                m = function_metrics(code, f["language"])
            except ValueError:
                continue
            out.append({
                "id": f"{name}:{rel}:{fn['start_line']}", "name": fn["name"],
                "language": f["language"], "start": fn["start_line"], "end": fn["end_line"],
                "code": code, "score": float(fn["defect_probability"]),
                "flagged": bool(fn.get("flagged")), "lines": m["lines"],
                "risky": sum(m[k] for k in RISKY_METRICS),
            })  # fmt: skip
    return name, out


def top(functions: list[dict], ranking: str, share: float) -> list[dict]:
    """The functions a ranking puts in its top `share` (`flagged`: the report's flags;
    `random`: every unflagged function, to draw the base rate from)."""
    if ranking == "flagged":
        return [f for f in functions if f["flagged"]]
    if ranking == "random":
        return [f for f in functions if not f["flagged"]]
    key = {
        "score": lambda f: -f["score"],
        "length": lambda f: -f["lines"],
        "risky": lambda f: (-f["risky"], -f["lines"]),
    }[ranking]
    return sorted(functions, key=key)[: math.ceil(share * len(functions))]


def sample(
    reports: list[Path],
    out: Path,
    rankings: tuple[str, ...] = RANKINGS,
    per: int = 10,
    share: float = 0.03,
    seed: int = 14,
    batches: int = 4,
) -> dict:
    rng = random.Random(seed)
    picked: dict[str, dict] = {}
    key: dict[str, dict] = {}
    for report in reports:
        name, fns = _functions(report)
        for r in rankings:
            pool = top(fns, r, share)
            for f in rng.sample(pool, min(per, len(pool))):
                picked[f["id"]] = f
                key.setdefault(f["id"], {"report": name, "name": f["name"], "rankings": []})
                key[f["id"]]["rankings"].append(r)
    ids = sorted(picked)
    rng.shuffle(ids)
    out.mkdir(parents=True, exist_ok=True)
    for b in range(batches):
        with open(out / f"batch{b}.md", "w", encoding="utf-8") as fh:
            for i in ids[b::batches]:
                f = picked[i]
                fh.write(
                    f"## {i} ({f['name']}, {f['language']}, lines {f['start']}-{f['end']})\n\n"
                    f"```{f['language']}\n{f['code']}\n```\n\n"
                )
    (out / "key.json").write_text(json.dumps(key, indent=1), encoding="utf-8")
    return key


def tally(directory: Path) -> dict[str, dict[str, list[int]]]:
    """{ranking: {report or "all": [yes, read]}} from key.json and every verdict*.json."""
    try:
        key = json.loads((directory / "key.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CommandError(f"{directory / 'key.json'}: {e}") from None
    verdicts: dict[str, bool] = {}
    for p in sorted(directory.glob("verdict*.json")):
        try:
            rows = json.loads(p.read_text(encoding="utf-8"))
            for i, row in enumerate(rows):
                if row.get("verdict") not in ("yes", "no") or not isinstance(row.get("id"), str):
                    raise ValueError(f"row {i}: wants an id and a verdict of yes or no")
                verdicts[row["id"]] = row["verdict"] == "yes"
        except (OSError, ValueError, AttributeError, TypeError) as e:
            raise CommandError(f"{p}: {e}") from None
    res: dict[str, dict[str, list[int]]] = {}
    for i, k in key.items():
        if i not in verdicts:
            continue  # not read (yet): counted nowhere
        for r in k["rankings"]:
            for scope in (k["report"], "all"):
                cell = res.setdefault(r, {}).setdefault(scope, [0, 0])
                cell[0] += verdicts[i]
                cell[1] += 1
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="alpine-lsp eval flags")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="write blind reading batches and their key")
    s.add_argument("reports", nargs="+", type=Path, help="`check --all --format json` outputs")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--rankings", default=",".join(RANKINGS))
    s.add_argument("--per", type=int, default=10, help="functions per ranking and report")
    s.add_argument("--share", type=float, default=0.03, help="top share a ranking flags")
    s.add_argument("--seed", type=int, default=14)
    s.add_argument("--batches", type=int, default=4)
    t = sub.add_parser("tally", help="count the yes verdicts per ranking")
    t.add_argument("dir", type=Path)
    t.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "sample":
        rankings = tuple(r for r in args.rankings.split(",") if r)
        bad = [r for r in rankings if r not in RANKINGS]
        if bad or not rankings:
            raise CommandError(f"--rankings: choose from {', '.join(RANKINGS)}", code=2)
        if args.per < 1 or args.batches < 1 or not 0 < args.share <= 1:
            raise CommandError("--per and --batches must be ≥ 1, --share in (0, 1]", code=2)
        key = sample(
            args.reports, args.out, rankings, args.per, args.share, args.seed, args.batches
        )
        print(f"{len(key)} functions in {args.batches} batches under {args.out}")
        return 0
    res = tally(args.dir)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    scopes = [*sorted({s for d in res.values() for s in d} - {"all"}), "all"]
    print("| ranking | " + " | ".join(scopes) + " |")
    print("|---|" + "---|" * len(scopes))
    for r in sorted(res):
        cells = [f"{res[r][s][0]}/{res[r][s][1]}" if s in res[r] else "–" for s in scopes]
        print(f"| {r} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
