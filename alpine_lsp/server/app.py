"""The pygls server object, its protocol, and `run()`.

The engine owns document text (so one place applies edits, with clamping and the client's
position encoding); pygls's own copy of each document is not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method

from .. import __version__
from ..engine.engine import DocumentResult, Engine
from ..engine.memory import tune_allocator
from ..engine.settings import Settings
from .framing import serve_stdio, serve_tcp

log = logging.getLogger("alpine_lsp")
UINTEGER_MAX = 2**31 - 1


def _clamp_edit_positions(params) -> None:
    """Bring didChange positions into LSP's uinteger range in place. Out of range, pygls would
    drop the whole notification, and the engine would fall out of step with the client."""
    changes = params.get("contentChanges") if isinstance(params, dict) else None
    for change in changes if isinstance(changes, list) else []:
        rng = change.get("range") if isinstance(change, dict) else None
        for pos in (rng.get("start"), rng.get("end")) if isinstance(rng, dict) else ():
            for key in ("line", "character"):
                v = pos.get(key) if isinstance(pos, dict) else None
                if isinstance(v, int) and not isinstance(v, bool):
                    pos[key] = min(max(v, 0), UINTEGER_MAX)


class AlpineProtocol(LanguageServerProtocol):
    """Hands document notifications straight to our handlers (the engine keeps the text)."""

    def structure_message(self, data: dict):
        if data.get("method") == types.TEXT_DOCUMENT_DID_CHANGE and "jsonrpc" in data:
            _clamp_edit_positions(data.get("params"))
        return super().structure_message(data)

    def _user(self, method: str, params):
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        yield from self._user(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        yield from self._user(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        yield from self._user(types.TEXT_DOCUMENT_DID_CLOSE, params)


class AlpineServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("alpine-lsp", __version__, protocol_cls=AlpineProtocol)
        self.settings = Settings()
        self.engine = Engine(self.settings, on_result=self._on_result, on_model=self._on_model)
        self.pull = False  # client pulls diagnostics (textDocument/diagnostic)
        self.related_info = False
        self.code_lens = False
        self.progress_ok = False
        self.config_pull = False
        self.encoding = "utf-16"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiters: dict[str, list[tuple[int | None, asyncio.Future]]] = {}
        self.shut_down = False
        self.exit_code = 0  # stdin closing without `exit` (the client vanished) is not an error
        self.user_model: str | None = None  # alpine.model from initializationOptions
        self.allow_workspace_model = False
        self.log_handler = None  # logs.ClientLogHandler, set by run()
        from .refresh import Refresher

        self.refresher = Refresher(self)

    # Called on the worker thread: hop to the event loop before touching the connection.
    def _on_result(self, result: DocumentResult) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver, result)

    def _deliver(self, result: DocumentResult) -> None:
        from .diagnostics import publish

        publish(self, result)
        self.refresher.delivered(result)
        for _version, fut in self.waiters.pop(result.uri, []):
            if not fut.done():
                fut.set_result(result)

    def _on_model(self, holder) -> None:
        if self.loop is not None and not self.loop.is_closed():
            from .lifecycle import model_done

            self.loop.call_soon_threadsafe(model_done, self, holder)

    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        """A line for the client's log: the log handler (logs.py) sends it as logMessage."""
        level = {types.MessageType.Error: logging.ERROR, types.MessageType.Warning: logging.WARNING}
        log.log(level.get(kind, logging.INFO), message)

    def show(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        self.log(message, kind)
        try:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))
        except Exception:
            pass

    def root(self) -> Path | None:
        from pygls.uris import to_fs_path

        folders = self.workspace.folders
        uri = next(iter(folders.values())).uri if folders else self.workspace.root_uri
        path = to_fs_path(uri) if uri else None
        return Path(path) if path else None


def build() -> AlpineServer:
    from . import actions, diagnostics, hover, learn, lens, lifecycle, stats, sync

    server = AlpineServer()
    for feature in (lifecycle, sync, diagnostics, hover, actions, lens, stats, learn):
        feature.register(server)
    return server


def run(
    tcp: tuple[str, int] | None = None,
    log_file: str | None = None,
    verbose: bool = False,
    log_level: str = "info",
) -> int:
    from . import logs

    client_log = logs.setup("debug" if verbose else log_level, log_file)
    server = build()
    logs.attach(server, client_log)
    tune_allocator()

    def terminate(signum, frame) -> None:  # SIGTERM: leave cleanly, caches closed
        log.info("signal %s: exiting", signum)
        _leave(server, 0)

    signal.signal(signal.SIGTERM, terminate)
    code = 1
    try:
        # Our framing layer, not pygls's start_io/start_tcp: see framing.py for why.
        code = serve_tcp(server, *tcp) if tcp else serve_stdio(server)
    except ValueError as e:  # a --tcp host that is not loopback
        log.error("%s", e)
        code = 2
    except Exception:
        log.critical("server stopped by an error", exc_info=True)  # stderr too: fatal
    finally:
        _leave(server, code)
    return code


def _leave(server: AlpineServer, code: int) -> None:
    """Close the caches, flush the log and end the process at once. Not through interpreter
    shutdown: a daemon thread still inside torch (scoring, a model load) aborts it ("FATAL:
    exception not rethrown", exit -6), and after SIGTERM pygls waits for its stdin reader."""
    server.engine.stop()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
