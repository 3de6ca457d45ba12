"""parsing/metrics.py per language (real tree-sitter grammars), the fused head's file format
and the flag policy (budget and per-language gate)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.engine.policy import ScorePool, budget_cutoff, flagged, language_off
from alpine_lsp.engine.settings import parse_settings
from alpine_lsp.model.fusion import FusedHead, feature_names
from alpine_lsp.parsing.metrics import METRIC_NAMES, function_metrics

C = """int copy(char *dst, const char *src, int n) {
    char buf[16];
    if (src == NULL) return -1;
    for (int i = 0; i < n; i++) {
        if (i > 3 && n < 9) { buf[i + 1] = *(src + i); }
    }
    strcpy(buf, src);
    memcpy(dst, buf, (size_t)n);
    p->len = n;
    goto out;
out:
    return 0;
}"""


def test_c_metrics() -> None:
    m = function_metrics(C, "c")
    assert set(m) == set(METRIC_NAMES)
    assert m["lines"] == 13 and m["params"] == 3
    assert m["cyclomatic"] == 1 + 3 + 1  # if, for, if, &&
    assert m["nesting"] == 2 and m["loops"] == 1
    assert m["index_ops"] == 1 and m["index_arith"] == 1
    assert m["pointer_ops"] >= 2 and m["casts"] == 1
    assert m["string_calls"] == 1 and m["memory_calls"] == 1
    assert m["early_returns"] == 1 and m["error_checks"] == 1 and m["gotos"] == 1


def test_python_metrics() -> None:
    code = (
        "def load(blob, cmd):\n"
        "    if blob is None:\n"
        "        return None\n"
        "    try:\n"
        "        obj = pickle.loads(blob)\n"
        "    except ValueError:\n"
        "        return None\n"
        "    subprocess.run(cmd, shell=True)\n"
        "    return eval(obj[1:])\n"
    )
    m = function_metrics(code, "python")
    assert m["deser_calls"] == 1 and m["exec_calls"] == 2
    assert m["early_returns"] == 2 and m["error_checks"] >= 2 and m["index_ops"] == 1
    assert m["params"] == 2


def test_java_metrics() -> None:
    code = (
        "public Object read(InputStream in, String c) throws Exception {\n"
        "    if (in == null) { return null; }\n"
        "    Runtime.getRuntime().exec(c);\n"
        "    int[] a = new int[4];\n"
        "    a[c.length() - 1] = (int) 3L;\n"
        "    return new ObjectInputStream(in).readObject();\n"
        "}"
    )
    m = function_metrics(code, "java")
    assert m["exec_calls"] == 1 and m["deser_calls"] == 2
    assert m["casts"] == 1 and m["index_arith"] == 1 and m["early_returns"] == 1


def test_js_go_rust_metrics() -> None:
    js = "function show(el, s) { el.innerHTML = s; child_process.exec(s); return eval(s); }"
    m = function_metrics(js, "javascript")
    assert m["exec_calls"] == 3
    go = (
        "func run(name string) error {\n"
        "\tcmd := exec.Command(name)\n"
        "\tp := unsafe.Pointer(&name)\n"
        "\tif err != nil {\n\t\treturn err\n\t}\n"
        "\treturn nil\n}"
    )
    m = function_metrics(go, "go")
    assert m["exec_calls"] == 1 and m["memory_calls"] >= 1 and m["early_returns"] == 1
    rs = "fn f(a: &[u8]) -> u8 { unsafe { std::mem::transmute::<u8, i8>(a[0]); } a[0] }"
    m = function_metrics(rs, "rust")
    assert m["unsafe_ops"] >= 1 and m["memory_calls"] == 1


def test_metrics_never_crash_and_are_fast() -> None:
    for lang in ("c", "cpp", "java", "python", "javascript", "typescript", "go", "rust"):
        for code in ("", "}}}{{{", "\x00\udcff", "if (" * 500):
            m = function_metrics(code, lang)
            assert all(v >= 0 for v in m.values())
    body = "\n".join(f"    if (x{i} > {i}) {{ y[{i} + 1] = f(x{i}); }}" for i in range(40))
    code = f"int f(int *y) {{\n{body}\n    return 0;\n}}"
    t0 = time.perf_counter()
    for _ in range(20):
        function_metrics(code, "c")
    assert (time.perf_counter() - t0) / 20 < 0.25  # generous: a shared CPU; typically ~10 ms


def test_fused_head_round_trip(tmp_path: Path) -> None:
    names = feature_names(4)
    rng = np.random.default_rng(0)
    head = FusedHead(
        names, rng.normal(size=len(names)), np.ones(len(names)), rng.normal(size=len(names)), 0.3
    )
    head.save(tmp_path)
    back = FusedHead.load(tmp_path)
    assert (
        back is not None
        and back.digest()
        == FusedHead(names, back.mean, back.scale, back.weight, back.bias).digest()
    )
    emb = rng.normal(size=(2, 4))
    logits, contribs = back.score(
        ["int f(int *p) { return p[1]; }", "x"], "c", np.zeros(2), np.ones(2), emb
    )
    assert logits.shape == (2,) and set(contribs[0]) == set(METRIC_NAMES)
    assert FusedHead.load(tmp_path / "nothing") is None
    (tmp_path / "fused_head.json").write_text(json.dumps({"features": ["x"]}))
    with pytest.raises((ValueError, KeyError)):
        FusedHead.load(tmp_path)


def test_budget_and_pool() -> None:
    pool = ScorePool()
    assert pool.cutoff(0.03) == 0.0  # empty: the threshold alone decides
    pool.set_file("a", {f"h{i}": i / 100 for i in range(100)})
    cut = pool.cutoff(0.03)
    assert cut == pytest.approx(0.97)
    assert flagged(0.98, 0.5, cut) and not flagged(0.96, 0.5, cut) and not flagged(0.98, 0.99, cut)
    pool.remove_file("a")
    assert pool.cutoff(0.03) == 0.0
    assert budget_cutoff([i / 100 for i in range(100)], 0.03) == cut
    assert budget_cutoff([0.9] * 10, 0.03) == 0.0 and budget_cutoff([0.1] * 100, 1.0) == 0.0


def test_language_gate() -> None:
    table = {
        "c": {"fit_rows": 900, "test_roc_auc": 0.66},
        "go": {"fit_rows": 200, "test_roc_auc": 0.55},
        "rust": {"fit_rows": 0, "test_roc_auc": None},
    }
    assert language_off(table, "c", None) is None
    assert "0.55 is below 0.60" in language_off(table, "go", None)
    assert "no rust training data" in language_off(table, "rust", None)
    assert "no typescript training data" in language_off(table, "tsx", None)
    assert language_off(table, "go", ("go", "c")) is None  # opted in
    assert language_off({}, "go", None) is None  # a model without the record


def test_flag_budget_setting() -> None:
    s, errors = parse_settings({"flagBudget": 0.1})
    assert s.flag_budget == 0.1 and not errors
    s, errors = parse_settings({"flagBudget": 3})
    assert s.flag_budget == 0.03 and "flagBudget" in errors[0]
