"""Drive the real server (a subprocess over stdio) with pytest-lsp's client."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import client_capabilities
from pytest_lsp.client import LanguageClient, make_test_lsp_client

C_SOURCE = """\
#include <string.h>

int add(int a, int b)
{
    return a + b;
}

void copy_name(char *dst, const char *src)
{
    strcpy(dst, src);
}

static int clamp(int v, int lo, int hi)
{
    if (v < lo)
        return lo;
    if (v > hi)
        return hi;
    return v;
}
"""


def neovim_caps() -> types.ClientCapabilities:
    return client_capabilities("neovim@v0.11.0")


def vscode_caps() -> types.ClientCapabilities:
    return client_capabilities("visual-studio-code")


def with_pull(caps: types.ClientCapabilities) -> types.ClientCapabilities:
    caps.text_document.diagnostic = types.DiagnosticClientCapabilities(
        dynamic_registration=False, related_document_support=False
    )
    return caps


async def start(
    root: Path,
    cache: Path,
    init: dict[str, Any] | None = None,
    caps: types.ClientCapabilities | None = None,
    config: dict[str, Any] | None = None,
) -> LanguageClient:
    client = make_test_lsp_client()
    if config is not None:
        client.set_configuration(config)
    env = dict(os.environ)
    env["ALPINE_LSP_CACHE_DIR"] = str(cache)
    await client.start_io(sys.executable, "-m", "alpine_lsp", "--stdio", env=env)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=caps or neovim_caps(),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=init or {},
        )
    )
    return client


async def stop(client: LanguageClient) -> int | None:
    await client.shutdown_session()
    server = client._server
    return server.returncode if server else None


async def stats(client: LanguageClient) -> dict:
    return plain(await client.protocol.send_request_async("alpine/stats", None))


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    """Poll an async or plain predicate until it returns something truthy."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > end:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def model_ready(client: LanguageClient, timeout: float = 180.0) -> dict:
    async def ready():
        s = await stats(client)
        return s if s["model"]["state"] in ("ready", "failed") else None

    return await wait_for(ready, timeout)


def open_doc(client: LanguageClient, path: Path, text: str, language: str = "c", version: int = 1):
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=path.as_uri(), language_id=language, version=version, text=text
            )
        )
    )


def change(
    client: LanguageClient,
    path: Path,
    version: int,
    start: tuple[int, int],
    end: tuple[int, int],
    text: str,
) -> None:
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=path.as_uri(), version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=start[0], character=start[1]),
                        end=types.Position(line=end[0], character=end[1]),
                    ),
                    text=text,
                )
            ],
        )
    )


def plain(value):
    """pygls hands untyped results back as named tuples; turn them into dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


async def hover(client: LanguageClient, path: Path, line: int, character: int):
    """The server's hover at a position of a file (None when it has nothing to say)."""
    return await client.text_document_hover_async(
        types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=path.as_uri()),
            position=types.Position(line=line, character=character),
        )
    )


# One C function the similar-code and refresh tests copy into a second file.
TWIN = """\
int sum_positive(const int *values, int n)
{
    int total = 0;
    for (int i = 0; i < n; i++)
        if (values[i] > 0)
            total += values[i];
    return total;
}
"""
