"""defect-risk on the top-ranked line: the real server over stdio (tiny model, every function
flagged at threshold 0), `check` JSON/SARIF with a CWE head, and the words for a line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lsprotocol import types

from alpine_lsp.engine.hints import build_hint, describe_line, parameters
from alpine_lsp.model.cwe import CweHead, read_cwe
from alpine_lsp.model.score import FunctionScore
from alpine_lsp.parsing import extract_functions
from tests.lsp_util import (
    hover,
    model_ready,
    neovim_caps,
    open_doc,
    start,
    stop,
    vscode_caps,
    wait_for,
    with_pull,
)

# Tabs, CRLF, a non-ASCII identifier and an emoji before code on a line; a one-line function.
SOURCE = (
    "#include <string.h>\r\n"
    "\r\n"
    "int copy(char *dst, const char *src, size_t len)\r\n"
    "{\r\n"
    "\tchar buf[16];\r\n"
    "\tif (len == 0)\r\n"
    "\t\treturn 0;\r\n"
    "\t/* 🙂 */ memcpy(buf, src, len);\r\n"
    "\tstrcpy(dst, buf);\r\n"
    "\tint größe = 2;\r\n"
    "\treturn größe;\r\n"
    "}\r\n"
    "int one(int a) { return a + 1; }"
)
LINES = re.split(r"\r\n|\r|\n", SOURCE)


def units(s: str, enc: str) -> int:
    if enc == "utf-8":
        return len(s.encode("utf-8"))
    if enc == "utf-16":
        return len(s.encode("utf-16-le")) // 2
    return len(s)


def conf(model: Path, **extra) -> dict:
    out = {"model": str(model), "threshold": 0.0, "debounceMs": 20}
    out["similarity"] = {"enabled": False}
    out.update(extra)
    return out


async def pull(client, path: Path) -> list[types.Diagnostic]:
    report = await client.text_document_diagnostic_async(
        types.DocumentDiagnosticParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri())
        )
    )
    return [d for d in report.items if d.code == "defect-risk"]


@pytest.mark.parametrize("enc", ["utf-16", "utf-8", "utf-32"])
async def test_range_is_the_top_line_trimmed_in_every_encoding(tiny_model_dir, tmp_path, enc):
    caps = with_pull(vscode_caps())
    caps.general.position_encodings = [enc]
    root = tmp_path / "ws"
    root.mkdir()
    client = await start(root, tmp_path / "cache", conf(tiny_model_dir), caps=caps)
    try:
        await model_ready(client, timeout=300)
        path = root / "main.c"
        open_doc(client, path, SOURCE)
        diags = await wait_for(lambda: pull(client, path), timeout=300)
        assert len(diags) == 2
        copy, one = sorted(diags, key=lambda d: d.range.start.line)
        for d in (copy, one):
            r = d.range
            assert r.start.line == r.end.line < len(LINES)
            text = LINES[r.start.line]
            assert 0 <= r.start.character < r.end.character <= units(text, enc)
            # Trimmed: starts at the first non-blank character, ends at the last.
            lead = text[: len(text) - len(text.lstrip())]
            assert r.start.character == units(lead, enc)
            assert r.end.character == units(text.rstrip(), enc)
            assert d.message.startswith("possible defect (p=")
        # The copy hint sits inside its body; the first line (signature) is ranked last.
        assert 3 <= copy.range.start.line <= 11
        assert one.range.start.line == 12  # a one-line function: its only line
        m = re.fullmatch(r"possible defect \(p=\d\.\d\d\)(?:: (.+))?", copy.message)
        assert m, copy.message
        words = m[1] or ""  # a line of only "{" has nothing to say in words
        assert not re.search(r"##|Ġ", words)
        for ident in re.findall(r"[^\W\d]\w*", words):  # every name is a whole source name
            if ident not in (
                "call",
                "to",
                "with",
                "and",
                "from",
                "the",
                "caller",
                "calls",
                "condition",
                "on",
                "write",
                "assignment",
                "return",
                "of",
                "uses",
                "statement",
                "more",
            ):
                assert re.search(rf"(?<!\w){re.escape(ident)}(?!\w)", SOURCE), ident
        related = copy.related_information or []
        assert 1 <= len(related) <= 2
        for ri in related:
            assert ri.location.uri == path.as_uri()
            line = ri.location.range.start.line
            assert 3 <= line <= 11 and line != copy.range.start.line
            assert ri.location.range.end.character <= units(LINES[line], enc)
            assert ri.message.startswith("also attended (")
    finally:
        assert await stop(client) == 0


async def test_line_hints_off_puts_it_on_the_name_and_hover_lists_lines(tiny_model_dir, tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    caps = with_pull(neovim_caps())
    client = await start(root, tmp_path / "cache", conf(tiny_model_dir), caps=caps)
    try:
        await model_ready(client, timeout=300)
        path = root / "main.c"
        open_doc(client, path, SOURCE)
        on = await wait_for(lambda: pull(client, path), timeout=300)
        assert min(d.range.start.line for d in on) > 2  # copy's hint is in its body
        h = await hover(client, path, 2, 5)  # on "copy"
        value = h.contents.value
        assert "lines the model attended to most" in value
        shown = re.findall(r"line (\d+) \((\d+)%\)", value)
        assert shown and all(3 <= int(n) <= 12 for n, _ in shown)
        # "why" names whole identifiers of the source, never word pieces.
        why = re.search(r"why: .*?: (.*)", value)
        if why:
            for tok in re.findall(r"`([^`]+)`", why[1]):
                assert re.search(rf"(?<!\w){re.escape(tok)}(?!\w)", SOURCE), tok

        off_conf = conf(tiny_model_dir, lineHints=False)
        client.set_configuration({"alpine": off_conf})  # Neovim answers workspace/configuration
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"alpine": off_conf})
        )

        async def on_names():
            got = await pull(client, path)
            lines = sorted((d.range.start.line, d.range.start.character) for d in got)
            return got if lines == [(2, 4), (12, 4)] else None

        off = await wait_for(on_names, timeout=300)
        assert all(d.message.startswith("possible defect (p=") for d in off)
        assert all(":" not in d.message for d in off)  # name-only: no line in words
    finally:
        assert await stop(client) == 0


# ---------------------------------------------------------------------------------------------
# check: JSON and SARIF, with a CWE head beside the tiny model


@pytest.fixture(scope="module")
def cwe_model(tiny_model_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny-cwe") / "model"
    shutil.copytree(tiny_model_dir, d)
    classes = ["CWE-787", "CWE-89", "other"]
    meta = json.loads((d / "alpine.json").read_text())
    dim = int(meta["embed_dim"])
    weight = np.zeros((3, dim))
    bias = np.array([2.0, 0.0, -1.0])  # CWE-787 always wins
    CweHead(classes, "embedding", weight, bias, {}, np.zeros(0), {}).save(d)
    head, digest = read_cwe(d, dim)
    assert head is not None and digest
    return d


def run_check(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alpine_lsp", "check", *args, "--no-cache", "--threads", "1"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )


def test_check_json_and_sarif_carry_lines_and_cwe(cwe_model, tmp_path):
    (tmp_path / "main.c").write_bytes(SOURCE.encode())
    base = ["main.c", "--model", str(cwe_model), "--threshold", "0", "--no-similar"]
    js = run_check(*base, "--format", "json", cwd=tmp_path)
    assert js.returncode == 0, js.stderr
    fns = {f["name"]: f for f in json.loads(js.stdout)["files"][0]["functions"]}
    d = fns["copy"]["defect"]
    assert d["message"].startswith("possible out-of-bounds write (CWE-787, p=")
    assert [c["id"] for c in d["cwe"]] == ["CWE-787", "CWE-89", "other"]
    assert d["cwe"][0]["name"] == "out-of-bounds write"
    top = d["lines"][0]
    text = LINES[top["line"] - 1]
    assert 4 <= top["line"] <= 12
    assert top["start_col"] == len(text) - len(text.lstrip()) + 1  # after the tab, 1-based
    assert top["end_col"] == len(LINES[top["line"] - 1].rstrip()) + 1
    assert fns["one"]["defect"]["lines"][0]["line"] == 13

    sarif = run_check(*base, "--format", "sarif", cwd=tmp_path)
    assert sarif.returncode == 0, sarif.stderr
    run = json.loads(sarif.stdout)["runs"][0]
    res = [r for r in run["results"] if r["ruleId"] == "defect-risk"]
    copy = next(r for r in res if r["message"]["text"].endswith("in copy"))
    region = copy["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (top["line"], top["start_col"])
    assert region["endColumn"] == top["end_col"]
    assert [x["physicalLocation"]["region"]["startLine"] for x in copy["relatedLocations"]] == [
        x["line"] for x in d["lines"][1:3]
    ]
    assert copy["taxa"] == [{"id": "787", "toolComponent": {"name": "CWE"}}]
    (tax,) = run["taxonomies"]
    assert tax["name"] == "CWE" and [t["id"] for t in tax["taxa"]] == ["787"]

    off = run_check(*base, "--format", "json", "--no-line-hints", cwd=tmp_path)
    d_off = {f["name"]: f for f in json.loads(off.stdout)["files"][0]["functions"]}["copy"]
    assert d_off["defect"]["lines"] == []
    assert d_off["defect"]["message"].startswith("possible out-of-bounds write (CWE-787, p=")


# ---------------------------------------------------------------------------------------------
# words for a line, and clamping


def test_describe_line_uses_whole_names():
    params = parameters("int copy(char *dst, const char *src, size_t len)\n{")
    assert params == ["dst", "src", "len"]
    assert parameters("def f(a, b: int = 3):\n    pass") == ["a", "b"]
    assert describe_line("memcpy(buf, src, len);", params) == (
        "memcpy with src and len from the caller"
    )
    assert describe_line("p = malloc(n);") == "call to malloc"
    assert describe_line("if (len == 0)", params) == "condition on len"
    assert describe_line("buf[i] = c;") == "write to buf[…]"
    assert describe_line("DEBUGASSERT(x > 0);") == "call to DEBUGASSERT"
    assert describe_line("}") == "" and describe_line("return 0;") == "return statement"
    assert describe_line('log("if (x) memcpy(a)"); // free(p)') == "call to log"
    # A one-line function's header is not a call to itself.
    assert describe_line("int one(int a) { return a + 1; }", ["a"], "one") == "return of a"


def test_build_hint_never_points_past_the_document():
    text = "int f(void)\n{\n  return g(1);\n}\n"
    (f,) = extract_functions(text, "c")
    score = FunctionScore(
        probability=0.9,
        embedding=np.zeros(4, np.float32),
        tokens_per_layer=[1],
        top_tokens=[],
        n_tokens=1,
        truncated=False,
        flops=0,
        ms=0.0,
        lines=[(40, 0.5), (3, 0.3), (0, 0.1), (2, 0.1)],  # 40 and 0: out of the function
    )
    doc = text.split("\n")
    hint = build_hint(f, score, doc)
    assert [r.line for r in hint.lines] == [2, 1]
    assert hint.top.words == "call to g" and hint.message() == "possible defect (p=0.90): call to g"
    assert (hint.top.start_col, hint.top.end_col) == (2, len("  return g(1);"))
    # The document shrank under a cached score: lines past its end are left out.
    short = build_hint(f, score, doc[:2])
    assert [r.line for r in short.lines] == [1]
    assert build_hint(f, score, doc, line_hints=False).top is None
    # A diagnostic describes only what it shows: the top line and the related ones.
    one = build_hint(f, score, doc, shown=1)
    assert [r.line for r in one.lines] == [2] and one.top.words == "call to g" and not one.related
    # Long (minified) lines are described as short ones, only not kept.
    wide = "x" * 400
    assert describe_line(f"{wide} = memcpy(a, b);") == describe_line("x = memcpy(a, b);")


def test_line_hints_off_skips_the_ranking_and_keys_the_cache_apart(tiny_model_dir, tmp_path):
    """With lineHints off nothing shows ranked lines, so the forward pass does not rank them;
    scores with and without lines are cached apart, so turning it on again brings them back."""
    import time

    from alpine_lsp.engine.engine import Engine
    from alpine_lsp.engine.settings import Settings

    def scored(e: Engine, uri: str, version: int):
        end = time.monotonic() + 60
        while time.monotonic() < end:
            r = e.result(uri)
            if r is not None and r.version == version and r.scored:
                return r
            time.sleep(0.02)
        raise AssertionError("no result")

    settings = Settings(model=str(tiny_model_dir), debounce_ms=0, line_hints=False)
    e = Engine(settings, cache_path=tmp_path / "scores.sqlite")
    try:
        e.load_model()
        end = time.monotonic() + 60
        while e.holder.model is None and time.monotonic() < end:
            time.sleep(0.02)
        off_fp = e.scorer.fingerprint()
        e.open("file:///tmp/l.c", SOURCE, "c", 1)
        r = scored(e, "file:///tmp/l.c", 1)
        assert r.functions and all(not f.score.lines for f in r.functions)
        e.update_settings(Settings(model=str(tiny_model_dir), debounce_ms=0))
        assert e.scorer.fingerprint() != off_fp
        e.change("file:///tmp/l.c", 2, [((0, 0, 0, 0), "\n")], encoding="utf-16")
        r = scored(e, "file:///tmp/l.c", 2)
        assert all(f.score.lines for f in r.functions)
    finally:
        e.stop()
