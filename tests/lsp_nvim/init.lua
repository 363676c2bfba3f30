-- Headless Neovim (0.7+) as the client of `pol lsp`: run by tests/lsp_nvim.rs on a copy
-- of examples/edge.pol with a typo on a line that has non-ASCII text before it.
-- Results go to $RESULTS: PASS/FAIL lines, then `N passed, N failed`.
local CMD = vim.split(vim.env.POL_LSP_CMD or 'pol lsp', ' ')
local out, failed, client_id = {}, 0, nil
local function check(name, ok, detail)
  local l = (ok and 'PASS ' or 'FAIL ') .. name
    .. (ok and '' or ': ' .. tostring(detail):gsub('\n%s*', ' '))
  out[#out + 1] = l; io.stdout:write(l, '\n')
  if not ok then failed = failed + 1 end
  return ok
end
vim.cmd('autocmd BufRead,BufNewFile *.pol setfiletype pol')
vim.api.nvim_create_autocmd('FileType', { pattern = 'pol', callback = function(a)
  local cfg = { name = 'pol', cmd = CMD, root_dir = vim.fn.getcwd() }
  if vim.lsp.start then client_id = vim.lsp.start(cfg)
  else client_id = vim.lsp.start_client(cfg); vim.lsp.buf_attach_client(a.buf, client_id) end
end })

local function run()
  local buf = vim.api.nvim_get_current_buf()
  check('filetype', vim.bo[buf].filetype == 'pol', vim.bo[buf].filetype)
  local client = assert(client_id and vim.lsp.get_client_by_id(client_id), 'no client')
  if not check('initialize', vim.wait(10000, function() return client.initialized end, 20),
    'no reply') then return end
  local enc = client.offset_encoding
  local function req(method, params)
    local res, err = vim.lsp.buf_request_sync(buf, method, params, 10000)
    local r = res and res[client_id]
    return r and r.result, (r and (r.err or r.error)) or err or 'no response'
  end
  -- (0-based line, 0-based byte column) of the first line containing `text`.
  local function find(text)
    for i, l in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, true)) do
      local c = l:find(text, 1, true)
      if c then return i - 1, c - 1 end
    end
    error('not in buffer: ' .. text)
  end
  local function at(text, plus)
    local l, c = find(text)
    vim.api.nvim_win_set_cursor(0, { l + 1, c + (plus or 0) })
    return vim.lsp.util.make_position_params(0, enc)
  end
  local ns = vim.lsp.diagnostic.get_namespace(client_id)
  local diags = function() return vim.diagnostic.get(buf, { namespace = ns }) end

  vim.wait(10000, function() return #diags() > 0 end, 20)
  local el, ec = find('tcp.dprot')
  local d = diags()[1] or {}
  check('diagnostic', #diags() == 1 and d.lnum == el and d.col == ec and d.severity == 1
    and vim.startswith(d.message, 'unknown field `tcp.dprot`'), vim.inspect(diags()))

  local r, err = req('textDocument/hover', at('ip.src in blocked', 4))
  check('hover', r and r.contents.value:find('ip.src: ip', 1, true) ~= nil, vim.inspect(r or err))

  r, err = req('textDocument/completion', at('tcp.dprot', 4))
  local labels = {}
  for _, it in ipairs(r and (r.items or r) or {}) do labels[it.label] = true end
  check('completion', labels.dport and labels.sport, vim.inspect(r or err))

  r, err = req('textDocument/definition', at('in blocked', 4))
  local loc = r and (r[1] or r) or {}
  local rg = loc.range or loc.targetSelectionRange or {}
  local sl = find('set blocked')
  check('definition', (loc.uri or loc.targetUri) == vim.uri_from_bufnr(buf)
    and rg.start and rg.start.line == sl, vim.inspect(r or err))

  r, err = req('textDocument/definition', at('rfc1918', 2))
  loc = r and (r[1] or r) or {}
  check('definition in std.net', vim.endswith(loc.uri or loc.targetUri or '', '/std/net.pol'),
    vim.inspect(r or err))

  r, err = req('textDocument/formatting', { textDocument = { uri = vim.uri_from_bufnr(buf) },
    options = { tabSize = 4, insertSpaces = true } })
  if r then vim.lsp.util.apply_text_edits(r, buf, enc) end
  local hl = find('filter edge on')
  check('formatting', vim.api.nvim_buf_get_lines(buf, hl + 1, hl + 2, true)[1]
    == '    drop tcp.dprot == 21', vim.inspect(r or err))

  local before = #diags()
  local fl = find('tcp.dprot')
  local line = vim.api.nvim_buf_get_lines(buf, fl, fl + 1, true)[1]
  vim.api.nvim_buf_set_lines(buf, fl, fl + 1, true, { (line:gsub('dprot', 'dport')) })
  check('diagnostics cleared', before > 0 and vim.wait(10000, function() return #diags() == 0 end, 20),
    before == 0 and 'none before edit' or vim.inspect(diags()))
end

vim.api.nvim_create_autocmd('VimEnter', { nested = true, callback = function()
  local ok, e = xpcall(run, debug.traceback)
  if not ok then check('driver error', false, e) end
  out[#out + 1] = ('%d passed, %d failed'):format(#out - failed, failed)
  io.stdout:write(out[#out], '\n')
  vim.fn.writefile(out, vim.env.RESULTS or 'lsp-results.txt')
  if failed > 0 then io.stdout:write('LSP log: ', vim.lsp.get_log_path(), '\n'); vim.cmd('cq 1') end
  vim.cmd('qa!')
end })
