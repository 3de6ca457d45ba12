-- alpine-lsp configuration for Neovim 0.11+ (`vim.lsp.config` / `vim.lsp.enable`).
--
--   vim.opt.runtimepath:append('/path/to/alpine-lsp/editors/neovim')
--   vim.lsp.enable('alpine_lsp')
--
-- Override anything with vim.lsp.config('alpine_lsp', { ... }), for example
--   vim.lsp.config('alpine_lsp', { settings = { alpine = { threshold = 0.7 } } })
--
-- `settings.alpine` is the source of truth: it answers the server's
-- workspace/configuration requests, is sent with workspace/didChangeConfiguration,
-- and is merged over `init_options` into the initialize request. Settings left
-- out use the server's defaults (for `threshold`, `model`, `pruning` and
-- `maxTokens` that is the model's own value). Use vim.NIL for an explicit null.
--
-- This file is self-contained so it can also be copied into ~/.config/nvim/lsp/.

local filetypes = {
  'c',
  'cpp',
  'java',
  'python',
  'javascript',
  'javascriptreact',
  'typescript',
  'typescriptreact',
  'go',
  'rust',
}

-- The documented server defaults that are not "null". Every key of the
-- `alpine` section is listed in editors/neovim/README.md.
local function default_settings()
  return {
    severity = 'warning', -- 'error' | 'warning' | 'information' | 'hint'
    debounceMs = 300,
    device = 'auto', -- 'auto' | 'cpu' | 'cuda'
    maxFileSize = 2000000,
    similarity = {
      enabled = true,
      maxResults = 3,
    },
    -- threshold = 0.5,          -- 0..1; unset: the model's calibrated threshold
    -- threads = 4,              -- unset: automatic
    -- model = '/path/to/model', -- unset: the bundled model
    -- pruning = { alpha = 0.3, layers = 'all', mode = 'merge' },
    -- languages = { 'python', 'go' },
    -- maxTokens = 512,
    -- similarity.threshold       -- unset: the model's threshold
  }
end

local has_011 = vim.fn.has('nvim-0.11') == 1
local islist = vim.islist or vim.tbl_islist

-- Deep merge of `override` into a copy of `base`; lists are replaced (older
-- vim.tbl_deep_extend merged them index by index).
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

-- client:request() in 0.11+, client.request() before.
local function request(client, method, params, handler, bufnr)
  if has_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

-- Client-side handler for the server command `alpine.showSimilar` (arguments:
-- uri, line). Neovim ignores the result of a plain workspace/executeCommand,
-- so run it here and put the returned locations in the quickfix list. Used by
-- code lenses ("N similar functions") and by :AlpineSimilar.
local function show_similar(command, ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if not client then
    return
  end
  request(client, 'workspace/executeCommand', {
    command = command.command,
    arguments = command.arguments,
  }, function(err, result)
    if err then
      vim.notify('alpine-lsp: ' .. (err.message or tostring(err)), vim.log.levels.ERROR)
      return
    end
    if type(result) ~= 'table' or vim.tbl_isempty(result) then
      vim.notify('alpine-lsp: no similar functions found', vim.log.levels.INFO)
      return
    end
    local items = vim.lsp.util.locations_to_items(result, client.offset_encoding)
    vim.fn.setqflist({}, ' ', { title = 'alpine-lsp: similar functions', items = items })
    vim.cmd('botright copen')
  end, ctx.bufnr)
end

-- Indented JSON text for a decoded JSON value (vim.json.encode has no indent option in 0.11).
local function pretty_json(value, indent)
  if value == vim.NIL or value == nil then
    return 'null'
  end
  if type(value) ~= 'table' then
    return vim.json.encode(value)
  end
  if next(value) == nil then
    return getmetatable(value) == getmetatable(vim.empty_dict()) and '{}' or '[]'
  end
  local inner = indent .. '  '
  local parts = {}
  if islist(value) then
    for _, item in ipairs(value) do
      table.insert(parts, inner .. pretty_json(item, inner))
    end
    return '[\n' .. table.concat(parts, ',\n') .. '\n' .. indent .. ']'
  end
  local keys = vim.tbl_keys(value)
  table.sort(keys, function(a, b)
    return tostring(a) < tostring(b)
  end)
  for _, key in ipairs(keys) do
    table.insert(parts, inner .. vim.json.encode(tostring(key)) .. ': ' .. pretty_json(value[key], inner))
  end
  return '{\n' .. table.concat(parts, ',\n') .. '\n' .. indent .. '}'
end

-- Send the custom `alpine/stats` request and show the answer in a scratch buffer.
local function show_stats(client, bufnr)
  request(client, 'alpine/stats', vim.empty_dict(), function(err, result)
    if err then
      vim.notify('alpine-lsp: alpine/stats failed: ' .. (err.message or tostring(err)), vim.log.levels.ERROR)
      return
    end
    local lines = vim.split(pretty_json(result, ''), '\n')
    vim.cmd('botright new')
    local buf = vim.api.nvim_get_current_buf()
    vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
    vim.bo[buf].buftype = 'nofile'
    vim.bo[buf].bufhidden = 'wipe'
    vim.bo[buf].filetype = 'json'
    pcall(vim.api.nvim_buf_set_name, buf, 'alpine-lsp://stats/' .. buf)
  end, bufnr)
end

local function on_attach(client, bufnr)
  vim.api.nvim_buf_create_user_command(bufnr, 'AlpineStats', function()
    show_stats(client, bufnr)
  end, { desc = 'alpine-lsp: show server statistics (alpine/stats)' })

  vim.api.nvim_buf_create_user_command(bufnr, 'AlpineSimilar', function()
    local line = vim.api.nvim_win_get_cursor(0)[1] - 1
    show_similar({
      title = 'similar functions',
      command = 'alpine.showSimilar',
      arguments = { vim.uri_from_bufnr(bufnr), line },
    }, { client_id = client.id, bufnr = bufnr })
  end, { desc = 'alpine-lsp: list functions similar to the one whose name is on this line' })

  -- Keep the "N similar functions" code lenses up to date.
  if client.server_capabilities.codeLensProvider then
    local group = vim.api.nvim_create_augroup('alpine_lsp_codelens_' .. bufnr, { clear = true })
    local function refresh()
      if has_011 then
        pcall(vim.lsp.codelens.refresh, { bufnr = bufnr })
      elseif vim.api.nvim_get_current_buf() == bufnr then
        pcall(vim.lsp.codelens.refresh) -- 0.9/0.10 refresh the current buffer
      end
    end
    vim.api.nvim_create_autocmd({ 'BufEnter', 'InsertLeave', 'BufWritePost' }, {
      group = group,
      buffer = bufnr,
      callback = refresh,
    })
    refresh()
  end
end

-- Neovim 0.11 neither declares nor handles workspace/codeLens/refresh and
-- workspace/diagnostic/refresh. The server sends them when results change
-- without an edit (model loaded, workspace indexed, settings changed), so
-- declare them here and pull again for every buffer the client is attached to.
local function attached_buffers(client_id)
  local client = vim.lsp.get_client_by_id(client_id)
  if not client then
    return {}
  end
  return vim.tbl_keys(client.attached_buffers or {})
end

local handlers = {
  ['workspace/codeLens/refresh'] = function(_, _, ctx)
    for _, bufnr in ipairs(attached_buffers(ctx.client_id)) do
      if vim.api.nvim_buf_is_loaded(bufnr) then
        pcall(vim.lsp.codelens.refresh, { bufnr = bufnr })
      end
    end
    return vim.NIL
  end,
  ['workspace/diagnostic/refresh'] = function(_, _, ctx)
    local client = vim.lsp.get_client_by_id(ctx.client_id)
    for _, bufnr in ipairs(attached_buffers(ctx.client_id)) do
      if client and vim.api.nvim_buf_is_loaded(bufnr) then
        request(client, 'textDocument/diagnostic', {
          textDocument = vim.lsp.util.make_text_document_params(bufnr),
        }, vim.lsp.diagnostic.on_diagnostic, bufnr)
      end
    end
    return vim.NIL
  end,
}

local settings = default_settings()

---@type vim.lsp.Config
return {
  cmd = { 'alpine-lsp', '--stdio' },
  filetypes = filetypes,
  -- The workspace root is also what the server indexes for similar-code hints.
  root_markers = {
    '.git',
    '.hg',
    'pyproject.toml',
    'setup.py',
    'package.json',
    'go.mod',
    'Cargo.toml',
    'pom.xml',
    'build.gradle',
    'CMakeLists.txt',
    'compile_commands.json',
  },
  settings = { alpine = settings },
  init_options = vim.deepcopy(settings),
  before_init = function(params, config)
    local alpine = config.settings and config.settings.alpine or {}
    local options = merge(config.init_options or {}, alpine)
    -- An empty Lua table would be sent as [] instead of {}.
    params.initializationOptions = next(options) ~= nil and options or vim.empty_dict()
  end,
  commands = {
    ['alpine.showSimilar'] = show_similar,
  },
  on_attach = on_attach,
  handlers = handlers,
  capabilities = {
    workspace = {
      codeLens = { refreshSupport = true },
      diagnostics = { refreshSupport = true },
    },
  },
}
