"""The one error the training commands raise for bad input; `alpine_lsp.cli.main` turns it into
the message on stderr and exit status 1 (what `sys.exit(message)` did)."""

from __future__ import annotations


class TrainError(ValueError):
    """Input a training command cannot use (a base, data or model directory), said in words."""
