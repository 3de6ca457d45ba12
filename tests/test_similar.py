"""Similar-code hints end to end: workspace index, diagnostics with related locations, code lens,
`alpine.showSimilar`, restart reuse, deletion, and a damaged index database.

The tiny random model gives an exact copy cosine 1.0; a threshold of 0.9999 keeps unrelated
functions out whatever the random weights say.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types

from alpine_lsp.index import index_db_path
from tests.lsp_util import TWIN, hover, open_doc, start, stats, stop, vscode_caps, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="function")


A_SOURCE = (
    TWIN
    + """
static const char *skip_spaces(const char *s)
{
    while (*s == ' ' || *s == '\\t')
        s++;
    return s;
}
"""
)

B_SOURCE = "/* b.c: a copy of a.c's first function */\n" + TWIN


def settings(model: Path) -> dict:
    return {
        "model": str(model),
        "threshold": 1.0,
        "debounceMs": 20,
        "similarity": {"enabled": True, "threshold": 0.9999, "maxResults": 3},
    }


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "a.c").write_text(A_SOURCE)
    (root / "src" / "b.c").write_text(B_SOURCE)
    (root / ".gitignore").write_text("build/\n")
    (root / "build").mkdir()
    (root / "build" / "c.c").write_text(TWIN)  # ignored: must never be suggested
    return root


async def indexed(client) -> dict:
    async def done():
        s = await stats(client)
        return s if s["index_state"] == "done" else None

    return await wait_for(done, timeout=120)


def similar_diags(client, uri: str) -> list[types.Diagnostic]:
    return [d for d in client.diagnostics.get(uri, []) if d.code == "similar-code"]


async def test_twin_gets_hint_with_related_location(workspace, tiny_model_dir, tmp_path):
    client = await start(
        workspace, tmp_path / "cache", settings(tiny_model_dir), caps=vscode_caps()
    )
    try:
        await indexed(client)
        a = workspace / "a.c"
        open_doc(client, a, A_SOURCE)
        diags = await wait_for(lambda: similar_diags(client, a.as_uri()), timeout=60)
        assert len(diags) == 1  # the twin only; skip_spaces has no match
        d = diags[0]
        assert d.severity == types.DiagnosticSeverity.Information
        assert d.range.start.line == 0
        assert d.message == "copy of sum_positive in src/b.c:2 (identical)"
        related = d.related_information
        assert [r.location.uri for r in related] == [(workspace / "src" / "b.c").as_uri()]
        assert related[0].location.range.start.line == 1

        lenses = await client.text_document_code_lens_async(
            types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=a.as_uri()))
        )
        assert [lens.command.title for lens in lenses] == ["1 copy"]
        locations = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(
                command="alpine.showSimilar", arguments=lenses[0].command.arguments
            )
        )
        assert [loc["uri"] for loc in locations] == [(workspace / "src" / "b.c").as_uri()]

        shown = await hover(client, a, 0, 6)
        assert "similar code:" in shown.contents.value
        assert "copy of sum_positive in src/b.c:2 (identical)" in shown.contents.value
    finally:
        await stop(client)


async def test_restart_reuses_index_and_delete_removes(workspace, tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    client = await start(workspace, cache, settings(tiny_model_dir), caps=vscode_caps())
    try:
        first = await indexed(client)
        # a.c has 2 functions, src/b.c a copy of one: the copy's text hash is already scored.
        assert first["embeddings_computed"] == 2
        assert first["index_functions"] == 3  # build/c.c is ignored
    finally:
        await stop(client)

    client = await start(workspace, cache, settings(tiny_model_dir), caps=vscode_caps())
    try:
        again = await indexed(client)
        assert again["embeddings_computed"] == 0
        assert again["functions_scored"] == 0
        assert again["index_functions"] == 3

        a = workspace / "a.c"
        open_doc(client, a, A_SOURCE)
        await wait_for(lambda: similar_diags(client, a.as_uri()), timeout=60)
        b = workspace / "src" / "b.c"
        b.unlink()
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[types.FileEvent(uri=b.as_uri(), type=types.FileChangeType.Deleted)]
            )
        )

        async def gone():
            s = await stats(client)
            return s["index_functions"] == 2 and not similar_diags(client, a.as_uri())

        await wait_for(gone, timeout=60)
    finally:
        await stop(client)


async def test_damaged_index_database_is_rebuilt(workspace, tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    db = index_db_path(workspace)
    # index_db_path honours ALPINE_LSP_CACHE_DIR, which the autouse fixture points at `cache`.
    assert str(db).startswith(str(cache))
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    client = await start(workspace, cache, settings(tiny_model_dir), caps=vscode_caps())
    try:
        s = await indexed(client)
        assert s["index_functions"] == 3
        a = workspace / "a.c"
        open_doc(client, a, A_SOURCE)
        await wait_for(lambda: similar_diags(client, a.as_uri()), timeout=60)
    finally:
        assert await stop(client) == 0


async def test_model_without_similarity_threshold_offers_no_semantic_hints(tmp_path):
    """alpine.json may say similarity_threshold: null (embeddings not fit for hints): check
    then reports no semantic neighbours unless the user sets a threshold (exact copies it
    always reports)."""
    # async only because the module marks every test asyncio; everything here is synchronous.
    import json

    from alpine_lsp.model import load_model
    from alpine_lsp.model.tiny import create_tiny_model
    from tests.test_check import check

    model = create_tiny_model(tmp_path / "m", similarity_threshold=0.0)
    meta = json.loads((model / "alpine.json").read_text())
    meta["similarity_threshold"] = None
    (model / "alpine.json").write_text(json.dumps(meta))
    assert load_model(model, device="cpu").similarity_threshold is None
    code = (
        "int f(int a, int b) { int s = 0; while (a < b) { s += a * 2; a++; } return s; }\n\n"
        "void g(char *p, const char *q) { if (!p || !q) return; while (*q) { *p++ = *q++; } "
        "*p = 0; }\n"
    )
    (tmp_path / "a.c").write_text(code)
    args = ("a.c", "--model", str(model), "--format", "json", "--all", "--similar")
    run = check(tmp_path, tmp_path / "cache", *args)
    assert run.code == 0, run.err
    assert all(not fn["similar"] for fn in run.json()["files"][0]["functions"])
    run = check(tmp_path, tmp_path / "cache", *args, "--similarity-threshold", "-1")
    assert any(fn["similar"] for fn in run.json()["files"][0]["functions"]), run.out


COPY_RENAMED = TWIN.replace("sum_positive", "add_positive").replace("total", "acc")


async def test_one_diagnostic_per_function_lists_every_match(tmp_path, tiny_model_dir):
    """Two copies elsewhere (identical, renamed): one similar-code diagnostic on the function,
    one related location per match; tiny functions get none."""
    root = tmp_path / "ws2"
    root.mkdir()
    (root / "b.c").write_text(TWIN)
    (root / "c.c").write_text(COPY_RENAMED + "\nint one(void) { return 1; }\n")
    a = root / "a.c"
    a.write_text(TWIN + "\nint one(void) { return 1; }\n")
    client = await start(root, tmp_path / "cache", settings(tiny_model_dir), caps=vscode_caps())
    try:
        await indexed(client)
        open_doc(client, a, a.read_text())

        def two() -> list[types.Diagnostic]:
            d = similar_diags(client, a.as_uri())
            return d if d and len(d[0].related_information or []) == 2 else []

        (d,) = await wait_for(two, timeout=60)
        assert d.message == "copy of sum_positive in b.c:1 (identical) and 1 more"
        assert [r.message for r in d.related_information] == [
            "copy of sum_positive in b.c:1 (identical)",
            "copy of add_positive in c.c:1 (renamed identifiers)",
        ]
        assert [r.location.uri for r in d.related_information] == [
            (root / "b.c").as_uri(),
            (root / "c.c").as_uri(),
        ]
        assert d.range.start.line == 0  # on sum_positive, not on the tiny `one`
    finally:
        await stop(client)
