"""`eval flags`: blind reading batches from real `check` reports, and the tally of verdicts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alpine_lsp.cli.main import main
from alpine_lsp.evalkit.errors import CommandError
from alpine_lsp.train import eval_flags

C_FILE = """
#include <string.h>
#include <stdlib.h>
int add(int a, int b) { return a + b; }
int sub(int a, int b) { return a - b; }
char *dup(const char *s) { char *p = malloc(strlen(s)); strcpy(p, s); return p; }
int sum(const int *v, int n) {
    int t = 0;
    for (int i = 0; i < n; i++)
        t += v[i];
    return t;
}
void fill(char *buf, int n, char c) {
    int i;
    for (i = 0; i <= n; i++)
        buf[i] = c;
    if (n > 0)
        buf[n - 1] = 0;
}
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A real `check --all --format json` report of a small project (the bundled model)."""
    root = tmp_path_factory.mktemp("flags")
    proj = root / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "a.c").write_text(C_FILE)
    (proj / "src" / "b.c").write_text(C_FILE.replace("add", "plus").replace("fill", "pad"))
    out = root / "proj.json"
    args = ["check", str(proj), "--all", "--format", "json", "--no-cache", "--threads", "1"]
    assert main([*args, "--output", str(out)]) == 0
    return out


def _batch_ids(d: Path) -> list[str]:
    return [
        m
        for b in sorted(d.glob("batch*.md"))
        for m in re.findall(r"^## (\S+)", b.read_text(), re.M)
    ]


def test_sample_writes_blind_batches_and_a_key(report: Path, tmp_path: Path) -> None:
    key = eval_flags.sample([report], tmp_path / "s", per=2, share=0.5, seed=3, batches=2)
    ids = _batch_ids(tmp_path / "s")
    assert sorted(ids) == sorted(key) and len(ids) == len(set(ids))  # each once
    assert all(re.match(r"proj:[ab]\.c:\d+$", i) for i in ids)  # report:path:line
    text = "".join(p.read_text() for p in (tmp_path / "s").glob("batch*.md"))
    assert not any(r in text for r in ("length", "risky", "flagged", "random"))  # blind
    assert json.loads((tmp_path / "s" / "key.json").read_text()) == key
    # what each ranking's top holds: the two longest functions of each file, no flagged one
    _, fns = eval_flags._functions(report)
    assert len(fns) == 10
    longest = {f["id"].rsplit(":", 1)[1] for f in eval_flags.top(fns, "length", 0.4)}
    assert longest == {"7", "13"}
    assert not any(f["flagged"] for f in eval_flags.top(fns, "random", 0.03))
    assert eval_flags.top(fns, "risky", 0.2)[0]["name"] == "dup"  # malloc + strlen + strcpy
    again = eval_flags.sample([report], tmp_path / "t", per=2, share=0.5, seed=3, batches=2)
    assert again == key and _batch_ids(tmp_path / "t") == ids  # the seed decides


def test_tally_counts_yes_per_ranking_and_names_a_bad_row(report: Path, tmp_path: Path) -> None:
    d = tmp_path / "s"
    key = eval_flags.sample([report], d, per=2, share=0.5, seed=3, batches=1)
    ids = sorted(key)
    yes = set(ids[::2])
    (d / "verdict0.json").write_text(
        json.dumps([{"id": i, "verdict": "yes" if i in yes else "no"} for i in ids[:-1]])
    )
    res = eval_flags.tally(d)
    for r, cells in res.items():
        read = [i for i in ids[:-1] if r in key[i]["rankings"]]  # the unread one counts nowhere
        assert cells["all"] == [sum(i in yes for i in read), len(read)]
        assert cells["proj"] == cells["all"]
    (d / "verdict1.json").write_text(json.dumps([{"id": ids[0], "verdict": "maybe"}]))
    with pytest.raises(CommandError, match=r"verdict1\.json: row 0"):
        eval_flags.tally(d)


def test_a_file_that_is_not_a_report_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "nope.json"
    bad.write_text("[1, 2]")
    with pytest.raises(CommandError, match=r"nope\.json: not a `check --all --format json` report"):
        eval_flags.sample([bad], tmp_path / "o")
    with pytest.raises(SystemExit, match=r"nope\.json"):
        main(["eval", "flags", "sample", str(bad), "--out", str(tmp_path / "o")])
