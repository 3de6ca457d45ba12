"""eval clone on a tiny random model and a small synthetic BigCloneBench in the real format."""

from __future__ import annotations

import gzip
import json
import random
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from alpine_lsp.evalkit.data import load_bcb
from alpine_lsp.model.tiny import create_tiny_model
from alpine_lsp.train import eval_clone
from alpine_lsp.train.eval_clone import balanced_indices, pair_metrics, tfidf_baseline

# Each family shares its vocabulary; clones are two members of one family.
FAMILIES = [
    "int total = 0; for (int i = 0; i < xs.length; i++) total += xs[i]; return total;",
    "BufferedReader r = new BufferedReader(new FileReader(path)); return r.readLine();",
    'MessageDigest md = MessageDigest.getInstance("MD5"); md.update(bytes); return md.digest();',
    "Socket s = new Socket(host, port); OutputStream out = s.getOutputStream(); out.flush();",
    "Collections.sort(items, comparator); return items.subList(0, Math.min(k, items.size()));",
    'String json = mapper.writeValueAsString(obj); response.setContentType("json");',
]


def synthetic_bcb(d: Path, per_family: int = 6, seed: int = 0) -> Path:
    rng = random.Random(seed)
    funcs, fam_of = {}, {}
    for f, body in enumerate(FAMILIES):
        for k in range(per_family):
            fid = str(1000 + f * 100 + k)
            funcs[fid] = f"public static Object m{fid}(Object a{k}) {{ {body} }}"
            fam_of[fid] = f
    ids = sorted(funcs)
    pairs = []
    for a in ids:
        for b in ids:
            if a < b and rng.random() < 0.3:
                same = fam_of[a] == fam_of[b]
                pairs.append((a, b, int(same), rng.randint(0, 4) if same else 5))
    rng.shuffle(pairs)
    d.mkdir(parents=True, exist_ok=True)
    with gzip.open(d / "functions.jsonl.gz", "wt", encoding="utf-8") as f:
        for fid, code in funcs.items():
            f.write(json.dumps({"id": int(fid), "code": code}) + "\n")
    n = len(pairs)
    parts = {
        "train": pairs[: n // 2],
        "valid": pairs[n // 2 : 3 * n // 4],
        "test": pairs[3 * n // 4 :],
    }
    for name, rows in parts.items():
        with gzip.open(d / f"pairs_{name}.tsv.gz", "wt", encoding="utf-8") as f:
            f.write("id1\tid2\tlabel\tclone_type\n")
            for a, b, label, kind in rows:
                f.write(f"{a}\t{b}\t{label}\t{kind}\n")
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return create_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def test_clone_json(tiny, tmp_path, capsys):
    data = synthetic_bcb(tmp_path / "bcb")
    report = tmp_path / "clone.md"
    rc = eval_clone.main(
        [
            "--model",
            str(tiny),
            "--data",
            str(data),
            "--json",
            "--limit",
            "40",
            "--latency-n",
            "3",
            "--threads",
            "1",
            "--report",
            str(report),
        ]
    )
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    for key in (
        "pruned",
        "none",
        "baseline",
        "flops_ratio",
        "speedup_batch1",
        "note",
        "positive_share",
        "n",
        "memory_source",
    ):
        assert key in res, key
    assert "78%" in res["note"]
    assert res["n"]["test_pairs"] == 40 and res["n"]["valid_pairs"] == 40
    for name in ("pruned", "none", "baseline"):
        m = res[name]
        assert 0.0 <= m["roc_auc"] <= 1.0
        assert set(m["recall_by_clone_type"]) == {"0", "1", "2", "3", "4"}
        assert m["balanced"]["positives"] == m["balanced"]["negatives"] > 0
        assert 0.0 <= m["f1"] <= 1.0
    none, pruned = res["none"]["tokens_per_layer"], res["pruned"]["tokens_per_layer"]
    assert len(set(none)) == 1
    assert all(b <= a + 1e-9 for a, b in pairwise(pruned))
    assert res["flops_ratio"] >= 1.0
    assert res["none"]["latency_ms"]["n"] == 3
    assert "balanced resample" in report.read_text()
    assert Path(res["plot"]).is_file()


def test_balanced_resample_is_balanced():
    labels = np.array([1] * 78 + [0] * 22)
    idx = balanced_indices(labels, seed=1)
    assert len(idx) == 44 and labels[idx].sum() == 22
    assert set(np.flatnonzero(labels == 0)) <= set(idx)  # every negative kept
    assert np.array_equal(idx, balanced_indices(labels, seed=1))  # seeded
    few_pos = np.array([1] * 3 + [0] * 10)
    assert few_pos[balanced_indices(few_pos)].sum() == 3 and len(balanced_indices(few_pos)) == 6


def test_pair_metrics_recall_by_type():
    cos = np.array([0.9, 0.2, 0.95, 0.1])
    labels = np.array([1, 1, 1, 0])
    types = np.array([0, 3, 3, 5])
    m = pair_metrics(cos, labels, types, threshold=0.5)
    assert m["recall_by_clone_type"]["0"] == 1.0 and m["recall_by_clone_type"]["3"] == 0.5
    assert m["recall"] == pytest.approx(2 / 3) and m["precision"] == 1.0


def test_tfidf_cosine_beats_chance(tmp_path):
    funcs, pairs = load_bcb(synthetic_bcb(tmp_path / "bcb", seed=4))
    base = tfidf_baseline(funcs, pairs["train"], pairs["valid"], pairs["test"])
    assert base["roc_auc"] > 0.9
    assert base["balanced"]["f1"] > 0.7


def python_pool(repo: Path) -> Path:
    """A small checkout of four unrelated Python functions, one file each."""
    repo.mkdir()
    bodies = [
        "    total = 0\n    for item in items:\n        if item.ok:\n"
        "            total += item.size\n    return total",
        "    with open(path, encoding='utf-8') as fh:\n        lines = [l.strip() for l in fh]\n"
        "    return [l for l in lines if l and not l.startswith('#')]",
        "    parts = url.split('://', 1)\n    scheme = parts[0] if len(parts) > 1 else 'http'\n"
        "    return scheme.lower(), parts[-1].rstrip('/')",
        "    while queue:\n        node = queue.pop()\n        seen.add(node)\n"
        "        queue.extend(n for n in graph[node] if n not in seen)\n    return seen",
    ]
    for i, body in enumerate(bodies):
        (repo / f"m{i}.py").write_text(f"def f{i}(items, path, url, queue, seen, graph):\n{body}\n")
    return repo


def test_tiers_command_sets_thresholds_and_reports_per_type(tmp_path: Path, capsys) -> None:
    """eval clone --tiers on the synthetic BCB and a small Python checkout: per-language
    thresholds come out, are written as JSON, and BCB's family copies are found by the exact
    tier (each family member is the same body under another name: type-2)."""
    data = synthetic_bcb(tmp_path / "bcb")
    model = create_tiny_model(tmp_path / "m")
    repo = python_pool(tmp_path / "repo")
    out = tmp_path / "t.json"
    args = ["--tiers", "--model", str(model), "--data", str(data), "--python-repo", str(repo)]
    code = eval_clone.main([*args, "--write-thresholds", str(out), "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    py = res["languages"]["python"]
    assert py["eligible"] == 4 and py["chance_per_1000"]["near_or_semantic"] == 0.0
    assert py["near"] is not None and 0 < py["near"] <= 1.0
    assert json.loads(out.read_text())["python"]["near"] == py["near"]
    test = res["bcb_test"]["raw"]["exact_only"]
    assert test["precision"] == 1.0 and test["recall"] == 1.0  # every clone pair is a copy


def test_java_pool_counts_methods_of_one_fix_as_one_file(tmp_path: Path) -> None:
    """manysstubs4j's methods of one bug come from one file: two near-copy methods of one fix
    are not a chance hint from another file, while the same copies in two bugs are."""
    import gzip
    import types

    from alpine_lsp.train.clone_tiers import keys_of, load_pools, mss_file, pool_scores

    body = (
        "public int {n}(int[] xs) {{\n  int total = 0;\n  for (int i = 0; i < xs.length; i++) {{\n"
        "    if (xs[i] > {k}) {{ total += xs[i] * {k}; }} else {{ total -= 1; }}\n  }}\n"
        "  return total;\n}}"
    )
    rows = [
        ("msb-7-0-f", body.format(n="sumAbove", k=2)),
        ("msb-7-1-f", body.format(n="sumOver", k=3).replace("  return", "  log(total);\n  return")),
        ("msb-9-0-f", 'public String name() {\n  return this.first + " " + this.last;\n}'),
    ]
    d = tmp_path / "mss"
    d.mkdir()
    with gzip.open(d / "functions.jsonl.gz", "wt", encoding="utf-8") as f:
        for rid, code in rows:
            f.write(json.dumps({"id": rid, "func": code, "target": 0}) + "\n")
    assert mss_file("msb-7-1-f") == "msb-7"
    args = types.SimpleNamespace(c_corpus=None, java_pool=str(d), python_repo=None, pool_n=2000)
    pool = load_pools(args)["java"]
    assert sorted(pool["groups"]) == ["msb-7", "msb-7", "msb-9"]
    keys = keys_of(pool["codes"], "java")
    same_file = pool_scores(keys, None, pool["names"], pool["groups"])
    apart = pool_scores(keys, None, pool["names"], [f"f{i}" for i in range(3)])
    i = next(j for j, c in enumerate(pool["codes"]) if "sumAbove" in c)
    assert same_file["near"][i] == float("-inf")
    assert apart["near"][i] > 0.5


def test_pairs_read_as_clones_are_not_chance_and_bad_reading_files_are_named(
    tmp_path: Path,
) -> None:
    from alpine_lsp.train.clone_tiers import keys_of, load_judged, pool_scores, text_digest

    a = (
        "int sum_pos(int *xs, int n) {\n  int t = 0;\n  for (int i = 0; i < n; i++) {\n"
        "    if (xs[i] > 0) { t += xs[i]; }\n  }\n  return t;\n}"
    )
    b = a.replace("int sum_pos", "int sum_pos2")
    b = b.replace("  return t;", "  log_sum(t);\n  return t;")
    c = 'void greet(const char *who) {\n  printf("hello %s\\n", who);\n  fflush(stdout);\n}'
    codes = [a, b, c]
    keys = keys_of(codes, "c")
    names, groups = ["sum_pos", "sum_pos2", "greet"], ["f1", "f2", "f3"]
    plain = pool_scores(keys, None, names, groups, near_identifiers=0.5)
    assert plain["near"][0] > 0.5  # a chance hint, as far as the pool knows
    path = tmp_path / "judged.json"
    pair = {"language": "c", "a": text_digest(a), "b": text_digest(b), "verdict": "template"}
    path.write_text(json.dumps({"pairs": [pair]}))
    judged = load_judged(path)
    digests = [text_digest(t) for t in codes]
    read = pool_scores(keys, None, names, groups, 0.5, judged["c"], digests)
    assert read["near"][0] == float("-inf") and read["near"][1] == float("-inf")
    path.write_text(json.dumps({"pairs": [pair, {"language": "c", "verdict": "maybe"}]}))
    with pytest.raises(ValueError, match="pair 1 is malformed"):
        load_judged(path)


def test_tiers_command_writes_centred_cuts_and_means(tmp_path: Path, capsys) -> None:
    from alpine_lsp.evalkit.errors import CommandError
    from alpine_lsp.model.similarity import SIMILARITY_WEIGHTS

    model = create_tiny_model(tmp_path / "m")
    repo = python_pool(tmp_path / "repo")
    thr, out = tmp_path / "t.json", tmp_path / "space"
    out.mkdir()
    base = ["--tiers", "--model", str(model), "--data", "", "--python-repo", str(repo)]
    code = eval_clone.main([*base, "--centre", "python", "--write-thresholds", str(thr),
                            "--write-similarity", str(out), "--json"])  # fmt: skip
    assert code == 0
    res = json.loads(capsys.readouterr().out)["languages"]["python"]
    table = json.loads(thr.read_text())["python"]
    assert table["centred"] is True
    assert table["cosine"] == res["cosine_centred"] and table["cosine_raw"] == res["cosine"]
    assert b"python" in (out / SIMILARITY_WEIGHTS).read_bytes()[:200]
    with pytest.raises(CommandError, match="no pool for go"):
        eval_clone.main([*base, "--centre", "go"])
