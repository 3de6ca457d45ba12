"""Document synchronisation: open, change (incremental), close, save, watched files."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from ..engine.engine import index_uri
from .base import Feature, handles, log


class Sync(Feature):
    @handles(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(self, params: types.DidOpenTextDocumentParams) -> None:
        doc = params.text_document
        self.server.engine.open(doc.uri, doc.text, doc.language_id, doc.version)

    @handles(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(self, params: types.DidChangeTextDocumentParams) -> None:
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
        self.server.engine.change(
            params.text_document.uri,
            params.text_document.version,
            edits,
            encoding=self.server.caps.encoding,
        )

    @handles(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(self, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        self.server.engine.close(uri)
        self.server.closed(uri)  # diagnostics cleared (push clients), refresh state dropped

    @handles(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(self, params: types.DidSaveTextDocumentParams) -> None:
        # The open document's analysis already updated the index; nothing more to do.
        log.debug("saved %s", params.text_document.uri)

    @handles(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched(self, params: types.DidChangeWatchedFilesParams) -> None:
        engine = self.server.engine
        for ev in params.changes:
            if engine.is_open(ev.uri):
                continue
            if ev.type == types.FileChangeType.Deleted:
                engine.forget_file(ev.uri)
                continue
            path = to_fs_path(ev.uri)
            if path:  # on the worker, behind edits; open documents' hints follow
                engine.reindex_file(Path(path), index_uri(ev.uri))
