"""Work-done progress (`window/workDoneProgress/create`, then `$/progress` begin, report, end),
written once for the model load, the workspace index and `alpine.learn`."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from .base import AlpineServer

log = logging.getLogger("alpine_lsp.progress")


class Progress:
    """One progress, shown only when the client declared work-done progress. `start()` asks
    the client for the token; `begin` goes out when it has answered. `report` and `end` may
    be called from any thread (they run on the event loop); reports before the begin are
    dropped, and an end before it comes right after the begin, so a progress never stays open.
    A failed send (the connection is gone) is logged at debug level, once."""

    def __init__(
        self,
        server: AlpineServer,
        title: str,
        cancellable: bool | None = None,
        percentage: int | None = None,
    ) -> None:
        self.server = server
        self.title = title
        self.cancellable = cancellable
        self.percentage = percentage
        self.token: str | None = str(uuid.uuid4()) if server.caps.progress else None
        self.began = False
        self._end: str | None = None  # the end's message, once asked for
        self._ended = False
        self._failed = False

    @property
    def showing(self) -> bool:
        """Begun and not ended: reports would be shown."""
        return self.token is not None and self.began and self._end is None

    def start(self) -> Progress:
        if self.token is None:
            return self
        try:
            self.server.work_done_progress.create(self.token, callback=self._created)
        except Exception as e:
            self._fail(e)
            self.token = None
        return self

    def report(self, percentage: int, message: str) -> None:
        if self.showing:
            self._on_loop(self._send_report, percentage, message)

    def end(self, message: str) -> None:
        if self.token is None or self._end is not None:
            return
        self._end = message
        if self.began:
            self._on_loop(self._send_end)

    # -- on the event loop ------------------------------------------------------------------
    def _created(self, *_args) -> None:
        begin = types.WorkDoneProgressBegin(
            title=self.title, cancellable=self.cancellable, percentage=self.percentage
        )
        try:
            self.server.work_done_progress.begin(self.token, begin)
        except Exception as e:
            self._fail(e)
            return
        self.began = True
        if self._end is not None:  # the work ended before the client answered
            self._send_end()

    def _send_report(self, percentage: int, message: str) -> None:
        if self._end is not None:
            return
        try:
            self.server.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(percentage=percentage, message=message)
            )
        except Exception as e:
            self._fail(e)

    def _send_end(self) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            self.server.work_done_progress.end(
                self.token, types.WorkDoneProgressEnd(message=self._end)
            )
        except Exception as e:
            self._fail(e)

    def _on_loop(self, fn, *args) -> None:
        loop = self.server.loop
        if loop is None or loop.is_closed():
            return
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:  # another thread
            here = False
        if here:
            fn(*args)
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError as e:  # the loop closed meanwhile
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        if not self._failed:
            self._failed = True
            log.debug("progress %r: not sent (%s: %s)", self.title, type(e).__name__, e)
