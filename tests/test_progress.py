"""server/progress.py: the one work-done progress reporter (model load, index, learn)."""

from __future__ import annotations

import asyncio
import logging
import threading

from alpine_lsp.server.caps import ClientCaps
from alpine_lsp.server.progress import Progress


class FakeProgress:
    """pygls's `work_done_progress`: records what was sent; `create` answers when told."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, object]] = []
        self.pending: list = []
        self.fail = fail

    def create(self, token, callback=None):
        self.pending.append(callback)

    def answer(self) -> None:
        for cb in self.pending:
            cb(None)
        self.pending.clear()

    def _send(self, kind, value) -> None:
        if self.fail:
            raise ConnectionError("gone")
        self.sent.append((kind, value))

    def begin(self, token, value) -> None:
        self._send("begin", value)

    def report(self, token, value) -> None:
        self._send("report", value)

    def end(self, token, value) -> None:
        self._send("end", value)


class FakeServer:
    def __init__(self, progress: bool = True, fail: bool = False) -> None:
        self.caps = ClientCaps(progress=progress)
        self.work_done_progress = FakeProgress(fail)
        self.loop: asyncio.AbstractEventLoop | None = None


def kinds(server: FakeServer) -> list[str]:
    return [k for k, _ in server.work_done_progress.sent]


def test_nothing_without_the_client_capability() -> None:
    server = FakeServer(progress=False)
    bar = Progress(server, "x").start()  # type: ignore[arg-type]
    bar.report(50, "half")
    bar.end("done")
    assert bar.token is None and not server.work_done_progress.pending and not kinds(server)


async def test_begin_report_end_in_order_and_reports_before_begin_dropped() -> None:
    server = FakeServer()
    server.loop = asyncio.get_running_loop()
    bar = Progress(server, "Indexing", cancellable=True, percentage=0).start()  # type: ignore[arg-type]
    bar.report(10, "early")  # the client has not answered the create yet
    assert not kinds(server) and not bar.showing
    server.work_done_progress.answer()
    assert kinds(server) == ["begin"] and bar.showing
    begin = server.work_done_progress.sent[0][1]
    assert begin.title == "Indexing" and begin.cancellable is True and begin.percentage == 0
    worker = threading.Thread(target=bar.report, args=(40, "from a thread"))
    worker.start()
    worker.join()
    await asyncio.sleep(0)  # the report hops to the loop
    bar.end("all done")  # on the loop: sent at once
    bar.end("twice")
    bar.report(99, "late")
    assert kinds(server) == ["begin", "report", "end"]
    assert server.work_done_progress.sent[2][1].message == "all done"


async def test_an_end_before_the_begin_still_closes_the_progress() -> None:
    server = FakeServer()
    server.loop = asyncio.get_running_loop()
    bar = Progress(server, "Loading the alpine model", cancellable=False).start()  # type: ignore[arg-type]
    bar.end("model ready")
    assert not kinds(server)
    server.work_done_progress.answer()
    assert kinds(server) == ["begin", "end"]
    assert server.work_done_progress.sent[1][1].message == "model ready"


async def test_a_failed_send_is_logged_once_at_debug(caplog) -> None:
    server = FakeServer(fail=True)
    server.loop = asyncio.get_running_loop()
    bar = Progress(server, "Learning").start()  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="alpine_lsp.progress"):
        server.work_done_progress.answer()  # begin fails: nothing more is sent
        bar.report(5, "x")
        bar.end("y")
    lines = [r for r in caplog.records if r.name == "alpine_lsp.progress"]
    assert len(lines) == 1 and lines[0].levelno == logging.DEBUG
    assert not bar.began and not kinds(server)
