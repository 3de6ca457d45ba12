"""Framing and the message gate: broken frames, invalid params and lifecycle rules never leave
a request unanswered (issue 20). The parser is tested in-process, byte by byte as well as
whole; everything else through the real server process over stdio, written byte for byte by
`tests/raw_lsp.py`. No model is needed (nothing sends `initialized`), so these run in seconds.
"""

from __future__ import annotations

import json

import pytest

from alpine_lsp.server.framing import FrameParser, StreamLost
from tests.raw_lsp import RawClient, frame

STATS = {"jsonrpc": "2.0", "id": 1, "method": "alpine/stats"}
BODY = json.dumps(STATS).encode()
N = len(BODY)

# (name, bytes before a valid frame, how many messages they still deliver)
BROKEN = [
    ("longer", b"Content-Length: %d\r\n\r\n" % (N + 40) + BODY, 1),
    ("shorter", b"Content-Length: %d\r\n\r\n" % (N - 10) + BODY, 1),
    ("negative", b"Content-Length: -5\r\n\r\n" + BODY, 0),
    ("non-numeric", b"Content-Length: abc\r\n\r\n" + BODY, 0),
    ("lowercase", b"content-length: %d\r\n\r\n" % N + BODY, 1),
    ("no space", b"Content-Length:%d\r\n\r\n" % N + BODY, 1),
    ("lf only", b"Content-Length: %d\n\n" % N + BODY, 1),
    ("garbage line", b"hello there\r\n", 0),
    ("garbage then frame", b"\x00\xff junk\r\n" + frame(STATS), 1),
    ("garbage header line", b"Content-Length: %d\r\nwhat is this\r\n\r\n" % N + BODY, 0),
    ("not json", b"Content-Length: 9\r\n\r\n{not json", 0),
    ("not utf-8", b"Content-Length: 4\r\n\r\n\xff\xfe\xfd\xfc", 0),
    ("huge", b"Content-Length: 1000000000000\r\n\r\n", 0),
    ("2**64", b"Content-Length: 18446744073709551616\r\n\r\n", 0),
    ("content-type first", b"Content-Type: application/json\r\n" + frame(STATS), 1),
]


@pytest.mark.parametrize("name,bad,kept", BROKEN, ids=[b[0] for b in BROKEN])
@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_parser_resynchronises(name, bad, kept, chunk):
    data = bad + frame({"jsonrpc": "2.0", "id": 2, "method": "alpine/stats"})
    p = FrameParser()
    if chunk is None:
        out = p.feed(data)
    else:
        out = [m for i in range(0, len(data), chunk) for m in p.feed(data[i : i + chunk])]
    assert [m["id"] for m in out] == [1] * kept + [2], out
    assert len(p.buf) < 1024


def test_parser_refuses_a_huge_length_without_allocating():
    p = FrameParser()
    assert p.feed(b"Content-Length: 1000000000000\r\n\r\n" + b"x" * 100_000) == []
    assert len(p.buf) < 1024 and p.faults >= 1


def test_parser_gives_up_after_too_much_junk():
    p = FrameParser(max_junk=100_000)
    with pytest.raises(StreamLost):
        for _ in range(10):
            p.feed(b"y" * 65536)


def test_parser_large_body_in_pieces():
    big = {"jsonrpc": "2.0", "method": "x", "params": {"t": "a\r\nb" * 200_000}}
    data = frame(big)
    p = FrameParser()
    out = [m for i in range(0, len(data), 65536) for m in p.feed(data[i : i + 65536])]
    assert out == [big] and p.faults == 0


# -- the real server ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("framing")
    (base / "ws").mkdir()
    client = RawClient(base / "cache", base / "server.log")
    client.initialize(base / "ws", {}, general={"positionEncodings": ["utf-8"]})
    client.root = base / "ws"
    client.log = base / "server.log"
    yield client
    client.close()


@pytest.mark.parametrize("name,bad,kept", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_frame_then_an_answered_request(srv, name, bad, kept):
    srv.write(bad.replace(b'"id": 1', b'"id": 777'))
    s = srv.stats(timeout=15)
    assert s["position_encoding"] == "utf-8"
    assert srv.proc.poll() is None


def _uri(srv, name: str) -> str:
    return (srv.root / name).as_uri()


INVALID = [
    ("hover null", "textDocument/hover", None),
    ("hover line -1", "textDocument/hover", {"line": -1}),
    ("hover line 2**31", "textDocument/hover", {"line": 2**31}),
    ("hover character 2**40", "textDocument/hover", {"character": 2**40}),
    ("hover no position", "textDocument/hover", "nopos"),
    ("codeLens", "textDocument/codeLens", {"textDocument": 5}),
    ("codeAction", "textDocument/codeAction", {"textDocument": {"uri": "file:///a.c"}}),
    ("diagnostic", "textDocument/diagnostic", {"textDocument": None}),
    ("executeCommand", "workspace/executeCommand", {"arguments": 3}),
    ("executeCommand null", "workspace/executeCommand", None),
    ("custom no params", "alpine/document", "omit"),
    ("custom wrong params", "alpine/document", [1, 2]),
]


def _params(srv, spec):
    if not isinstance(spec, dict) or spec.keys() - {"line", "character"}:
        return spec
    return {
        "textDocument": {"uri": _uri(srv, "x.c")},
        "position": {"line": spec.get("line", 0), "character": spec.get("character", 0)},
    }


@pytest.mark.parametrize("name,method,params", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_params_get_an_error_reply(srv, name, method, params):
    p = _params(srv, params)
    if p == "omit":
        msg_id = srv.request(method, omit_params=True)
    elif p == "nopos":
        msg_id = srv.request(method, {"textDocument": {"uri": _uri(srv, "x.c")}})
    else:
        msg_id = srv.request(method, p)
    reply = srv.wait(msg_id, 15)
    assert reply is not None, f"{name}: no reply"
    assert reply["error"]["code"] == -32602, reply
    srv.stats()


def test_requests_with_odd_ids_and_shapes(srv):
    srv.send({"jsonrpc": "2.0", "id": {"x": 1}, "method": "alpine/stats"})
    assert srv.wait(None, 10)["error"]["code"] == -32600
    srv.send({"jsonrpc": "1.0", "id": 55, "method": "alpine/stats"})
    assert srv.wait(55, 10)["error"]["code"] == -32600
    srv.send([{"jsonrpc": "2.0", "id": 56, "method": "alpine/stats"}])  # a batch: not LSP
    srv.send({"jsonrpc": "2.0", "id": 57, "method": "no/such/method", "params": {}})
    assert srv.wait(57, 10)["error"]["code"] == -32601
    srv.notify("textDocument/didOpen", None)  # a notification with bad params: logged only
    srv.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"x": []}})
    srv.stats()
    text = srv.log.read_text()
    assert "Traceback" not in text


def test_custom_request_without_params_is_answered(srv):
    reply = srv.wait(srv.request("alpine/stats", omit_params=True), 10)
    assert "result" in reply


def test_second_initialize_is_refused_and_changes_nothing(srv):
    reply = srv.call(
        "initialize",
        {"processId": None, "rootUri": None, "capabilities": {}, "initializationOptions": {}},
    )
    assert reply["error"]["code"] == -32600
    assert srv.stats()["position_encoding"] == "utf-8"


def test_server_document_text_follows_edits(srv):
    uri = _uri(srv, "sync.c")
    srv.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "c", "version": 1, "text": "int a;\n"}},
    )
    srv.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": 0, "character": 4},
                        "end": {"line": 0, "character": 5},
                    },
                    "text": "bé",
                }
            ],
        },
    )
    import hashlib

    doc = srv.call("alpine/document", {"uri": uri})["result"]
    assert doc["sha256"] == hashlib.sha256("int bé;\n".encode()).hexdigest()
    assert doc["version"] == 2


def test_finished_notifications_leave_no_handler_behind(srv):
    # pygls 2.1 kept the future of every document notification for good (1.7 KB a keystroke).
    uri = _uri(srv, "many-edits.c")
    srv.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "c", "version": 1, "text": "int a;\n"}},
    )
    span = {"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 5}}
    for v in range(2, 402):
        srv.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": v},
                "contentChanges": [{"range": span, "text": "b"}],
            },
        )
    srv.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert srv.stats()["handlers_in_flight"] <= 2


def test_requests_before_initialize_get_32002(tmp_path):
    c = RawClient(tmp_path / "cache", tmp_path / "s.log")
    try:
        assert c.call("alpine/stats")["error"]["code"] == -32002
        assert c.call("textDocument/hover", None)["error"]["code"] == -32002
        c.notify("textDocument/didOpen", None)  # ignored before initialize
        c.initialize(None)
        assert "functions_parsed" in c.stats()
    finally:
        assert c.close() == 0


def test_lost_stream_exits_non_zero(tmp_path):
    """64 MB without a usable header: the process gives up so the editor restarts it."""
    c = RawClient(tmp_path / "cache", tmp_path / "s.log")
    c.initialize(None)
    junk = b"z" * (1 << 20)
    try:
        for _ in range(66):
            c.write(junk)
    except BrokenPipeError:
        pass
    assert c.proc.wait(60) == 1
    assert "LSP input lost" in (tmp_path / "s.log").read_text()
