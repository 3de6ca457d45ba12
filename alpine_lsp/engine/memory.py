"""Keep the server's resident memory flat over days of editing (glibc only; a no-op elsewhere).

Every edit runs the encoder on a batch of a different shape. glibc raises its mmap threshold
each time a large block is freed, so later activations come from the heap and the freed space
stays with the process; a fixed threshold keeps big tensors on mmap (returned on free), and a
trim after each scoring burst hands back what the heap freed.

oneDNN (inside torch) keeps a compiled primitive per input shape it has seen, up to 1,024 of
them; function lengths make nearly every shape new, so the cache only grew (bench soak: about
8 MB of the model's 16 MB growth over 1,200 edits, 15 MB of the engine's 38 MB). A few entries
keep the reuse within one forward, whose layers share shapes. MKL's own buffer pool is off for
the same reason (about 3 MB more; no measurable cost to a forward's median).

glibc gives each new thread its own heap arena, up to eight per core; the server's threads (the
message loop, the worker, pygls's pool, torch's) each fragmented their own, and RSS crept up
over minutes of editing (bench soak, 3 minutes: +4.8 MB after warm-up with the default, +0.6
with two arenas). Two arenas keep two threads allocating at once without lock contention.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers from glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENAS = 2  # binds only threads that have not allocated yet: set before any thread starts
ONEDNN_CACHE_ENTRIES = 32  # read by oneDNN at its first primitive, so set before any forward

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
    """Fix the mmap threshold, bound the heap arenas and oneDNN's shape cache (a user's own
    setting wins: MALLOC_ARENA_MAX, ONEDNN_PRIMITIVE_CACHE_CAPACITY, MKL_DISABLE_FAST_MM);
    True when glibc accepted the threshold."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_ENTRIES))
    os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")
    lib = _glibc()
    if lib is None:
        return False
    ok = bool(lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    log.debug("mallopt(M_MMAP_THRESHOLD, %d): %s", MMAP_THRESHOLD_BYTES, ok)
    if "MALLOC_ARENA_MAX" not in os.environ:  # glibc read the user's value at start-up
        arenas = bool(lib.mallopt(M_ARENA_MAX, ARENAS))
        log.debug("mallopt(M_ARENA_MAX, %d): %s", ARENAS, arenas)
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
