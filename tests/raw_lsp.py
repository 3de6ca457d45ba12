"""A byte-level LSP client for the real server process: it writes whatever bytes a test wants
(broken frames included) and reads the server's replies on its own thread."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def frame(obj: Any) -> bytes:
    body = json.dumps(obj).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RawClient:
    def __init__(
        self,
        cache: Path,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = ("--stdio",),
    ) -> None:
        full = dict(os.environ)
        full["ALPINE_LSP_CACHE_DIR"] = str(cache)
        full["PYTHONPATH"] = os.pathsep.join([str(ROOT), full.get("PYTHONPATH", "")])
        full.update(env or {})
        cmd = [sys.executable, "-m", "alpine_lsp", *args]
        if log is not None:
            cmd += ["--log-file", str(log)]
        self.stderr_path = (log or cache / "x.log").with_suffix(".stderr")
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("wb"),
            env=full,
            cwd=ROOT,
        )
        self.messages: queue.Queue = queue.Queue()
        self.replies: dict[Any, dict] = {}  # responses read while waiting for another one
        self.other: list[dict] = []  # notifications and server requests seen while waiting
        self._ids = iter(range(10_000, 10**9))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
                if line == b"\r\n":
                    break
            if length is None:
                return
            self.messages.put(json.loads(out.read(length)))

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, obj: Any) -> None:
        self.write(frame(obj))

    def request(self, method: str, params: Any = None, *, omit_params: bool = False) -> int:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if not omit_params:
            msg["params"] = params
        self.send(msg)
        return msg_id

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def wait(self, msg_id: Any, timeout: float = 20.0) -> dict | None:
        """The response with this id, or None when none came in time. Server-to-client
        requests (configuration, progress) are answered with null so nothing stalls."""
        if msg_id in self.replies:
            return self.replies.pop(msg_id)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                m = self.messages.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.messages.empty():
                    return None
                continue
            if "method" in m and "id" in m:
                self.send({"jsonrpc": "2.0", "id": m["id"], "result": None})
            if "method" not in m and m.get("id") == msg_id:
                return m
            if "method" not in m:
                self.replies[m.get("id")] = m
            else:
                self.other.append(m)
        return None

    def call(self, method: str, params: Any = None, timeout: float = 20.0) -> dict | None:
        return self.wait(self.request(method, params), timeout)

    def initialize(self, root: Path | None, options: dict | None = None, **caps) -> dict:
        params = {
            "processId": None,
            "rootUri": root.as_uri() if root else None,
            "capabilities": caps or {},
            "initializationOptions": options or {},
        }
        reply = self.call("initialize", params, timeout=60)
        assert reply and "result" in reply, reply
        return reply

    def stats(self, timeout: float = 20.0) -> dict:
        reply = self.call("alpine/stats", None, timeout)
        assert reply is not None and "result" in reply, f"no answer to alpine/stats: {reply}"
        return reply["result"]

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.wait(self.request("shutdown"), 10)
                self.notify("exit")
                return self.proc.wait(10)
            except Exception:
                self.proc.kill()
                return self.proc.wait(10)
        return self.proc.returncode


class FrameReaderForTests:
    """Replies read from a socket (the TCP tests)."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.buf = b""

    def _message(self) -> dict:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return json.loads(body)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def reply(self, msg_id: Any) -> dict:
        while True:
            m = self._message()
            if "method" not in m and m.get("id") == msg_id:
                return m
