"""Workspace index for similar-code hints: where it lives, what it stores, which files feed it."""

from .paths import cache_dir, index_db_path
from .store import SCHEMA_VERSION, IndexEntry, IndexStore, Match
from .workspace import SKIP_DIRS, iter_source_files

__all__ = [
    "SCHEMA_VERSION",
    "SKIP_DIRS",
    "IndexEntry",
    "IndexStore",
    "Match",
    "cache_dir",
    "index_db_path",
    "iter_source_files",
]
