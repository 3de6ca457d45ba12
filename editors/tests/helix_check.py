"""Static check of editors/helix/languages.toml (no Helix binary needed)."""

import sys
import tomllib
from pathlib import Path

HELIX_LANGUAGES = {"c", "cpp", "java", "python", "javascript", "jsx", "typescript", "tsx", "go", "rust"}
SETTINGS = {"threshold", "severity", "debounceMs", "device", "threads", "model", "pruning",
            "languages", "maxTokens", "maxFileSize", "similarity"}

path = Path(__file__).resolve().parent.parent / "helix" / "languages.toml"
results = []


def check(name, ok):
    results.append(ok)
    print(f"{'ok' if ok else 'FAIL'} helix: {name}")


data = tomllib.loads(path.read_text(encoding="utf-8"))
server = data.get("language-server", {}).get("alpine-lsp", {})
check("language server runs alpine-lsp --stdio",
      server.get("command") == "alpine-lsp" and server.get("args") == ["--stdio"])
config = server.get("config", {}).get("alpine", {})
check("config.alpine uses only the server's setting names", set(config) <= SETTINGS)
check("config.alpine.similarity uses only its keys",
      set(config.get("similarity", {})) <= {"enabled", "threshold", "maxResults"})
languages = {entry["name"]: entry.get("language-servers", []) for entry in data.get("language", [])}
check("every supported language lists alpine-lsp",
      all("alpine-lsp" in languages.get(name, []) for name in HELIX_LANGUAGES))
check("no other languages are touched", set(languages) == HELIX_LANGUAGES)

failed = results.count(False)
print(f"helix: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
