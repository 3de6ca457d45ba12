"""An edit's analysis keeps the entries of the functions it left alone by slicing the last
complete analysis (engine._Splice) instead of working on every function (issue 20: a 20,000-
function file). Whatever the edits, what it publishes must equal what an analysis that starts
from nothing finds for the same text: positions, scores, flags, ignore marks, similar-code
hints (including hints into the same file) and the flag budget's cutoff."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import alpine_lsp.engine.engine as engine_mod
import alpine_lsp.engine.similar as similar_mod
from alpine_lsp.engine.engine import DocumentResult, Engine
from alpine_lsp.engine.settings import Settings, SimilaritySettings

STATEMENTS = [
    "total += s[i] * {k};",
    "if (s[i] == '{c}') total -= {k};",
    "while (total > {k}) total /= 2;",
    "for (int j = 0; j < i; j++) total ^= s[j];",
    "total = total < {k} ? total + 1 : total - 1;",
    "if (n > {k} && s[n - 1]) return -{k};",
    "switch (s[i]) {{ case '{c}': total++; break; default: total--; }}",
    "do {{ total <<= 1; }} while (total < {k});",
    "total = (total * 31 + s[i]) % {k};",
    "if (!s) return {k};",
]


def function(i: int) -> str:
    # Every 7th function is fn_0 renamed (similar-code hints into the same file); the rest
    # are made of different statements, so that few of them look alike.
    pick = random.Random(0 if i % 7 == 0 else i)
    body = "\n        ".join(
        pick.choice(STATEMENTS).format(k=pick.randrange(2, 99), c="abcdefgh"[pick.randrange(8)])
        for _ in range(pick.randrange(3, 7))
    )
    return (
        f"static int fn_{i}(const char *s, int n)\n{{\n    int total = 0;\n"
        f"    for (int i = 0; i < n; i++) {{\n        {body}\n    }}\n    return total;\n}}\n"
    )


def initial(n: int = 70) -> list[str]:
    return [function(i) for i in range(n)]


def edit(rng: random.Random, parts: list[str], step: int) -> None:
    """One random edit of the kind people make, on the list of top-level chunks."""
    i = rng.randrange(len(parts))
    op = rng.choice(["body", "newline", "copy", "delete", "ignore", "comment", "same-line"])
    if op == "body":
        parts[i] = parts[i].replace("int total = 0;", f"int total = {step};", 1)
    elif op == "newline":  # every function below moves one line down
        parts[i] = "\n" + parts[i]
    elif op == "copy":  # a new function that copies an existing one
        parts.insert(i, function(0).replace("fn_0", f"copy_{step}"))
    elif op == "delete" and len(parts) > 60:
        del parts[i]
    elif op == "ignore":
        parts[i] = "// alpine: ignore\n" + parts[i]
    elif op == "comment":  # between functions: no function text changes
        parts[i] = parts[i] + f"/* note {step} */\n"
    else:  # a change that keeps every line where it was
        parts[i] = parts[i].replace("int n)", f"int n{step})", 1)


def seen(result: DocumentResult) -> list[tuple]:
    return [
        (
            fr.function.name,
            fr.function.start_line,
            fr.function.start_col,
            fr.function.end_line,
            fr.function.hash,
            fr.function.ignored,
            None if fr.score is None else fr.score.probability,
            fr.flagged,
            tuple((m.uri, m.name, m.start_line, m.end_line, m.kind) for m in fr.similar),
        )
        for fr in result.functions
    ]


@pytest.fixture
def engines(tiny_model_dir: Path, tmp_path: Path):
    made = []
    for name in ("spliced", "fresh"):
        settings = Settings(
            model=str(tiny_model_dir),
            debounce_ms=600_000,  # analyses run only when the test calls them
            flag_budget=0.2,
            similarity=SimilaritySettings(enabled=True, threshold=0.9999, max_results=3),
        )
        e = Engine(settings, cache_path=tmp_path / name / "scores.sqlite")
        e.start(tmp_path / name)
        assert e.holder.ready.wait(60) and e.holder.model is not None
        made.append(e)
    yield made
    for e in made:
        e.stop()


@pytest.mark.parametrize("cap", [None, 20])
def test_spliced_analyses_equal_fresh_ones_over_random_edits(
    engines: list[Engine], cap: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cap is not None:  # a file over the cap: only its first `cap` functions are indexed
        monkeypatch.setattr(engine_mod, "MAX_PER_FILE", cap)
        monkeypatch.setattr(similar_mod, "MAX_PER_FILE", cap)
    spliced, fresh = engines
    uri = "file:///tmp/splice/a.c"
    parts = initial()
    for e in engines:
        e.open(uri, "".join(parts), "c", 1)
        e.worker.stop()  # no background analysis: the test runs each one itself
        e._analyze(uri)
    rng = random.Random(20)
    reused = hinted = flagged = 0
    for step in range(2, 42):
        edit(rng, parts, step)
        text = "".join(parts)
        spliced.change(uri, step, [(None, text)])
        spliced._analyze(uri)
        fresh.docs[uri].memo = None  # from nothing: every function worked on
        fresh.change(uri, step, [(None, text)])
        fresh._analyze(uri)
        a, b = spliced.docs[uri].result, fresh.docs[uri].result
        assert a is not None and b is not None and a.version == b.version == step
        assert seen(a) == seen(b), f"step {step}"
        assert spliced.pool.cutoff(0.2) == fresh.pool.cutoff(0.2)
        reused += spliced.stats.counters["cache_hits"] > 0
        hinted += sum(bool(fr.similar) for fr in a.functions)
        flagged += sum(fr.flagged for fr in a.functions)
    # The run exercised what it claims to: hints into the file, flags and reuse.
    assert hinted and flagged and reused
    assert spliced.stats.counters["similar_lookups"] < fresh.stats.counters["similar_lookups"]
