"""The server's log reaches the client as window/logMessage; stderr stays quiet."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp.client import make_test_lsp_client

from alpine_lsp.server.logs import message_type
from tests.lsp_util import C_SOURCE, model_ready, neovim_caps, open_doc, stop, wait_for

ASYNC = pytest.mark.asyncio(loop_scope="function")


def test_levels_map_to_message_types() -> None:
    assert message_type(logging.CRITICAL) == types.MessageType.Error
    assert message_type(logging.ERROR) == types.MessageType.Error
    assert message_type(logging.WARNING) == types.MessageType.Warning
    assert message_type(logging.INFO) == types.MessageType.Info
    assert message_type(logging.DEBUG) == types.MessageType.Log


async def _launch(root: Path, cache: Path, model: Path, *flags: str):
    """The real server over stdio; its stderr collected here instead of forwarded."""
    client = make_test_lsp_client()
    env = dict(os.environ, ALPINE_LSP_CACHE_DIR=str(cache))
    await client.start_io(sys.executable, "-m", "alpine_lsp", "--stdio", *flags, env=env)
    if client._stderr_forwarder:
        client._stderr_forwarder.cancel()
    stderr: list[str] = []

    async def collect() -> None:
        proc = client._server
        assert proc is not None and proc.stderr is not None
        while line := await proc.stderr.readline():
            stderr.append(line.decode(errors="replace"))

    reader = asyncio.create_task(collect())
    await client.initialize_session(
        types.InitializeParams(
            capabilities=neovim_caps(),
            root_uri=root.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options={"model": str(model), "debounceMs": 20},
        )
    )
    return client, stderr, reader


@ASYNC
async def test_routine_lines_go_to_the_client_not_stderr(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.c").write_text(C_SOURCE)
    log_file = tmp_path / "server.log"
    client, stderr, reader = await _launch(
        root, tmp_path / "cache", tiny_model_dir, "--log-file", str(log_file)
    )
    try:
        await model_ready(client, timeout=120)
        open_doc(client, root / "b.c", "int f(void) { return 0; }\n")

        def lines() -> list[str]:
            return [m.message for m in client.log_messages]

        ready = await wait_for(
            lambda: [m for m in client.log_messages if "tiny-random ready" in m.message], 60
        )
        assert ready[0].type == types.MessageType.Info
        await wait_for(lambda: any("workspace index up to date" in m for m in lines()), 60)
    finally:
        await stop(client)
    await asyncio.wait_for(reader, 10)
    routine = [line for line in stderr if "ready" in line or "index up to date" in line]
    assert not routine, stderr
    assert stderr == [], stderr  # nothing at all: no fatal error happened
    text = log_file.read_text()
    assert "INFO" in text and "tiny-random ready" in text  # the file has every line too


@ASYNC
async def test_log_level_warning_keeps_info_lines_back(tiny_model_dir, tmp_path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    client, stderr, reader = await _launch(
        root, tmp_path / "cache", tiny_model_dir, "--log-level", "warning"
    )
    try:
        await model_ready(client, timeout=120)
        await asyncio.sleep(0.5)
        assert not [m for m in client.log_messages if m.type == types.MessageType.Info]
    finally:
        await stop(client)
    await asyncio.wait_for(reader, 10)
    assert stderr == []


def test_unwritable_log_file_is_a_clear_start_up_error(tmp_path) -> None:
    import subprocess

    bad = tmp_path / "no" / "such" / "dir" / "x.log"
    proc = subprocess.run(
        [sys.executable, "-m", "alpine_lsp", "--stdio", "--log-file", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "cannot write --log-file" in proc.stderr and "Traceback" not in proc.stderr
