"""The workspace's per-repository adapter (`.alpine-lsp/adapter.*`), picked up without a restart.

The Scorer asks `current(model)` before each batch; the files are stat'ed at most once a second
and re-read when their size or mtime changes, so a `learn` run (CLI or `alpine.learn`) takes
effect on the next analysis. An adapter made for another model, or a damaged one, is refused
with one log line per change, and scoring goes on with the global model.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..model.adapter import (
    JSON_NAME,
    WEIGHTS_NAME,
    Adapter,
    AdapterError,
    adapter_dir,
    load_adapter,
)

log = logging.getLogger(__name__)


class AdapterWatcher:
    def __init__(self, root: Path | None, check_every_s: float = 1.0) -> None:
        self.folder = adapter_dir(root) if root is not None else None
        self.check_every_s = check_every_s
        self.adapter: Adapter | None = None
        self.error: str | None = None
        self._key: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _stat_key(self, fingerprint: str) -> tuple | None:
        assert self.folder is not None
        key: list = [fingerprint]
        for name in (WEIGHTS_NAME, JSON_NAME):
            try:
                st = (self.folder / name).stat()
            except OSError:
                return None
            key += [st.st_mtime_ns, st.st_size]
        return tuple(key)

    def current(self, model) -> Adapter | None:
        """The adapter to apply to `model`'s scores, or None."""
        if self.folder is None or model is None:
            return None
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self.check_every_s and self._key is not None:
                return self.adapter
            self._checked = now
            key = self._stat_key(model.fingerprint)
            if key == self._key and (key is not None or self.adapter is None):
                return self.adapter
            self._key = key
            if key is None:
                if self.adapter is not None:
                    log.info("adapter removed from %s; using the global model", self.folder)
                self.adapter, self.error = None, None
                return None
            try:
                self.adapter = load_adapter(self.folder, model.fingerprint)
                self.error = None
                log.info(
                    "adapter loaded from %s (%d fix commits, blend weight %.2f)",
                    self.folder,
                    self.adapter.fixes,
                    self.adapter.blend,
                )
            except AdapterError as e:
                self.adapter, self.error = None, str(e)
                log.warning("adapter not used: %s", e)
            return self.adapter

    def forget(self) -> None:
        """Re-read on the next call (after this process wrote a new adapter)."""
        with self._lock:
            self._key = None
            self._checked = 0.0
