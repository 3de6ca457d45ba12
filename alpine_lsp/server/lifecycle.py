"""initialize / initialized / configuration / shutdown, and model-load progress."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

from lsprotocol import types

from ..engine.settings import parse_settings
from .app import AlpineServer

_MODEL_TOKEN: dict[int, str] = {}


def _caps(ls: AlpineServer, params: types.InitializeParams) -> None:
    caps = params.capabilities
    td = caps.text_document
    ls.pull = td is not None and td.diagnostic is not None
    pub = td.publish_diagnostics if td else None
    ls.related_info = bool(pub and pub.related_information) or ls.pull
    ls.code_lens = td is not None and td.code_lens is not None
    ls.progress_ok = bool(caps.window and caps.window.work_done_progress)
    ls.config_pull = bool(caps.workspace and caps.workspace.configuration)
    enc = ls.workspace.position_encoding if ls.workspace else None
    ls.encoding = str(enc.value if hasattr(enc, "value") else enc or "utf-16")


def register(server: AlpineServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: AlpineServer, params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_running_loop() if _has_loop() else ls.loop
        if ls.log_handler is not None:  # logMessage is allowed from here on
            ls.log_handler.connect()
        _caps(ls, params)
        ls.settings, errors = parse_settings(params.initialization_options)
        ls.engine.settings = ls.settings
        # initializationOptions are the user's own settings; workspace/configuration may carry
        # a workspace's settings file, which must not pick the model (workspace trust).
        ls.user_model = ls.settings.model
        ls.allow_workspace_model = workspace_model_allowed(params.initialization_options)
        for e in errors:
            ls.log(f"settings: {e}", types.MessageType.Warning)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: AlpineServer, params: types.InitializedParams) -> None:
        ls.loop = asyncio.get_running_loop()
        _caps_encoding(ls)
        if ls.config_pull:
            await pull_configuration(ls)
        _begin_progress(ls, "Loading the alpine model")
        ls.engine.start(ls.root())

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: AlpineServer, params: types.DidChangeConfigurationParams
    ) -> None:
        if ls.config_pull:
            await pull_configuration(ls)
        else:
            apply_settings(ls, params.settings)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: AlpineServer, params: None) -> None:
        ls.shut_down = True
        ls.engine.stop()

    @server.feature(types.EXIT)
    def exit_(ls: AlpineServer, params: None) -> None:
        # The spec: exit code 0 after a shutdown request, 1 without one.
        ls.exit_code = 0 if ls.shut_down else 1


def workspace_model_allowed(options) -> bool:
    """`allowWorkspaceModel: true` in the user-level settings (initializationOptions)."""
    if isinstance(options, dict) and isinstance(options.get("alpine"), dict):
        options = options["alpine"]
    return isinstance(options, dict) and options.get("allowWorkspaceModel") is True


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _caps_encoding(ls: AlpineServer) -> None:
    enc = ls.workspace.position_encoding
    ls.encoding = str(getattr(enc, "value", enc) or "utf-16")


async def pull_configuration(ls: AlpineServer) -> None:
    try:
        result = await asyncio.wait_for(
            ls.workspace_configuration_async(
                types.ConfigurationParams(items=[types.ConfigurationItem(section="alpine")])
            ),
            timeout=5,
        )
    except Exception as e:  # a client that does not answer must not stall start-up
        ls.log(f"workspace/configuration failed: {e}", types.MessageType.Warning)
        return
    if result and result[0] is not None:
        apply_settings(ls, result[0])


def apply_settings(ls: AlpineServer, raw) -> None:
    if isinstance(raw, dict) and isinstance(raw.get("alpine"), dict):
        raw = raw["alpine"]
    new, errors = parse_settings(raw, ls.settings)
    for e in errors:
        ls.show(f"alpine-lsp settings: {e}", types.MessageType.Warning)
    user_model = ls.user_model
    if new.model != user_model and not ls.allow_workspace_model:
        if getattr(ls, "_refused_model", None) != new.model:  # once per value
            ls._refused_model = new.model
            ls.show(
                f"alpine-lsp: alpine.model {new.model!r} from workspace settings ignored; "
                "a model directory runs in this process, so only user-level settings "
                "(initializationOptions) choose it, or allow it there with "
                '"allowWorkspaceModel": true',
                types.MessageType.Warning,
            )
        new = replace(new, model=user_model)
    if new == ls.settings:
        return
    if new.model != ls.settings.model and new.model:
        ls.log(f"model directory from settings: {new.model}")
    reload = new.model_key() != ls.settings.model_key()
    ls.settings = new
    if reload and ls.engine.holder.state != "idle":
        _begin_progress(ls, "Reloading the alpine model")
    was_similar = ls.engine.settings.similarity.enabled
    ls.engine.update_settings(new)
    refresh(ls)
    if new.similarity.enabled and not was_similar and ls.engine.holder.state == "ready":
        from .lens import start_indexing

        start_indexing(ls)


def refresh(ls: AlpineServer) -> None:
    """Ask pull clients to pull again (lenses too); push clients get new results anyway."""
    from .refresh import refresh_all

    refresh_all(ls)


def _begin_progress(ls: AlpineServer, title: str) -> None:
    if not ls.progress_ok:
        return
    token = str(uuid.uuid4())
    _MODEL_TOKEN[0] = token

    def created(*_args) -> None:
        try:
            ls.work_done_progress.begin(
                token, types.WorkDoneProgressBegin(title=title, cancellable=False)
            )
        except Exception:
            pass

    try:
        ls.work_done_progress.create(token, callback=created)
    except Exception:
        _MODEL_TOKEN.pop(0, None)


def model_done(ls: AlpineServer, holder) -> None:
    """On the event loop, after a load finished (or failed)."""
    token = _MODEL_TOKEN.pop(0, None)
    if holder.state == "ready":
        m = holder.model
        msg = f"model {m.name} ready on {m.device} in {holder.load_seconds or 0:.1f}s"
        ls.log(msg)
    else:
        msg = f"alpine-lsp could not load its model: {holder.error}. Parsing features still work."
        ls.show(msg, types.MessageType.Error)
    if token:
        try:
            ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=msg))
        except Exception:
            pass
    if holder.state == "ready":
        refresh(ls)
        from .lens import start_indexing

        start_indexing(ls)
