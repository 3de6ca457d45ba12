"""`alpine.learn` (workspace/executeCommand): run `learn` on the workspace in the background.

Returns at once; progress goes to `$/progress` when the client supports it, the outcome to
window/showMessage. The adapter is picked up by the engine as soon as it is written.
"""

from __future__ import annotations

import functools
import threading

from lsprotocol import types

from .base import Feature, command, log
from .progress import Progress

LEARN = "alpine.learn"


class Learn(Feature):
    def __init__(self, server) -> None:
        super().__init__(server)
        self.thread: threading.Thread | None = None  # the run going, if any

    @command(LEARN)
    def learn_command(self, *args) -> dict:
        engine = self.server.engine
        if self.thread is not None and self.thread.is_alive():
            return {"started": False, "reason": "a learn run is already going"}
        if engine.root is None:
            return {"started": False, "reason": "no workspace folder"}
        if engine.loaded_model() is None:
            state = engine.model_state().state
            return {"started": False, "reason": f"model not ready ({state})"}
        bar = Progress(
            self.server, "Learning from this repository's bug fixes", percentage=0
        ).start()
        t = threading.Thread(target=self._run, args=(bar,), name="alpine-learn", daemon=True)
        self.thread = t
        t.start()
        return {"started": True}

    def _run(self, bar: Progress) -> None:
        from ..history.learn import LearnError, learn
        from ..history.mine import HistoryError

        server = self.server
        engine = server.engine
        root, model = engine.root, engine.loaded_model()
        last = {"pct": -1}

        def progress(stage: str, done: int, total: int) -> None:
            # Mining is about half of a run, scoring the other half.
            pct = int(50 * done / max(1, total)) + (50 if stage == "scoring" else 0)
            if bar.showing and pct != last["pct"]:
                last["pct"] = pct
                bar.report(pct, f"{stage} {done}/{total}")

        def score(codes: list[str], language: str) -> list:
            # On the engine's worker, 16 at a time: an edit waits for one small batch at most.
            out: list = []
            for k in range(0, len(codes), 16):
                part = functools.partial(model.score, codes[k : k + 16], language)  # type: ignore[union-attr]
                out += engine.run_model(part)
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
        engine.forget_adapter()
        loop = server.loop
        if loop and not loop.is_closed():
            bar.end(msg)
            loop.call_soon_threadsafe(server.show, msg, kind)
        engine.reanalyze_all()
