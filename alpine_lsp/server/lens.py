"""Similar-code surfaces beyond diagnostics: code lens and `alpine.showSimilar`."""

from __future__ import annotations

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from ..engine.similar import lens_title
from .base import Feature, command, handles
from .ranges import function_at, name_range, whole_lines

SHOW_SIMILAR = "alpine.showSimilar"
LENS_WAIT_S = 60.0  # past this a lens request answers with what there is


class Lens(Feature):
    @handles(types.TEXT_DOCUMENT_CODE_LENS)
    async def code_lens(self, params: types.CodeLensParams) -> list[types.CodeLens]:
        uri = params.text_document.uri
        # Asked right after didOpen (Neovim, VS Code), the answer waits for the first result,
        # as a pulled diagnostic does, instead of being an empty list until the next edit.
        await self.server.wait_current(uri, timeout=LENS_WAIT_S)
        snap = self.server.engine.snapshot(uri)
        if snap is None or snap.result is None or not snap.analysed:
            return []
        lines = snap.result.lines
        enc = self.server.caps.encoding
        out = []
        for fr in snap.result.functions:
            if not fr.similar:
                continue
            out.append(
                types.CodeLens(
                    range=name_range(lines, fr, enc),
                    command=types.Command(
                        title=lens_title(fr.similar),
                        command=SHOW_SIMILAR,
                        arguments=[uri, fr.function.name_start_line],
                    ),
                )
            )
        return out

    @command(SHOW_SIMILAR)
    def show_similar(self, *args) -> list[types.Location]:
        if len(args) == 1 and isinstance(args[0], list):  # some clients pass one list
            args = tuple(args[0])
        if len(args) < 2 or not isinstance(args[0], str) or not isinstance(args[1], int):
            raise JsonRpcInvalidParams("alpine.showSimilar takes (uri: string, line: integer)")
        snap = self.server.engine.snapshot(args[0])
        fr = function_at(snap, args[1], 0, self.server.caps.encoding, names_only=False)
        return [whole_lines(m.uri, m.start_line, m.end_line) for m in fr.similar] if fr else []
