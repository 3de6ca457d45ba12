"""Document synchronisation: open, change (incremental), close, save, watched files."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from ..engine.engine import index_uri
from .app import AlpineServer, log


def register(server: AlpineServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: AlpineServer, params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        ls.engine.open(doc.uri, doc.text, doc.language_id, doc.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: AlpineServer, params: types.DidChangeTextDocumentParams) -> None:
        edits: list[tuple[tuple[int, int, int, int] | None, str]] = []
        for change in params.content_changes:
            rng = getattr(change, "range", None)
            if rng is None:
                edits.append((None, change.text))
            else:
                edits.append(
                    (
                        (rng.start.line, rng.start.character, rng.end.line, rng.end.character),
                        change.text,
                    )
                )
        ls.engine.change(
            params.text_document.uri, params.text_document.version, edits, encoding=ls.encoding
        )

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: AlpineServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.engine.close(uri)
        ls.refresher.forget(uri)
        if not ls.pull:  # a closed file's defect hints go; its index entries stay
            ls.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
            )

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: AlpineServer, params: types.DidSaveTextDocumentParams) -> None:
        # The open document's analysis already updated the index; nothing more to do.
        log.debug("saved %s", params.text_document.uri)

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched(ls: AlpineServer, params: types.DidChangeWatchedFilesParams) -> None:
        for ev in params.changes:
            if ev.uri in ls.engine.docs:
                continue
            if ev.type == types.FileChangeType.Deleted:
                ls.engine.forget_file(ev.uri)
                continue
            path = to_fs_path(ev.uri)
            if path:  # on the worker, behind edits; open documents' hints follow
                ls.engine.reindex_file(Path(path), index_uri(ev.uri))
