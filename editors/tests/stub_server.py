"""A stand-in for alpine-lsp used by the editor smoke tests.

It answers like the real server on the surface the editor integrations use
(initialize, workspace/configuration pull, diagnostics, code lens,
alpine.showSimilar, alpine/stats) without loading a model, and appends every
message it cares about as one JSON line to the file named by $STUB_LOG.
"""

import json
import os
import sys

from lsprotocol import types as t
from pygls.lsp.server import LanguageServer

LOG = os.environ.get("STUB_LOG", os.devnull)
server = LanguageServer("alpine-lsp-stub", "0")


def log(kind, data):
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": kind, "data": data}, default=str) + "\n")


def rng(line, start, end_line, end):
    return t.Range(start=t.Position(line=line, character=start),
                   end=t.Position(line=end_line, character=end))


@server.feature(t.INITIALIZE)
def initialize(ls, params: t.InitializeParams):
    log("initialize", {"initializationOptions": params.initialization_options,
                       "argv": sys.argv[1:]})


@server.feature(t.INITIALIZED)
async def initialized(ls, params):
    try:
        answer = await ls.workspace_configuration_async(
            t.ConfigurationParams(items=[t.ConfigurationItem(section="alpine")]))
        log("configuration", answer)
    except Exception as e:  # a client without workspace/configuration
        log("configuration-error", repr(e))


@server.feature(t.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls, params: t.DidChangeConfigurationParams):
    log("didChangeConfiguration", params.settings)


@server.feature(t.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls, params: t.DidOpenTextDocumentParams):
    doc = params.text_document
    log("didOpen", {"uri": doc.uri, "languageId": doc.language_id})
    ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(
        uri=doc.uri,
        diagnostics=[t.Diagnostic(range=rng(0, 0, 0, 3), message="possible defect (p=0.87)",
                                  source="alpine", code="defect-risk",
                                  severity=t.DiagnosticSeverity.Warning)]))


@server.feature(t.TEXT_DOCUMENT_CODE_LENS)
def code_lens(ls, params: t.CodeLensParams):
    return [t.CodeLens(range=rng(0, 4, 0, 7),
                       command=t.Command(title="1 similar function", command="alpine.showSimilar",
                                         arguments=[params.text_document.uri, 0]))]


@server.command("alpine.showSimilar")
def show_similar(ls, uri, line):
    log("showSimilar", [uri, line])
    return [t.Location(uri=uri, range=rng(line + 4, 0, line + 5, 0))]


@server.feature("alpine/stats")
def stats(ls, params):
    log("stats", None)
    return {"documents": 1, "stub": True}


if __name__ == "__main__":
    server.start_io()
