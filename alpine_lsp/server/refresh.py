"""`workspace/codeLens/refresh` and `workspace/diagnostic/refresh`, when the client has them.

A client asks for lenses and pulled diagnostics when *it* sees a reason (open, edit); results
that change without an edit (the model finished loading, the workspace index is done, a
setting or a file on disk changed) reach it only if the server asks it to pull again. One
request covers every open document, so requests are coalesced: at most one per DELAY_S.
"""

from __future__ import annotations

from ..engine.engine import DocumentResult, ModelState
from ..engine.settings import Settings
from .base import Feature, log

DELAY_S = 0.25


# Keys over what is shown only (lenses and diagnostics exist for functions with hints): they
# run on the event loop for every result, and a file may hold 20,000 functions.
def _lens_key(result: DocumentResult) -> tuple:
    return tuple((fr.function.start_line, len(fr.similar)) for fr in result.functions if fr.similar)


def _diag_key(result: DocumentResult) -> tuple:
    return (
        result.scored,
        result.pending,
        result.file_ignored,
        tuple(
            (
                fr.function.start_line,
                fr.flagged,
                None if fr.score is None else round(fr.score.probability, 2),
                tuple((m.uri, m.start_line, round(m.score, 3)) for m in fr.similar),
            )
            for fr in result.functions
            if fr.flagged or fr.similar
        ),
    )


class Refresher(Feature):
    """Remembers what each document last showed; asks for a pull when that changed."""

    def __init__(self, server) -> None:
        super().__init__(server)
        self.shown: dict[str, tuple[int | None, tuple, tuple]] = {}
        self.want = {"lens": False, "diag": False}
        self.pending = False
        self.sent = {"lens": 0, "diag": 0}

    def supports(self) -> tuple[bool, bool]:
        """(code lens refresh, diagnostic refresh) as the client declared them."""
        caps = self.server.caps
        return caps.lens_refresh, caps.diagnostic_refresh

    def on_result(self, result: DocumentResult) -> None:
        """On the event loop, for every published result."""
        lens_ok, diag_ok = self.supports()
        if not (lens_ok or diag_ok):
            return
        lens, diag = _lens_key(result), _diag_key(result)
        before = self.shown.get(result.uri)
        self.shown[result.uri] = (result.version, lens, diag)
        if before is None:
            # First result after didOpen: lenses asked for at open may predate it; a pulled
            # diagnostic waits for it (AlpineServer.wait_current), so needs no refresh.
            self.ask(lens=lens_ok and any(n for _, n in lens))
            return
        version, old_lens, old_diag = before
        # After an edit the client pulls diagnostics itself; only a change at the same version
        # (model ready, index done, settings, another file) needs asking.
        diag_changed = diag != old_diag and version == result.version
        self.ask(lens=lens_ok and lens != old_lens, diag=diag_ok and diag_changed)

    def on_close(self, uri: str) -> None:
        self.shown.pop(uri, None)

    def on_model(self, model: ModelState) -> None:
        if model.state == "ready":
            self.ask_all()

    def on_settings(self, old: Settings, new: Settings) -> None:
        self.ask_all()  # severity, threshold...: everything may show differently

    def ask_all(self) -> None:
        lens_ok, diag_ok = self.supports()
        self.ask(lens=lens_ok, diag=diag_ok)

    def ask(self, lens: bool = False, diag: bool = False) -> None:
        self.want["lens"] |= lens
        self.want["diag"] |= diag
        loop = self.server.loop
        if self.pending or not (self.want["lens"] or self.want["diag"]) or loop is None:
            return
        self.pending = True
        loop.call_later(DELAY_S, self._send)

    def _send(self) -> None:
        self.pending = False
        if self.server.shut_down:
            return
        lens, diag = self.want["lens"], self.want["diag"]
        self.want = {"lens": False, "diag": False}
        try:  # no callback: the answer is null, and an error answer changes nothing here
            if lens:
                self.server.workspace_code_lens_refresh(None)
                self.sent["lens"] += 1
            if diag:
                self.server.workspace_diagnostic_refresh(None)
                self.sent["diag"] += 1
        except Exception as e:  # the connection is gone
            log.debug("refresh request not sent: %s", e)
