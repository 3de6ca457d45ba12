"""Property tests: random open/change/close sequences against the real server.

One server per client position encoding, shared by every example (each example uses its own
URIs). Pull diagnostics let the test ask for a document's final state deterministically.
Invariants, after any sequence:
- the server is alive and answers `alpine/stats`;
- every diagnostic's range lies inside its document's final text, in the client's units;
- a document's diagnostics equal those of a fresh open of its final text under a new URI
  (ranges, codes and messages: the tiny model is deterministic, so probabilities match too);
- a closed document has no diagnostics.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lsprotocol import types

from tests.lsp_util import C_SOURCE, model_ready, stats
from tests.test_reliability import (
    apply_edit,
    close_client,
    inside,
    launch,
    line_spans,
    lsp_settings,
    rng,
    send_change,
    summary,
    units,
)

PY_SOURCE = "def add(a, b):\n    return a + b\n\n\nclass K:\n    def m(self):\n        return 1\n"
SEEDS = {
    "c": [
        C_SOURCE,
        C_SOURCE.replace("\n", "\r\n"),
        "/* \U0001f600 日本語 */ int target(void) { return 1; }\nint b(void) { return 2; }\n",
        "",
    ],
    "python": [PY_SOURCE, "def 関数(x):\n    return x  # \U0001f600\n"],
}
SNIPPETS = [
    "\n",
    "\r\n",
    "\r",
    "{",
    "}",
    "(",
    ")",
    ";",
    " ",
    "\t",
    "é",
    "日本",
    "\U0001f600",
    "int f(void) { return 1; }\n",
    "static int g(int x)\n{\n    return x;\n}\n",
    "def h(y):\n    return y\n",
    "// alpine: ignore\n",
    "/*",
    "*/",
    "\x00",
    "\ud800",
]
TEXT = st.one_of(
    st.sampled_from(SNIPPETS),
    st.text(alphabet=st.sampled_from(list("abcxyz019 (){};=+*\n\r\t#/é日😀")), max_size=12),
    st.lists(st.sampled_from(SNIPPETS), max_size=4).map("".join),
)
URIS = itertools.count()


@pytest.fixture(scope="module")
def fuzz_servers(tiny_model_dir, tmp_path_factory):
    """Both servers on a private event loop: hypothesis examples are plain functions."""
    base = tmp_path_factory.mktemp("fuzz")
    root = base / "ws"
    root.mkdir()
    loop = asyncio.new_event_loop()
    init = lsp_settings(tiny_model_dir, debounceMs=10)

    async def both():
        clients = await asyncio.gather(
            launch(root, base / "cache16", base / "u16.log", init),
            launch(root, base / "cache8", base / "u8.log", init, encodings=["utf-8"]),
        )
        await asyncio.gather(*(model_ready(c) for c in clients))
        return clients

    clients = loop.run_until_complete(both())
    try:
        yield loop, root, {"utf-16": clients[0], "utf-8": clients[1]}
    finally:

        async def close_both():
            await asyncio.gather(*(close_client(c) for c in clients))

        loop.run_until_complete(close_both())
        loop.close()


class Srv:
    """What send_change needs, over a bare client."""

    def __init__(self, client):
        self.client = client


def draw_position(data, text: str, enc: str, label: str) -> tuple[int, int]:
    spans = line_spans(text)
    kind = data.draw(st.sampled_from(["inside", "inside", "inside", "past", "huge"]), label)
    if kind == "huge":
        return data.draw(st.sampled_from([(10_000, 0), (0, 10_000), (2**31 - 1, 2**31 - 1)]))
    line = data.draw(st.integers(0, len(spans) - 1 + (kind == "past") * 3), label + " line")
    s, e = spans[min(line, len(spans) - 1)]
    width = sum(units(c, enc) for c in text[s:e])
    return line, data.draw(st.integers(0, width + (kind == "past") * 5), label + " char")


def partial(a: tuple[int, int], b: tuple[int, int], text: str):
    return types.TextDocumentContentChangePartial(
        range=types.Range(
            start=types.Position(line=a[0], character=a[1]),
            end=types.Position(line=b[0], character=b[1]),
        ),
        text=text,
    )


async def pull(client, uri: str) -> list[types.Diagnostic]:
    report = await asyncio.wait_for(
        client.text_document_diagnostic_async(
            types.DocumentDiagnosticParams(text_document=types.TextDocumentIdentifier(uri=uri))
        ),
        120,
    )
    return list(report.items)


def did_open(client, uri: str, text: str, language: str, version: int) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id=language, version=version, text=text
            )
        )
    )


def did_close(client, uri: str) -> None:
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def check(client, root, enc: str, docs: dict[str, dict]) -> None:
    s = await asyncio.wait_for(stats(client), 30)
    assert s["model"]["state"] == "ready"
    for uri, doc in docs.items():
        items = await pull(client, uri)
        if not doc["open"]:
            assert items == [], uri
            continue
        text = doc["text"]
        bad = [rng(d) for d in items if not inside(text, rng(d), enc)]
        assert bad == [], (bad, text)
        fresh_uri = (root / f"fresh_{next(URIS)}.{doc['ext']}").as_uri()
        did_open(client, fresh_uri, text, doc["language"], 1)
        try:
            again = await pull(client, fresh_uri)
        finally:
            did_close(client, fresh_uri)
        assert summary(items) == summary(again), text


@pytest.mark.parametrize("enc", ["utf-16", "utf-8"])
@settings(
    max_examples=int(os.environ.get("ALPINE_FUZZ_EXAMPLES", "15")),  # more for a soak run
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_edit_sequences(fuzz_servers, enc, data):
    loop, root, clients = fuzz_servers
    client = clients[enc]
    srv = Srv(client)
    language = data.draw(st.sampled_from(["c", "c", "python"]), "language")
    ext = {"c": "c", "python": "py"}[language]
    docs: dict[str, dict] = {}
    for _ in range(data.draw(st.integers(1, 2), "documents")):
        uri = (root / f"doc_{next(URIS)}.{ext}").as_uri()
        docs[uri] = {"open": False, "text": "", "version": 0, "language": language, "ext": ext}
    names = list(docs)
    for _ in range(data.draw(st.integers(1, 12), "steps")):
        uri = data.draw(st.sampled_from(names), "doc")
        doc = docs[uri]
        doc["version"] += 1
        if not doc["open"]:
            doc["text"] = data.draw(st.sampled_from(SEEDS[language]), "seed")
            did_open(client, uri, doc["text"], language, doc["version"])
            doc["open"] = True
            continue
        op = data.draw(st.sampled_from(["edit"] * 5 + ["batch", "replace", "close"]), "op")
        if op == "close":
            did_close(client, uri)
            doc["open"] = False
        elif op == "replace":
            new = data.draw(st.one_of(st.sampled_from(SEEDS[language]), TEXT), "full text")
            send_change(srv, uri, doc["version"], None, new)
            doc["text"] = new
        elif op == "batch":  # several edits in one notification, each on the result so far
            changes = []
            for _ in range(data.draw(st.integers(2, 4), "batch size")):
                a = draw_position(data, doc["text"], enc, "start")
                b = draw_position(data, doc["text"], enc, "end")
                new = data.draw(TEXT, "inserted")
                changes.append(partial(a, b, new))
                doc["text"] = apply_edit(doc["text"], (*a, *b), new, enc)
            client.text_document_did_change(
                types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(
                        uri=uri, version=doc["version"]
                    ),
                    content_changes=changes,
                )
            )
        else:
            a = draw_position(data, doc["text"], enc, "start")
            b = draw_position(data, doc["text"], enc, "end")
            new = data.draw(TEXT, "inserted")
            send_change(srv, uri, doc["version"], (*a, *b), new)
            doc["text"] = apply_edit(doc["text"], (*a, *b), new, enc)
        if data.draw(st.booleans(), "pause"):  # let some intermediate states be analysed
            loop.run_until_complete(asyncio.sleep(0.03))
    try:
        loop.run_until_complete(check(client, root, enc, docs))
    finally:
        for uri, doc in docs.items():
            if doc["open"]:
                did_close(client, uri)
    assert client._server.returncode is None
    assert not re.search(r"Traceback|ERROR", (root.parent / f"u{enc[4:]}.log").read_text())


# -- frames and params (issue 20) -------------------------------------------------------------
# One model-less server (no `initialized` is sent, so nothing loads): broken frames, random
# params for requests and notifications, interleaved with valid edits of one document. After
# each example the server must answer a request, every request it was sent must have had a
# reply, and its text of the document must equal the client's.
HEADER_BITS = [
    b"Content-Length: ",
    b"content-length:",
    b"Content-Length: 5",
    b"Content-Length: 999999",
    b"Content-Length: 99999999999",
    b"Content-Length: -1",
    b"Content-Type: x",
    b"\r\n",
    b"\n",
    b"\r",
    b"{",
    b"}",
    b'{"jsonrpc": "2.0"',
    b'"id": 3',
    b"\x00",
    b"\xff",
    b"garbage",
    b" ",
]
GARBAGE = st.one_of(
    st.lists(st.sampled_from(HEADER_BITS), min_size=1, max_size=8).map(b"".join),
    st.binary(min_size=1, max_size=40),
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.sampled_from([-1, 2**31, 2**31 - 1, 2**63])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                "textDocument uri position line character range start end context command"
                " arguments changes type text x".split()
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)
REQUESTS = [
    "textDocument/hover",
    "textDocument/codeLens",
    "textDocument/codeAction",
    "textDocument/diagnostic",
    "workspace/executeCommand",
    "alpine/stats",
    "alpine/document",
    "initialize",
    "textDocument/completion",
]
NOTIFICATIONS = [
    "textDocument/didChange",
    "textDocument/didOpen",
    "textDocument/didClose",
    "workspace/didChangeWatchedFiles",
    "$/cancelRequest",
    "$/setTrace",
]


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory):
    from tests.raw_lsp import RawClient

    base = tmp_path_factory.mktemp("fuzz-frames")
    (base / "ws").mkdir()
    client = RawClient(base / "cache", base / "server.log")
    client.initialize(base / "ws")
    yield client, base
    client.close()


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@settings(
    max_examples=int(os.environ.get("ALPINE_FUZZ_EXAMPLES", "40")),
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # shrinking a server session takes minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_frames_and_params(raw_server, data):
    client, base = raw_server
    uri = (base / "ws" / f"frames_{next(URIS)}.c").as_uri()
    text = data.draw(st.sampled_from(SEEDS["c"]), "seed")
    version = 1
    client.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": "c", "version": 1, "text": text}},
    )
    asked: list[int] = []
    for _ in range(data.draw(st.integers(1, 8), "steps")):
        op = data.draw(st.sampled_from(["garbage", "request", "notify", "edit"]), "op")
        if op == "garbage":
            client.write(data.draw(GARBAGE, "garbage"))
        elif op == "request":
            method = data.draw(st.sampled_from(REQUESTS), "method")
            if data.draw(st.booleans(), "omit params"):
                asked.append(client.request(method, omit_params=True))
            else:
                asked.append(client.request(method, data.draw(JSON, "params")))
        elif op == "notify":
            # Never about the tracked document: random params must not be able to edit it.
            params = data.draw(JSON, "params")
            client.notify(data.draw(st.sampled_from(NOTIFICATIONS), "notification"), params)
        else:
            version += 1
            a = draw_position(data, text, "utf-16", "start")
            b = draw_position(data, text, "utf-16", "end")
            new = data.draw(TEXT, "inserted")
            change = {
                "range": {
                    "start": {"line": a[0], "character": a[1]},
                    "end": {"line": b[0], "character": b[1]},
                },
                "text": new,
            }
            client.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri, "version": version}, "contentChanges": [change]},
            )
            text = apply_edit(text, (*a, *b), new, "utf-16")
    # The garbage may have swallowed nothing valid but itself; a header can straddle into the
    # next frame only to be recovered (see framing.py), so these all arrive.
    doc = client.call("alpine/document", {"uri": uri}, timeout=30)
    assert doc is not None and "result" in doc, doc
    for msg_id in asked:
        assert client.wait(msg_id, 10) is not None, f"request {msg_id} never answered"
    assert doc["result"]["sha256"] == _sha(text), (doc, text)
    assert doc["result"]["version"] == version
    client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert client.proc.poll() is None
