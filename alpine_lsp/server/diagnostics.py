"""Diagnostics: defect-risk and similar-code, pulled when the client can, pushed otherwise."""

from __future__ import annotations

from types import MappingProxyType

from lsprotocol import types

from ..engine.documents import BUDGET
from ..engine.engine import DocumentResult, FunctionResult
from ..engine.hints import MAX_RELATED, DefectHint, build_hint
from ..engine.similar import describe, summary
from .base import Feature, handles
from .ranges import line_range, name_range, short_path, whole_lines

SOURCE = "alpine"
SEVERITY = MappingProxyType(
    {
        "error": types.DiagnosticSeverity.Error,
        "warning": types.DiagnosticSeverity.Warning,
        "information": types.DiagnosticSeverity.Information,
        "hint": types.DiagnosticSeverity.Hint,
    }
)


def _notice(code: str, message: str) -> types.Diagnostic:
    start = types.Position(line=0, character=0)
    return types.Diagnostic(
        range=types.Range(start=start, end=start),
        severity=types.DiagnosticSeverity.Information,
        source=SOURCE,
        code=code,
        message=message,
    )


class Diagnostics(Feature):
    """Builds a result's diagnostics; answers pulls, or publishes each result (push clients)
    and clears a closed document's."""

    @handles(
        types.TEXT_DOCUMENT_DIAGNOSTIC,
        types.DiagnosticOptions(
            identifier=SOURCE, inter_file_dependencies=True, workspace_diagnostics=False
        ),
    )
    async def pull(self, params: types.DocumentDiagnosticParams):
        result = await self.server.wait_current(params.text_document.uri)
        items = self.build(result) if result is not None else []
        return types.RelatedFullDocumentDiagnosticReport(items=items)

    def on_result(self, result: DocumentResult) -> None:
        if self.server.caps.pull:
            return  # the client asks; refresh is requested where needed
        self.server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=result.uri, diagnostics=self.build(result), version=result.version
            )
        )

    def on_close(self, uri: str) -> None:
        if not self.server.caps.pull:  # a closed file's defect hints go; its index entries stay
            self.server.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
            )

    def build(self, result: DocumentResult) -> list[types.Diagnostic]:
        if result.skipped and result.skipped.startswith(BUDGET):  # say why nothing is shown
            why = result.skipped[len(BUDGET) :]
            return [_notice("not-analysed", f"alpine-lsp did not analyse this file: {why}")]
        lines = result.lines
        if not lines or result.file_ignored:
            return []
        out: list[types.Diagnostic] = []
        if result.pending:  # over the analysis budget: the rest comes in the next passes
            out.append(
                _notice(
                    "scoring",
                    f"alpine-lsp is still scoring this file: {result.pending} of "
                    f"{len(result.functions)} functions to go",
                )
            )
        server = self.server
        caps = server.caps
        severity = SEVERITY[server.settings.severity]

        def where(m) -> str:
            return f"{short_path(server.root(), m.uri)}:{m.start_line + 1}"

        for fr in result.functions:
            # Most functions have nothing to show: no range objects for them (20,000 a publish).
            if fr.function.ignored or not (fr.similar or (fr.flagged and fr.score is not None)):
                continue
            rng = name_range(lines, fr, caps.encoding)
            if fr.flagged and fr.score is not None:
                out.append(self.defect(result.uri, fr, lines, rng, severity))
            if fr.similar:
                # One diagnostic per function, whatever the number of matches: each match is a
                # related location with its own message.
                related = None
                if caps.related_info:
                    related = [
                        types.DiagnosticRelatedInformation(
                            location=whole_lines(m.uri, m.start_line, m.end_line),
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

    def defect(
        self,
        uri: str,
        fr: FunctionResult,
        lines: list[str],
        name_rng: types.Range,
        severity: types.DiagnosticSeverity,
    ) -> types.Diagnostic:
        """defect-risk on the top-ranked line (trimmed), naming the weakness and the line in
        words; the next ranked lines as related information. On the name when line hints are
        off."""
        assert fr.score is not None
        server = self.server
        enc = server.caps.encoding
        hint: DefectHint = build_hint(
            fr.function, fr.score, lines, server.settings.line_hints, shown=1 + MAX_RELATED
        )
        related = None
        if server.caps.related_info and hint.related:
            related = [
                types.DiagnosticRelatedInformation(
                    location=types.Location(uri=uri, range=line_range(lines, r, enc)),
                    message=f"also attended ({r.share:.0%}): {r.words or 'this line'}",
                )
                for r in hint.related
            ]
        data = {"name": fr.function.name, "line": fr.function.start_line}
        if hint.cwe:
            data["cwe"] = hint.cwe
        return types.Diagnostic(
            range=line_range(lines, hint.top, enc) if hint.top else name_rng,
            severity=severity,
            source=SOURCE,
            code="defect-risk",
            message=hint.message(),
            related_information=related,
            data=data,
        )
