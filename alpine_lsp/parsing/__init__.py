"""Source parsing for alpine-lsp: languages, function extraction and incremental documents."""

from .document import ParsedDocument, extract_functions
from .functions import Function, changed_functions, file_ignored, function_hash
from .languages import LANGUAGES, comment_prefix, get_parser, language_for, normalize_language

__all__ = [
    "LANGUAGES",
    "Function",
    "ParsedDocument",
    "changed_functions",
    "comment_prefix",
    "extract_functions",
    "file_ignored",
    "function_hash",
    "get_parser",
    "language_for",
    "normalize_language",
]
