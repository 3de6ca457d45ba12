"""`alpine.learn` (workspace/executeCommand): run `learn` on the workspace in the background.

Returns at once; progress goes to `$/progress` when the client supports it, the outcome to
window/showMessage. The adapter is picked up by the engine as soon as it is written.
"""

from __future__ import annotations

import functools
import threading
import uuid

from lsprotocol import types

from .app import AlpineServer, log
from .lens import _end, _report

LEARN = "alpine.learn"
_RUNNING: dict[str, threading.Thread | None] = {"thread": None}


def _run(ls: AlpineServer, token: str | None, began: dict) -> None:
    from ..history.learn import LearnError, learn
    from ..history.mine import HistoryError

    root, model = ls.engine.root, ls.engine.holder.model
    last = {"pct": -1}

    def progress(stage: str, done: int, total: int) -> None:
        # Mining is about half of a run, scoring the other half.
        pct = int(50 * done / max(1, total)) + (50 if stage == "scoring" else 0)
        if token and began["ok"] and ls.loop and pct != last["pct"]:
            last["pct"] = pct
            ls.loop.call_soon_threadsafe(_report, ls, token, pct, f"{stage} {done}/{total}")

    def score(codes: list[str], language: str) -> list:
        # On the engine's worker, 16 at a time: an edit waits for one small batch at most.
        out: list = []
        for k in range(0, len(codes), 16):
            part = functools.partial(model.score, codes[k : k + 16], language)  # type: ignore[union-attr]
            out += ls.engine.run_model(part)
        return out

    try:
        out = learn(root, model, progress=progress, score=score)  # type: ignore[arg-type]
        msg = (
            f"alpine: adapted to this repository ({out['fix_commits']} fix commits, "
            f"{out['pairs']} pairs, blend weight {out['blend_weight']:.2f})"
        )
        kind = types.MessageType.Info
    except (HistoryError, LearnError) as e:
        msg, kind = f"alpine: no adapter: {e}", types.MessageType.Warning
    except Exception as e:  # never take the server down with it
        log.exception("alpine.learn failed")
        msg, kind = f"alpine: learn failed: {type(e).__name__}: {e}", types.MessageType.Error
    if ls.engine.scorer.adapters is not None:
        ls.engine.scorer.adapters.forget()
    if ls.loop and not ls.loop.is_closed():
        if token and began["ok"]:
            ls.loop.call_soon_threadsafe(_end, ls, token, msg)
        ls.loop.call_soon_threadsafe(ls.show, msg, kind)
    ls.engine.reanalyze_all()


def register(server: AlpineServer) -> None:
    @server.command(LEARN)
    def learn_command(ls: AlpineServer, *args) -> dict:
        running = _RUNNING["thread"]
        if running is not None and running.is_alive():
            return {"started": False, "reason": "a learn run is already going"}
        if ls.engine.root is None:
            return {"started": False, "reason": "no workspace folder"}
        if ls.engine.holder.model is None:
            return {"started": False, "reason": f"model not ready ({ls.engine.holder.state})"}
        token = str(uuid.uuid4()) if ls.progress_ok else None
        began = {"ok": False}

        def created(*_a) -> None:
            try:
                ls.work_done_progress.begin(
                    token,
                    types.WorkDoneProgressBegin(
                        title="Learning from this repository's bug fixes", percentage=0
                    ),
                )
                began["ok"] = True
            except Exception:
                pass

        if token:
            try:
                ls.work_done_progress.create(token, callback=created)
            except Exception:
                token = None
        t = threading.Thread(target=_run, args=(ls, token, began), name="alpine-learn", daemon=True)
        _RUNNING["thread"] = t
        t.start()
        return {"started": True}
