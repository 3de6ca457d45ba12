"""The pygls server object, its protocol, and the `Feature` base class every feature builds on.

The engine owns document text (so one place applies edits, with clamping and the client's
position encoding); pygls's own copy of each document is not kept.

Features are objects (one class per LSP feature, with its own state): their handler methods
are marked with `@handles` / `@command` and registered by `AlpineServer.add`; what happens
outside a request (a result from the worker, the model loaded, a document closed, settings
changed) reaches them as events, in the order `app.FEATURES` lists them. Feature modules
import this module and the shared helpers (`caps`, `progress`, `ranges`), never one another
and never `app` (`tests/test_architecture.py`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, lsp_method

from .. import __version__
from ..engine.engine import DocumentResult, Engine, ModelState
from ..engine.settings import Settings
from .caps import ClientCaps

log = logging.getLogger("alpine_lsp")
UINTEGER_MAX = 2**31 - 1
_MARK = "_alpine_handles"  # (kind, name, options, param check) on a feature's handler method


def handles(method: str, options: Any = None, check: Callable[[Any], str | None] | None = None):
    """Mark a feature method as the handler of an LSP method (request or notification).
    `check`: for our own methods (no lsprotocol types), a params check run by the framing
    gate before pygls sees the message (a reason, or None)."""

    def mark(fn):
        setattr(fn, _MARK, ("feature", method, options, check))
        return fn

    return mark


def command(name: str):
    """Mark a feature method as the handler of a `workspace/executeCommand` command."""

    def mark(fn):
        setattr(fn, _MARK, ("command", name, None, None))
        return fn

    return mark


class Feature:
    """One feature: state of its own, handlers, and the server events it reacts to. Events
    run on the event loop; the default for each is to do nothing."""

    def __init__(self, server: AlpineServer) -> None:
        self.server = server

    def on_result(self, result: DocumentResult) -> None:
        """A document's new analysis (every one the engine publishes)."""

    def on_model(self, model: ModelState) -> None:
        """A model load finished: ready, or failed."""

    def on_close(self, uri: str) -> None:
        """A document was closed (the engine has let it go)."""

    def on_settings(self, old: Settings, new: Settings) -> None:
        """The settings changed (the engine has them already)."""


def _plain(method: Callable) -> Callable:
    """A plain function calling the bound `method`: pygls sets attributes on what it registers
    (bound methods take none) and passes the server to a first parameter named `ls` only."""
    if inspect.iscoroutinefunction(method):

        async def call_async(*args):
            return await method(*args)

        return call_async

    def call(*args):
        return method(*args)

    return call


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

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None) -> None:
        super()._execute_handler(msg_id, handler, callback=callback, args=args, kwargs=kwargs)
        # pygls 2.1 files the future of every generator handler (our document notifications,
        # its own `initialized`, ...) under a fresh id and only requests' replies take it out:
        # about 1.7 KB stayed per didChange, forever. Take it out once it is done.
        future = self._request_futures.get(msg_id)
        if future is not None:
            future.add_done_callback(functools.partial(self._forget, msg_id))

    def _forget(self, msg_id, future) -> None:
        if self._request_futures.get(msg_id) is future:
            del self._request_futures[msg_id]

    def in_flight(self) -> int:
        """Entries in pygls's table of futures: handlers still running (requests and
        notifications) and requests to the client not yet answered."""
        return len(self._request_futures)

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
        self.caps = ClientCaps()  # what the client declared, parsed once at initialize
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiters: dict[str, list[tuple[int | None, asyncio.Future]]] = {}
        self.shut_down = False
        self.exit_code = 0  # stdin closing without `exit` (the client vanished) is not an error
        self.log_handler = None  # logs.ClientLogHandler, set by run()
        self.parts: list[Feature] = []  # the features, in event order (app.FEATURES)
        # Our own methods' params checks, read by the framing gate (framing.Gate).
        self.param_checks: dict[str, Callable[[Any], str | None]] = {}

    def add(self, feature: Feature) -> Feature:
        """Own `feature`: register its marked handlers with pygls, and send it events."""
        for name in dir(type(feature)):
            spec = getattr(getattr(type(feature), name, None), _MARK, None)
            if spec is None:
                continue
            kind, method, options, check = spec
            handler = _plain(getattr(feature, name))
            if kind == "command":
                self.command(method)(handler)
            else:
                self.feature(method, options)(handler)
            if check is not None:
                self.param_checks[method] = check
        self.parts.append(feature)
        return feature

    # Called on the worker thread: hop to the event loop before touching the connection.
    def _on_result(self, result: DocumentResult) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._deliver, result)

    def _deliver(self, result: DocumentResult) -> None:
        for part in self.parts:
            part.on_result(result)
        for _version, fut in self.waiters.pop(result.uri, []):
            if not fut.done():
                fut.set_result(result)

    def _on_model(self, _holder) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._model_done)

    def _model_done(self) -> None:
        """On the event loop, after a load finished (or failed)."""
        model = self.engine.model_state()
        for part in self.parts:
            part.on_model(model)

    def closed(self, uri: str) -> None:
        for part in self.parts:
            part.on_close(uri)

    def settings_changed(self, old: Settings, new: Settings) -> None:
        for part in self.parts:
            part.on_settings(old, new)

    async def wait_current(self, uri: str, timeout: float = 120.0) -> DocumentResult | None:
        """The result for the document's current version, waiting for the worker if needed."""
        snap = self.engine.snapshot(uri)
        if snap is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            res = snap.result
            # "ready" is not settled: the model turns ready before open documents are
            # re-scored, and a client without workspace/diagnostic/refresh (Neovim 0.11) would
            # keep an empty answer until the next edit.
            settled = self.engine.model_state().state == "failed"
            # A file scored in passes answers with what is scored so far (and says so).
            done = res is not None and (res.scored or res.pending > 0)
            if res is not None and res.version == snap.version and (done or settled):
                return res
            remaining = deadline - loop.time()
            if remaining <= 0:
                return res
            fut = loop.create_future()
            self.waiters.setdefault(uri, []).append((snap.version, fut))
            try:
                await asyncio.wait_for(fut, timeout=min(remaining, 1.0))
            except TimeoutError:
                pass
            # Closed meanwhile: its last state stands (it changes no more).
            snap = self.engine.snapshot(uri) or snap

    def log(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        """A line for the client's log: the log handler (logs.py) sends it as logMessage."""
        level = {types.MessageType.Error: logging.ERROR, types.MessageType.Warning: logging.WARNING}
        log.log(level.get(kind, logging.INFO), message)

    def show(self, message: str, kind: types.MessageType = types.MessageType.Warning) -> None:
        self.log(message, kind)
        try:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))
        except Exception as e:  # the connection is gone: the log has the line
            log.debug("showMessage not sent: %s", e)

    def root(self) -> Path | None:
        from pygls.uris import to_fs_path

        folders = self.workspace.folders
        uri = next(iter(folders.values())).uri if folders else self.workspace.root_uri
        path = to_fs_path(uri) if uri else None
        return Path(path) if path else None
