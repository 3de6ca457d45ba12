"""The one error the training, evaluation and benchmark commands raise for input they cannot
use. Only `alpine_lsp.cli.main` turns it into an exit: the message on stderr and `code`."""

from __future__ import annotations


class CommandError(ValueError):
    """Input a command cannot use (a model, data or output directory, a flag), said in words.
    `code` 2 is a usage error, 1 (as `sys.exit(message)` gives) any other."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
