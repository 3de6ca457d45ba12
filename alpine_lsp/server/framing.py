"""Our own LSP framing and message gate, in place of pygls's stdin loop.

pygls 2 reads stdin with `readline()` in its thread pool and matches only the exact header
`Content-Length: N\\r\\n`: one bad frame desynchronises it for good, a huge N allocates N bytes,
a body that fails to structure gets no response, and a busy pool starves the reader. Here a
dedicated thread reads raw bytes, `FrameParser` cuts them into messages and resynchronises on
the next `Content-Length` header after any fault, and `Gate` (on the event loop) answers every
request: -32002 before `initialize`, -32600 for a second `initialize` or after `shutdown`,
-32602 when the params do not fit the method, before pygls sees the message.

Resynchronising is safe because a valid JSON body can never contain the raw bytes
`content-length: N` followed by a line break (a JSON string cannot hold a raw newline, and the
name is not a JSON token outside one), so a header found inside a pending body proves the
declared length was wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lsprotocol.types import ResponseError

log = logging.getLogger("alpine_lsp.framing")

MAX_BODY = 64 * 1024 * 1024  # a declared length above this is refused unread
MAX_JUNK = 64 * 1024 * 1024  # this much without a usable header: the stream is lost
_READ = 1 << 16
_KEEP = 256  # bytes kept when junk is dropped: a header may straddle two reads

# Lenient on purpose: any case, optional blanks around the colon, CRLF or bare LF.
_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n", re.IGNORECASE)
_OTHER = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*[ \t]*:[^\r\n]*\r?\n")
_END = re.compile(rb"\r?\n")
_DIGITS = re.compile(rb"[0-9]{1,20}")

NOT_INITIALIZED = -32002
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602


class StreamLost(Exception):
    """The input cannot be resynchronised: the process should exit non-zero."""


@dataclass
class FrameParser:
    """Incremental: `feed(bytes)` returns the messages (decoded JSON values) completed so far.

    Faults are logged and counted in `faults`; the parser then looks for the next header.
    """

    max_body: int = MAX_BODY
    max_junk: int = MAX_JUNK
    faults: int = 0
    buf: bytearray = field(default_factory=bytearray)
    _state: str = "seek"  # seek | headers | body | salvage
    _pos: int = 0  # where the current header block / body starts in buf
    _length: int = 0
    _scanned: int = 0  # how far a pending body was searched for a header
    _junk: int = 0  # bytes dropped since the last good message
    _lenient_noted: bool = False

    def feed(self, data: bytes) -> list[Any]:
        self.buf += data
        out: list[Any] = []
        while self._step(out):
            pass
        return out

    def _fault(self, what: str) -> None:
        self.faults += 1
        log.warning("LSP framing: %s; resynchronising on the next Content-Length header", what)

    def _consume(self, n: int) -> None:
        del self.buf[:n]

    def _step(self, out: list[Any]) -> bool:
        """One transition; False when more input is needed."""
        buf = self.buf
        if self._state == "seek":
            m = _LENGTH.search(buf)
            if m is None:
                if len(buf) > _KEEP:
                    drop = len(buf) - _KEEP
                    if buf[:drop].strip():
                        self._note_junk(drop)
                    self._consume(drop)
                return False
            if m.start() and not _only_headers(bytes(buf[: m.start()])):
                self._fault(f"{m.start()} bytes that are not a header skipped")
                self._note_junk(m.start())
            value, header = bytes(m.group(1)), bytes(m.group(0))
            self._consume(m.end())  # m reads from buf: take what it matched first
            if not _DIGITS.fullmatch(value):
                self._fault(f"Content-Length {value[:40]!r} is not a length")
                return self._rescan(header)
            n = int(value)
            if n > self.max_body:
                self._fault(f"Content-Length {n} is above the {self.max_body}-byte limit, refused")
                return self._rescan(header)
            if not header.startswith(b"Content-Length: ") or not header.endswith(b"\r\n"):
                self._lenient(header)
            self._length, self._state = n, "headers"
            return True
        if self._state == "headers":
            if buf.startswith(b"\r\n") or buf.startswith(b"\n"):
                if buf.startswith(b"\n"):
                    self._lenient(b"\\n")
                self._consume(2 if buf.startswith(b"\r\n") else 1)
                self._state, self._scanned = "body", 0
                return True
            if buf == b"\r":
                return False
            if _LENGTH.match(buf):
                self._fault("a second Content-Length header before the body")
                self._state = "seek"
                return True
            if m := _OTHER.match(buf):
                self._consume(m.end())
                return True
            if _END.search(buf) is None and len(buf) < 1024:
                return False
            self._fault("a header line that is not `Name: value`, or no blank line before the body")
            self._state = "seek"
            return True
        if self._state == "body":
            n = self._length
            if len(buf) >= n:
                value = _decode(bytes(buf[:n]))
                if value is not _BAD:
                    self._consume(n)
                    self._state = "seek"
                    self._good(value, out)
                    return True
                self._state = "salvage"
                return True
            # A header inside a pending body: the declared length was too long.
            start = max(0, self._scanned - _KEEP)
            self._scanned = len(buf)
            if _LENGTH.search(buf, start):
                self._state = "salvage"
                return True
            return False
        # salvage: the body's length was wrong; it ends where the next header starts.
        m = _LENGTH.search(buf)
        if m is not None:
            value = _decode(bytes(buf[: m.start()]).strip())
            declared = self._length
            if value is not _BAD and isinstance(value, dict):
                self._fault(f"Content-Length {declared} did not match its body; message recovered")
                self._consume(m.start())
                self._good(value, out)
            else:
                self._fault(f"a body of Content-Length {declared} is not JSON; dropped")
                self._note_junk(m.start())
                self._consume(m.start())
            self._state = "seek"
            return True
        if len(buf) <= 1 << 20:  # a too-short length and nothing after it yet: try the JSON
            value, end = _raw_decode(bytes(buf))
            if isinstance(value, dict) and not bytes(buf[end:]).strip():
                self._fault(f"Content-Length {self._length} did not match its body; recovered")
                self._consume(len(buf))
                self._good(value, out)
                self._state = "seek"
                return True
        if len(buf) > self.max_body:
            self._fault("an unframed body over the size limit dropped")
            self._note_junk(len(buf) - _KEEP)
            self._consume(len(buf) - _KEEP)
            self._state = "seek"
            return True
        return False

    def _rescan(self, header: bytes) -> bool:
        """Put back all but the first byte of a refused header line: a valid header may start
        inside it (`Content-Length: 1Content-Length: 52`)."""
        self.buf[:0] = header[1:]
        return True

    def _good(self, value: Any, out: list[Any]) -> None:
        self._junk = 0
        out.append(value)

    def _note_junk(self, n: int) -> None:
        self._junk += n
        if self._junk > self.max_junk:
            raise StreamLost(f"{self._junk} bytes without a usable LSP header")

    def _lenient(self, header: bytes) -> None:
        if not self._lenient_noted:
            self._lenient_noted = True
            log.warning("LSP framing: non-standard header %r accepted", header[:60])


_BAD = object()


def _only_headers(text: bytes) -> bool:
    """Other header lines (Content-Type) before Content-Length are legal; blanks are noise."""
    pos = 0
    while pos < len(text):
        if text[pos : pos + 1] in (b"\r", b"\n", b" ", b"\t"):
            pos += 1
            continue
        m = _OTHER.match(text, pos)
        if m is None:
            return False
        pos = m.end()
    return True


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError
        return _BAD


def _raw_decode(data: bytes) -> tuple[Any, int]:
    try:
        text = data.decode("utf-8")
        value, end = json.JSONDecoder().raw_decode(text.lstrip())
    except (ValueError, RecursionError):
        return _BAD, 0
    skipped = len(text) - len(text.lstrip())
    return value, len(text[: skipped + end].encode("utf-8"))


# -- the gate between frames and pygls --------------------------------------------------------
# Our own methods have no lsprotocol types: their params are checked here, by the checks the
# server's features declared (`server.param_checks`: method -> a reason, or None).


class Gate:
    """Initialize rules and param checks, so every request gets an answer."""

    def __init__(self, server) -> None:
        self.server = server
        self.protocol = server.protocol
        self.checks: dict[str, Callable[[Any], str | None]] = getattr(server, "param_checks", {})
        self.initialized = False

    def handle(self, value: Any) -> None:
        try:
            self._handle(value)
        except SystemExit:
            raise
        except Exception:  # a bug of ours must not end the message loop
            log.exception("handling a message failed")

    def _reply_error(self, msg_id, code: int, message: str) -> None:
        self.protocol._send_response(msg_id, None, ResponseError(code=code, message=message))

    def _handle(self, data: Any) -> None:
        if not isinstance(data, dict):
            log.warning("LSP message is not a JSON object (batches are not LSP); ignored")
            return
        method = data.get("method")
        has_id = "id" in data
        msg_id = data.get("id")
        if has_id and (isinstance(msg_id, bool) or not isinstance(msg_id, (int, str, type(None)))):
            self._reply_error(None, INVALID_REQUEST, "id must be a number or a string")
            return
        if data.get("jsonrpc") != "2.0" or (method is not None and not isinstance(method, str)):
            if has_id and method is not None:
                self._reply_error(msg_id, INVALID_REQUEST, "not a JSON-RPC 2.0 request")
            else:
                log.warning("not a JSON-RPC 2.0 message; ignored")
            return
        if method is None:  # the client's answer to one of our requests
            self._structure_and_handle(data, None, False)
            return
        is_request = has_id
        if not self.initialized:
            if (method == "initialize" and is_request) or method == "exit":
                pass
            elif is_request:
                self._reply_error(msg_id, NOT_INITIALIZED, f"{method} before initialize")
                return
            else:
                log.info("notification %s before initialize ignored", method)
                return
        elif method == "initialize":
            if is_request:
                self._reply_error(msg_id, INVALID_REQUEST, "initialize was already received")
            return
        if getattr(self.protocol, "_shutdown", False) and method != "exit":
            if is_request:
                self._reply_error(msg_id, INVALID_REQUEST, f"{method} after shutdown")
            return
        if "params" not in data:  # JSON-RPC lets params be left out
            data["params"] = None
        check = self.checks.get(method)
        if check is not None and (reason := check(data["params"])):
            if is_request:
                self._reply_error(msg_id, INVALID_PARAMS, f"invalid params: {reason}")
            else:
                log.warning("%s with invalid params ignored: %s", method, reason)
            return
        if self._structure_and_handle(data, method, is_request) and method == "initialize":
            self.initialized = True

    def _structure_and_handle(self, data: dict, method: str | None, is_request: bool) -> bool:
        try:
            with _quiet_pygls():
                message = self.protocol.structure_message(data)
        except Exception as e:
            reason = _reason(e)
            if is_request:
                log.warning("invalid params for %s: %s", method, reason)
                self._reply_error(data.get("id"), INVALID_PARAMS, f"invalid params: {reason}")
            else:
                log.warning("%s with invalid params ignored: %s", method or "response", reason)
            return False
        self.protocol.handle_message(message)
        return True


def _reason(e: BaseException) -> str:
    """The innermost cause of a structuring failure, short."""
    seen = 0
    while seen < 20:
        seen += 1
        nested = getattr(e, "exceptions", None)
        if nested:
            e = nested[0]
        elif e.__cause__ is not None:
            e = e.__cause__
        else:
            break
    return (f"{type(e).__name__}: {e}")[:200]


class _DropStructureErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable to deserialize message")


_PYGLS_RPC = logging.getLogger("pygls.protocol.json_rpc")
_FILTER = _DropStructureErrors()


@contextlib.contextmanager
def _quiet_pygls():
    """pygls logs a full traceback at ERROR for every bad param; we log one line instead."""
    _PYGLS_RPC.addFilter(_FILTER)
    try:
        yield
    finally:
        _PYGLS_RPC.removeFilter(_FILTER)


# -- transports -------------------------------------------------------------------------------
class _Writer:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self.lock:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]

    def close(self) -> None:
        pass  # the process exits right after; closing stdout early loses the last reply


def serve_stdio(server, stdin_fd: int = 0, stdout_fd: int = 1) -> int:
    """Run the server over stdio with our reader thread. Returns the exit code wanted:
    the server's own (`exit`, or 0 when the client closed stdin), 1 when the stream was lost."""
    server.protocol.set_writer(_Writer(stdout_fd))
    gate = Gate(server)
    lost: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        def reader() -> None:
            parser = FrameParser()
            try:
                while True:
                    try:
                        chunk = os.read(stdin_fd, _READ)
                    except InterruptedError:
                        continue
                    if not chunk:
                        break
                    for value in parser.feed(chunk):
                        loop.call_soon_threadsafe(gate.handle, value)
            except StreamLost as e:
                lost.append(str(e))
            except OSError as e:
                log.info("stdin closed: %s", e)
            with contextlib.suppress(RuntimeError):  # the loop is already gone
                loop.call_soon_threadsafe(finish)

        threading.Thread(target=reader, name="lsp-stdin", daemon=True).start()
        await done

    with contextlib.suppress(SystemExit, KeyboardInterrupt):
        asyncio.run(main())
    if lost:
        log.error("LSP input lost (%s): exiting so the editor restarts the server", lost[0])
        return 1
    return server.exit_code


def loopback(host: str) -> bool:
    """True when every address `host` resolves to is a loopback one."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def serve_tcp(server, host: str, port: int, on_listen: Callable[[int], None] | None = None) -> int:
    """One client on a loopback port; later connections are closed at once. The session (and
    the process) ends when that client disconnects."""
    if not loopback(host):
        raise ValueError(f"--tcp binds to loopback only (127.0.0.1, ::1, localhost), not {host}")
    gate = Gate(server)
    lost: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        taken = False

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal taken
            if taken:
                log.warning("refused a second TCP client %s", writer.get_extra_info("peername"))
                writer.close()
                return
            taken = True
            log.info("TCP client %s connected", writer.get_extra_info("peername"))
            server.protocol.set_writer(writer)
            parser = FrameParser()
            try:
                while chunk := await reader.read(_READ):
                    for value in parser.feed(chunk):
                        gate.handle(value)
            except StreamLost as e:
                lost.append(str(e))
            except (ConnectionError, OSError) as e:
                log.info("TCP client gone: %s", e)
            if not done.done():
                done.set_result(None)

        tcp = await asyncio.start_server(client, host, port)
        bound = tcp.sockets[0].getsockname()[1]
        log.info("listening for one LSP client on %s:%s", host, bound)
        if on_listen:
            on_listen(bound)
        async with tcp:
            await done

    with contextlib.suppress(SystemExit, KeyboardInterrupt):
        asyncio.run(main())
    return 1 if lost else server.exit_code
