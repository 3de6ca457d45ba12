"""initialize / initialized / configuration / shutdown, and model-load progress."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from lsprotocol import types

from ..engine.engine import ModelState
from ..engine.settings import parse_settings
from .base import Feature, handles
from .caps import ClientCaps
from .progress import Progress


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


class Lifecycle(Feature):
    """Start-up and shutdown, the settings (with workspace trust for `alpine.model`), and the
    model load's progress."""

    def __init__(self, server) -> None:
        super().__init__(server)
        # initializationOptions are the user's own settings; workspace/configuration may carry
        # a workspace's settings file, which must not pick the model (workspace trust).
        self.user_model: str | None = None
        self.allow_workspace_model = False
        self.refused_model: str | None = None  # told once per value
        self.model_progress: Progress | None = None

    @handles(types.INITIALIZE)
    def initialize(self, params: types.InitializeParams) -> None:
        ls = self.server
        ls.loop = asyncio.get_running_loop() if _has_loop() else ls.loop
        if ls.log_handler is not None:  # logMessage is allowed from here on
            ls.log_handler.connect()
        # pygls has chosen the position encoding before this handler runs.
        ls.caps = ClientCaps.parse(params.capabilities, ls.workspace.position_encoding)
        ls.settings, errors = parse_settings(params.initialization_options)
        ls.engine.settings = ls.settings
        self.user_model = ls.settings.model
        self.allow_workspace_model = workspace_model_allowed(params.initialization_options)
        for e in errors:
            ls.log(f"settings: {e}", types.MessageType.Warning)

    @handles(types.INITIALIZED)
    async def initialized(self, params: types.InitializedParams) -> None:
        ls = self.server
        ls.loop = asyncio.get_running_loop()
        if ls.caps.configuration:
            await self.pull_configuration()
        self.model_progress = Progress(ls, "Loading the alpine model", cancellable=False).start()
        ls.engine.start(ls.root())

    @handles(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(self, params: types.DidChangeConfigurationParams) -> None:
        if self.server.caps.configuration:
            await self.pull_configuration()
        else:
            self.apply_settings(params.settings)

    @handles(types.SHUTDOWN)
    def shutdown(self, params: None) -> None:
        self.server.shut_down = True
        self.server.engine.stop()

    @handles(types.EXIT)
    def exit_(self, params: None) -> None:
        # The spec: exit code 0 after a shutdown request, 1 without one.
        self.server.exit_code = 0 if self.server.shut_down else 1

    def on_model(self, model: ModelState) -> None:
        ls = self.server
        if model.state == "ready":
            msg = f"model {model.name} ready on {model.device} in {model.load_seconds or 0:.1f}s"
            ls.log(msg)
        else:
            msg = (
                f"alpine-lsp could not load its model: {model.error}. Parsing features still work."
            )
            ls.show(msg, types.MessageType.Error)
        bar, self.model_progress = self.model_progress, None
        if bar is not None:
            bar.end(msg)

    async def pull_configuration(self) -> None:
        ls = self.server
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
            self.apply_settings(result[0])

    def apply_settings(self, raw) -> None:
        ls = self.server
        if isinstance(raw, dict) and isinstance(raw.get("alpine"), dict):
            raw = raw["alpine"]
        new, errors = parse_settings(raw, ls.settings)
        for e in errors:
            ls.show(f"alpine-lsp settings: {e}", types.MessageType.Warning)
        user_model = self.user_model
        if new.model != user_model and not self.allow_workspace_model:
            if self.refused_model != new.model:  # once per value
                self.refused_model = new.model
                ls.show(
                    f"alpine-lsp: alpine.model {new.model!r} from workspace settings ignored; "
                    "a model directory runs in this process, so only user-level settings "
                    "(initializationOptions) choose it, or allow it there with "
                    '"allowWorkspaceModel": true',
                    types.MessageType.Warning,
                )
            new = replace(new, model=user_model)
        old = ls.settings
        if new == old:
            return
        if new.model != old.model and new.model:
            ls.log(f"model directory from settings: {new.model}")
        reload = new.model_key() != old.model_key()
        ls.settings = new
        if reload and ls.engine.model_state().state != "idle":
            self.model_progress = Progress(
                ls, "Reloading the alpine model", cancellable=False
            ).start()
        ls.engine.update_settings(new)
        # Then pull clients are asked to pull again, the index built if similarity came on.
        ls.settings_changed(old, new)
