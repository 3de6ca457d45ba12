-- alpine-lsp set-up for Neovim 0.9 and 0.10 (also works on 0.11+, where
-- `vim.lsp.enable('alpine_lsp')` is the simpler way).
--
--   vim.opt.runtimepath:append('/path/to/alpine-lsp/editors/neovim')
--   require('alpine_lsp.legacy').setup({
--     settings = { alpine = { threshold = 0.7 } },
--   })
--
-- It reuses the configuration in lsp/alpine_lsp.lua, so both set-ups start the
-- server the same way, and starts one client per workspace root with
-- vim.lsp.start() from a FileType autocommand.

local M = {}

local uv = vim.uv or vim.loop

-- Load lsp/alpine_lsp.lua: next to this file first, else from 'runtimepath'.
local function base_config()
  local source = debug.getinfo(1, 'S').source
  local candidates = {}
  if source:sub(1, 1) == '@' then
    local here = vim.fn.fnamemodify(source:sub(2), ':p:h')
    table.insert(candidates, here .. '/../../lsp/alpine_lsp.lua')
  end
  vim.list_extend(candidates, vim.api.nvim_get_runtime_file('lsp/alpine_lsp.lua', true))
  for _, path in ipairs(candidates) do
    if uv.fs_stat(path) then
      return dofile(path)
    end
  end
  error('alpine_lsp.legacy: lsp/alpine_lsp.lua not found; add editors/neovim to runtimepath')
end

-- Deep merge of `override` into a copy of `base`. Unlike vim.tbl_deep_extend
-- on Neovim 0.9, lists (cmd, filetypes, languages, ...) are replaced, not
-- merged index by index.
local islist = vim.islist or vim.tbl_islist
local function merge(base, override)
  local function mergeable(v)
    return type(v) == 'table' and next(v) ~= nil and not islist(v)
  end
  local out = vim.deepcopy(base)
  for key, value in pairs(override) do
    if mergeable(value) and mergeable(out[key]) then
      out[key] = merge(out[key], value)
    else
      out[key] = value
    end
  end
  return out
end

-- Nearest ancestor directory of `path` holding a marker; markers are tried in
-- order, as Neovim 0.11 does for `root_markers`.
local function find_root(path, markers)
  if path == '' then
    return nil
  end
  local start = vim.fn.fnamemodify(path, ':p:h')
  for _, marker in ipairs(markers) do
    local found = vim.fs.find(marker, { path = start, upward = true, limit = 1 })[1]
    if found then
      return vim.fn.fnamemodify(found, ':h')
    end
  end
  return nil
end

--- Start alpine-lsp for the supported filetypes.
---
--- opts (all optional):
---   cmd           list of strings, default { 'alpine-lsp', '--stdio' }
---   filetypes     list, default the ten supported filetypes
---   root_markers  list of file/directory names searched upward from the file
---   settings      { alpine = { ... } }, merged over the defaults
---   init_options  merged under settings.alpine into initializationOptions
---   on_attach     function(client, bufnr), called after the built-in one
---   capabilities  client capabilities (e.g. from a completion plugin)
---   any other vim.lsp.ClientConfig field is passed through to vim.lsp.start()
function M.setup(opts)
  if vim.fn.has('nvim-0.9') ~= 1 then
    vim.notify('alpine_lsp.legacy needs Neovim 0.9 or later', vim.log.levels.ERROR)
    return
  end
  opts = opts or {}
  local base = base_config()

  local user_on_attach = opts.on_attach
  local base_on_attach = base.on_attach
  local config = merge(base, opts)
  config.on_attach = function(client, bufnr)
    if base_on_attach then
      base_on_attach(client, bufnr)
    end
    if user_on_attach then
      user_on_attach(client, bufnr)
    end
  end

  local filetypes = config.filetypes
  local markers = config.root_markers or {}
  config.name = config.name or 'alpine_lsp'
  config.filetypes = nil
  config.root_markers = nil

  local function start(bufnr)
    if vim.bo[bufnr].buftype ~= '' then
      return
    end
    local client_config = vim.deepcopy(config)
    client_config.root_dir = find_root(vim.api.nvim_buf_get_name(bufnr), markers)
    vim.lsp.start(client_config, { bufnr = bufnr })
  end

  local group = vim.api.nvim_create_augroup('alpine_lsp_legacy', { clear = true })
  vim.api.nvim_create_autocmd('FileType', {
    group = group,
    pattern = filetypes,
    callback = function(args)
      start(args.buf)
    end,
  })

  -- Buffers that were already open when setup() ran.
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) and vim.tbl_contains(filetypes, vim.bo[bufnr].filetype) then
      start(bufnr)
    end
  end
end

return M
