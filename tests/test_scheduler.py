"""The one worker for all model work: priorities, steps, failures, stop (engine/scheduler.py),
and end to end, that the server scores on that worker alone while it indexes and edits."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from lsprotocol import types

from alpine_lsp.engine.scheduler import INDEX, OTHER, Scheduler, Stopped
from tests.lsp_util import C_SOURCE, change, open_doc, start, stats, stop, wait_for


def _wait(pred, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.005)


def test_due_analysis_goes_before_the_next_step_of_a_job():
    order: list[str] = []
    gate = threading.Event()
    sched = Scheduler(lambda key: order.append(key))

    def job(name: str, steps: int):
        for i in range(steps):
            order.append(f"{name}{i}")
            if name == "index" and i == 0:
                gate.wait(5)  # an edit arrives during this step
            yield

    try:
        sched.submit(job("other", 2), OTHER)
        sched.submit(job("index", 3), INDEX)
        _wait(lambda: "index0" in order)
        sched.schedule("doc", 0)
        gate.set()
        _wait(lambda: len(order) == 6)
        # INDEX before OTHER; the edit right after the step it arrived in.
        assert order == ["index0", "doc", "index1", "index2", "other0", "other1"]
    finally:
        sched.stop()


def test_jobs_wait_for_an_analysis_due_within_min_gap():
    order: list[str] = []
    sched = Scheduler(lambda key: order.append(key))
    sched.min_gap = 0.5
    try:
        sched.schedule("doc", 0.2)
        assert 0 < sched.time_left() <= 0.2
        sched.submit(iter([None]), INDEX)
        sched.call(lambda: order.append("call"), INDEX)
        assert order == ["doc", "call"]
        assert sched.time_left() == float("inf")
    finally:
        sched.stop()


def test_worker_survives_failures_and_returns_results():
    seen: list[str] = []

    def analyze(key: str) -> None:
        if key == "bad":
            raise ValueError("analysis")
        seen.append(key)

    def broken():
        yield
        raise RuntimeError("job")

    sched = Scheduler(analyze)
    try:
        sched.schedule("bad", 0)
        sched.submit(broken(), OTHER)
        with pytest.raises(KeyError):
            sched.call(lambda: {}["missing"])

        def steps():
            yield
            yield
            return 42

        assert sched.run(steps(), INDEX) == 42
        assert sched.call(threading.current_thread) is sched._thread
        sched.schedule("good", 0)
        _wait(lambda: seen == ["good"])
    finally:
        sched.stop()


def test_stop_fails_waiting_callers_and_refuses_new_work():
    sched = Scheduler(lambda key: None)
    release = threading.Event()
    started = threading.Event()

    def blocker():
        started.set()
        release.wait(5)

    def first() -> None:
        try:
            sched.call(blocker)
        except Stopped:  # stop() does not wait for the running step either
            pass

    threading.Thread(target=first, daemon=True).start()
    started.wait(5)
    failed: list[BaseException] = []

    def waiter() -> None:
        try:
            sched.call(lambda: None)
        except Stopped as e:
            failed.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    _wait(lambda: sched.queued() == 1)
    sched.stop()
    t.join(5)
    release.set()
    assert len(failed) == 1
    with pytest.raises(Stopped):
        sched.call(lambda: None)


C_OTHER = """\
int twice(int x)
{
    return 2 * x;
}

int thrice(int x)
{
    return 3 * x;
}
"""


@pytest.mark.asyncio(loop_scope="function")
async def test_server_scores_on_the_worker_alone(tmp_path: Path, tiny_model_dir):
    """Indexing, an edit and a watched-file re-index: every Scorer call on alpine-worker."""
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    for i in range(4):
        (root / "src" / f"f{i}.c").write_text(C_OTHER.replace("twice", f"twice_{i}"))
    doc = root / "doc.c"
    doc.write_text(C_SOURCE)
    init = {
        "model": str(tiny_model_dir),
        "debounceMs": 20,
        "similarity": {"enabled": True, "threshold": 0.9999},
    }
    client = await start(root, tmp_path / "cache", init)
    try:
        open_doc(client, doc, C_SOURCE)
        change(client, doc, 2, (3, 0), (3, 0), "/* edited */\n")

        async def indexed():
            s = await stats(client)
            return s if s["index_state"] == "done" and s["analyses"] >= 2 else None

        await wait_for(indexed, timeout=120)
        changed = root / "src" / "f0.c"
        changed.write_text(C_OTHER.replace("twice", "four_times"))
        client.workspace_did_change_watched_files(
            types.DidChangeWatchedFilesParams(
                changes=[types.FileEvent(uri=changed.as_uri(), type=types.FileChangeType.Changed)]
            )
        )

        async def reindexed():
            s = await stats(client)
            return s if s["files_indexed"] >= 5 and s["queued"] == 0 else None

        s = await wait_for(reindexed, timeout=60)
        assert s["score_threads"] == ["alpine-worker"]
    finally:
        await stop(client)


def _engine_workspace(tmp_path: Path, files: int) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    for i in range(files):
        (root / f"f{i:02d}.c").write_text(C_OTHER.replace("twice", f"twice_{i}"))
    return root


def test_index_progress_done_and_cancel_keep_their_behaviour(tiny_model_dir, tmp_path):
    from alpine_lsp.engine.engine import Engine
    from alpine_lsp.engine.settings import Settings

    root = _engine_workspace(tmp_path, 6)
    eng = Engine(Settings(model=str(tiny_model_dir)), cache_path=False)
    seen: list[tuple[int, int, str]] = []
    done: list[int] = []
    finished = threading.Event()

    def progress(i: int, n: int, name: str) -> None:
        seen.append((i, n, name))
        if i == 2:
            eng.cancel_indexing()  # as $/progress cancel does

    def on_done(n: int) -> None:
        done.append(n)
        finished.set()

    try:
        eng.start(root)
        assert eng.holder.ready.wait(120), eng.holder.error
        eng.index_workspace(progress, on_done)
        assert finished.wait(60)
        assert eng.indexer.state == "cancelled"
        assert [(i, n) for i, n, _ in seen] == [(0, 6), (1, 6), (2, 6)]
        assert eng.stats.snapshot()["files_indexed"] == 2  # the third was cancelled mid-way
        assert done == [3]  # the files share thrice(): scored once
        finished.clear()
        eng.index_workspace(done=on_done)
        assert finished.wait(60)
        assert eng.indexer.state == "done"
        assert eng.stats.snapshot()["files_indexed"] == 6
    finally:
        eng.stop()


def test_stop_ends_indexing(tiny_model_dir, tmp_path):
    from alpine_lsp.engine.engine import Engine
    from alpine_lsp.engine.settings import Settings

    root = _engine_workspace(tmp_path, 30)
    eng = Engine(Settings(model=str(tiny_model_dir)), cache_path=False)
    finished = threading.Event()
    eng.start(root)
    assert eng.holder.ready.wait(120), eng.holder.error
    eng.index_workspace(lambda i, n, name: eng.stop() if i == 1 else None, lambda n: finished.set())
    assert finished.wait(60)
    assert eng.indexer.state == "cancelled"
    assert eng.indexer.join(10)  # the walk's thread has ended
