#!/usr/bin/env bash
# Smoke tests of the editor integrations against a stand-in LSP server
# (stub_server.py, needs pygls). Each suite runs when its editor is available
# and is skipped otherwise:
#   vscode  node + editors/vscode (runs `npm ci` there if node_modules is missing)
#   nvim    Neovim 0.11+ (`nvim` on PATH or in the repository's .venv)
#   emacs   Emacs with Eglot (built in from Emacs 29; Debian's elpa-eglot works too)
#   helix   static check of languages.toml (Python 3.11+)
# Environment: PYTHON (an interpreter with pygls), NVIM, EMACS.
set -u
here=$(cd "$(dirname "$0")" && pwd)
editors=$(dirname "$here")
repo=$(dirname "$editors")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "== $1: passed"; }
fail() { failed=$((failed + 1)); echo "== $1: FAILED"; }
skip() { skipped=$((skipped + 1)); echo "== $1: skipped ($2)"; }

python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python=$repo/.venv/bin/python; else python=python3; fi
fi
have_stub=1
"$python" -c 'import pygls, lsprotocol' 2>/dev/null || have_stub=0

# A small project: a git root with a Python, a Go and a C++ file.
project=$work/project
mkdir -p "$project/src"
git -C "$project" init -q 2>/dev/null || mkdir -p "$project/.git"
printf 'def foo(x):\n    return x\n\n\ndef bar(y):\n    return y\n' > "$project/src/foo.py"
printf 'package main\n\nfunc main() {}\n' > "$project/src/main.go"
printf 'int add(int a, int b) {\n  return a + b;\n}\n' > "$project/src/a.cpp"
printf '((nil . ((eglot-workspace-configuration . (:alpine (:threshold 0.7 :similarity (:maxResults 5)))))))\n' \
  > "$project/.dir-locals.el"

# --- helix -----------------------------------------------------------------
if python3 -c 'import tomllib' 2>/dev/null; then
  if python3 "$here/helix_check.py"; then pass helix; else fail helix; fi
else
  skip helix "no Python 3.11+"
fi

# --- vscode ----------------------------------------------------------------
if [ "$have_stub" = 0 ]; then
  skip vscode "$python has no pygls"
elif ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  skip vscode "no node/npm"
else
  ok=1
  if [ ! -d "$editors/vscode/node_modules" ]; then
    (cd "$editors/vscode" && npm ci --no-audit --no-fund >"$work/npm-ci.log" 2>&1) || { ok=0; cat "$work/npm-ci.log"; }
  fi
  [ "$ok" = 1 ] && { (cd "$editors/vscode" && npm run -s compile) || ok=0; }
  [ "$ok" = 1 ] && { timeout 300 node "$here/vscode_smoke.js" "$python" || ok=0; }
  if [ "$ok" = 1 ]; then pass vscode; else fail vscode; fi
fi

# --- neovim ----------------------------------------------------------------
nvim=${NVIM:-}
if [ -z "$nvim" ]; then
  if command -v nvim >/dev/null; then nvim=$(command -v nvim)
  elif [ -x "$repo/.venv/bin/nvim" ]; then nvim=$repo/.venv/bin/nvim; fi
fi
if [ "$have_stub" = 0 ]; then
  skip nvim "$python has no pygls"
elif [ -z "$nvim" ]; then
  skip nvim "no nvim"
elif [ "$("$nvim" --headless --clean -es -c 'if has("nvim-0.11") | cq 0 | else | cq 1 | endif' >/dev/null 2>&1; echo $?)" != 0 ]; then
  skip nvim "nvim older than 0.11"
else
  for mode in enable legacy; do
    if timeout 300 "$nvim" --headless --clean -l "$here/nvim_smoke.lua" \
        "$mode" "$python" "$work/nvim-$mode.log" "$project"; then
      pass "nvim-$mode"
    else
      fail "nvim-$mode"
    fi
  done
fi

# --- emacs -----------------------------------------------------------------
emacs=${EMACS:-emacs}
load_path=()
for d in /usr/share/emacs/site-lisp/elpa/*/; do [ -d "$d" ] && load_path+=(-L "$d"); done
if [ "$have_stub" = 0 ]; then
  skip emacs "$python has no pygls"
elif ! command -v "$emacs" >/dev/null; then
  skip emacs "no emacs"
elif ! "$emacs" -Q --batch "${load_path[@]}" --eval '(require (quote eglot))' >/dev/null 2>&1; then
  skip emacs "no eglot"
else
  ok=1
  cp "$editors/emacs/alpine-lsp.el" "$work/"
  "$emacs" -Q --batch "${load_path[@]}" --eval '(setq byte-compile-error-on-warn t)' \
    -f batch-byte-compile "$work/alpine-lsp.el" || ok=0
  if [ "$ok" = 1 ]; then
    STUB_PYTHON=$python STUB_LOG=$work/emacs.log PROJECT=$project timeout 300 \
      "$emacs" -Q --batch "${load_path[@]}" -L "$editors/emacs" -l "$here/emacs_smoke.el" 2>"$work/emacs.err" \
      || { ok=0; tail -20 "$work/emacs.err"; }
  fi
  if [ "$ok" = 1 ]; then pass emacs; else fail emacs; fi
fi

echo "editors: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
