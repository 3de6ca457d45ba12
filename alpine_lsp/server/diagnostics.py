"""Diagnostics: defect-risk and similar-code, pulled when the client can, pushed otherwise."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types
from pygls.uris import to_fs_path

from ..engine.engine import BUDGET, DocumentResult, FunctionResult
from ..engine.hints import MAX_RELATED, DefectHint, LineRef, build_hint
from ..engine.positions import to_client
from ..engine.similar import describe, summary
from .app import AlpineServer

SOURCE = "alpine"
SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "information": types.DiagnosticSeverity.Information,
    "hint": types.DiagnosticSeverity.Hint,
}


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


def short_path(ls: AlpineServer, uri: str) -> str:
    path = to_fs_path(uri) or uri
    root = ls.root()
    try:
        return str(Path(path).relative_to(root)) if root else Path(path).name
    except ValueError:
        return Path(path).name


def build(ls: AlpineServer, result: DocumentResult) -> list[types.Diagnostic]:
    if result.skipped and result.skipped.startswith(BUDGET):  # say why nothing is shown
        start = types.Position(line=0, character=0)
        return [
            types.Diagnostic(
                range=types.Range(start=start, end=start),
                severity=types.DiagnosticSeverity.Information,
                source=SOURCE,
                code="not-analysed",
                message=f"alpine-lsp did not analyse this file: {result.skipped[len(BUDGET) :]}",
            )
        ]
    lines = result.lines
    if not lines or result.file_ignored:
        return []
    out: list[types.Diagnostic] = []
    if result.pending:  # over the analysis budget: the rest comes in the next passes
        start = types.Position(line=0, character=0)
        total = len(result.functions)
        out.append(
            types.Diagnostic(
                range=types.Range(start=start, end=start),
                severity=types.DiagnosticSeverity.Information,
                source=SOURCE,
                code="scoring",
                message=f"alpine-lsp is still scoring this file: {result.pending} of {total} "
                "functions to go",
            )
        )
    severity = SEVERITY[ls.settings.severity]
    for fr in result.functions:
        # Most functions have nothing to show: no range objects for them (20,000 a publish).
        if fr.function.ignored or not (fr.similar or (fr.flagged and fr.score is not None)):
            continue
        rng = name_range(lines, fr, ls.encoding)
        if fr.flagged and fr.score is not None:
            out.append(defect_diagnostic(ls, result.uri, fr, lines, rng, severity))
        if fr.similar:
            # One diagnostic per function, whatever the number of matches: each match is a
            # related location with its own message.
            def where(m) -> str:
                return f"{short_path(ls, m.uri)}:{m.start_line + 1}"

            related = None
            if ls.related_info:
                related = [
                    types.DiagnosticRelatedInformation(
                        location=types.Location(
                            uri=m.uri,
                            range=types.Range(
                                start=types.Position(line=m.start_line, character=0),
                                end=types.Position(line=m.end_line, character=0),
                            ),
                        ),
                        message=describe(m, where(m)),
                    )
                    for m in fr.similar
                ]
            out.append(
                types.Diagnostic(
                    range=rng,
                    severity=types.DiagnosticSeverity.Information,
                    source=SOURCE,
                    code="similar-code",
                    message=summary(fr.similar, where),
                    related_information=related,
                )
            )
    return out


def line_range(lines: list[str], ref: LineRef, enc: str) -> types.Range:
    return client_range(lines, ref.line, ref.start_col, ref.line, ref.end_col, enc)


def defect_diagnostic(
    ls: AlpineServer,
    uri: str,
    fr: FunctionResult,
    lines: list[str],
    name_rng: types.Range,
    severity: types.DiagnosticSeverity,
) -> types.Diagnostic:
    """defect-risk on the top-ranked line (trimmed), naming the weakness and the line in words;
    the next ranked lines as related information. On the name when line hints are off."""
    assert fr.score is not None
    hint: DefectHint = build_hint(
        fr.function, fr.score, lines, ls.settings.line_hints, shown=1 + MAX_RELATED
    )
    related = None
    if ls.related_info and hint.related:
        related = [
            types.DiagnosticRelatedInformation(
                location=types.Location(uri=uri, range=line_range(lines, r, ls.encoding)),
                message=f"also attended ({r.share:.0%}): {r.words or 'this line'}",
            )
            for r in hint.related
        ]
    data = {"name": fr.function.name, "line": fr.function.start_line}
    if hint.cwe:
        data["cwe"] = hint.cwe
    return types.Diagnostic(
        range=line_range(lines, hint.top, ls.encoding) if hint.top else name_rng,
        severity=severity,
        source=SOURCE,
        code="defect-risk",
        message=hint.message(),
        related_information=related,
        data=data,
    )


def publish(ls: AlpineServer, result: DocumentResult) -> None:
    if ls.pull:
        return  # the client asks; refresh is requested where needed
    ls.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(
            uri=result.uri,
            diagnostics=build(ls, result),
            version=result.version,
        )
    )


async def wait_current(ls: AlpineServer, uri: str, timeout: float = 120.0) -> DocumentResult | None:
    """The result for the document's current version, waiting for the worker if needed."""
    state = ls.engine.docs.get(uri)
    if state is None:
        return None
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        res = state.result
        # "ready" is not settled: the model turns ready before open documents are re-scored,
        # and a client without workspace/diagnostic/refresh (Neovim 0.11) would keep an empty
        # answer until the next edit.
        settled = ls.engine.holder.state == "failed"
        # A file scored in passes answers with what is scored so far (and says so).
        done = res is not None and (res.scored or res.pending > 0)
        if res is not None and res.version == state.version and (done or settled):
            return res
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return state.result
        fut = asyncio.get_running_loop().create_future()
        ls.waiters.setdefault(uri, []).append((state.version, fut))
        try:
            await asyncio.wait_for(fut, timeout=min(remaining, 1.0))
        except TimeoutError:
            pass


def register(server: AlpineServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.DiagnosticOptions(
            identifier=SOURCE, inter_file_dependencies=True, workspace_diagnostics=False
        ),
    )
    async def pull(ls: AlpineServer, params: types.DocumentDiagnosticParams):
        result = await wait_current(ls, params.text_document.uri)
        items = build(ls, result) if result is not None else []
        return types.RelatedFullDocumentDiagnosticReport(items=items)
