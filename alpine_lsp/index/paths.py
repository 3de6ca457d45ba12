"""Where the similar-code index lives: one private SQLite file per workspace."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from platformdirs import user_cache_dir

ENV_CACHE_DIR = "ALPINE_LSP_CACHE_DIR"


def _private_dir(path: Path) -> Path:
    """mkdir -p with 0700 on what we create; existing directories keep the owner's choice."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkdir's mode is filtered by the umask; the index holds source-derived data, so insist.
        os.chmod(path, 0o700)
    return path


def cache_dir() -> Path:
    """$ALPINE_LSP_CACHE_DIR if set, else the platform's user cache directory for alpine-lsp."""
    env = os.environ.get(ENV_CACHE_DIR)
    path = Path(env).expanduser() if env else Path(user_cache_dir("alpine-lsp", appauthor=False))
    return _private_dir(path)


def index_db_path(workspace_root: str | os.PathLike) -> Path:
    """The index database of a workspace, named by a hash of its resolved root.

    The readable prefix (the folder's name) only helps a person find the file; the hash is what
    keeps two checkouts called `src` apart.
    """
    root = Path(workspace_root).expanduser().resolve()
    digest = hashlib.blake2b(os.fsencode(root), digest_size=10).hexdigest()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.name)[:40].strip("._") or "root"
    return _private_dir(cache_dir() / "index") / f"{slug}-{digest}.sqlite"
