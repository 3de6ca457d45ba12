"""End-to-end: the real server over stdio, driven by pytest-lsp with recorded client capabilities.

Neovim 0.11 declares pull diagnostics, VS Code 1.65 does not (push). The tiny random model
goes through the real loading and scoring path; thresholds come from settings so the tests do
not depend on what random weights say.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types

from tests.lsp_util import (
    C_SOURCE,
    change,
    hover,
    model_ready,
    neovim_caps,
    open_doc,
    start,
    stats,
    stop,
    vscode_caps,
    wait_for,
)

pytestmark = pytest.mark.asyncio(loop_scope="function")


def settings(model: Path, **extra) -> dict:
    out = {
        "model": str(model),
        "threshold": 0.0,
        "debounceMs": 50,
        "similarity": {"enabled": False},
        "lineHints": False,  # these tests pin the name range; tests/test_line_hints.py the lines
    }
    out.update(extra)
    return out


async def pull(client, path: Path) -> list[types.Diagnostic]:
    report = await client.text_document_diagnostic_async(
        types.DocumentDiagnosticParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri())
        )
    )
    return list(report.items)


async def pushed(client, path: Path, version: int | None = None, timeout: float = 60):
    """Wait until the server has published diagnostics for this document (and version)."""
    uri = path.as_uri()

    def got():
        return uri in client.diagnostics and (
            version is None or client.diagnostic_versions.get(uri) == version
        )

    await wait_for(got, timeout)
    return list(client.diagnostics[uri])


def track_versions(client) -> None:
    """Remember the version of each publishDiagnostics (pytest-lsp keeps only the items)."""
    client.diagnostic_versions = {}
    original = client.protocol.fm.features["textDocument/publishDiagnostics"]

    def handler(params: types.PublishDiagnosticsParams):
        client.diagnostic_versions[params.uri] = params.version
        return original(params)

    client.protocol.fm.features["textDocument/publishDiagnostics"] = handler


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "main.c").write_text(C_SOURCE)
    return root


async def test_push_diagnostics_and_incremental_scoring(workspace, tiny_model_dir, tmp_path):
    client = await start(
        workspace, tmp_path / "cache", settings(tiny_model_dir), caps=vscode_caps()
    )
    track_versions(client)
    try:
        await model_ready(client)
        path = workspace / "main.c"
        open_doc(client, path, C_SOURCE)
        diags = await pushed(client, path, 1)
        names = sorted(d.range.start.line for d in diags)
        assert names == [2, 7, 12], diags  # add, copy_name, clamp: every function at threshold 0
        d = next(d for d in diags if d.range.start.line == 2)
        assert d.source == "alpine" and d.code == "defect-risk"
        assert d.severity == types.DiagnosticSeverity.Warning
        assert d.message.startswith("possible defect (p=")
        assert (d.range.start.character, d.range.end.character) == (4, 7)  # the name "add"
        before = (await stats(client))["functions_scored"]
        assert before == 3

        # Same-shape edit inside `add`: return a + b -> return a - b. Only add is rescored.
        change(client, path, 2, (4, 13), (4, 14), "-")
        await pushed(client, path, 2)
        s = await stats(client)
        assert s["functions_scored"] == before + 1
        assert s["cache_hits"] >= 2

        # Closing and reopening the unchanged text scores nothing.
        client.text_document_did_close(
            types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=path.as_uri())
            )
        )
        open_doc(client, path, C_SOURCE, version=5)
        await pushed(client, path, 5)
        assert (await stats(client))["functions_scored"] == before + 1
    finally:
        assert await stop(client) == 0


async def test_restart_reuses_score_cache(workspace, tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    for round_ in range(2):
        client = await start(workspace, cache, settings(tiny_model_dir), caps=vscode_caps())
        track_versions(client)
        try:
            await model_ready(client)
            open_doc(client, workspace / "main.c", C_SOURCE)
            await pushed(client, workspace / "main.c", 1)
            scored = (await stats(client))["functions_scored"]
            assert scored == (3 if round_ == 0 else 0)
        finally:
            await stop(client)


async def test_pull_diagnostics_only(workspace, tiny_model_dir, tmp_path):
    client = await start(
        workspace, tmp_path / "cache", settings(tiny_model_dir), caps=neovim_caps()
    )
    try:
        path = workspace / "main.c"
        open_doc(client, path, C_SOURCE)
        items = await pull(client, path)  # waits for the model and the analysis
        assert sorted(d.range.start.line for d in items) == [2, 7, 12]
        assert (await stats(client))["pull_diagnostics"] is True
        assert path.as_uri() not in client.diagnostics  # never both: nothing was pushed
    finally:
        await stop(client)


async def test_ignore_comments_and_code_actions(workspace, tiny_model_dir, tmp_path):
    client = await start(
        workspace, tmp_path / "cache", settings(tiny_model_dir), caps=neovim_caps()
    )
    try:
        path = workspace / "main.c"
        open_doc(client, path, C_SOURCE)
        items = await pull(client, path)
        target = next(d for d in items if d.range.start.line == 7)  # copy_name
        actions = await client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
                range=target.range,
                context=types.CodeActionContext(diagnostics=[target]),
            )
        )
        titles = [a.title for a in actions]
        assert titles == ["Ignore this function (copy_name)", "Ignore this file"]
        edit = actions[0].edit.changes[path.as_uri()][0]
        assert edit.new_text == "// alpine: ignore\n"
        assert edit.range.start == types.Position(line=7, character=0)

        # Apply the edit as the client would: copy_name's warning goes, the others stay.
        change(client, path, 2, (7, 0), (7, 0), edit.new_text)
        items = await pull(client, path)
        assert sorted(d.range.start.line for d in items) == [2, 13]

        change(client, path, 3, (0, 0), (0, 0), "// alpine: ignore-file\n")
        assert await pull(client, path) == []
    finally:
        await stop(client)


async def test_hover_shows_score_and_pruning(workspace, tiny_model_dir, tmp_path):
    client = await start(
        workspace, tmp_path / "cache", settings(tiny_model_dir), caps=neovim_caps()
    )
    try:
        path = workspace / "main.c"
        open_doc(client, path, C_SOURCE)
        await pull(client, path)
        shown = await hover(client, path, 7, 7)
        text = shown.contents.value
        assert "copy_name" in text
        assert "defect probability" in text and "threshold 0.00" in text
        assert "tiny-random" in text  # the model name
        assert "tokens per layer after pruning:" in text and "→" in text
        assert " ms" in text
        # The tokens behind the score, and which layer's attention ranked them.
        assert "- why: tokens with most attention " in text
        none = await hover(client, path, 0, 2)
        assert none is None
    finally:
        await stop(client)


async def test_settings_change_republishes(workspace, tiny_model_dir, tmp_path):
    client = await start(
        workspace, tmp_path / "cache", settings(tiny_model_dir), caps=vscode_caps()
    )
    track_versions(client)
    try:
        await model_ready(client)
        path = workspace / "main.c"
        open_doc(client, path, C_SOURCE)
        assert len(await pushed(client, path, 1)) == 3
        client.diagnostics.pop(path.as_uri())
        # VS Code answers workspace/configuration: the server asks for the new section.
        client.set_configuration({"alpine": settings(tiny_model_dir, threshold=1.0)})
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(
                settings={"alpine": settings(tiny_model_dir, threshold=1.0)}
            )
        )
        assert await pushed(client, path) == []
        scored = (await stats(client))["functions_scored"]
        assert scored == 3  # a threshold change re-publishes without re-scoring
    finally:
        await stop(client)


async def test_missing_model_reports_and_stays_up(workspace, tmp_path):
    missing = tmp_path / "no-such-model"
    client = await start(workspace, tmp_path / "cache", settings(missing), caps=vscode_caps())
    try:
        s = await model_ready(client)
        assert s["model"]["state"] == "failed"
        assert "must be an existing local directory" in s["model"]["error"]
        await wait_for(lambda: client.messages)
        assert client.messages[0].type == types.MessageType.Error
        assert str(missing) in client.messages[0].message
        path = workspace / "main.c"
        open_doc(client, path, C_SOURCE)
        shown = await wait_for(lambda: hover(client, path, 2, 5))
        assert "model not loaded" in shown.contents.value
    finally:
        assert await stop(client) == 0


async def test_damaged_model_gives_clear_error(workspace, tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    client = await start(workspace, tmp_path / "cache", settings(broken), caps=vscode_caps())
    try:
        s = await model_ready(client)
        assert s["model"]["state"] == "failed"
        assert "damaged or truncated" in s["model"]["error"]
    finally:
        await stop(client)
