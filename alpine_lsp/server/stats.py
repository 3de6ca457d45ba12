"""`alpine/stats`: what the server did, for tests, benchmarks and curious users."""

from __future__ import annotations

import hashlib

from .base import Feature, handles

STATS = "alpine/stats"
DOCUMENT = "alpine/document"  # the server's copy of a document, hashed: for sync tests


def _document_params(params) -> str | None:
    ok = isinstance(params, dict) and isinstance(params.get("uri"), str)
    return None if ok else "alpine/document wants {uri: string}"


class Stats(Feature):
    @handles(STATS)
    def stats(self, params=None) -> dict:
        out = self.server.engine.report()
        out["pull_diagnostics"] = self.server.caps.pull
        out["position_encoding"] = self.server.caps.encoding
        out["handlers_in_flight"] = self.server.protocol.in_flight()
        return out

    @handles(DOCUMENT, check=_document_params)
    def document(self, params=None) -> dict | None:
        found = self.server.engine.document_text(params.uri)
        if found is None:
            return None
        version, text = found
        data = text.encode("utf-8", "surrogatepass")
        return {"version": version, "chars": len(text), "sha256": hashlib.sha256(data).hexdigest()}
