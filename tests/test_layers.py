"""The package's layering, as the README's architecture section states it, checked on the
import statements themselves (a cheap test that keeps the dependency direction true)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import alpine_lsp

PACKAGE = Path(alpine_lsp.__file__).parent

# Which of the package's folders each folder may import. "" is the top level (__init__,
# __main__). A folder missing here fails the test: say where it sits before it lands.
ALLOWED: dict[str, set[str]] = {
    "pruning": set(),
    "parsing": set(),
    "model": {"pruning", "parsing"},  # the metrics half reads the tree-sitter tree
    "index": {"parsing"},
    "engine": {"model", "pruning", "parsing", "index"},
    "server": {"", "engine", "parsing", "history"},
    "history": {"engine", "evalkit", "index", "model", "parsing"},
    "evalkit": {"pruning"},
    "train": {"evalkit", "model", "pruning", "parsing", "index", "engine"},  # the flag rule
    "bench": {"evalkit", "model", "pruning", "parsing", "index", "engine"},
    "cli": {
        "",
        "engine",
        "index",
        "model",
        "parsing",
        "server",
        "train",
        "bench",
        "evalkit",
        "history",
    },
    "": {"cli", "model"},
}


def _imported_folders(path: Path) -> set[str]:
    rel = path.relative_to(PACKAGE).parts
    here = list(rel[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            target = base + (node.module.split(".") if node.module else [])
            if not node.module:  # `from . import x` / `from .. import x`
                target += [node.names[0].name]
            found.add(target[0] if len(target) > 1 or (PACKAGE / target[0]).is_dir() else "")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("alpine_lsp")
        ):
            parts = node.module.split(".")
            found.add(parts[1] if len(parts) > 1 else "")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("alpine_lsp."):
                    found.add(alias.name.split(".")[1])
    return found


def _folder(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else ""


def test_every_folder_has_a_place_in_the_layering() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders <= set(ALLOWED), f"add {sorted(folders - set(ALLOWED))} to ALLOWED and README"


def test_imports_point_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        folder = _folder(path)
        for target in _imported_folders(path) - {folder}:
            if target not in ALLOWED.get(folder, set()):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {target or 'alpine_lsp'}")
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_import() -> None:
    # The walk must resolve relative imports, or the layering test above passes vacuously.
    bad = PACKAGE / "engine" / "engine.py"
    assert "model" in _imported_folders(bad) and "index" in _imported_folders(bad)
    assert "server" not in _imported_folders(bad)


def test_every_module_imports() -> None:
    # A module moved in one branch and imported by its old name in another imports nowhere
    # else in the suite (bench/lines.py did after a merge): import each one here.
    names = sorted(
        ".".join(("alpine_lsp", *p.relative_to(PACKAGE).with_suffix("").parts))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__main__.py"
    )
    failed = []
    for name in names:
        try:
            importlib.import_module(name.removesuffix(".__init__"))
        except Exception as e:
            failed.append(f"{name}: {type(e).__name__}: {e}")
    assert not failed, "\n".join(failed)
