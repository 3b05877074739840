--- How a start-up that goes wrong must look, for the specs of every flag:
-- a bad command line exits 2 with one line (and maybe the pointer to
-- --help); a start-up failure exits 1 before anything listens, its first
-- line an error naming what failed.
local server = require "support.server"
local text = require "support.text"
local assert = require "luassert"

local M = {}

M.TRY_HELP = "Try 'luaecho --help' for more information."

--- Exit 2, nothing on stdout, one `luaecho: ` line containing `culprit`.
function M.assert_usage_error(args, culprit)
  local code, out, err = server.run(args)
  local lines = text.lines(err)
  assert.are.equal(2, code, "exit code for: luaecho " .. table.concat(args, " ") .. "\n" .. err)
  assert.are.equal("", out)
  assert.matches("^luaecho: ", lines[1] or "")
  assert.matches(culprit, lines[1], 1, true)
  assert.is_true(#lines == 1 or (#lines == 2 and lines[2] == M.TRY_HELP),
    "expected one line (and maybe the --help pointer), got:\n" .. err)
end

--- Exit 1 before listening, the first line `luaecho: error: ` naming every
-- string in `mentions`.
function M.assert_load_error(args, mentions)
  local code, _, err = server.run(args)
  assert.are.equal(1, code, "exit code for: luaecho " .. table.concat(args, " ") .. "\n" .. err)
  assert.is_nil(err:find("listening on", 1, true), err)
  local first = text.lines(err)[1] or ""
  assert.matches("^luaecho: error: ", first)
  for _, mention in ipairs(mentions) do
    assert.matches(mention, first, 1, true)
  end
end

return M
