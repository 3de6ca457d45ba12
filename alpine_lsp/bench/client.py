"""A real LSP client (pygls) driving `alpine-lsp --stdio` in a subprocess, for the benchmarks."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient


class BenchClient:
    def __init__(self) -> None:
        self.client = LanguageClient("alpine-bench", "1")
        self.published: dict[str, tuple[int | None, float, list[types.Diagnostic]]] = {}
        self.events: dict[str, asyncio.Event] = {}
        self.stderr_task: asyncio.Task | None = None
        self.pid: int | None = None

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def on_diags(params: types.PublishDiagnosticsParams) -> None:
            self.published[params.uri] = (
                params.version,
                time.perf_counter(),
                list(params.diagnostics),
            )
            self.events.setdefault(params.uri, asyncio.Event()).set()

        self.log_messages: list[str] = []

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def on_log(params: types.LogMessageParams) -> None:  # the server's log, kept here
            self.log_messages.append(params.message)

        @self.client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def on_progress_create(params) -> None:
            return None

        @self.client.feature(types.WORKSPACE_CONFIGURATION)
        def on_config(params) -> list[Any]:
            return [None for _ in params.items]

    async def start(self, root: Path, settings: dict, cache_dir: Path, pull: bool = False) -> None:
        """`pull`: declare textDocument/diagnostic, as VS Code does (the server then answers
        `diagnostic()` and publishes nothing)."""
        env = dict(os.environ, ALPINE_LSP_CACHE_DIR=str(cache_dir))
        await self.client.start_io(sys.executable, "-m", "alpine_lsp", "--stdio", env=env)
        server = self.client._server  # the subprocess, for its pid and stderr
        self.pid = server.pid
        self.stderr_task = asyncio.create_task(_drain(server.stderr))
        caps = types.ClientCapabilities(
            text_document=types.TextDocumentClientCapabilities(
                publish_diagnostics=types.PublishDiagnosticsClientCapabilities(
                    related_information=True, version_support=True
                ),
                hover=types.HoverClientCapabilities(content_format=[types.MarkupKind.Markdown]),
                diagnostic=types.DiagnosticClientCapabilities() if pull else None,
            ),
            window=types.WindowClientCapabilities(work_done_progress=False),
        )
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=caps,
                root_uri=root.as_uri(),
                initialization_options=settings,
                process_id=os.getpid(),
            )
        )
        self.client.initialized(types.InitializedParams())

    async def stats(self) -> dict:
        return plain(await self.client.protocol.send_request_async("alpine/stats", None))

    async def wait_model(self, timeout: float = 120) -> dict:
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            s = await self.stats()
            if s["model"]["state"] == "ready":
                return s
            if s["model"]["state"] == "failed":
                raise RuntimeError(f"model failed to load: {s['model']['error']}")
            await asyncio.sleep(0.1)
        raise TimeoutError("model did not load")

    def open(self, uri: str, text: str, language: str = "c", version: int = 1) -> None:
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id=language, version=version, text=text
                )
            )
        )

    def change(self, uri: str, version: int, line: int, col: int, text: str) -> None:
        pos = types.Position(line=line, character=col)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=pos, end=pos), text=text
                    )
                ],
            )
        )

    async def wait_published(self, uri: str, version: int, timeout: float = 60) -> float:
        """Time at which diagnostics for `version` (or later) arrived."""
        end = time.perf_counter() + timeout
        while True:
            got = self.published.get(uri)
            if got and got[0] is not None and got[0] >= version:
                return got[1]
            ev = self.events.setdefault(uri, asyncio.Event())
            ev.clear()
            remaining = end - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"no diagnostics for {uri} v{version}")
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except TimeoutError:
                pass

    async def diagnostic(self, uri: str) -> list[types.Diagnostic]:
        """Pull the document's diagnostics (answered once its current version is scored)."""
        report = await self.client.text_document_diagnostic_async(
            types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        return list(getattr(report, "items", None) or [])

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )

    async def hover(self, uri: str, line: int, col: int) -> types.Hover | None:
        return await self.client.text_document_hover_async(
            types.HoverParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=col),
            )
        )

    async def stop(self) -> int | None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 10)
            self.client.exit(None)
        except Exception:
            pass
        server = self.client._server
        code = None
        if server is not None:
            try:
                code = await asyncio.wait_for(server.wait(), 10)
            except TimeoutError:
                server.kill()
        if self.stderr_task:
            self.stderr_task.cancel()
        try:
            await self.client.stop()
        except Exception:
            pass
        return code


async def _drain(stream) -> None:
    """Keep reading the server's stderr so its log can never fill the pipe and block it."""
    if stream is None:
        return
    while await stream.read(65536):
        pass


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def plain(value):
    """pygls hands untyped results back as named tuples; turn them into dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
