"""Positions and names the features share: client ranges of functions and lines, the function
under a position, and a workspace-relative path for messages."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from ..engine.engine import DocumentSnapshot, FunctionResult
from ..engine.hints import LineRef
from ..engine.positions import to_client, to_codepoint


def client_range(lines: list[str], sl: int, sc: int, el: int, ec: int, enc: str) -> types.Range:
    def pos(line: int, col: int) -> types.Position:
        text = lines[line] if 0 <= line < len(lines) else ""
        return types.Position(line=line, character=to_client(text, col, enc))

    return types.Range(start=pos(sl, sc), end=pos(el, ec))


def name_range(lines: list[str], fr: FunctionResult, enc: str) -> types.Range:
    f = fr.function
    return client_range(
        lines, f.name_start_line, f.name_start_col, f.name_end_line, f.name_end_col, enc
    )


def line_range(lines: list[str], ref: LineRef, enc: str) -> types.Range:
    return client_range(lines, ref.line, ref.start_col, ref.line, ref.end_col, enc)


def whole_lines(uri: str, start_line: int, end_line: int) -> types.Location:
    """A location from the start of `start_line` to the start of `end_line`."""
    return types.Location(
        uri=uri,
        range=types.Range(
            start=types.Position(line=start_line, character=0),
            end=types.Position(line=end_line, character=0),
        ),
    )


def short_path(root: Path | None, uri: str) -> str:
    """`uri`'s path relative to the workspace root, or its file name outside it."""
    path = to_fs_path(uri) or uri
    try:
        return str(Path(path).relative_to(root)) if root else Path(path).name
    except ValueError:
        return Path(path).name


def function_at(
    snap: DocumentSnapshot | None, line: int, character: int, enc: str, names_only: bool = True
) -> FunctionResult | None:
    """The function whose name (or, with `names_only` off, whose lines) hold the position;
    the innermost of nested ones. None for a document that is not analysed."""
    if snap is None or snap.result is None or not snap.analysed:
        return None
    lines = snap.result.lines
    if not 0 <= line < len(lines):
        return None
    col = to_codepoint(lines[line], character, enc)
    best: FunctionResult | None = None
    for fr in snap.result.functions:
        f = fr.function
        if names_only:
            inside = (
                (f.name_start_line, f.name_start_col)
                <= (line, col)
                <= (f.name_end_line, f.name_end_col)
            )
        else:
            inside = f.start_line <= line <= f.end_line
        if inside and (best is None or f.start_line >= best.function.start_line):
            best = fr  # innermost wins for nested functions
    return best
