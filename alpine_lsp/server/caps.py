"""What the client declared at `initialize`, parsed once into one object features read."""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types


@dataclass(frozen=True, slots=True)
class ClientCaps:
    """The defaults are a client that declared nothing (and the server before initialize)."""

    pull: bool = False  # the client pulls diagnostics (textDocument/diagnostic)
    related_info: bool = False  # diagnostics may carry related information
    code_lens: bool = False
    lens_refresh: bool = False  # workspace/codeLens/refresh (with code lens)
    diagnostic_refresh: bool = False  # workspace/diagnostic/refresh (with pull diagnostics)
    progress: bool = False  # window/workDoneProgress
    configuration: bool = False  # workspace/configuration
    encoding: str = "utf-16"  # the position encoding pygls chose with the client

    @classmethod
    def parse(cls, caps: types.ClientCapabilities | None, encoding=None) -> ClientCaps:
        """`encoding`: the workspace's position encoding (pygls picks it before our
        initialize handler runs)."""
        td = caps.text_document if caps else None
        ws = caps.workspace if caps else None
        pull = td is not None and td.diagnostic is not None
        pub = td.publish_diagnostics if td else None
        code_lens = td is not None and td.code_lens is not None
        return cls(
            pull=pull,
            related_info=bool(pub and pub.related_information) or pull,
            code_lens=code_lens,
            lens_refresh=bool(code_lens and ws and ws.code_lens and ws.code_lens.refresh_support),
            diagnostic_refresh=bool(
                pull and ws and ws.diagnostics and ws.diagnostics.refresh_support
            ),
            progress=bool(caps and caps.window and caps.window.work_done_progress),
            configuration=bool(ws and ws.configuration),
            encoding=str(getattr(encoding, "value", encoding) or "utf-16"),
        )
