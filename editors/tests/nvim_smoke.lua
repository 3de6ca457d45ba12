-- Smoke test of editors/neovim against the stand-in server.
-- Usage: nvim --headless --clean -l nvim_smoke.lua MODE PYTHON STUB_LOG PROJECT_DIR
--   MODE: "enable" (vim.lsp.enable, 0.11+) or "legacy" (alpine_lsp.legacy.setup)
local mode, python, log, project = arg[1], arg[2], arg[3], arg[4]
local here = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h')
local stub = here .. '/stub_server.py'
vim.opt.runtimepath:append(here .. '/../neovim')
vim.env.STUB_LOG = log

local passed, failed = 0, 0
local function say(text)
  io.stdout:write(text .. '\n')
end
local function check(name, fn)
  local ok, err = pcall(fn)
  if ok then
    passed = passed + 1
    say('ok nvim-' .. mode .. ': ' .. name)
  else
    failed = failed + 1
    say('FAIL nvim-' .. mode .. ': ' .. name .. ': ' .. tostring(err))
  end
end
local function entries()
  local out = {}
  if vim.fn.filereadable(log) == 1 then
    for _, line in ipairs(vim.fn.readfile(log)) do
      table.insert(out, vim.json.decode(line))
    end
  end
  return out
end
local function find(kind)
  for _, e in ipairs(entries()) do
    if e.kind == kind then
      return e
    end
  end
end
local function eq(a, b, what)
  assert(vim.deep_equal(a, b), (what or '') .. ': expected ' .. vim.inspect(b) .. ', got ' .. vim.inspect(a))
end

local user_attached = false
local cmd = { python, stub }
if mode == 'enable' then
  vim.lsp.config('alpine_lsp', {
    cmd = cmd,
    settings = { alpine = { threshold = 0.7, pruning = { layers = 'even' }, languages = { 'python' } } },
  })
  vim.lsp.enable('alpine_lsp')
end
vim.cmd('edit ' .. project .. '/src/foo.py')
if mode == 'legacy' then
  require('alpine_lsp.legacy').setup({ -- after the buffer is open on purpose
    cmd = cmd,
    settings = { alpine = { threshold = 0.7, pruning = { layers = 'even' }, languages = { 'python' } } },
    on_attach = function()
      user_attached = true
    end,
  })
end
local buf = vim.api.nvim_get_current_buf()
local function client()
  return vim.lsp.get_clients({ bufnr = buf, name = 'alpine_lsp' })[1]
end

check('attaches and finds the root', function()
  assert(vim.wait(20000, function()
    return client() ~= nil and client().initialized
  end, 50), 'no client')
  eq(client().root_dir, project, 'root_dir')
  if mode == 'legacy' then
    assert(user_attached, 'user on_attach not called')
  end
end)
check('initializationOptions are settings.alpine over the defaults', function()
  eq(find('initialize').data.initializationOptions, {
    severity = 'warning', debounceMs = 300, device = 'auto', maxFileSize = 2000000,
    similarity = { enabled = true, maxResults = 3 },
    threshold = 0.7, pruning = { layers = 'even' }, languages = { 'python' },
  }, 'initializationOptions')
end)
check('workspace/configuration answers the alpine section', function()
  assert(vim.wait(5000, function() return find('configuration') ~= nil end, 50), 'no configuration pull')
  eq(find('configuration').data[1].threshold, 0.7, 'threshold')
end)
check('didOpen uses the filetype as languageId', function()
  eq(find('didOpen').data.languageId, 'python', 'languageId')
end)
check('diagnostics arrive', function()
  assert(vim.wait(10000, function() return #vim.diagnostic.get(buf) > 0 end, 50), 'no diagnostics')
  local d = vim.diagnostic.get(buf)[1]
  eq({ d.message, d.source, d.code }, { 'possible defect (p=0.87)', 'alpine', 'defect-risk' }, 'diagnostic')
end)
check(':AlpineStats shows the JSON', function()
  vim.cmd('AlpineStats')
  assert(vim.wait(5000, function() return vim.bo.filetype == 'json' end, 50), 'no stats buffer')
  local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\n')
  eq(vim.json.decode(text), { documents = 1, stub = true }, 'stats')
  vim.cmd('close')
end)
check(':AlpineSimilar fills the quickfix list', function()
  vim.api.nvim_set_current_buf(buf)
  vim.fn.setqflist({}, 'r', { items = {} })
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  vim.cmd('AlpineSimilar')
  assert(vim.wait(5000, function() return #vim.fn.getqflist() > 0 end, 50), 'empty quickfix')
  local item = vim.fn.getqflist()[1]
  eq(item.lnum, 5, 'lnum')
  eq(vim.fn.getqflist({ title = 1 }).title, 'alpine-lsp: similar functions', 'title')
  vim.cmd('cclose')
end)
check('running the code lens fills the quickfix list', function()
  vim.api.nvim_set_current_buf(buf)
  vim.fn.setqflist({}, 'r', { items = {} })
  assert(vim.wait(5000, function() return #vim.lsp.codelens.get(buf) > 0 end, 50), 'no code lens')
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  vim.lsp.codelens.run()
  assert(vim.wait(5000, function() return #vim.fn.getqflist() > 0 end, 50), 'empty quickfix')
  vim.cmd('cclose')
end)
check('another filetype in the same root shares the client', function()
  vim.cmd('edit ' .. project .. '/src/main.go')
  local go = vim.api.nvim_get_current_buf()
  assert(vim.wait(5000, function() return #vim.lsp.get_clients({ bufnr = go, name = 'alpine_lsp' }) > 0 end, 50), 'not attached')
  eq(#vim.lsp.get_clients({ name = 'alpine_lsp' }), 1, 'clients')
end)

say(string.format('nvim-%s: %d passed, %d failed', mode, passed, failed))
for _, c in ipairs(vim.lsp.get_clients()) do
  c:stop(true)
end
os.exit(failed == 0 and 0 or 1)
