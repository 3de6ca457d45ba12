"""The training commands' name for `evalkit.errors.CommandError` (exit status 1)."""

from __future__ import annotations

from ..evalkit.errors import CommandError


class TrainError(CommandError):
    """Input a training command cannot use (a base, data or model directory), said in words."""
