"""`--tcp`: loopback only, one client; a second connection is closed and never sees the first
client's replies (issue 20). The real server process, over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.raw_lsp import ROOT, FrameReaderForTests, frame


def _start(tmp_path: Path, host: str = "127.0.0.1") -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "tcp.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), ALPINE_LSP_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "alpine_lsp", "--tcp", f"{host}:0", "--log-file", str(log)],
        env=env,
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    return proc, log


def _port(proc: subprocess.Popen, log: Path) -> int:
    for _ in range(600):
        text = log.read_text() if log.exists() else ""
        if m := re.search(r"listening for one LSP client on 127\.0\.0\.1:(\d+)", text):
            return int(m.group(1))
        assert proc.poll() is None, text
        time.sleep(0.1)
    raise AssertionError("the server never listened")


def test_tcp_serves_one_client_and_refuses_a_second(tmp_path):
    proc, log = _start(tmp_path)
    try:
        port = _port(proc, log)
        first = socket.create_connection(("127.0.0.1", port), timeout=30)
        reader = FrameReaderForTests(first)
        init = {"processId": None, "rootUri": None, "capabilities": {}}
        first.sendall(frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}))
        assert "result" in reader.reply(1)
        second = socket.create_connection(("127.0.0.1", port), timeout=30)
        second.sendall(frame({"jsonrpc": "2.0", "id": 9, "method": "alpine/stats"}))
        first.sendall(frame({"jsonrpc": "2.0", "id": 2, "method": "alpine/stats"}))
        assert "functions_parsed" in reader.reply(2)["result"]
        second.settimeout(10)
        try:  # closed unread: an orderly end or a reset, but never a reply
            got = second.recv(65536)
        except ConnectionResetError:
            got = b""
        assert got == b"", "a second client must get nothing but a closed socket"
        assert "refused a second TCP client" in log.read_text()
        first.sendall(frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
        reader.reply(3)
        first.sendall(frame({"jsonrpc": "2.0", "method": "exit"}))
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_tcp_refuses_a_non_loopback_address(tmp_path):
    proc, log = _start(tmp_path, host="0.0.0.0")
    assert proc.wait(120) == 2
    assert "loopback only" in log.read_text()


def test_frame_reader_for_tests_parses(tmp_path):
    a, b = socket.socketpair()
    a.sendall(frame({"jsonrpc": "2.0", "id": 5, "result": 1}))
    assert FrameReaderForTests(b).reply(5)["result"] == 1
    a.close()
    b.close()
    assert json.dumps(1) == "1"
