--- Helpers for the canary and reload-policy specs: the tagged fixture
-- written with its settings, one-line probes that tell which generation
-- served a new connection, and the console's `show generations` parsed.
-- @usage
--   local script = canary.write(scratch, { name = "b", boom = "always" })
--   local reply = canary.probe(proc)        --> "a@1:probe", or nil if closed
--   local rows = canary.generations(proc)   --> rows[2].state == "canary"
local assert = require "luassert"
local client = require "support.client"
local files = require "support.files"
local server = require "support.server"

local M = {}

--- Write spec/fixtures/canary/tagged.lua as scratch's handler.lua, its
-- SETTINGS line set from `settings`; returns its path.
function M.write(scratch, settings)
  local keys = {}
  for k in pairs(settings) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = ("%s = %q"):format(k, settings[k]) end
  local text, n = files.read(server.fixture("canary/tagged.lua"))
    :gsub("local SETTINGS = {}", "local SETTINGS = { " .. table.concat(parts, ", ") .. " }", 1)
  assert(n == 1, "tagged.lua has no SETTINGS line")
  return scratch:write("handler.lua", text)
end

--- Send one line on `conn` and return the reply line, or nil when the
-- server closed the connection instead (a failed callback aborts it).
function M.ask(conn, line)
  conn:send_all(line .. "\n")
  conn.sock:settimeout(5)
  local reply, err, partial = conn.sock:receive("*l")
  if reply then return reply end
  if err == "closed" or err == "connection reset by peer" then return nil end
  error(("no reply to %q: %s (received %q)"):format(line, err, partial or ""), 2)
end

--- A new connection asked `line` (default "probe"): the reply and the
-- connection, kept open.
function M.probe(proc, line)
  local conn = client.connect(proc.host, proc.port)
  return M.ask(conn, line or "probe"), conn
end

--- `show generations` over the console (through luaecho ctl): the rows by
-- generation ({ loaded, state, connections, errors }) and the "#" notes.
function M.generations(proc)
  local code, out, err = server.run({ "ctl", "--admin", proc.admin, "show", "generations" }, nil, 35)
  assert.are.same({ 0, "" }, { code, err })
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  assert.are.equal("generation loaded state connections errors", lines[1])
  local rows, notes = {}, {}
  for i = 2, #lines do
    if lines[i]:sub(1, 1) == "#" then
      notes[#notes + 1] = lines[i]
    else
      local g, loaded, state, conns, errors = lines[i]:match("^(%d+) (%d+%-%d+%-%d+T[%d:]+Z) (%S+) (%-?%d+) (%d+)$")
      assert(g, "a row of show generations: " .. lines[i])
      rows[tonumber(g)] = { loaded = loaded, state = state, connections = tonumber(conns), errors = tonumber(errors) }
    end
  end
  return rows, notes
end

--- The value of `name{generation="G"}` in a /metrics body, or nil.
function M.metric(body, name, generation)
  local value = body:match("\n" .. name .. '{generation="' .. generation .. '"} (%S+)\n')
  return value and tonumber(value)
end

return M
