"""Hover on a function name: the score, the threshold, pruning lengths, and why."""

from __future__ import annotations

from lsprotocol import types

from ..engine.engine import DocumentSnapshot, FunctionResult
from ..engine.hints import build_hint
from ..engine.hints import describe as cwe_words
from ..engine.similar import describe
from .base import Feature, handles
from .ranges import function_at, name_range, short_path


def hint_name(cwe: str) -> str:
    return cwe_words(cwe) if cwe != "other" else "(another category)"


class Hover(Feature):
    @handles(types.TEXT_DOCUMENT_HOVER)
    def hover(self, params: types.HoverParams) -> types.Hover | None:
        # One snapshot for the whole answer: the function, its ranges and its lines all come
        # from the same result.
        snap = self.server.engine.snapshot(params.text_document.uri)
        enc = self.server.caps.encoding
        fr = function_at(snap, params.position.line, params.position.character, enc)
        if fr is None or snap is None:
            return None
        return types.Hover(
            contents=types.MarkupContent(
                kind=types.MarkupKind.Markdown, value=self.render(snap, fr)
            ),
            range=name_range(snap.lines, fr, enc),
        )

    def render(self, snap: DocumentSnapshot, fr: FunctionResult) -> str:
        engine = self.server.engine
        f = fr.function
        lines = [f"**alpine** · `{f.name}`", ""]
        s = fr.score
        model = snap.model
        if s is None:
            if model.state == "failed":
                lines.append(f"model not loaded: {model.error}")
            else:
                lines.append("model loading…" if model.state == "loading" else "not scored yet")
            return "\n".join(lines)
        threshold = engine.threshold()
        verdict = "**possible defect**" if fr.flagged else "below the threshold"
        if f.ignored:
            verdict = "ignored (`alpine: ignore`)"
        # Why this function's language gets no defect hints (engine/policy.py), if it does not.
        off = snap.result.defect_off if snap.result is not None else None
        if off:
            verdict = off
        lines.append(
            f"defect probability **{s.probability:.2f}** (threshold {threshold:.2f}): {verdict}"
        )
        lines.append("")
        lines.append(f"- model: {model.name if model.name is not None else '?'}")
        trunc = f", truncated to {s.tokens_per_layer[0]} (head and tail)" if s.truncated else ""
        lines.append(f"- tokens: {s.n_tokens}{trunc}")
        lines.append(
            f"- tokens per layer after pruning: {' → '.join(map(str, s.tokens_per_layer))}"
        )
        lines.append(f"- {s.flops / 1e9:.2f} GFLOPs, {s.ms:.0f} ms")
        if "adapter" in s.parts:
            lines.append(
                f"- adapted to this repository ({int(s.parts.get('adapter_fixes', 0))} fixes): "
                f"global {s.parts.get('global', 0):.2f}, adapter {s.parts['adapter']:.2f}"
            )
        if "encoder" in s.parts:
            lines.append(
                f"- encoder {s.parts.get('encoder', 0):.2f}, lexical n-grams "
                f"{s.parts.get('lexical', 0):.2f} (fused into the probability above)"
            )
        pushed = [(k[7:], v) for k, v in s.parts.items() if k.startswith("metric:")]
        if pushed:
            lines.append(
                "- code metrics that moved the score: "
                + ", ".join(f"{k} {v:+.2f}" for k, v in pushed)
            )
        hint = build_hint(f, s, snap.lines if snap.result is not None else None)
        if hint.cwes:
            guess = ", ".join(f"{c} {hint_name(c)} ({p:.2f})" for c, p in hint.cwes)
            lines.append(f"- weakness, if any (CWE head): {guess}")
        if hint.lines:
            lines.append("- lines the model attended to most:")
            for r in hint.lines[:5]:
                lines.append(f"  - line {r.line + 1} ({r.share:.0%}): {r.words or 'this line'}")
        if s.top_tokens:
            why = ", ".join(f"`{t}`" for t, _ in s.top_tokens)
            last = len(s.tokens_per_layer) - 1
            if s.top_tokens_layer and s.top_tokens_layer < last:
                where = (
                    f"in layer {s.top_tokens_layer} (too few survived pruning to the last layer)"
                )
            else:
                where = "among those that survived to the last layer"
            lines.append(f"- why: tokens with most attention {where}: {why}")
        if s.lexical_terms:
            terms = ", ".join(f"`{t}`" for t, _ in s.lexical_terms)
            lines.append(f"- n-grams that raised the lexical score most: {terms}")
        if fr.similar:
            lines.append("")
            lines.append("similar code:")
            root = self.server.root()
            for m in fr.similar:
                lines.append(f"- {describe(m, f'{short_path(root, m.uri)}:{m.start_line + 1}')}")
        return "\n".join(lines)
