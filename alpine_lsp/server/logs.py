"""The server's log goes to the client as `window/logMessage`, not to stderr.

Editors record a server's stderr as errors (Neovim writes each line as `[ERROR]` in lsp.log),
so routine lines there read as failures. stderr keeps only fatal start-up errors; `--log-file`
adds a file with every line at the chosen level.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from types import MappingProxyType
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from .base import AlpineServer

LEVELS = MappingProxyType(
    {
        "debug": logging.DEBUG,
        "info": logging.INFO,
        "warning": logging.WARNING,
        "error": logging.ERROR,
    }
)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_PENDING_MAX = 500  # lines kept until the client has connected (then sent)


def message_type(level: int) -> types.MessageType:
    """Python level → LSP MessageType (debug lines are `Log`, the lowest)."""
    if level >= logging.ERROR:
        return types.MessageType.Error
    if level >= logging.WARNING:
        return types.MessageType.Warning
    if level >= logging.INFO:
        return types.MessageType.Info
    return types.MessageType.Log


class ClientLogHandler(logging.Handler):
    """Sends each record as window/logMessage, from the event loop (records come from any
    thread). Lines logged before `initialize` arrived are kept and sent once it has."""

    def __init__(self, server: AlpineServer | None = None, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.server = server  # None until the server object exists: lines wait in `pending`
        self.pending: deque[tuple[types.MessageType, str]] = deque(maxlen=_PENDING_MAX)
        self.connected = False
        self._busy = threading.local()  # sending may log (pygls at debug): no recursion
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "on", False):
            return
        self._busy.on = True
        try:
            item = (message_type(record.levelno), self.format(record))
            loop = self.server.loop if self.server is not None else None
            if not self.connected or loop is None or loop.is_closed():
                self.pending.append(item)
                return
            loop.call_soon_threadsafe(self._send, *item)
        except Exception:
            self.handleError(record)
        finally:
            self._busy.on = False

    def connect(self) -> None:
        """Called on the event loop once the client has sent `initialize`."""
        self.connected = True
        while self.pending:
            self._send(*self.pending.popleft())

    def _send(self, kind: types.MessageType, message: str) -> None:
        self._busy.on = True
        try:
            assert self.server is not None  # connect() comes from the server's initialize
            self.server.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:  # the connection is gone: nothing to tell
            pass
        finally:
            self._busy.on = False


def setup(level: str = "info", log_file: str | None = None) -> ClientLogHandler:
    """Route the log: client always, file when asked, stderr for CRITICAL (fatal) only. Called
    before the server object is built, since building it logs (an unusable cache directory);
    `attach` then names the server the client handler sends through."""
    lvl = LEVELS[level]
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(lvl)
    client = ClientLogHandler(None, lvl)
    root.addHandler(client)
    fatal = logging.StreamHandler(sys.stderr)
    fatal.setLevel(logging.CRITICAL)
    fatal.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(fatal)
    if log_file:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(lvl)
        fh.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(fh)
    # pygls logs every message it sends or receives at INFO/DEBUG: only with debug.
    logging.getLogger("pygls").setLevel(logging.DEBUG if lvl <= logging.DEBUG else logging.WARNING)
    return client


def attach(server: AlpineServer, client: ClientLogHandler) -> None:
    client.server = server
    server.log_handler = client
