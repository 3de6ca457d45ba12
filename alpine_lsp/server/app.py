"""The server assembled from its features, and `run()`.

`FEATURES` is the one list of features: `build()` gives each its own object, owned by the
server, which registers its handlers and sends it events in this order (diagnostics are
published before the refresher compares a result; the model-load progress ends before the
refresh and the workspace index start).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys

from ..engine.memory import tune_allocator
from . import logs
from .actions import CodeActions
from .base import AlpineServer, Feature, log
from .diagnostics import Diagnostics
from .framing import serve_stdio, serve_tcp
from .hover import Hover
from .indexing import Indexing
from .learn import Learn
from .lens import Lens
from .lifecycle import Lifecycle
from .refresh import Refresher
from .stats import Stats
from .sync import Sync

FEATURES: tuple[type[Feature], ...] = (
    Lifecycle,
    Sync,
    Diagnostics,
    Hover,
    CodeActions,
    Lens,
    Stats,
    Learn,
    Refresher,
    Indexing,
)


def build() -> AlpineServer:
    server = AlpineServer()
    for feature in FEATURES:
        server.add(feature(server))
    return server


def run(
    tcp: tuple[str, int] | None = None,
    log_file: str | None = None,
    verbose: bool = False,
    log_level: str = "info",
) -> int:
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
