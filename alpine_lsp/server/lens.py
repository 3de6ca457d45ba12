"""Similar-code surfaces beyond diagnostics: code lens, `alpine.showSimilar`, workspace indexing."""

from __future__ import annotations

import uuid

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ..engine.similar import lens_title
from .app import AlpineServer, log
from .diagnostics import name_range, wait_current
from .hover import function_at

SHOW_SIMILAR = "alpine.showSimilar"
INDEX_TOKEN: dict[str, str | None] = {"token": None}
LENS_WAIT_S = 60.0  # past this a lens request answers with what there is


def _locations(fr) -> list[types.Location]:
    return [
        types.Location(
            uri=m.uri,
            range=types.Range(
                start=types.Position(line=m.start_line, character=0),
                end=types.Position(line=m.end_line, character=0),
            ),
        )
        for m in fr.similar
    ]


def register(server: AlpineServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_CODE_LENS)
    async def code_lens(ls: AlpineServer, params: types.CodeLensParams) -> list[types.CodeLens]:
        uri = params.text_document.uri
        # Asked right after didOpen (Neovim, VS Code), the answer waits for the first result,
        # as a pulled diagnostic does, instead of being an empty list until the next edit.
        await wait_current(ls, uri, timeout=LENS_WAIT_S)
        state = ls.engine.docs.get(uri)
        if state is None or state.result is None or state.parsed is None:
            return []
        lines = state.result.lines
        out = []
        for fr in state.result.functions:
            if not fr.similar:
                continue
            out.append(
                types.CodeLens(
                    range=name_range(lines, fr, ls.encoding),
                    command=types.Command(
                        title=lens_title(fr.similar),
                        command=SHOW_SIMILAR,
                        arguments=[uri, fr.function.name_start_line],
                    ),
                )
            )
        return out

    @server.feature(types.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def cancel(ls: AlpineServer, params: types.WorkDoneProgressCancelParams) -> None:
        if params.token == INDEX_TOKEN["token"]:
            ls.engine.indexer_cancel.set()

    @server.command(SHOW_SIMILAR)
    def show_similar(ls: AlpineServer, *args) -> list[types.Location]:
        if len(args) == 1 and isinstance(args[0], list):  # some clients pass one list
            args = tuple(args[0])
        if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], int):
            raise JsonRpcInvalidParams("alpine.showSimilar takes (uri: string, line: integer)")
        fr = function_at(ls, args[0], args[1], 0, names_only=False)
        return _locations(fr) if fr else []


def start_indexing(ls: AlpineServer) -> None:
    """Index the workspace in the background, reporting $/progress when the client can."""
    if not ls.settings.similarity.enabled:
        return  # nothing would use the index; it is built when the setting is turned on
    token = str(uuid.uuid4()) if ls.progress_ok else None
    began = {"ok": False}

    def created(*_args) -> None:
        try:
            ls.work_done_progress.begin(
                token,
                types.WorkDoneProgressBegin(
                    title="Indexing functions for similar-code hints",
                    cancellable=True,
                    percentage=0,
                ),
            )
            began["ok"] = True
        except Exception:
            pass

    def progress(i: int, n: int, name: str) -> None:
        if token and began["ok"] and ls.loop and (i % 10 == 0):
            pct = int(100 * i / max(1, n))
            ls.loop.call_soon_threadsafe(_report, ls, token, pct, f"{i}/{n} {name}")

    def done(embedded: int) -> None:
        log.info("workspace index up to date (%d functions embedded)", embedded)
        if token and began["ok"] and ls.loop:
            ls.loop.call_soon_threadsafe(_end, ls, token, f"{embedded} functions embedded")
        ls.engine.reanalyze_all()

    if token:
        try:
            ls.work_done_progress.create(token, callback=created)
        except Exception:
            token = None
    ls.engine.index_workspace(progress, done)
    INDEX_TOKEN["token"] = token


def _report(ls: AlpineServer, token: str, pct: int, msg: str) -> None:
    try:
        ls.work_done_progress.report(
            token, types.WorkDoneProgressReport(percentage=pct, message=msg)
        )
    except Exception:
        pass


def _end(ls: AlpineServer, token: str, msg: str) -> None:
    try:
        ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=msg))
    except Exception:
        pass
