"""Keep the server's resident memory flat over days of editing (glibc only; a no-op elsewhere).

Every edit runs the encoder on a batch of a different shape. glibc raises its mmap threshold
each time a large block is freed, so later activations come from the heap and the freed space
stays with the process; a fixed threshold keeps big tensors on mmap (returned on free), and a
trim after each scoring burst hands back what the heap freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 256 * 1024

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name or "libc.so.6")
            lib.mallopt  # noqa: B018 - musl has no mallopt/malloc_trim: treat it as absent
            lib.malloc_trim  # noqa: B018
            _libc = lib
        except (OSError, AttributeError):
            return None
    return _libc


def tune_allocator() -> bool:
    """Fix the mmap threshold; True when glibc accepted it."""
    lib = _glibc()
    if lib is None:
        return False
    ok = bool(lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    log.debug("mallopt(M_MMAP_THRESHOLD, %d): %s", MMAP_THRESHOLD_BYTES, ok)
    return ok


def release_memory() -> None:
    """Return freed heap pages to the system (cheap: a few ms)."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)


def settle_heap() -> None:
    """Once a model is ready: collect, then hide what survives from the cyclic collector.

    What lives then (torch's modules, the model, the tokenizer: some 300,000 objects) lives as
    long as the process, yet every full collection walked it: 0.33 s each, and editing a file of
    20,000 functions triggered one every few edits. Frozen objects are still freed by reference
    counting; only cycles among them wait for `unsettle_heap` (before the next model load).
    """
    gc.collect()
    gc.freeze()


def unsettle_heap() -> None:
    gc.unfreeze()
