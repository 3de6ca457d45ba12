"""`alpine-lsp learn`: bug-fix mining on real git repositories made here, the adapter files, the
engine's pick-up, and one run on a real bundle clone."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.evalkit.errors import CommandError
from alpine_lsp.history import learn as learn_mod
from alpine_lsp.history.fit import pairwise_accuracy, precision_at_budget, roc_auc
from alpine_lsp.history.mine import HistoryError, is_fix_message, mine
from alpine_lsp.model import adapter as adapter_mod
from alpine_lsp.model.adapter import AdapterError, adapter_dir, load_adapter

REPOS = Path(__file__).resolve().parents[1].parent / "shared" / "repos"


# -- the fix rule ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "message",
    [
        "Fix buffer overflow in jv_parse",
        "uv: fixes a crash when the loop is closed",
        "Plug memory leak in tls adapter",
        "Address CVE-2023-50246 in decNumber",
        "segfault on empty input\n\nCloses #1234",
        "unix: handle EINTR (regression since 1.2)",
        "Update sessions.py\n\nresolves psf/requests#42",
        "bugfix: wrong length",
    ],
)
def test_fix_messages(message):
    assert is_fix_message(message)


@pytest.mark.parametrize(
    "message",
    [
        "Add prefix handling to the parser",
        "debug: print more",
        "tests: new fixture for streams",
        "Fix typo in the manual",
        "fix docs for uv_run",
        'Revert "Fix crash in foo"',
        "Bump version to 1.7",
        "Mention issue #12 in the changelog",
        "",
    ],
)
def test_not_fix_messages(message):
    assert not is_fix_message(message)


# -- metrics --------------------------------------------------------------------------------
def test_metrics_against_hand_computed_values():
    y = np.array([1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.4, 0.4, 0.1])
    # positives 0.9 and 0.4 against negatives 0.8, 0.4, 0.1: 3 + 1.5 wins out of 6
    assert roc_auc(y, s) == pytest.approx(4.5 / 6)
    assert pairwise_accuracy(s, np.array([[0, 1], [2, 3]])) == pytest.approx(0.75)
    assert precision_at_budget(y, s, 0.2) == 1.0
    assert roc_auc(np.ones(3), np.arange(3)) is None


# -- a real repository made here ------------------------------------------------------------
class Repo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.t = 1_600_000_000
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "GIT_AUTHOR_DATE": f"{self.t} +0000",
            "GIT_COMMITTER_DATE": f"{self.t} +0000",
        }
        out = subprocess.run(
            ["git", "-C", str(self.path), "-c", "commit.gpgsign=false", *args],
            check=True,
            capture_output=True,
            env=env,
        )
        return out.stdout.decode()

    def commit(self, message: str, files: dict[str, str | bytes | None]) -> None:
        self.t += 86400
        for name, content in files.items():
            p = self.path / name
            if content is None:
                self.git("rm", "-q", name)
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
            self.git("add", name)
        self.git("commit", "-q", "--allow-empty", "-m", message)


def c_file(versions: dict[int, str], n: int = 6) -> str:
    """n functions; function i has body versions[i] or a default one."""
    out = ["#include <string.h>\n"]
    for i in range(n):
        body = versions.get(i, f"    return a + {i};")
        out.append(f"int f{i}(int a, char *s)\n{{\n{body}\n}}\n")
    return "\n".join(out)


BUGGY = "    char b[8];\n    strcpy(b, s);\n    return b[0] + a;"
FIXED = "    char b[8];\n    strncpy(b, s, sizeof b - 1);\n    b[7] = 0;\n    return b[0] + a;"


def test_mining_labels_pairs_and_clean_rows(tmp_path):
    r = Repo(tmp_path / "r")
    r.commit("initial import", {"src/a.c": c_file({1: BUGGY}), "README.md": "hi"})
    r.commit("add a feature", {"src/a.c": c_file({1: BUGGY, 2: "    return a * 2;"})})
    r.commit("Fix overflow in f1", {"src/a.c": c_file({1: FIXED, 2: "    return a * 2;"})})
    res = mine(r.path)
    assert res.commits_seen == 3 and res.fix_commits == 1 and res.pairs == 1
    kinds = {(row.kind, row.name, row.label) for row in res.rows}
    assert ("buggy", "f1", 1) in kinds and ("fixed", "f1", 0) in kinds
    buggy = next(row for row in res.rows if row.kind == "buggy")
    fixed = next(row for row in res.rows if row.kind == "fixed")
    assert "strcpy" in buggy.text and "strncpy" in fixed.text and buggy.pair == fixed.pair
    clean = [row for row in res.rows if row.kind == "clean"]
    assert len(clean) == 1 and clean[0].name != "f1" and clean[0].label == 0
    assert res.head == r.git("rev-parse", "HEAD").strip()


def test_mining_skips_binary_renames_bad_utf8_tests_and_huge_commits(tmp_path):
    r = Repo(tmp_path / "r")
    r.commit(
        "start",
        {
            "a.c": c_file({}),
            "bin.c": b"int x;\x00\x01\x02",
            "latin.c": c_file({}).encode() + b"/* caf\xe9 */\n",
            "old.c": c_file({0: BUGGY}),
            "tests/t.c": c_file({}),
            "big.c": c_file({}, n=12),
        },
    )
    r.commit("fix crash in binary blob", {"bin.c": b"int y;\x00\x03"})
    r.commit("fix bug", {"latin.c": c_file({0: FIXED}).encode() + b"/* caf\xe9 */\n"})
    r.git("mv", "old.c", "new.c")
    (r.path / "new.c").write_text(c_file({0: FIXED}))
    r.git("add", "new.c")
    r.commit("fix leak while moving the file", {})
    r.commit("fix the test", {"tests/t.c": c_file({0: FIXED})})
    r.commit("fix everything", {"big.c": c_file({i: FIXED for i in range(12)}, n=12)})
    # a merge commit with a fix message is not mined
    r.git("checkout", "-q", "-b", "side")
    r.commit("side work", {"a.c": c_file({3: "    return 3;"})})
    r.git("checkout", "-q", "main")
    r.commit("main work", {"a.c": c_file({4: "    return 4;"})})
    r.t += 86400
    r.git("merge", "-q", "--no-edit", "-m", "Merge: fix conflicts", "side")
    res = mine(r.path)
    sk = res.skipped
    assert sk["binary files"] == 1
    assert sk["non-UTF-8 files"] == 1
    assert sk["renamed files"] == 1
    assert sk["test files"] == 1
    assert sk["commits changing more than 4 functions"] == 1
    assert res.pairs == 0 and res.rows == []


def test_history_errors_are_clear(tmp_path):
    with pytest.raises(HistoryError, match="not inside a git repository"):
        mine(tmp_path)
    empty = Repo(tmp_path / "empty")
    with pytest.raises(HistoryError, match="no commits"):
        mine(empty.path)
    r = Repo(tmp_path / "r")
    for i in range(3):
        r.commit(f"change {i}", {"a.c": c_file({0: f"    return {i};"})})
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", r.path.as_uri(), str(shallow)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(HistoryError, match="shallow clone"):
        mine(shallow)


def test_too_few_pairs_writes_no_adapter(tmp_path, tiny_model_dir, capsys):
    r = Repo(tmp_path / "r")
    r.commit("start", {"a.c": c_file({0: BUGGY})})
    r.commit("Fix overflow", {"a.c": c_file({0: FIXED})})
    with pytest.raises(CommandError) as raised:
        learn_mod.main([str(r.path), "--model", str(tiny_model_dir), "--threads", "1"])
    assert raised.value.code == 1
    assert "only 1 usable fix pairs" in str(raised.value)
    assert "No adapter was written" in str(raised.value)
    assert not adapter_dir(r.path).exists()


def fix_history(path: Path, n: int = 45) -> Repo:
    """n fix commits, each fixing one function of a file of n functions (plus noise commits)."""
    r = Repo(path)
    r.commit("start", {"lib.c": c_file({i: BUGGY.replace("8", str(8 + i)) for i in range(n)}, n)})
    state = {i: BUGGY.replace("8", str(8 + i)) for i in range(n)}
    for i in range(n):
        state[i] = FIXED.replace("8", str(8 + i)).replace("7", str(7 + i))
        r.commit(f"Fix overflow in f{i}", {"lib.c": c_file(state, n)})
        if i % 5 == 0:
            r.commit(f"feature {i}", {"README.md": f"v{i}"})
    return r


@pytest.fixture(scope="module")
def history_repo(tmp_path_factory) -> Path:
    return fix_history(tmp_path_factory.mktemp("hist") / "r").path


def test_learn_writes_private_adapter_that_loads(history_repo, tiny_model_dir, capsys):
    code = learn_mod.main([str(history_repo), "--model", str(tiny_model_dir), "--threads", "1"])
    assert code == 0, capsys.readouterr().err
    assert "adapter written" in capsys.readouterr().out
    folder = adapter_dir(history_repo)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("adapter.json", "adapter.safetensors"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    meta = json.loads((folder / "adapter.json").read_text())
    assert meta["counts"]["pairs"] == 45 and meta["counts"]["fix_commits"] == 45
    assert meta["commits"]["head"] and 0.0 <= meta["blend"]["weight"] <= 1.0
    from alpine_lsp.model.api import load_model

    model = load_model(tiny_model_dir, device="cpu", threads=1)
    a = load_adapter(folder, model.fingerprint)
    assert a.fixes == 45
    with pytest.raises(AdapterError, match="another model"):
        load_adapter(folder, "0" * 24)


def test_evaluate_json_is_one_object(history_repo, tiny_model_dir, capsys):
    args = [str(history_repo), "--evaluate", "--json", "--model", str(tiny_model_dir)]
    assert learn_mod.main([*args, "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("fix_commits", "pairs", "cut", "global", "adapter", "blend"):
        assert key in out
    for key in ("global", "adapter", "blend"):
        assert set(out[key]) == {"auc", "pairwise_acc", "precision_at_budget"}
    assert out["test"]["pairs"] > 0 and out["train"]["pairs"] >= 30
    assert set(out["baselines"]) >= {"length", "prior_fixes"}
    assert 0.5 <= out["auc_ceiling_if_pairs_tie"] <= 1.0


def test_interrupted_write_leaves_previous_adapter(tmp_path, monkeypatch):
    folder = tmp_path / ".alpine-lsp"
    n = 3 + len(adapter_mod.SCALARS)
    names = adapter_mod.feature_names(3)
    blend = {"weight": 0.5, "adapter_mean": 0, "adapter_std": 1, "global_mean": 0, "global_std": 1}

    def tensors(v: float) -> dict:
        return {"mean": np.zeros(n), "std": np.ones(n), "w": np.full(n, v), "b": np.zeros(1)}

    meta = {"base_fingerprint": "fp", "features": names, "blend": blend}
    adapter_mod.save_adapter(folder, tensors(1.0), meta)
    first = load_adapter(folder, "fp")
    real_replace = os.replace
    calls = []

    def failing(src, dst):
        calls.append(dst)
        if str(dst).endswith("adapter.json"):
            raise KeyboardInterrupt  # stopped between the two renames
        real_replace(src, dst)

    monkeypatch.setattr(adapter_mod.os, "replace", failing)
    with pytest.raises(KeyboardInterrupt):
        adapter_mod.save_adapter(folder, tensors(2.0), meta)
    monkeypatch.setattr(adapter_mod.os, "replace", real_replace)
    again = load_adapter(folder, "fp")
    assert np.allclose(again.w, first.w) and again.digest == first.digest
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    adapter_mod.save_adapter(folder, tensors(2.0), meta)
    assert np.allclose(load_adapter(folder, "fp").w, 2.0)


def test_damaged_adapter_is_refused(tmp_path):
    folder = tmp_path / ".alpine-lsp"
    folder.mkdir()
    (folder / "adapter.json").write_text("{not json")
    (folder / "adapter.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(AdapterError, match="not valid JSON"):
        load_adapter(folder)
    (folder / "adapter.json").write_text(json.dumps({"format": 1, "weights_sha256": "x"}))
    with pytest.raises(AdapterError, match="does not describe"):
        load_adapter(folder)


def test_scorer_picks_up_adapter_and_changes_cache_key(history_repo, tiny_model_dir, tmp_path):
    from alpine_lsp.engine.adapter import AdapterWatcher
    from alpine_lsp.engine.cache import ScoreCache
    from alpine_lsp.engine.engine import Scorer
    from alpine_lsp.engine.models import ModelHolder
    from alpine_lsp.engine.stats import Stats
    from alpine_lsp.model.api import load_model
    from alpine_lsp.parsing import extract_functions

    root = tmp_path / "ws"
    root.mkdir()
    holder = ModelHolder()
    holder.model = load_model(tiny_model_dir, device="cpu", threads=1)
    scorer = Scorer(holder, ScoreCache(None), Stats())
    scorer.adapters = AdapterWatcher(root, check_every_s=0)
    fns = extract_functions(c_file({0: BUGGY}), "c")
    plain = scorer.score(fns, "c")
    assert plain is not None and "adapter" not in plain[0].parts
    # The adapter learnt on another repository, copied into this workspace: picked up at once.
    src = adapter_dir(history_repo)
    if not src.exists():
        learn_mod.main([str(history_repo), "--model", str(tiny_model_dir), "--threads", "1"])
    (root / ".alpine-lsp").mkdir(mode=0o700)
    for name in ("adapter.json", "adapter.safetensors"):
        (root / ".alpine-lsp" / name).write_bytes((src / name).read_bytes())
    adapted = scorer.score(fns, "c")
    assert adapted is not None and "adapter" in adapted[0].parts
    assert adapted[0].parts["global"] == pytest.approx(plain[0].probability)
    assert scorer.stats.counters["functions_scored"] == 2 * len(fns)  # new key: scored again
    # An adapter for another model is refused and the global scores come back.
    meta = json.loads((root / ".alpine-lsp" / "adapter.json").read_text())
    meta["base_fingerprint"] = "0" * 24
    (root / ".alpine-lsp" / "adapter.json").write_text(json.dumps(meta))
    again = scorer.score(fns, "c")
    assert again is not None and "adapter" not in again[0].parts
    assert "another model" in (scorer.adapters.error or "")


# -- a real repository from the bundles -----------------------------------------------------
def test_mining_a_real_bundle(tmp_path):
    bundle = REPOS / "jq.bundle"
    if not bundle.is_file():
        pytest.skip(f"{bundle} is absent (the shared repositories are not beside this clone)")
    dest = tmp_path / "jq"
    subprocess.run(["git", "clone", "-q", str(bundle), str(dest)], check=True, capture_output=True)
    res = mine(dest, since="2023-01-01", until="2023-12-31")
    assert res.commits_seen > 50
    assert res.pairs >= 5
    assert all(row.text.strip() for row in res.rows)
    langs = [row.language for row in res.rows]
    assert set(langs) <= {"c", "python"} and langs.count("c") > len(langs) / 2  # jq is C
    pairs: dict[str, set[int]] = {}
    for row in res.rows:
        if row.pair:
            pairs.setdefault(row.pair, set()).add(row.label)
    assert all(v == {0, 1} for v in pairs.values())


# -- the server: alpine.learn, $/progress, pick-up without a restart ------------------------
@pytest.mark.asyncio(loop_scope="function")
async def test_server_learn_command_adapts_hover(tmp_path, tiny_model_dir):
    from lsprotocol import types

    from tests.lsp_util import (
        hover,
        model_ready,
        open_doc,
        start,
        stats,
        stop,
        vscode_caps,
        wait_for,
    )

    root = fix_history(tmp_path / "ws").path
    settings = {"model": str(tiny_model_dir), "threshold": 0.0, "debounceMs": 50}
    settings["similarity"] = {"enabled": False}
    client = await start(root, tmp_path / "cache", settings, caps=vscode_caps())
    try:
        await model_ready(client, 300)  # the machine is shared: loads can take minutes
        path = root / "lib.c"
        text = path.read_text()
        open_doc(client, path, text)
        line = next(i for i, s in enumerate(text.splitlines()) if s.startswith("int f3("))

        async def hover_text():
            h = await hover(client, path, line, 5)
            return h.contents.value if h else ""

        await wait_for(lambda: _contains(hover_text(), "defect probability"), 300)
        assert "adapted to this repository" not in await hover_text()
        result = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="alpine.learn", arguments=[])
        )
        assert result["started"] is True
        await wait_for(lambda: any("adapted to" in m.message for m in client.messages), 300)
        adapted = "adapted to this repository (45 fixes)"
        await wait_for(lambda: _contains(hover_text(), adapted), 120)
        assert (root / ".alpine-lsp" / "adapter.json").is_file()
        info = (await stats(client))["adapter"]
        assert info["fix_commits"] == 45 and info["error"] is None
        # $/progress was used: the client was asked to create a token and saw it end.
        assert client.progress_reports
    finally:
        await stop(client)


async def _contains(text_coro, needle: str) -> bool:
    return needle in await text_coro


def test_force_pushed_history_is_reported(tmp_path, tiny_model_dir):
    from alpine_lsp.model.api import load_model

    r = fix_history(tmp_path / "r", n=34)
    model = load_model(tiny_model_dir, device="cpu", threads=1)
    first = learn_mod.learn(r.path, model)
    assert "force-push" not in " ".join(first["skipped"])
    r.git("reset", "-q", "--hard", "HEAD~1")  # drop the last commit, then commit anew
    r.commit("Fix overflow again", {"lib.c": c_file({0: BUGGY}, 34)})
    second = learn_mod.learn(r.path, model)
    assert any("force-push" in k for k in second["skipped"])


# -- each function's own history ------------------------------------------------------------
def test_churn_counts_changes_and_fixes_as_of_each_commit(tmp_path):
    import math

    from alpine_lsp.history.churn import NAMES, walk

    r = Repo(tmp_path / "r")
    r.commit("initial import", {"src/a.c": c_file({})})
    r.commit("tune f1", {"src/a.c": c_file({1: "    return a - 1;"})})
    r.commit("fix crash in f1", {"src/a.c": c_file({1: "    return a - 2;"})})
    r.git("mv", "src/a.c", "src/b.c")
    r.commit("move a.c to b.c", {})
    r.commit("fix overflow in f1 and f2", {"src/b.c": c_file({1: BUGGY, 2: "    return 2;"})})
    r.commit("tests", {"tests/t.c": c_file({1: "    return 9;"})})
    res = mine(r.path)
    ch = walk(r.path)
    assert len(ch.commit_index) == 6
    names = dict(zip(NAMES, ch.features("src/b.c", "f1", 6, ch.head_time), strict=True))
    assert names["log_changes"] == pytest.approx(math.log1p(3))  # tune, fix, fix; not the move
    assert names["log_fixes"] == pytest.approx(math.log1p(2))
    assert names["log_days_since_change"] == pytest.approx(math.log1p(1))  # one commit, a day
    assert names["log_age_days"] == pytest.approx(math.log1p(5))  # followed through the rename
    assert names["log_authors"] == pytest.approx(math.log1p(1))
    f0 = ch.features("src/b.c", "f0", 6, ch.head_time)
    assert f0[:2] == [0.0, 0.0]  # never changed after its creation
    assert ch.features("src/a.c", "f1", 6, ch.head_time) == [0.0] * len(NAMES)  # moved away
    assert ("tests/t.c", "f1") not in ch.events  # test files do not count
    # A fix's two halves are read before the fix: the same history, no leak of the label.
    rows = [row for row in res.rows if row.name == "f1" and row.path == "src/b.c"]
    assert {row.kind for row in rows} == {"buggy", "fixed"}
    m = ch.matrix(rows)
    assert (m[0] == m[1]).all()
    assert m[0][0] == pytest.approx(math.log1p(2)) and m[0][1] == pytest.approx(math.log1p(1))


def test_tied_pairs_ceiling():
    # one pair (rows 0, 1), an unpaired buggy row 2, a clean row 3
    y = np.array([1, 0, 1, 0])
    c = learn_mod.tied_pairs_ceiling(y, np.array([[0, 1]]))
    # buggy 0 vs (fixed 1: tie, clean 3: win), buggy 2 vs both: wins -> 3.5 / 4
    assert c == pytest.approx(3.5 / 4)
