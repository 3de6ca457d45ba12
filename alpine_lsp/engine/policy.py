"""The one flag rule, shared by the server's engine and `alpine-lsp check`.

A function is flagged when (1) its language is enabled for defect hints, (2) its probability
reaches the threshold (the model's, which flags about 3% of ordinary C, or the user's), and (3)
it is among the riskiest `flagBudget` share of the functions scored so far in this workspace
(open documents, indexed files, or the files `check` read). Real code is not 46% vulnerable as
Devign is: the budget keeps the hints few wherever the model's scale sits for a codebase.

Languages: the model records per language the data its head saw and the cross-project test
ROC-AUC measured for it (alpine.json, `languages`). A language below MIN_AUC, or with no
training data, gets no defect hint unless the user names it in `alpine.languages`.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: the rule reads two attributes of each
    from ..model.score import FunctionScore
    from ..parsing import Function

MIN_AUC = 0.60
# Below this many scored functions the budget's quantile means little; the threshold decides.
MIN_POOL = 50


def language_table(model_dir: str | Path | None) -> dict[str, dict]:
    """alpine.json's per-language record ({} for models without one); read once per path."""
    return _language_table(str(model_dir)) if model_dir is not None else {}


@functools.lru_cache(maxsize=8)
def _language_table(model_dir: str) -> dict[str, dict]:
    try:
        meta = json.loads((Path(model_dir) / "alpine.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    table = meta.get("languages")
    return table if isinstance(table, dict) else {}


def language_off(
    table: dict[str, dict], language: str | None, opted_in: tuple[str, ...] | None
) -> str | None:
    """Why defect hints are off for this language (one line), or None when they are on."""
    if not table or language is None:
        return None  # a model without the record: every language as before
    lang = "typescript" if language == "tsx" else language
    if opted_in is not None and (language in opted_in or lang in opted_in):
        return None
    rec = table.get(lang)
    opt = "(opt in with alpine.languages)"
    if not rec or not rec.get("fit_rows"):
        return f"defect hints off for {lang}: the model saw no {lang} training data {opt}"
    auc = rec.get("test_roc_auc")
    if auc is None:
        return f"defect hints off for {lang}: too few {lang} test rows to measure it {opt}"
    if auc < MIN_AUC:
        return (
            f"defect hints off for {lang}: cross-project test ROC-AUC {auc:.2f} is below "
            f"{MIN_AUC:.2f} {opt}"
        )
    return None


class ScorePool:
    """Probabilities of the workspace's functions, by (file, function hash); thread-safe."""

    def __init__(self) -> None:
        self._by_file: dict[str, dict[str, float]] = {}
        self._sorted: list[float] | None = []
        self._lock = threading.Lock()

    def set_file(self, uri: str, scores: dict[str, float]) -> None:
        with self._lock:
            if self._by_file.get(uri) != scores:
                self._by_file[uri] = dict(scores)
                self._sorted = None

    def update_file(self, uri: str, gone: Iterable[str], added: dict[str, float]) -> bool:
        """Drop the hashes `gone` from a file's scores and set `added`; False (nothing done)
        when the file is not in the pool."""
        with self._lock:
            scores = self._by_file.get(uri)
            if scores is None:
                return False
            changed = False
            for h in gone:
                changed |= scores.pop(h, None) is not None
            for h, p in added.items():
                if scores.get(h) != p:
                    scores[h] = p
                    changed = True
            if changed:
                self._sorted = None
            return True

    def remove_file(self, uri: str) -> None:
        with self._lock:
            if self._by_file.pop(uri, None) is not None:
                self._sorted = None

    def __len__(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._by_file.values())

    def cutoff(self, budget: float) -> float:
        """The probability a function must reach to be in the riskiest `budget` share (0.0
        when the pool is too small for the share to mean anything, or the budget is 1)."""
        with self._lock:
            if self._sorted is None:
                self._sorted = sorted(p for v in self._by_file.values() for p in v.values())
            vals = self._sorted
        return _cutoff(vals, budget)


def _cutoff(vals: list[float], budget: float) -> float:
    """ScorePool.cutoff over probabilities already sorted."""
    if budget >= 1.0 or len(vals) < MIN_POOL:
        return 0.0
    k = max(1, int(budget * len(vals)))  # at most this many flagged
    return vals[len(vals) - k]


def flag_bar(threshold: float, cutoff: float) -> float:
    """The probability a function must reach to be flagged: the threshold and the budget's
    cutoff both (one comparison per function against this, for files of 20,000)."""
    return max(threshold, cutoff)


def flagged(prob: float, threshold: float, cutoff: float) -> bool:
    return prob >= flag_bar(threshold, cutoff)


def file_may_flag(file_ignored: bool, defect_off: str | None) -> bool:
    """Whether a file's functions may be flagged at all: not `alpine: ignore-file`, and the
    language's defect hints on."""
    return not file_ignored and defect_off is None


def flags_function(
    function: Function, score: FunctionScore | None, bar: float, may_flag: bool
) -> bool:
    """The flag rule for one function (the server's worker and `check` both call this): the
    file may flag, the function is scored and not `alpine: ignore`d, it reaches the bar."""
    return may_flag and score is not None and not function.ignored and score.probability >= bar


def budget_cutoff(probs: list[float], budget: float) -> float:
    """ScorePool.cutoff for a plain list."""
    return _cutoff(sorted(probs), budget)
