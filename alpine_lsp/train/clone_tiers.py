"""The similar-code tiers measured: per-language thresholds from chance hints, and recall per
BigCloneBench clone type at those thresholds, beside jscpd.

Chance-hint rate: in a pool of N functions of one language (from different files, with pairs
of same-named functions left out, since those are often versions of one function), how many
functions per 1,000 get at least one hint from another function of the pool. This is what a
user meets in a workspace of N functions; a per-pair rate would say little (at 1 chance pair
in 1,000, every function of a 5,000-function project gets five hints). A threshold is set as
the lowest value (3 digits) at which at most `budget` functions per 1,000 get a hint.

BigCloneBench's clone_type, read off the data with this module's keys (valid pairs): 0 has
identical type-1 keys in every pair (type-1), 1 identical type-2 keys in every pair (type-2),
2 a median 5-gram Jaccard of 0.78 (very strong type-3), 3 of 0.34 (strong type-3), 4 of 0.13
(moderate/weak type-3 and type-4, as random pairs: 0.09); 5 is the non-clones.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..model.similarity import centre, unit_rows
from ..parsing.clones import MIN_TOKENS, NEAR_MIN_TOKENS, CloneKeys, clone_keys

log = logging.getLogger(__name__)

BUDGET = 1.0  # chance hints per 1,000 functions, all tiers together
# A near copy shares at least 60% of its identifier names (estimated Jaccard). Read by hand
# (docs/pool-pairs-judged.md): the false near copies of the calibration pools were repetitive
# code of one shape (field-clearing runs, one-line forwarders) whose names overlap by at most
# 0.47; in libuv's tests, callbacks and tests sharing only API idioms overlap by 0.50-0.58.
NEAR_IDENTIFIERS = 0.6
# The lowest near cut shipped: on held-out pools read by hand, pairs between 0.6 and 0.7 that
# shared half their names held false copies (2.8 per 1,000 C functions, 1.5 per 1,000 Java
# ones). The 0.6 names rule removes those; in jq, requests and libuv the pairs a 0.6 floor adds
# were right 47 times in 51 (docs/pool-pairs-judged.md), and the floor stays at 0.7 for now.
NEAR_FLOOR = 0.7
TYPE_NAMES = {
    0: "type-1",
    1: "type-2",
    2: "very strong type-3",
    3: "strong type-3",
    4: "moderate type-3 / type-4",
}


def keys_of(codes: Sequence[str], language: str) -> list[CloneKeys]:
    return [clone_keys(c, language) for c in codes]


def _pool_max(
    scores_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n: int,
    ok: np.ndarray,
    names: Sequence[str] | None,
    groups: Sequence[str] | None = None,
    chunk: int = 256,
    skip: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Per function, its highest score against any other eligible function of the pool that
    has another name and comes from another group (file)."""
    best = np.full(n, -np.inf)
    name_arr = np.array(names if names is not None else [str(i) for i in range(n)])
    group_arr = np.array(groups if groups is not None else [str(i) for i in range(n)])
    for s in range(0, n, chunk):
        rows = np.arange(s, min(n, s + chunk))
        sc = scores_fn(rows, np.arange(n)).astype(np.float64)  # (len(rows), n)
        sc[np.arange(len(rows)), rows] = -np.inf
        sc[:, ~ok] = -np.inf
        sc[name_arr[rows][:, None] == name_arr[None, :]] = -np.inf
        sc[group_arr[rows][:, None] == group_arr[None, :]] = -np.inf
        if skip is not None:
            sc[skip(rows, np.arange(n))] = -np.inf
        best[rows] = sc.max(axis=1)
    best[~ok] = -np.inf
    return best


def text_digest(text: str) -> str:
    """The key of a function's text in the embeddings cache and the judged-pairs file."""
    import hashlib

    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def load_judged(path: str | Path | None) -> dict[str, set[frozenset[str]]]:
    """Per language, the pool pairs (text digests) judged by reading to be real clones or
    template clones: a hint between them is a right hint, not a chance one."""
    if not path:
        return {}
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(d, dict) or not isinstance(d.get("pairs"), list):
        raise ValueError(f"{path}: a judged-pairs file is an object with a list `pairs`")
    out: dict[str, set[frozenset[str]]] = {}
    for i, p in enumerate(d["pairs"]):
        try:
            if p["verdict"] in ("clone", "template"):
                out.setdefault(str(p["language"]), set()).add(frozenset((p["a"], p["b"])))
            elif p["verdict"] != "not":
                raise ValueError(f"verdict {p['verdict']!r}")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: pair {i} is malformed ({e})") from e
    return out


def pool_scores(
    keys: list[CloneKeys],
    embeddings: np.ndarray | None,
    names: Sequence[str] | None,
    groups: Sequence[str] | None = None,
    near_identifiers: float = 0.0,
    judged: set[frozenset[str]] | None = None,
    digests: Sequence[str] | None = None,
    near_min_tokens: int = NEAR_MIN_TOKENS,
) -> dict[str, np.ndarray]:
    """Per function of a pool, the best partner score of each tier (and whether it has an
    exact copy), among functions of at least MIN_TOKENS tokens. Pairs that are exact (type-2)
    copies count for the exact tier only: the fuzzy tiers never see them as hints. A near
    partner must share `near_identifiers` of its names (estimated Jaccard) and both must have
    `near_min_tokens` tokens, as in the index.
    Pairs in `judged` (by the `digests` of their texts) are real clones: not chance hints."""
    n = len(keys)
    ok = np.array([k.n_tokens >= MIN_TOKENS for k in keys])
    sigs = np.stack([k.signature for k in keys])
    idents = np.stack([k.identifiers for k in keys])
    t2 = np.array([k.type2 for k in keys])
    right = None  # pairs read as real clones, when there is a reading
    if judged:
        right = np.zeros((n, n), dtype=bool)
        assert digests is not None and len(digests) == n
        at: dict[str, list[int]] = {}
        for i, h in enumerate(digests):
            at.setdefault(h, []).append(i)
        for pair in judged:
            a, b = tuple(pair) if len(pair) == 2 else (next(iter(pair)),) * 2
            for i in at.get(a, ()):
                for j in at.get(b, ()):
                    right[i, j] = right[j, i] = True

    big = np.array([k.n_tokens >= near_min_tokens for k in keys])

    def near(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        score = (sigs[r][:, None, :] == sigs[c][None]).mean(axis=2)
        score[~(big[r][:, None] & big[c][None])] = -np.inf  # as the index: both large enough
        if near_identifiers > 0:
            shared = (idents[r][:, None, :] == idents[c][None]).mean(axis=2)
            score[shared < near_identifiers] = -np.inf
        return score

    def exact(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (t2[r][:, None] == t2[c][None]).astype(float)

    def same(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        copies = t2[r][:, None] == t2[c][None]
        return copies if right is None else copies | right[np.ix_(r, c)]

    out = {
        "near": _pool_max(near, n, ok, names, groups, chunk=32, skip=same),
        "exact": _pool_max(exact, n, ok, names, groups),
    }
    if embeddings is not None:
        e = unit_rows(embeddings)
        out["cosine"] = _pool_max(lambda r, c: e[r] @ e[c].T, n, ok, names, groups, skip=same)
    out["eligible"] = ok
    return out


def rate(best: np.ndarray, threshold: float | None, eligible: np.ndarray) -> float:
    """Functions per 1,000 (of the eligible ones) whose best partner reaches the threshold."""
    if threshold is None:
        return 0.0
    m = int(eligible.sum())
    return 1000.0 * float((best[eligible] >= threshold).sum()) / max(1, m)


def lowest_threshold(best: np.ndarray, eligible: np.ndarray, budget: float) -> float | None:
    """The lowest 3-digit threshold at which at most `budget` per 1,000 functions cross;
    None when even 1.0 is crossed too often (the tier must stay off for the language)."""
    vals = np.sort(best[eligible])[::-1]
    allowed = int(np.floor(budget * len(vals) / 1000.0))
    if allowed >= len(vals):
        return 0.0
    above = vals[allowed]  # the first value that must stay below the threshold
    t = round(float(np.floor(above * 1000) / 1000 + 0.001), 3)
    return None if t > 1.0 else t


def pair_predictions(
    pairs: Sequence[tuple[str, str, int, int]],
    keys: dict[str, CloneKeys],
    vecs: dict[str, np.ndarray] | None,
    near: float | None,
    cosine: float | None,
    min_tokens: int = MIN_TOKENS,
    near_identifiers: float = 0.0,
) -> dict[str, np.ndarray]:
    """Per pair and tier: does the tier call it a clone at these thresholds."""
    big = np.array([min(keys[a].n_tokens, keys[b].n_tokens) >= min_tokens for a, b, _, _ in pairs])
    t1 = np.array([keys[a].type1 == keys[b].type1 for a, b, _, _ in pairs]) & big
    t2 = np.array([keys[a].type2 == keys[b].type2 for a, b, _, _ in pairs]) & big
    jac = np.array([float(np.mean(keys[a].signature == keys[b].signature)) for a, b, _, _ in pairs])
    named = np.array(
        [float(np.mean(keys[a].identifiers == keys[b].identifiers)) for a, b, _, _ in pairs]
    )
    big_near = np.array(
        [min(keys[a].n_tokens, keys[b].n_tokens) >= max(min_tokens, NEAR_MIN_TOKENS)
         for a, b, _, _ in pairs]
    )  # fmt: skip
    near_hit = (
        (jac >= near) & (named >= near_identifiers) & big_near
        if near is not None
        else np.zeros(len(pairs), dtype=bool)
    )
    out = {"identical": t1, "renamed": t2 & ~t1, "near": near_hit, "jaccard": jac, "names": named}
    if vecs is not None and cosine is not None:
        cos = np.array([float(vecs[a] @ vecs[b]) for a, b, _, _ in pairs])
        out["semantic"] = (cos >= cosine) & big
        out["cosine"] = cos
    else:
        out["semantic"] = np.zeros(len(pairs), dtype=bool)
    out["any"] = out["identical"] | out["renamed"] | out["near"] | out["semantic"]
    out["big"] = big
    return out


def pair_report(
    pred: np.ndarray, pairs: Sequence[tuple[str, str, int, int]], seed: int = 7
) -> dict:
    from .eval_clone import balanced_indices
    from .metrics import prf

    y = np.array([p[2] for p in pairs]).astype(bool)
    t = np.array([p[3] for p in pairs])
    p, r, f = prf(pred, y)
    bal = balanced_indices(y, seed)
    bp, br, bf = prf(pred[bal], y[bal])
    by_type = {
        str(k): {"n": int((y & (t == k)).sum()), "recall": float(pred[y & (t == k)].mean())}
        for k in TYPE_NAMES
        if (y & (t == k)).any()
    }
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "balanced": {"n": len(bal), "precision": bp, "recall": br, "f1": bf},
        "recall_by_clone_type": by_type,
        "false_positives": int((pred & ~y).sum()),
        "negatives": int((~y).sum()),
    }


# -- jscpd -----------------------------------------------------------------------------------
_EXT = {"c": "c", "java": "java", "python": "py", "javascript": "js", "go": "go"}


def jscpd_pairs(
    jscpd: str, codes: dict[str, str], language: str, min_tokens: int = MIN_TOKENS
) -> set[frozenset[str]] | None:
    """Pairs of ids that jscpd reports a duplicate between (each function in its own file)."""
    exe = shutil.which(jscpd) or jscpd
    if not Path(exe).exists():
        return None
    with tempfile.TemporaryDirectory(prefix="alpine-jscpd-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        names = {}
        for i, (fid, code) in enumerate(codes.items()):
            name = f"f{i}.{_EXT.get(language, 'txt')}"
            names[name] = fid
            text = code if language != "java" else "class W {\n" + code + "\n}\n"
            (src / name).write_text(text, encoding="utf-8")
        out = Path(tmp) / "report"
        cmd = [exe, str(src), "--min-tokens", str(min_tokens), "--reporters", "json",
               "--output", str(out), "--silent", "--absolute"]  # fmt: skip
        subprocess.run(cmd, check=False, capture_output=True, timeout=3600)
        report = out / "jscpd-report.json"
        if not report.is_file():
            log.warning("jscpd wrote no report")
            return set()
        data = json.loads(report.read_text(encoding="utf-8"))
        found = set()
        for d in data.get("duplicates", []):
            a = names.get(Path(d["firstFile"]["name"]).name)
            b = names.get(Path(d["secondFile"]["name"]).name)
            if a and b and a != b:
                found.add(frozenset((a, b)))
        return found


# -- the command -----------------------------------------------------------------------------
POOL_SEED = 20261201


class EmbeddingCache:
    """Embeddings by text digest in one .npz (eval runs are long on a shared CPU)."""

    def __init__(self, model, path: str | None) -> None:
        self._h = text_digest
        self.model, self.path = model, Path(path) if path else None
        self.d: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.is_file():
            with np.load(self.path) as z:  # arrays only: allow_pickle stays False
                self.d = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))

    def embed(self, codes: list[str], language: str) -> np.ndarray:
        todo = list(dict.fromkeys(c for c in codes if self._h(c) not in self.d))
        if todo:
            for c, v in zip(todo, self.model.embed(todo, language), strict=True):
                self.d[self._h(c)] = v
            if self.path is not None:
                keys = list(self.d)
                np.savez(self.path, keys=np.array(keys), vecs=np.stack([self.d[k] for k in keys]))
        return np.stack([self.d[self._h(c)] for c in codes])


def mss_file(row_id: str) -> str:
    """The file of a manysstubs4j row: its bug (`msb-<bug>-<k>-b|f`). A single-statement fix
    is one file, so the methods of one bug are methods of one file: a hint between them is not
    a hint from another file, and must not count as chance."""
    return row_id.rsplit("-", 2)[0]


def load_pools(args) -> dict[str, dict]:
    """Per language: ids, codes, names and groups (files) of the chance-hint pool."""
    import gzip
    import random

    from ..parsing import extract_functions

    rng = random.Random(POOL_SEED)
    pools: dict[str, dict] = {}

    def name_of(code: str, language: str, fallback: str) -> str:
        fs = extract_functions(code, language)
        return fs[0].name if fs else fallback

    if args.c_corpus:
        with gzip.open(Path(args.c_corpus) / "functions.jsonl.gz", "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        rows = rng.sample(rows, min(args.pool_n, len(rows)))
        pools["c"] = {
            "source": f"{args.c_corpus} (seeded sample of {len(rows)})",
            "codes": [r["func"] for r in rows],
            "names": [name_of(r["func"], "c", r["id"]) for r in rows],
            "groups": [r["id"] for r in rows],  # one function per file
        }
    if args.java_pool:
        with gzip.open(Path(args.java_pool) / "functions.jsonl.gz", "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        rows = [r for r in rows if r["target"] == 0]  # one half of each buggy/fixed pair
        rows = rng.sample(rows, min(args.pool_n * 3 // 4, len(rows)))
        pools["java"] = {
            "source": f"{args.java_pool} (fixed halves, seeded sample of {len(rows)})",
            "codes": [r["func"] for r in rows],
            "names": [name_of(r["func"], "java", r["id"]) for r in rows],
            "groups": [mss_file(r["id"]) for r in rows],
        }
    for repo in args.python_repo or []:
        from ..index import iter_source_files
        from ..parsing import language_for

        codes, names, groups = [], [], []
        root = Path(repo)
        for p in iter_source_files(root, 2_000_000, ["python"]):
            if language_for(str(p)) != "python":
                continue
            for fn in extract_functions(p.read_text(encoding="utf-8", errors="replace"), "python"):
                codes.append(fn.text)
                names.append(fn.name.rsplit(".", 1)[-1])
                groups.append(str(p.relative_to(root)))
        pools["python"] = {"source": f"{repo} ({len(codes)} functions)", "codes": codes,
                           "names": names, "groups": groups}  # fmt: skip
    return pools


def run(args, model, means_out: dict | None = None) -> dict:
    """Pools, thresholds and BCB figures (see the module docstring); `means_out` receives
    each pool language's mean embedding (what a centred similarity space subtracts)."""
    from ..evalkit.data import load_bcb

    cache = EmbeddingCache(model, args.embeddings_cache)
    res: dict = {"budget_per_1000": args.budget, "min_tokens": MIN_TOKENS, "languages": {}}
    pools = load_pools(args)
    judged = load_judged(getattr(args, "judged", None))
    ni = getattr(args, "near_identifiers", None)
    ni = NEAR_IDENTIFIERS if ni is None else float(ni)
    floor = getattr(args, "near_floor", None)
    floor = NEAR_FLOOR if floor is None else float(floor)
    res.update({"near_identifiers": ni, "near_floor": floor, "judged": bool(judged)})
    means: dict[str, np.ndarray] = {}
    for lang, pool in pools.items():
        keys = keys_of(pool["codes"], lang)
        emb = cache.embed(pool["codes"], lang)
        means[lang] = emb.mean(axis=0)
        digests = [text_digest(c) for c in pool["codes"]]
        right = judged.get(lang)
        names, groups = pool["names"], pool["groups"]
        # The shipped rule: near copies share names; pairs read as real clones are not chance.
        best = pool_scores(keys, emb, names, groups, ni, right, digests)
        cen = pool_scores(keys, centre(emb, means[lang]), names, groups, ni, right, digests)
        # For comparison: the same without the reading, and k-grams alone (the rule before).
        unjudged = pool_scores(keys, None, names, groups, ni) if right else best
        kgrams = pool_scores(keys, None, names, groups, near_min_tokens=MIN_TOKENS)
        ok = best["eligible"]
        # Half of the budget to each fuzzy tier; the sum is checked below. The near cut never
        # goes under the floor: below it, held-out pools read by hand had false near copies.
        near_t = lowest_threshold(best["near"], ok, args.budget / 2)
        near_t = None if near_t is None else max(near_t, floor)
        cos_t = lowest_threshold(best["cosine"], ok, args.budget / 2)
        cen_t = lowest_threshold(cen["cosine"], ok, args.budget / 2)
        hinted = np.zeros(len(keys), dtype=bool)
        for tier, t in (("near", near_t), ("cosine", cos_t)):
            if t is not None:
                hinted |= best[tier] >= t
        res["languages"][lang] = {
            "pool": pool["source"],
            "eligible": int(ok.sum()),
            "near": near_t,
            "near_identifiers": ni,
            "near_unjudged": lowest_threshold(unjudged["near"], ok, args.budget / 2),
            "near_kgrams_only": lowest_threshold(kgrams["near"], ok, args.budget / 2),
            "judged_pairs": len(right or ()),
            "cosine": cos_t,
            "cosine_centred": cen_t,
            "median_best_cosine": float(np.median(best["cosine"][ok])),
            "median_best_cosine_centred": float(np.median(cen["cosine"][ok])),
            "chance_per_1000": {
                "near": rate(best["near"], near_t, ok),
                "near_unjudged": rate(unjudged["near"], near_t, ok),
                "semantic": rate(best["cosine"], cos_t, ok),
                "near_or_semantic": 1000.0 * float(hinted[ok].mean()),
                "exact_copies": rate(best["exact"], 1.0, ok),
            },
        }
    if means_out is not None:
        means_out.update(means)
    if args.data:
        funcs, pairs = load_bcb(args.data)
        java = res["languages"].get("java")
        near_t = java["near"] if java else 0.8
        for split in ("test",):  # thresholds come from the pools, not from BCB
            ps = pairs[split]
            ids = sorted({i for a, b, _, _ in ps for i in (a, b)})
            keys = dict(zip(ids, keys_of([funcs[i] for i in ids], "java"), strict=True))
            emb = cache.embed([funcs[i] for i in ids], "java")
            variants = {"raw": (emb, java["cosine"] if java else None)}
            if "java" in means:
                variants["centred"] = (centre(emb, means["java"]), java["cosine_centred"])
            out = {}
            for name, (e, cos_t) in variants.items():
                e = unit_rows(e)
                vecs = dict(zip(ids, e, strict=True))
                pred = pair_predictions(ps, keys, vecs, near_t, cos_t, near_identifiers=ni)
                out[name] = {
                    "thresholds": {"near": near_t, "cosine": cos_t},
                    "all_tiers": pair_report(pred["any"], ps),
                    "exact_only": pair_report(pred["identical"] | pred["renamed"], ps),
                    "exact_and_near": pair_report(
                        pred["identical"] | pred["renamed"] | pred["near"], ps
                    ),
                    "no_min_size": pair_report(
                        pair_predictions(
                            ps, keys, vecs, near_t, cos_t, min_tokens=0, near_identifiers=ni
                        )["any"],
                        ps,
                    ),
                }
            if args.jscpd and split == "test":
                found = jscpd_pairs(args.jscpd, {i: funcs[i] for i in ids}, "java")
                if found is not None:
                    pred = np.array([frozenset((a, b)) in found for a, b, _, _ in ps])
                    out["jscpd"] = pair_report(pred, ps)
            res[f"bcb_{split}"] = out
    if args.jscpd:
        for lang, pool in pools.items():
            codes = {f"{lang}{i}": c for i, c in enumerate(pool["codes"])}
            found = jscpd_pairs(args.jscpd, codes, lang)
            if found is None:
                continue
            ids = list(codes)
            names = dict(zip(ids, pool["names"], strict=True))
            groups = dict(zip(ids, pool["groups"], strict=True))
            hit = set()
            for pair in found:
                a, b = sorted(pair)
                if names[a] != names[b] and groups[a] != groups[b]:
                    hit.update((a, b))
            res["languages"][lang]["jscpd_chance_per_1000"] = 1000.0 * len(hit) / len(ids)
    return res


def markdown(res: dict) -> str:
    def f3(x) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [
        "# Similar-code tiers",
        "",
        f"Budget: {res['budget_per_1000']} chance hints per 1,000 functions; minimum size "
        f"{res['min_tokens']} tokens. Near copies share >= {res['near_identifiers']} of their "
        f"identifier names; near cut floor {res['near_floor']}; pairs read by hand "
        f"{'excluded from chance' if res['judged'] else 'not used'}.",
        "",
        "| language | pool | near (Jaccard) | near without reading / k-grams only | cosine | "
        "cosine, centred | chance/1000: near (unread), semantic, both, exact copies | "
        "jscpd chance/1000 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for lang, r in res["languages"].items():
        c = r["chance_per_1000"]
        lines.append(
            f"| {lang} | {r['pool']} | {f3(r['near'])} | {f3(r['near_unjudged'])} / "
            f"{f3(r['near_kgrams_only'])} | {f3(r['cosine'])} | "
            f"{f3(r['cosine_centred'])} | {c['near']:.1f} ({c['near_unjudged']:.1f}), "
            f"{c['semantic']:.1f}, {c['near_or_semantic']:.1f}, {c['exact_copies']:.1f} | "
            f"{r.get('jscpd_chance_per_1000', '-')} |"
        )
    for split in ("bcb_valid", "bcb_test"):
        if split not in res:
            continue
        lines += ["", f"## BigCloneBench {split[4:]} pairs", "",
                  "| detector | P | R | F1 | balanced F1 | recall by clone type 0/1/2/3/4 |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        rows = []
        for variant, v in res[split].items():
            if variant == "jscpd":
                rows.append(("jscpd (min 30 tokens)", v))
                continue
            for k in ("exact_only", "exact_and_near", "all_tiers", "no_min_size"):
                rows.append((f"{variant}: {k}", v[k]))
        for name, v in rows:
            rt = "/".join(f"{v['recall_by_clone_type'][str(t)]['recall']:.3f}" for t in TYPE_NAMES
                          if str(t) in v["recall_by_clone_type"])  # fmt: skip
            lines.append(
                f"| {name} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | "
                f"{v['balanced']['f1']:.3f} | {rt} |"
            )
    return "\n".join(lines) + "\n"
