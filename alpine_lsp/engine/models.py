"""Loads the model off the main thread and keeps the reason when it cannot."""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..model.score import ModelLoadError
from .memory import release_memory
from .settings import Settings

if TYPE_CHECKING:
    from ..model.api import AlpineModel

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Half the cores, at most 4. The server shares the machine with the editor and the build;
    torch with every core busy elsewhere slows down many-fold (measured 15x on 2 cores)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


# A small C function, scored once as the load ends: the first forward pays torch's one-time
# costs (kernel code paged in from its libraries, about 20 MB of RSS, and ~50 ms) during the
# load instead of on the first edit, and what closing every document gives back is then
# measured against a baseline that already holds them (bench soak).
WARM_UP = (
    "static int warm_up(const int *p, int n)\n{\n    int i, s = 0;\n"
    "    for (i = 0; i < n; i++)\n        s += p[i];\n    return s;\n}\n"
)


def warm_up(model: AlpineModel) -> None:
    """One forward of batch 1 and one of batch 2, as edits run them (with explanations)."""
    try:
        model.score([WARM_UP], "c", explain=True)
        model.score([WARM_UP, WARM_UP.replace("s += p[i]", "s ^= p[i]")], "c", explain=True)
    except Exception:  # scoring will say what is wrong, on a real function
        log.warning("model warm-up failed", exc_info=True)


class ModelHolder:
    """state: "idle" → "loading" → "ready" | "failed". One load at a time; the newest wins."""

    def __init__(self) -> None:
        self.model: AlpineModel | None = None
        self.state = "idle"
        self.error: str | None = None
        self.load_seconds: float | None = None
        self._key: tuple | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self.ready = threading.Event()
        # Runs the warm-up forward: the engine's worker, where all model work goes.
        self.run_model: Callable[[Callable[[], None]], None] = lambda fn: fn()

    def load_async(self, settings: Settings, on_done: Callable[[ModelHolder], None]) -> bool:
        """Start loading for these settings unless the same model is loaded or loading.
        Returns whether a load started."""
        key = settings.model_key()
        with self._lock:
            if key == self._key and self.state in ("loading", "ready"):
                return False
            if self.model is not None and key[:3] == self._key[:3]:  # type: ignore[index]
                # Same weights and device: only pruning/length changed, no reload needed.
                self.model.configure(
                    pruning=settings.pruning or self.model.meta.pruning,
                    max_tokens=settings.max_tokens or self.model.meta.max_tokens,
                )
                self._key = key
                threading.Thread(target=on_done, args=(self,), daemon=True).start()
                return True
            self._generation += 1
            gen = self._generation
            self._key = key
            self.state = "loading"
            self.ready.clear()
        threading.Thread(
            target=self._load, args=(settings, gen, on_done), name="alpine-model-load", daemon=True
        ).start()
        return True

    def _load(self, settings: Settings, gen: int, on_done: Callable[[ModelHolder], None]) -> None:
        t0 = time.perf_counter()
        model, error = None, None
        from ..model.api import load_model  # torch loads here, off the event loop (offline)

        try:
            path = settings.model
            if path is not None:
                p = Path(path).expanduser()
                log.info("loading model from workspace/user setting: %s", p)
                if not p.is_dir():
                    raise ModelLoadError(f"alpine.model must be an existing local directory: {p}")
            model = load_model(
                path,
                device=settings.device,
                pruning=settings.pruning,
                threads=settings.threads or default_threads(),
                max_tokens=settings.max_tokens,
            )
            self.run_model(functools.partial(warm_up, model))
        except ModelLoadError as e:
            error = str(e)
        except Exception as e:  # anything else from torch/transformers: report, keep serving
            log.exception("model load failed")
            error = f"{type(e).__name__}: {e}"
        # What a failed (or large) load parsed is garbage now: hand the freed heap back, or
        # a refused directory leaves the server hundreds of MB larger for good.
        release_memory()
        with self._lock:
            if gen != self._generation:
                return  # a newer load was asked for meanwhile
            self.load_seconds = time.perf_counter() - t0
            if model is not None:
                self.model, self.state, self.error = model, "ready", None
                log.info(
                    "model %s ready in %.2fs on %s", model.name, self.load_seconds, model.device
                )
            else:
                self.model, self.state, self.error = None, "failed", error
                log.error("model could not be loaded: %s", error)
            self.ready.set()
        on_done(self)
