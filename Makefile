# Every target does its own set-up from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build lies on disk here; people with a GPU install their own torch first.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test lint format clean vscode

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

demo: venv
	$(VENV)/bin/alpine-lsp check alpine_lsp/examples --all

test: venv
	$(VENV)/bin/ruff check alpine_lsp tests
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check alpine_lsp tests
	$(VENV)/bin/ruff format --check alpine_lsp tests

format: venv
	$(VENV)/bin/ruff format alpine_lsp tests
	$(VENV)/bin/ruff check --fix alpine_lsp tests

# The VS Code extension: compile it (CI), `npx @vscode/vsce package` in editors/vscode for a .vsix.
vscode:
	cd editors/vscode && npm ci --no-audit --no-fund && npm run compile

clean:
	rm -rf $(VENV) build *.egg-info
