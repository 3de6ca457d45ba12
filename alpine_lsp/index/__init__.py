"""Workspace index for similar-code hints: where it lives, what it stores, which files feed it."""

from .paths import cache_dir, index_db_path
from .store import SCHEMA_VERSION, IndexEntry, IndexStore, Match
from .workspace import (
    BINARY_PROBE,
    SKIP_DIRS,
    NotReadable,
    iter_source_files,
    read_source_file,
    refusal,
)

__all__ = [
    "BINARY_PROBE",
    "SCHEMA_VERSION",
    "SKIP_DIRS",
    "IndexEntry",
    "IndexStore",
    "Match",
    "NotReadable",
    "cache_dir",
    "index_db_path",
    "iter_source_files",
    "read_source_file",
    "refusal",
]
