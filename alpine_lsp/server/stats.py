"""`alpine/stats`: what the server did, for tests, benchmarks and curious users."""

from __future__ import annotations

from .app import AlpineServer
from .framing import PARAM_CHECKS

STATS = "alpine/stats"
DOCUMENT = "alpine/document"  # the server's copy of a document, hashed: for sync tests


def snapshot(ls: AlpineServer) -> dict:
    engine = ls.engine
    out = engine.stats.snapshot()
    holder = engine.holder
    out["model"] = {
        "state": holder.state,
        "error": holder.error,
        "load_seconds": holder.load_seconds,
        **(holder.model.info() if holder.model else {}),
    }
    out["documents"] = len(engine.docs)
    out["pending"] = engine.worker.pending()
    out["queued"] = engine.worker.queued()
    out["score_threads"] = sorted(engine.scorer.threads)
    out["index_functions"] = engine.index.count() if engine.index else None
    out["index_state"] = engine.index_state
    watcher = engine.scorer.adapters
    adapter = watcher.adapter if watcher is not None else None
    out["adapter"] = {
        "path": str(adapter.path) if adapter else None,
        "fix_commits": adapter.fixes if adapter else None,
        "blend": adapter.blend if adapter else None,
        "error": watcher.error if watcher is not None else None,
    }
    out["pull_diagnostics"] = ls.pull
    out["position_encoding"] = ls.encoding
    return out


def _document_params(params) -> str | None:
    ok = isinstance(params, dict) and isinstance(params.get("uri"), str)
    return None if ok else "alpine/document wants {uri: string}"


PARAM_CHECKS[DOCUMENT] = _document_params


def register(server: AlpineServer) -> None:
    @server.feature(STATS)
    def stats(ls: AlpineServer, params=None) -> dict:
        return snapshot(ls)

    @server.feature(DOCUMENT)
    def document(ls: AlpineServer, params=None) -> dict | None:
        import hashlib

        state = ls.engine.docs.get(params.uri)
        if state is None:
            return None
        with state.lock:
            text = state.parsed.text if state.parsed is not None else str(state.raw or "")
            version = state.version
        data = text.encode("utf-8", "surrogatepass")
        return {"version": version, "chars": len(text), "sha256": hashlib.sha256(data).hexdigest()}
