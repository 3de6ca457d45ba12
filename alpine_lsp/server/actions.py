"""Quick fixes on a defect-risk diagnostic: ignore this function, ignore this file."""

from __future__ import annotations

from lsprotocol import types

from ..parsing import comment_prefix
from .base import Feature, handles


def _insert_at(line: int, text: str) -> types.TextEdit:
    at = types.Position(line=line, character=0)
    return types.TextEdit(range=types.Range(start=at, end=at), new_text=text)


class CodeActions(Feature):
    @handles(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(self, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        snap = self.server.engine.snapshot(uri)
        if snap is None or not snap.analysed or snap.result is None:
            return []
        ours = [
            d
            for d in params.context.diagnostics
            if d.source == "alpine" and d.code == "defect-risk"
        ]
        if not ours:
            return []
        if snap.result.version != snap.version:
            return []  # the fix edits the current text: wait for its result (the client asks again)
        lines = snap.result.lines
        prefix = comment_prefix(snap.language or "c")
        actions = []
        seen = set()
        for diag in ours:
            line = diag.range.start.line
            fr = next(
                (f for f in snap.result.functions if f.function.name_start_line == line), None
            )
            if fr is None or fr.function.start_line in seen:
                continue
            seen.add(fr.function.start_line)
            start = fr.function.start_line
            text = lines[start] if start < len(lines) else ""
            indent = text[: len(text) - len(text.lstrip())]
            actions.append(
                types.CodeAction(
                    title=f"Ignore this function ({fr.function.name})",
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[diag],
                    edit=types.WorkspaceEdit(
                        changes={uri: [_insert_at(start, f"{indent}{prefix} alpine: ignore\n")]}
                    ),
                )
            )
        actions.append(
            types.CodeAction(
                title="Ignore this file",
                kind=types.CodeActionKind.QuickFix,
                diagnostics=ours,
                edit=types.WorkspaceEdit(
                    changes={uri: [_insert_at(0, f"{prefix} alpine: ignore-file\n")]}
                ),
            )
        )
        return actions
