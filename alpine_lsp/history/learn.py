"""`alpine-lsp learn [PATH] [--since DATE] [--until DATE] [--evaluate] [--json]`.

Mines the repository's bug-fix commits (mine.py), scores every mined function once with the
frozen model (through the engine's score cache, so a second run scores nothing), fits the adapter
head (fit.py) and writes `.alpine-lsp/adapter.*` in the repository. `--evaluate` instead trains
on the fixes before a cut date and reports the global model, the adapter and the blend on the
fixes after it. Exit codes: 0 done, 1 no adapter (no usable history, too few pairs), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..evalkit.errors import CommandError
from ..model.adapter import adapter_dir, build_features, feature_names, save_adapter
from ..model.score import FunctionScore, ModelLoadError
from ..parsing import function_hash
from .churn import walk
from .fit import fit_adapter, metrics, roc_auc, to_adapter
from .mine import HistoryError, MineResult, Row, check_repository, mine

MIN_PAIRS = 30
Progress = Callable[[str, int, int], None]  # (stage, done, total)
Score = Callable[[list[str], str], list[FunctionScore]]  # (codes, language): model.score


class LearnError(RuntimeError):
    """No adapter: the reason, for a person."""


@dataclass
class Dataset:
    rows: list[Row]
    x: np.ndarray
    y: np.ndarray
    pairs: np.ndarray  # (k, 2) row indices: buggy, fixed
    order: np.ndarray  # chronological index of each row's fix commit


def _score_rows(
    model, rows: list[Row], progress: Progress | None, score: Score | None = None
) -> list[FunctionScore]:
    """Scores from the cache, the rest from the model in chunks (the cache keeps them)."""
    from ..engine.cache import ScoreCache
    from ..index.paths import cache_dir

    cache = ScoreCache(cache_dir() / "scores.sqlite")
    fp = model.fingerprint
    out: dict[int, FunctionScore] = {}
    try:
        by_lang: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            by_lang.setdefault(r.language, []).append(i)
        done = 0
        for lang, idx in by_lang.items():
            hashes = [function_hash(lang, rows[i].text) for i in idx]
            found = cache.get_many(fp, lang, hashes)
            todo = [(i, h) for i, h in zip(idx, hashes, strict=True) if h not in found]
            for i, h in zip(idx, hashes, strict=True):
                if h in found:
                    out[i] = found[h]
            done += len(idx) - len(todo)
            if progress:
                progress("scoring", done, len(rows))
            for k in range(0, len(todo), 64):
                chunk = todo[k : k + 64]
                scores = (score or model.score)([rows[i].text for i, _ in chunk], lang)
                cache.put_many(fp, lang, {h: s for (_, h), s in zip(chunk, scores, strict=True)})
                for (i, _), s in zip(chunk, scores, strict=True):
                    out[i] = s
                done += len(chunk)
                if progress:
                    progress("scoring", done, len(rows))
    finally:
        cache.close()
    return [out[i] for i in range(len(rows))]


def build_dataset(
    model, mined: MineResult, progress: Progress | None = None, score: Score | None = None
) -> Dataset:
    """`score`: how to run the model on (codes, language) (default: model.score; the server
    runs it on its worker)."""
    rows = mined.rows
    scores = _score_rows(model, rows, progress, score)
    x = build_features(scores, [r.text for r in rows])
    y = np.array([r.label for r in rows], np.int64)
    where: dict[str, dict[int, int]] = {}
    for i, r in enumerate(rows):
        if r.pair is not None:
            where.setdefault(r.pair, {})[r.label] = i
    pairs = np.array([[d[1], d[0]] for d in where.values() if len(d) == 2], np.int64).reshape(-1, 2)
    commit_rank: dict[str, int] = {}
    for r in rows:  # rows are sorted by time
        commit_rank.setdefault(r.commit, len(commit_rank))
    order = np.array([commit_rank[r.commit] for r in rows], np.int64)
    return Dataset(rows, x, y, pairs, order)


def _subset(d: Dataset, keep: np.ndarray) -> Dataset:
    pos = -np.ones(len(d.rows), np.int64)
    pos[keep] = np.arange(len(keep))
    p = pos[d.pairs] if len(d.pairs) else np.zeros((0, 2), np.int64)
    p = p[(p >= 0).all(1)] if len(p) else p
    return Dataset([d.rows[i] for i in keep], d.x[keep], d.y[keep], p, d.order[keep])


def _date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _counts(d: Dataset) -> dict:
    kinds = {k: sum(1 for r in d.rows if r.kind == k) for k in ("buggy", "fixed", "clean")}
    return {"fix_commits": len({r.commit for r in d.rows}), "pairs": len(d.pairs), **kinds}


def learn(
    repo: Path,
    model,
    since: str | None = None,
    until: str | None = None,
    progress: Progress | None = None,
    write: bool = True,
    score: Score | None = None,
) -> dict:
    """Mine, score, fit and (with `write`) store the adapter. Returns a summary; LearnError or
    HistoryError when there is nothing to learn from. `score`: as in build_dataset."""
    t0 = time.perf_counter()
    mined = mine(repo, since, until, progress=_stage(progress, "mining"))
    if mined.pairs < MIN_PAIRS:
        raise LearnError(_too_few(mined))
    data = build_dataset(model, mined, progress, score)
    fitted = fit_adapter(data.x, data.y, data.pairs, data.order)
    emb_dim = data.x.shape[1] - len(feature_names(0))
    times = [r.time for r in data.rows]
    meta = {
        "base_fingerprint": model.fingerprint,
        "base_model": model.name,
        "features": feature_names(emb_dim),
        "head": {"kind": "linear", "l2": fitted.head.l2, "loss": "logistic + pairwise softplus"},
        "commits": {
            "head": mined.head,
            "oldest": mined.first,
            "newest": mined.last,
            "since": since,
            "until": until,
            "first_fix_date": _date(min(times)),
            "last_fix_date": _date(max(times)),
        },
        "counts": {
            "commits_seen": mined.commits_seen,
            "fix_messages": mined.fix_candidates,
            **_counts(data),
        },
        "skipped": dict(mined.skipped),
        "validation": fitted.validation,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _, tensors = to_adapter(fitted, meta)
    folder = adapter_dir(repo)
    rewritten = _history_rewritten(repo, folder)
    if rewritten:
        meta["skipped"]["previous adapter's head no longer in history (force-push)"] = 1
    if write:
        save_adapter(folder, tensors, {**meta, "blend": fitted.blend})
    return {
        "adapter": str(folder) if write else None,
        "fix_commits": meta["counts"]["fix_commits"],
        "pairs": len(data.pairs),
        "rows": len(data.rows),
        "blend_weight": fitted.blend["weight"],
        "validation": fitted.validation,
        "skipped": meta["skipped"],
        "commits_seen": mined.commits_seen,
        "fix_messages": mined.fix_candidates,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def evaluate(
    repo: Path,
    model,
    since: str | None = None,
    until: str | None = None,
    cut: str | None = None,
    progress: Progress | None = None,
) -> dict:
    """Train on the fixes before the cut (default: the date that leaves the latest 20% of fix
    commits after it), test on the fixes after it."""
    t0 = time.perf_counter()
    mined = mine(repo, since, until, progress=_stage(progress, "mining"))
    if mined.pairs < MIN_PAIRS:
        raise LearnError(_too_few(mined))
    data = build_dataset(model, mined, progress)
    times = np.array([r.time for r in data.rows])
    if cut is None:
        commit_times = sorted({(r.time, r.commit) for r in data.rows})
        cut_ts = commit_times[int(len(commit_times) * 0.8)][0]
    else:
        cut_ts = int(_parse_date(cut).timestamp())
    train = _subset(data, np.flatnonzero(times < cut_ts))
    test = _subset(data, np.flatnonzero(times >= cut_ts))
    if len(train.pairs) < MIN_PAIRS:
        raise LearnError(f"only {len(train.pairs)} fix pairs before the cut; need {MIN_PAIRS}")
    if len(test.pairs) == 0 or len(np.unique(test.y)) < 2:
        raise LearnError("no fix pairs after the cut to test on; choose an earlier --cut")
    fitted = fit_adapter(train.x, train.y, train.pairs, train.order)
    adapter, _ = to_adapter(fitted, {})
    churn = walk(repo, since, until, progress=_stage(progress, "history"))
    g = test.x[:, -len(feature_names(0))].astype(np.float64)
    a = adapter.logits(test.x)
    z = adapter.blend_logits(g, a)
    out = {
        "fix_commits": len({r.commit for r in data.rows}),
        "pairs": len(data.pairs),
        "cut": _date(cut_ts),
        "global": metrics(test.y, g, test.pairs),
        "adapter": metrics(test.y, a, test.pairs),
        "blend": metrics(test.y, z, test.pairs),
        "blend_weight": fitted.blend["weight"],
        "baselines": _baselines(train, test, churn),
        "auc_ceiling_if_pairs_tie": tied_pairs_ceiling(test.y, test.pairs),
        "train": _counts(train),
        "test": _counts(test),
        "validation": fitted.validation,
        "commits_seen": mined.commits_seen,
        "fix_messages": mined.fix_candidates,
        "skipped": dict(mined.skipped),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return out


def tied_pairs_ceiling(y: np.ndarray, pairs: np.ndarray) -> float | None:
    """The best ROC-AUC of any score that gives a fix's buggy and fixed halves the same value
    (history features, anything that cannot read the fix): every other buggy row above every
    other row, the pairs in between. A fixed half then wins half its comparisons at best."""
    s = np.where(y == 1, 2.0, 0.0)
    for k, (b, f) in enumerate(pairs):
        s[b] = s[f] = 1.0 + k / max(1, len(pairs))  # pairs tie with themselves, not each other
    return roc_auc(y, s)


def _baselines(train: Dataset, test: Dataset, churn=None) -> dict:
    """The same test rows scored by length alone, by the function's prior fixes (then prior
    changes) as of each row's commit, and by TF-IDF + logistic regression."""
    lines = np.array([r.text.count("\n") + 1 for r in test.rows], np.float64)
    out = {"length": metrics(test.y, lines, test.pairs)}
    if churn is not None:
        h = churn.matrix(test.rows).astype(np.float64)
        out["prior_fixes"] = metrics(test.y, h[:, 1] + 0.01 * h[:, 0], test.pairs)
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        out["tfidf_lr"] = None  # scikit-learn is in the [train] extra
        return out
    vec = TfidfVectorizer(token_pattern=r"[A-Za-z_]\w*|\S", max_features=20000, sublinear_tf=True)
    xtr = vec.fit_transform([r.text for r in train.rows])
    clf = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced")
    clf.fit(xtr, train.y)
    s = clf.decision_function(vec.transform([r.text for r in test.rows]))
    out["tfidf_lr"] = metrics(test.y, s, test.pairs)
    return out


def _history_rewritten(repo: Path, folder: Path) -> bool:
    """Whether the commit the previous adapter ended at has left the history (a force-push):
    its fixes may be gone, which is worth a line in the report; the new run ignores them."""
    try:
        old = json.loads((folder / "adapter.json").read_text())["commits"]["head"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not isinstance(old, str) or not old.isalnum():
        return False
    from .mine import git_ok

    return not git_ok(repo, "merge-base", "--is-ancestor", old, "HEAD")


def _too_few(mined: MineResult) -> str:
    return (
        f"only {mined.pairs} usable fix pairs in {mined.commits_seen} commits "
        f"({mined.fix_candidates} bug-fix messages, {mined.fix_commits} gave functions); "
        f"need at least {MIN_PAIRS}. "
        "No adapter was written."
    )


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _parse_date(s: str) -> datetime:
    try:
        d = datetime.fromisoformat(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from e
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _date_arg(s: str) -> str:
    _parse_date(s)
    return s


class _Bars:
    """tqdm bars on a terminal, one per stage; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                self.enabled = False
                return
            unit = "commit" if stage == "mining" else "function"
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=unit, leave=False)
        bar.total = max(total, done)
        bar.n = done
        if done in (total, 1) or done % 50 == 0:
            bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="alpine-lsp learn",
        description="Adapt the defect model to a repository's own bug-fixing commits.",
    )
    ap.add_argument("path", nargs="?", default=".", help="the repository (default: .)")
    ap.add_argument("--since", type=_date_arg, help="only commits after DATE (YYYY-MM-DD)")
    ap.add_argument("--until", type=_date_arg, help="only commits before DATE")
    ap.add_argument("--evaluate", action="store_true", help="train before a cut, test after it")
    ap.add_argument("--cut", type=_date_arg, help="with --evaluate: the cut date")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--model", help="a model directory (default: the bundled model)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for the model")
    args = ap.parse_args(argv)
    repo = Path(args.path).expanduser()
    if not repo.is_dir():
        raise CommandError(f"alpine-lsp learn: {repo} is not a directory", code=2)
    from ..engine.models import default_threads
    from ..model.api import load_model

    bars = _Bars(sys.stderr.isatty())
    try:
        check_repository(repo)  # before the model loads: a wrong folder is said at once
        model = load_model(args.model, device="cpu", threads=args.threads or default_threads())
        if args.evaluate:
            out = evaluate(repo, model, args.since, args.until, args.cut, bars)
        else:
            out = learn(repo, model, args.since, args.until, bars)
    except (HistoryError, LearnError, ModelLoadError) as e:
        bars.close()
        if args.json:
            print(json.dumps({"error": str(e)}))
        raise CommandError(f"alpine-lsp learn: {e}") from None
    except KeyboardInterrupt:
        bars.close()
        print("alpine-lsp learn: interrupted; the previous adapter is unchanged", file=sys.stderr)
        return 130
    bars.close()
    if args.json:
        print(json.dumps(out, sort_keys=False))
    elif args.evaluate:
        _print_evaluation(out)
    else:
        print(
            f"adapter written to {out['adapter']}: {out['fix_commits']} fix commits, "
            f"{out['pairs']} pairs, {out['rows']} functions, blend weight "
            f"{out['blend_weight']:.2f} ({out['seconds']} s)"
        )
        _print_skips(out["skipped"])
    return 0


def _fmt(v) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _print_evaluation(out: dict) -> None:
    print(
        f"{out['fix_commits']} fix commits, {out['pairs']} pairs; cut {out['cut']}: "
        f"train {out['train']['pairs']} pairs, test {out['test']['pairs']} pairs "
        f"({out['test']['buggy']} buggy / {out['test']['fixed'] + out['test']['clean']} not)"
    )
    print(f"{'scorer':<10} {'ROC-AUC':>8} {'pairwise':>9} {'prec@3%':>8}")
    rows = [("global", out["global"]), ("adapter", out["adapter"]), ("blend", out["blend"])]
    rows += [(k, v) for k, v in out["baselines"].items() if v]
    for name, m in rows:
        print(
            f"{name:<10} {_fmt(m['auc']):>8} {_fmt(m['pairwise_acc']):>9} "
            f"{_fmt(m['precision_at_budget']):>8}"
        )
    print(
        f"blend weight {out['blend_weight']:.2f}; ROC-AUC ceiling of a score that ties each fix "
        f"pair: {_fmt(out['auc_ceiling_if_pairs_tie'])}; {out['seconds']} s"
    )
    _print_skips(out["skipped"])


def _print_skips(skipped: dict) -> None:
    if skipped:
        print("skipped: " + ", ".join(f"{v} {k}" for k, v in skipped.items() if v))
