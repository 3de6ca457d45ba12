"""The shape of the package, checked on its source with `ast` (nothing is imported): the import
graph among alpine_lsp modules has no cycle in server/, features reach each other only through
the server's events and shared helper modules, the engine is reached through its read API,
server/ keeps no module-level mutable state, and the lower layers import nothing above them.
Every import counts: module-level, inside functions, and under `TYPE_CHECKING`."""

from __future__ import annotations

import ast
from pathlib import Path

import alpine_lsp

PACKAGE = Path(alpine_lsp.__file__).parent

# server/ modules every feature may import. The rest of server/ are features (one class
# each, registered by app.FEATURES), and app, which assembles them.
HELPERS = {"base", "caps", "progress", "ranges", "framing", "logs"}

# What of the engine features use: its read API, the document and lifecycle calls, settings.
ENGINE_API = {
    # read API
    "snapshot",
    "is_open",
    "document_text",
    "model_state",
    "loaded_model",
    "cancel_indexing",
    "forget_adapter",
    "report",
    "threshold",
    "settings",
    "root",
    # documents, lifecycle and work
    "open",
    "change",
    "close",
    "start",
    "stop",
    "update_settings",
    "reanalyze_all",
    "run_model",
    "index_workspace",
    "reindex_file",
    "forget_file",
}

# Which top-level folders each lower layer must not import (README, "Architecture";
# tests/test_layers.py checks the whole table of what each folder may import). "*": anything
# of the package ("" is its top level, __init__ and __main__).
FORBIDDEN = {
    "pruning": {"*"},
    "model": {"engine", "server", "cli"},
    "engine": {"server", "cli"},
    "parsing": {"engine", "server"},
    "index": {"engine", "server"},
}
# Known exceptions to FORBIDDEN, each with why (none today).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()

MUTABLE_CALLS = {"dict", "list", "set", "defaultdict", "deque", "OrderedDict", "Counter"}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The alpine_lsp modules `path` imports (a package's `from . import x` names `x`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "alpine_lsp"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "alpine_lsp":
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            found |= subs or {target}
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph`, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _server(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    inside = {m for m in graph if m.startswith("alpine_lsp.server.")}
    return {m: graph[m] & inside for m in inside}


def _short(module: str) -> str:
    return module.removeprefix("alpine_lsp.server.")


def test_the_checker_finds_a_cycle_and_resolves_relative_imports() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    graph = _graph()
    assert "alpine_lsp.server.base" in graph["alpine_lsp.server.hover"]
    assert "alpine_lsp.engine.engine" in graph["alpine_lsp.server.base"]
    assert "alpine_lsp.server.lifecycle" in graph["alpine_lsp.server.app"]


def test_no_import_cycle_in_server() -> None:
    assert _cycle(_server(_graph())) is None, " -> ".join(_cycle(_server(_graph())) or [])


def test_features_import_only_helpers() -> None:
    server = _server(_graph())
    names = {_short(m) for m in server}
    assert names >= HELPERS, f"missing helper modules: {HELPERS - names}"
    wrong = []
    for module, targets in sorted(server.items()):
        here = _short(module)
        if here == "app":
            continue  # assembles the features
        for t in sorted(targets):
            if _short(t) not in HELPERS:
                wrong.append(f"{here} imports {_short(t)}")
    assert not wrong, "\n".join(wrong)


def test_server_reaches_the_engine_only_through_its_api() -> None:
    wrong = []
    for path in sorted((PACKAGE / "server").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            on_engine = (isinstance(owner, ast.Name) and owner.id == "engine") or (
                isinstance(owner, ast.Attribute) and owner.attr == "engine"
            )
            if on_engine and node.attr not in ENGINE_API:
                wrong.append(f"{path.name}:{node.lineno} engine.{node.attr}")
    assert not wrong, "\n".join(wrong)


def test_no_module_level_mutable_state_in_server() -> None:
    wrong = []
    for path in sorted((PACKAGE / "server").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                wrong.append(f"{path.name}:{node.lineno} global {', '.join(node.names)}")
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            mutable = isinstance(
                value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
            ) or (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id in MUTABLE_CALLS
            )
            if mutable:
                wrong.append(f"{path.name}:{node.lineno} {ast.unparse(node)[:60]}")
    assert not wrong, "\n".join(wrong)


def test_lower_layers_import_nothing_above_them() -> None:
    wrong = []
    for module, targets in sorted(_graph().items()):
        parts = module.split(".")
        folder = parts[1] if len(parts) > 2 else ""
        for t in sorted(targets):
            tparts = t.split(".")
            above = tparts[1] if len(tparts) > 1 else ""
            banned = FORBIDDEN.get(folder, set())
            hit = above != folder and (above in banned or "*" in banned)
            if hit and (folder, above) not in KNOWN_EXCEPTIONS:
                wrong.append(f"{module} imports {t}")
    assert not wrong, "\n".join(wrong)
