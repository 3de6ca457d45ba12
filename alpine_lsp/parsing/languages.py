"""Supported languages, how files map to them, and per-thread tree-sitter parsers."""

from __future__ import annotations

import importlib
import re
import threading
from urllib.parse import unquote

from tree_sitter import Language, Parser

# Our language name -> (grammar module, function returning the language pointer).
_GRAMMARS: dict[str, tuple[str, str]] = {
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "java": ("tree_sitter_java", "language"),
    "python": ("tree_sitter_python", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "tsx": ("tree_sitter_typescript", "language_tsx"),
    "go": ("tree_sitter_go", "language"),
    "rust": ("tree_sitter_rust", "language"),
}

LANGUAGES: tuple[str, ...] = tuple(_GRAMMARS)

# LSP languageIds, plus the spellings a few editors (eglot, helix) send instead.
_LANGUAGE_IDS: dict[str, str] = {
    "c": "c",
    "cpp": "cpp",
    "c++": "cpp",
    "java": "java",
    "python": "python",
    "javascript": "javascript",
    "javascriptreact": "javascript",  # the JavaScript grammar parses JSX
    "jsx": "javascript",
    "typescript": "typescript",
    "typescriptreact": "tsx",
    "tsx": "tsx",
    "go": "go",
    "golang": "go",
    "rust": "rust",
}

_EXTENSIONS: dict[str, str] = {
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".java": "java",
    ".py": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
}

_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # two+ letters, so "C:\x.c" stays a path


def language_for(path_or_uri: str, language_id: str | None = None) -> str | None:
    """Our language name for a document, or None when unsupported.

    A recognised languageId wins; otherwise the file extension decides, because editors disagree
    on languageIds far more than on extensions.
    """
    if language_id:
        lang = _LANGUAGE_IDS.get(language_id.strip().lower())
        if lang is not None:
            return lang
    path = path_or_uri or ""
    if _URI_SCHEME.match(path):
        path = unquote(re.split(r"[?#]", path, maxsplit=1)[0])
    base = re.split(r"[/\\]", path)[-1]
    dot = base.rfind(".")
    if dot <= 0:  # no extension, or a dotfile such as ".py"
        return None
    return _EXTENSIONS.get(base[dot:].lower())


def normalize_language(language: str) -> str:
    """Accept our names or LSP languageIds; raise ValueError for anything else."""
    if language in _GRAMMARS:
        return language
    lang = _LANGUAGE_IDS.get(language.strip().lower()) if isinstance(language, str) else None
    if lang is None:
        raise ValueError(f"unsupported language: {language!r}")
    return lang


def comment_prefix(language: str) -> str:
    """The line-comment marker of a language ("#" or "//")."""
    return "#" if normalize_language(language) == "python" else "//"


_languages: dict[str, Language] = {}
_languages_lock = threading.Lock()
_local = threading.local()


def get_language(language: str) -> Language:
    """The tree-sitter Language; loaded on first use and shared (it is immutable)."""
    lang = normalize_language(language)
    found = _languages.get(lang)
    if found is None:
        with _languages_lock:
            found = _languages.get(lang)
            if found is None:
                module_name, func = _GRAMMARS[lang]
                module = importlib.import_module(module_name)
                found = _languages[lang] = Language(getattr(module, func)())
    return found


def get_parser(language: str) -> Parser:
    """A Parser for this thread: tree-sitter parsers must not be shared between threads."""
    lang = normalize_language(language)
    parsers: dict[str, Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(lang)
    if parser is None:
        parser = parsers[lang] = Parser(get_language(lang))
    return parser
