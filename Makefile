# Every target does its own set-up from a fresh clone, in either order.
#   make demo   a runtime-only venv (.venv-demo): what `pip install alpine-lsp` brings
#   make test   the development venv (.venv): runtime + extras train and dev
PYTHON ?= python3
VENV ?= .venv
DEMO_VENV ?= .venv-demo
PY := $(VENV)/bin/python
# torch first, so pip keeps it instead of resolving its own. Here the CPU build lies on disk;
# on a machine without a GPU: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
# With a GPU, install your own torch into the venv first (any torch found is kept).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_PIP = $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: venv demo demo-venv test lint format clean vscode

venv: $(VENV)/.installed
demo-venv: $(DEMO_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIP) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

$(DEMO_VENV)/.installed: pyproject.toml
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q --upgrade pip
	$(DEMO_VENV)/bin/python -c "import torch" 2>/dev/null || \
		$(DEMO_VENV)/bin/python -m pip install -q $(TORCH_PIP) "$(TORCH_SPEC)"
	$(DEMO_VENV)/bin/python -m pip install -q -e .
	touch $@

# Every kind of finding on the shipped examples: defect hints, a similar-code pair
# (config.c / settings.c) and the quick fix in words.
demo: demo-venv
	$(DEMO_VENV)/bin/alpine-lsp check alpine_lsp/examples --no-cache --similar
	@du -sh $(DEMO_VENV) | sed 's/\t.*//;s/^/demo venv size: /'

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
	rm -rf $(VENV) $(DEMO_VENV) build *.egg-info
