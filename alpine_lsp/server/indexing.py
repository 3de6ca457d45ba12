"""The workspace index for similar-code hints: built in the background once the model is
ready (or when similarity is turned on), with cancellable work-done progress."""

from __future__ import annotations

from lsprotocol import types

from ..engine.engine import ModelState
from ..engine.settings import Settings
from .base import Feature, handles, log
from .progress import Progress


class Indexing(Feature):
    def __init__(self, server) -> None:
        super().__init__(server)
        self.progress: Progress | None = None  # of the latest run

    def on_model(self, model: ModelState) -> None:
        if model.state == "ready":
            self.start()

    def on_settings(self, old: Settings, new: Settings) -> None:
        turned_on = new.similarity.enabled and not old.similarity.enabled
        if turned_on and self.server.engine.model_state().state == "ready":
            self.start()

    @handles(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def cancel(self, params: types.WorkDoneProgressCancelParams) -> None:
        if self.progress is not None and params.token == self.progress.token:
            self.server.engine.cancel_indexing()

    def start(self) -> None:
        """Index the workspace in the background, reporting $/progress when the client can."""
        server = self.server
        if not server.settings.similarity.enabled:
            return  # nothing would use the index; it is built when the setting is turned on
        bar = Progress(
            server, "Indexing functions for similar-code hints", cancellable=True, percentage=0
        )

        def progress(i: int, n: int, name: str) -> None:  # on the indexer's thread
            if i % 10 == 0:
                bar.report(int(100 * i / max(1, n)), f"{i}/{n} {name}")

        def done(embedded: int) -> None:
            log.info("workspace index up to date (%d functions embedded)", embedded)
            bar.end(f"{embedded} functions embedded")
            server.engine.reanalyze_all()

        bar.start()
        server.engine.index_workspace(progress, done)
        self.progress = bar
