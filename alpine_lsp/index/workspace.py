"""Which files of a workspace get indexed: source files git would track, small and textual.

Reads directories and ignore files only: no `git` is run, nothing in the workspace is executed,
and symbolic links are never followed (a link inside the root reaches a file the walk visits
anyway; one that leaves the root must not be read).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pathspec import GitIgnoreSpec

log = logging.getLogger(__name__)

# Skipped wherever they occur, ignored or not: tool output and VCS internals, never source.
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", ".venv", "__pycache__"})
BINARY_PROBE = 8192  # a NUL byte in this many leading bytes marks a binary file


def _language_lookup() -> Callable[[str], str | None]:
    # Imported when first needed so that the store never pulls in tree-sitter.
    from ..parsing import language_for

    return language_for


def _load_spec(path: Path) -> GitIgnoreSpec | None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        log.debug("cannot read %s: %s", path, e)
        return None
    try:
        return GitIgnoreSpec.from_lines(lines)
    except Exception:  # one bad line must not void the file: keep the lines that compile
        good = []
        for line in lines:
            try:
                GitIgnoreSpec.from_lines([line])
                good.append(line)
            except Exception:
                log.debug("%s: skipping bad pattern %r", path, line)
        return GitIgnoreSpec.from_lines(good)


Specs = tuple[tuple[str, GitIgnoreSpec], ...]  # (directory relative to root + "/", its spec)


def _ignored(specs: Specs, rel: str) -> bool:
    """git's verdict for `rel` (a directory ends in "/"): the deepest matching file decides."""
    verdict = False
    for base, spec in specs:
        result = spec.check_file(rel[len(base) :]).include
        if result is not None:
            verdict = result
    return verdict


class NotReadable(OSError):
    """A path the reading rule refuses; the message says why (for logs and `check`)."""


def read_source_file(
    path: str | os.PathLike, max_size: int, root: str | os.PathLike | None = None
) -> bytes:
    """The bytes of a regular file of at most `max_size` bytes (inside `root`, when given).

    Checked on the opened descriptor, not the path, so a file swapped for a FIFO, a device or
    a symlink to /dev/zero after a check is still refused: O_NONBLOCK keeps the open of a FIFO
    from waiting for a writer, fstat says what was opened, and the read stops at max_size + 1.
    Raises NotReadable (or another OSError) instead of returning anything else.
    """
    if root is not None:
        real, top = os.path.realpath(path), os.path.realpath(root)
        if os.path.commonpath([real, top]) != top:
            raise NotReadable(f"{path}: outside the workspace")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotReadable(f"{path}: not a regular file")
        if st.st_size > max_size:
            raise NotReadable(f"{path}: larger than the size limit ({max_size} bytes)")
        chunks, left = [], max_size + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left <= 0:  # it grew past the limit while we read
            raise NotReadable(f"{path}: larger than the size limit ({max_size} bytes)")
        return b"".join(chunks)
    finally:
        os.close(fd)


def looks_binary(head: bytes | str) -> bool:
    """A NUL among the first BINARY_PROBE bytes (code points, for text already decoded)."""
    return (b"\0" if isinstance(head, bytes) else "\0") in head[:BINARY_PROBE]


def refusal(
    head: bytes | str, size: int, max_size: int, limit: str = "the size limit"
) -> str | None:
    """Why contents are not source to analyse, or None: the one admission rule of the walk,
    the indexer, the server's documents and `check`. `head`: the first BINARY_PROBE bytes at
    least; `size`: the size in bytes (a lower bound will do while it is at most `max_size`);
    `limit`: what the user calls `max_size`, for the message."""
    if size > max_size:
        return f"file larger than {limit} ({max_size} bytes)"
    if looks_binary(head):
        return "binary file (NUL bytes)"
    return None


def _head(path: str) -> bytes | None:
    """The first BINARY_PROBE bytes of a regular file; None for anything else or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None  # swapped for a FIFO or device since the walk looked: skip
            return os.read(fd, BINARY_PROBE)
        finally:
            os.close(fd)
    except OSError:
        return None  # unreadable: skip


def iter_source_files(
    root: str | os.PathLike,
    max_file_size: int = 2_000_000,
    languages: Iterable[str] | None = None,
    on_unreadable: Callable[[str, OSError], None] | None = None,
) -> Iterator[Path]:
    """Indexable files under `root`, depth first in name order.

    Honours `.gitignore` in the root and in subdirectories (plus `.git/info/exclude`), skips
    SKIP_DIRS, files over `max_file_size` bytes, binary files, files of no known language and,
    when `languages` is given, files of other languages. A directory that cannot be listed is
    skipped and reported to `on_unreadable` (path, error); the walk goes on.
    """
    top = Path(root).expanduser().resolve()
    if not top.is_dir():
        return
    language_for = _language_lookup()
    wanted = None if languages is None else {lang.lower() for lang in languages}

    root_specs: Specs = ()
    exclude = top / ".git" / "info" / "exclude"
    if exclude.is_file() and not exclude.is_symlink():
        spec = _load_spec(exclude)
        if spec is not None:
            root_specs = (("", spec),)

    stack: list[tuple[str, str, Specs]] = [(str(top), "", root_specs)]
    while stack:
        directory, rel, specs = stack.pop()
        ignore_file = Path(directory, ".gitignore")
        try:  # is_file() raises for some errors (a path over PATH_MAX), not only returns False
            if ignore_file.is_file() and not ignore_file.is_symlink():
                spec = _load_spec(ignore_file)
                if spec is not None:
                    specs = (*specs, (rel, spec))
        except OSError as e:
            log.debug("cannot read %s: %s", ignore_file, e)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            log.debug("cannot list %s: %s", directory, e)
            if on_unreadable is not None:
                on_unreadable(directory, e)
            continue
        subdirs = []
        for entry in entries:
            try:
                if entry.is_symlink():
                    continue
                child = rel + entry.name
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in SKIP_DIRS and not _ignored(specs, child + "/"):
                        subdirs.append((entry.path, child + "/", specs))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # sockets, fifos, devices
                language = language_for(entry.name)
                if language is None or (wanted is not None and language not in wanted):
                    continue
                if _ignored(specs, child):
                    continue
                size = entry.stat(follow_symlinks=False).st_size
                if size > max_file_size:
                    continue  # not opened at all
                head = _head(entry.path)
                if head is None or refusal(head, size, max_file_size):
                    continue
            except OSError as e:  # vanished or unreadable while we looked
                log.debug("skipping %s: %s", entry.path, e)
                continue
            yield Path(entry.path)
        stack.extend(reversed(subdirs))  # popped in name order
