"""What the engine keeps in memory under steady editing and after closing (issue 20, bench soak):
the in-memory caches follow the open documents' functions, a close ends in a heap trim, and the
model's first forward happens during its load."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import time
from pathlib import Path

import pytest

import alpine_lsp.engine.engine as engine_mod
from alpine_lsp.bench.soak import MARK, build_file
from alpine_lsp.engine.engine import Engine
from alpine_lsp.engine.settings import Settings

FUNCS = [
    "static int add(int a, int b)\n{\n    return a + b;\n}",
    "void zero(char *p, int n)\n{\n    while (n--)\n        *p++ = 0;\n}",
    "int find(const int *v, int n, int x)\n{\n    for (int i = 0; i < n; i++)\n"
    "        if (v[i] == x)\n            return i;\n    return -1;\n}",
]
MARGIN = 8


def _wait(cond, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError
        time.sleep(0.01)


@pytest.fixture
def engine(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(engine_mod, "CACHE_MARGIN", MARGIN)
    e = Engine(Settings(model=str(tiny_model_dir), debounce_ms=0))
    e.start(tmp_path)
    assert e.holder.ready.wait(60) and e.holder.model is not None
    yield e
    e.stop()


def _scored(e: Engine, uri: str, version: int) -> bool:
    state = e.docs.get(uri)
    return bool(state and state.result and state.result.version == version)


def test_model_is_warmed_up_during_its_load(engine: Engine) -> None:
    assert engine.holder.model.forwards >= 2  # batch 1 and batch 2, before any document


def test_caches_follow_the_open_functions_not_the_edit_count(engine: Engine) -> None:
    text, marks = build_file(FUNCS)
    lines = text.split("\n")
    uri = "file:///tmp/soak/a.c"
    engine.open(uri, text, "c", 1)
    _wait(lambda: _scored(engine, uri, 1))
    for v in range(2, 42):  # each edit: a new text for one function, scored anew
        line = marks[v % len(marks)]
        engine.change(uri, v, [((line, 0, line, len(lines[line])), MARK.format(v))])
        lines[line] = MARK.format(v)
        _wait(lambda v=v: _scored(engine, uri, v))
    assert engine.stats.counters["functions_scored"] >= 40
    # 43 distinct texts were scored; the caches hold the 3 open functions and the margin.
    assert len(engine.cache.memory) <= MARGIN + len(FUNCS)
    assert len(engine.clone_keys) <= MARGIN + len(FUNCS)


def test_closing_shrinks_the_caches_and_trims_the_heap(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    trims: list[int] = []
    monkeypatch.setattr(engine_mod, "release_memory", lambda: trims.append(1))
    uris = [f"file:///tmp/soak/{n}.c" for n in "abc"]
    for i, uri in enumerate(uris):  # different texts: 3 x 3 functions open
        text = build_file(FUNCS)[0].replace("= 0;", f"= {i};")
        engine.open(uri, text, "c", 1)
    _wait(lambda: all(_scored(engine, u, 1) for u in uris))
    assert len(engine.cache.memory) == 9
    _wait(lambda: engine.worker.pending() == 0)
    trims.clear()
    # A closed document's cycles wait for a full collection, which frozen model objects make
    # cheap: the close runs one before the trim hands the pages back.
    full: list[str] = []

    def watch(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            full.append(threading.current_thread().name)

    gc.callbacks.append(watch)
    try:
        for uri in uris:
            engine.close(uri)
        _wait(lambda: bool(trims) and engine.worker.pending() == 0, timeout=10)
    finally:
        gc.callbacks.remove(watch)
    assert len(engine.cache.memory) <= MARGIN and len(engine.clone_keys) <= MARGIN
    assert full, "no full collection after the documents closed"


def test_allocator_tuning_bounds_onednn_shapes_and_keeps_a_users_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from alpine_lsp.engine.memory import ONEDNN_CACHE_ENTRIES, tune_allocator

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    monkeypatch.delenv("MKL_DISABLE_FAST_MM", raising=False)
    tune_allocator()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_CACHE_ENTRIES)
    assert os.environ["MKL_DISABLE_FAST_MM"] == "1"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "512")
    tune_allocator()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "512"


ARENA_SCRIPT = r"""
import ctypes, os, sys, tempfile, threading
from alpine_lsp.engine.memory import tune_allocator
if sys.argv[1] == "tuned":
    tune_allocator()
libc = ctypes.CDLL("libc.so.6")
hold = []
alive = threading.Barrier(6)
def grab():
    alive.wait()  # all alive at once: an exited thread's arena would be handed on
    hold.append([bytearray(20000) for _ in range(50)])  # malloc from this thread's arena
    alive.wait()
threads = [threading.Thread(target=grab) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path = os.path.join(tempfile.mkdtemp(), "m.xml")
fp = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
print(open(path).read().count("<heap nr="))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas only")
def test_allocator_tuning_bounds_the_heap_arenas_of_later_threads(tmp_path: Path) -> None:
    import subprocess

    from alpine_lsp.engine.memory import ARENAS

    def arenas(mode: str, **env: str) -> int:
        base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
        out = subprocess.run(
            [sys.executable, "-c", ARENA_SCRIPT, mode],
            env={**base, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.strip())

    assert arenas("plain") > ARENAS  # glibc's default: a new arena per allocating thread
    assert arenas("tuned") <= ARENAS
    assert arenas("tuned", MALLOC_ARENA_MAX="4") > ARENAS  # the user's own value wins


def _sqlite_memory_used() -> int:
    """Bytes SQLite holds in this process (its own counter, from the library Python loaded)."""
    import _sqlite3

    fn = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    fn.restype = ctypes.c_int64
    return int(fn())


def test_closing_the_last_document_hands_sqlite_page_caches_back(engine: Engine) -> None:
    assert engine.cache.db_path is not None and engine.index is not None
    uris = [f"file:///tmp/soak/p{n}.c" for n in range(6)]
    for i, uri in enumerate(uris):
        engine.open(uri, build_file(FUNCS)[0].replace("= 0;", f"= {i};"), "c", 1)
    _wait(lambda: all(_scored(engine, u, 1) for u in uris))
    _wait(lambda: engine.worker.pending() == 0)
    engine.close(uris[0])  # others stay open: the page caches stay warm for them
    _wait(lambda: engine.worker.pending() == 0)
    time.sleep(0.2)
    still_open = _sqlite_memory_used()
    for uri in uris[1:]:
        engine.close(uri)
    time.sleep(0.2)
    _wait(lambda: engine.worker.pending() == 0)
    after = _sqlite_memory_used()
    assert after < still_open - 8192, (still_open, after)  # at least two 4 KB pages went back
