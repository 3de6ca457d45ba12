"""Quick fixes on a defect-risk diagnostic: ignore this function, ignore this file."""

from __future__ import annotations

from lsprotocol import types

from ..parsing import comment_prefix
from .app import AlpineServer


def register(server: AlpineServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: AlpineServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        state = ls.engine.docs.get(uri)
        if state is None or state.parsed is None or state.result is None:
            return []
        ours = [
            d
            for d in params.context.diagnostics
            if d.source == "alpine" and d.code == "defect-risk"
        ]
        if not ours:
            return []
        if state.result.version != state.version:
            return []  # the fix edits the current text: wait for its result (the client asks again)
        lines = state.result.lines
        prefix = comment_prefix(state.language or "c")
        actions = []
        seen = set()
        for diag in ours:
            line = diag.range.start.line
            fr = next(
                (f for f in state.result.functions if f.function.name_start_line == line), None
            )
            if fr is None or fr.function.start_line in seen:
                continue
            seen.add(fr.function.start_line)
            start = fr.function.start_line
            text = lines[start] if start < len(lines) else ""
            indent = text[: len(text) - len(text.lstrip())]
            edit = types.TextEdit(
                range=types.Range(
                    start=types.Position(line=start, character=0),
                    end=types.Position(line=start, character=0),
                ),
                new_text=f"{indent}{prefix} alpine: ignore\n",
            )
            actions.append(
                types.CodeAction(
                    title=f"Ignore this function ({fr.function.name})",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diag],
                    edit=types.WorkspaceEdit(changes={uri: [edit]}),
                )
            )
        file_edit = types.TextEdit(
            range=types.Range(
                start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)
            ),
            new_text=f"{prefix} alpine: ignore-file\n",
        )
        actions.append(
            types.CodeAction(
                title="Ignore this file",
                kind=types.CodeActionKind.QuickFix,
                diagnostics=ours,
                edit=types.WorkspaceEdit(changes={uri: [file_edit]}),
            )
        )
        return actions
