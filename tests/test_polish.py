"""Small things a person meets first: --help, help texts, how a similarity reads."""

from __future__ import annotations

import subprocess
import sys

from alpine_lsp.cli.main import main
from alpine_lsp.engine.fmt import similarity


def test_help_prints_usage_once(capsys) -> None:
    try:
        main(["--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: alpine-lsp")
    assert "usage: usage:" not in out and out.count("usage:") == 1
    lines = out.splitlines()
    for flag in ("--log-level", "--log-file", "-v, --verbose", "--version"):
        i = next(i for i, line in enumerate(lines) if line.strip().startswith(flag))
        # Help text after the flag, or on the next line for long flags.
        text = " ".join(lines[i : i + 2]).replace("{debug,info,warning,error}", "")
        assert len(text.split()) > 4, text


def test_check_flags_have_help_text(capsys) -> None:
    try:
        main(["check", "--help"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    for flag in ("--device", "--threads", "--max-file-size"):
        lines = [line for line in out.splitlines() if line.strip().startswith(flag)]
        assert lines, flag
        i = out.splitlines().index(lines[0])
        # argparse puts the help on the flag's line or, for long flags, on the next one.
        text = " ".join(out.splitlines()[i : i + 2])
        assert any(w in text for w in ("CUDA", "threads", "larger")), text


def test_similarity_shows_three_digits() -> None:
    assert similarity(0.9989) == "0.999"
    assert similarity(0.91234) == "0.912"
    assert similarity(0.99996) == "0.999"  # a near-copy never reads as identical
    assert similarity(0.99999994) == "1.000"  # float32 cosine of an exact copy
    assert similarity(1.0) == "1.000"


def test_version_runs_as_a_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alpine_lsp", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("alpine-lsp ")
