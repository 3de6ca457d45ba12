"""workspace/codeLens/refresh and workspace/diagnostic/refresh: sent when results change without
an edit (here: the workspace index finding a twin after the document was opened), coalesced,
and never to a client that did not declare them."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types

from tests.lsp_util import (
    TWIN,
    model_ready,
    neovim_caps,
    open_doc,
    start,
    stats,
    stop,
    vscode_caps,
    wait_for,
    with_pull,
)

pytestmark = pytest.mark.asyncio(loop_scope="function")

# Many functions in one document: refreshes are per burst of results, not per function.
OTHERS = "".join(
    f"\nint scale_{i}(int v)\n{{\n    return v * {i + 2} - {i};\n}}\n" for i in range(30)
)


def settings(model: Path) -> dict:
    return {
        "model": str(model),
        "threshold": 1.0,
        "debounceMs": 20,
        "similarity": {"enabled": True, "threshold": 0.9999, "maxResults": 3},
    }


def count_refreshes(client) -> dict[str, int]:
    seen = {"lens": 0, "diag": 0}

    def lens_refresh(params) -> None:
        seen["lens"] += 1

    def diag_refresh(params) -> None:
        seen["diag"] += 1

    # pytest-lsp answers workspace/diagnostic/refresh itself; count it in its place.
    features = client.protocol.fm._features
    features[types.WORKSPACE_CODE_LENS_REFRESH] = lens_refresh
    features[types.WORKSPACE_DIAGNOSTIC_REFRESH] = diag_refresh
    return seen


def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "b.c").write_text("/* a copy */\n" + TWIN)
    return root


async def test_refresh_after_index_and_lens_on_open(tiny_model_dir, tmp_path) -> None:
    root = workspace(tmp_path)
    a = root / "a.c"
    a.write_text(TWIN + OTHERS)
    caps = with_pull(vscode_caps())
    caps.workspace.diagnostics = types.DiagnosticWorkspaceClientCapabilities(refresh_support=True)
    client = await start(root, tmp_path / "cache", settings(tiny_model_dir), caps=caps)
    seen = count_refreshes(client)
    try:
        open_doc(client, a, TWIN + OTHERS)  # while the model loads: no hints yet
        await model_ready(client, timeout=120)
        await wait_for(lambda: seen["lens"] > 0 and seen["diag"] > 0, timeout=120)

        async def indexed():
            return (await stats(client))["index_state"] == "done"

        await wait_for(indexed, timeout=120)
        lenses = await client.text_document_code_lens_async(
            types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=a.as_uri()))
        )
        assert [(lens.range.start.line, lens.command.title) for lens in lenses] == [
            (0, "1 copy")  # the twin is an exact copy: the identical tier names it
        ]
        report = await client.text_document_diagnostic_async(
            types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(a.as_uri()))
        )
        assert [d.code for d in report.items] == ["similar-code"]
        # 31 functions, a few result bursts (open, model ready, index done): a few requests.
        assert 1 <= seen["lens"] <= 4 and 1 <= seen["diag"] <= 4, seen
    finally:
        await stop(client)


async def test_no_refresh_to_a_client_without_support(tiny_model_dir, tmp_path) -> None:
    root = workspace(tmp_path)
    a = root / "a.c"
    client = await start(root, tmp_path / "cache", settings(tiny_model_dir), caps=neovim_caps())
    seen = count_refreshes(client)
    try:
        open_doc(client, a, TWIN)
        await model_ready(client, timeout=120)

        async def indexed():
            return (await stats(client))["index_state"] == "done"

        await wait_for(indexed, timeout=120)
        # Asked at once after didOpen, the lens request waits for the scored result.
        lenses = await client.text_document_code_lens_async(
            types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=a.as_uri()))
        )
        assert len(lenses) <= 1
        assert seen == {"lens": 0, "diag": 0}
    finally:
        await stop(client)
