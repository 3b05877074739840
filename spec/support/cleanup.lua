--- Teardown for integration specs: whatever a spec leaves behind, even one
-- that failed half-way, is cleared here: the clients still open
-- (support.client), the servers still running (support.server: SIGTERM,
-- then SIGKILL) and the scratch directories (support.files).
-- @usage
--   after_each(cleanup.expect_clean) -- and fail on a crash or a sanitizer report
--   after_each(cleanup.all)          -- for specs that judge the server themselves
local assert = require "luassert"
local client = require "support.client"
local files = require "support.files"
local server = require "support.server"

local M = {}

--- Clear everything; returns the problems the servers showed (a crash, an
-- unclean exit on SIGTERM, a sanitizer report), as server.stop_all does.
function M.all()
  client.close_all()
  local problems = server.stop_all()
  files.remove_scratches()
  return problems
end

--- Clear everything, then fail if any server showed a problem.
function M.expect_clean()
  assert.are.same({}, M.all())
end

return M
