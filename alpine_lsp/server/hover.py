"""Hover on a function name: the score, the threshold, pruning lengths, and why."""

from __future__ import annotations

from lsprotocol import types

from ..engine.engine import FunctionResult
from ..engine.hints import build_hint
from ..engine.hints import describe as cwe_words
from ..engine.positions import to_codepoint
from ..engine.similar import describe
from .app import AlpineServer
from .diagnostics import name_range, short_path


def function_at(ls: AlpineServer, uri: str, line: int, character: int, names_only: bool = True):
    state = ls.engine.docs.get(uri)
    if state is None or state.result is None or state.parsed is None:
        return None
    lines = state.result.lines
    if not 0 <= line < len(lines):
        return None
    col = to_codepoint(lines[line], character, ls.encoding)
    best: FunctionResult | None = None
    for fr in state.result.functions:
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


def state_off(ls: AlpineServer, fr: FunctionResult) -> str | None:
    """Why this function's language gets no defect hints (engine/policy.py), if it does not."""
    for state in ls.engine.docs.values():
        r = state.result
        if r is not None and any(x is fr for x in r.functions):
            return r.defect_off
    return None


def hint_name(cwe: str) -> str:
    return cwe_words(cwe) if cwe != "other" else "(another category)"


def render(ls: AlpineServer, fr: FunctionResult, fr_uri: str | None = None) -> str:
    engine = ls.engine
    f = fr.function
    lines = [f"**alpine** · `{f.name}`", ""]
    s = fr.score
    holder = engine.holder
    if s is None:
        if holder.state == "failed":
            lines.append(f"model not loaded: {holder.error}")
        else:
            lines.append("model loading…" if holder.state == "loading" else "not scored yet")
        return "\n".join(lines)
    threshold = engine.threshold()
    verdict = "**possible defect**" if fr.flagged else "below the threshold"
    if f.ignored:
        verdict = "ignored (`alpine: ignore`)"
    off = state_off(ls, fr)
    if off:
        verdict = off
    model = holder.model
    lines.append(
        f"defect probability **{s.probability:.2f}** (threshold {threshold:.2f}): {verdict}"
    )
    lines.append("")
    lines.append(f"- model: {model.name if model else '?'}")
    trunc = f", truncated to {s.tokens_per_layer[0]} (head and tail)" if s.truncated else ""
    lines.append(f"- tokens: {s.n_tokens}{trunc}")
    lines.append(f"- tokens per layer after pruning: {' → '.join(map(str, s.tokens_per_layer))}")
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
            "- code metrics that moved the score: " + ", ".join(f"{k} {v:+.2f}" for k, v in pushed)
        )
    state = engine.docs.get(fr_uri) if fr_uri else None
    hint = build_hint(f, s, state.result.lines if state and state.result else None)
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
            where = f"in layer {s.top_tokens_layer} (too few survived pruning to the last layer)"
        else:
            where = "among those that survived to the last layer"
        lines.append(f"- why: tokens with most attention {where}: {why}")
    if s.lexical_terms:
        terms = ", ".join(f"`{t}`" for t, _ in s.lexical_terms)
        lines.append(f"- n-grams that raised the lexical score most: {terms}")
    if fr.similar:
        lines.append("")
        lines.append("similar code:")
        for m in fr.similar:
            lines.append(f"- {describe(m, f'{short_path(ls, m.uri)}:{m.start_line + 1}')}")
    return "\n".join(lines)


def register(server: AlpineServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: AlpineServer, params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        fr = function_at(ls, uri, params.position.line, params.position.character)
        if fr is None:
            return None
        state = ls.engine.docs.get(uri)
        lines = state.result.lines if state and state.result else []
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=render(ls, fr, uri)),
            range=name_range(lines, fr, ls.encoding),
        )
