--- What handler code leaves behind under luaecho.testing's fake host: its
-- log lines, charged to whoever runs (a connection, a server, a program);
-- its prints; its errors, worded as the host's message handler words them.
-- call_as() is the one way the fake runs handler code.
-- An error-level line also waits in W.unexpected until the spec next
-- talks to the fake (luaecho.testing.clock's settle raises it), unless
-- the spec said testing.expect_errors().
-- Relies on luaecho.testing.world.
-- @usage
--   local report = require "luaecho.testing.report"
--   local ok, err = report.call_as(owner, handler.data_received, inst, data)
--   if not ok then report.log(owner, "error", err.traceback) end
local world = require "luaecho.testing.world"
local log = require "luaecho.log"
local concat, pack, unpack = table.concat, table.pack, table.unpack
local format, sub, find, gmatch = string.format, string.sub, string.find, string.gmatch
local traceback, getmetatable_raw, getinfo = debug.traceback, debug.getmetatable, debug.getinfo
local error, pcall, xpcall, select, tostring, type, rawset, rawget =
  error, pcall, xpcall, select, tostring, type, rawset, rawget
local io, G = io, _G

local W = world.W

local M = {}

--- Verbose mode: also echo printed lines and log lines as they happen.
M.verbose = false

--- How the host starts each level's line on stderr.
M.LOG_PREFIX = { error = "luaecho: error: ", warn = "luaecho: warning: ", info = "luaecho: ",
  debug = "luaecho: debug: " }

-- The first part of a logged message, before its traceback.
local function headline(msg)
  local i = find(msg, "\nstack traceback:", 1, true)
  return i and sub(msg, 1, i - 1) or msg
end

--- A log line from the fake host, charged to 'owner', with a script's
-- fields (luaecho.log's; nil: none).
function M.log(owner, level, msg, fields)
  world.record(owner, "logs", { level = level, message = msg, fields = fields })
  if level == "error" then
    world.record(owner, "errors", headline(msg))
    if not W.expect_errors then W.unexpected[#W.unexpected + 1] = msg end
  end
  if M.verbose then io.stderr:write(M.LOG_PREFIX[level], log.text_line(msg, fields), "\n") end
end

--- A limit's log line, as the host writes it (src/log.c): at most one a
-- second (of virtual time) per kind, saying how many were held back since.
function M.log_limited(owner, kind, level, msg)
  local rate = W.rates[kind]
  if rate == nil then
    rate = { held = 0 }
    W.rates[kind] = rate
  end
  if rate.last and W.now - rate.last < 1000 then
    rate.held = rate.held + 1
    return
  end
  if rate.held > 0 then msg = format("%s (%d more like this since the last such line)", msg, rate.held) end
  rate.last, rate.held = W.now, 0
  M.log(owner, level, msg)
end

local UNEXPECTED = "luaecho.testing: an error the spec does not expect (testing.expect_errors() "
  .. "declares them):\n"

-- The level, as error() in raise_unexpected takes it, of the spec's own
-- call into the fake: the first Lua function outside luaecho.testing.
local function spec_level()
  local level = 3
  while true do
    local info = getinfo(level, "S")
    if info == nil then return 0 end
    if info.what ~= "C" and not find(info.source, "luaecho/testing[/.]") then return level - 1 end
    level = level + 1
  end
end

-- The message of a logged error, its traceback cut where the fake host's
-- own frames begin: what is left is the handler's part (the whole of it
-- stays in testing.logs()).
local function handler_part(msg)
  local i = find(msg, "\n[^\n]*luaecho/testing/[^\n]*", 1)
  if i == nil then return msg end
  local head = sub(msg, 1, i - 1):gsub("\n\t%[C%]: in function 'xpcall'$", "")
  return head .. "\n\t(luaecho.testing's frames: see testing.logs())"
end

--- Raise the first error logged since the spec last talked to the fake,
-- with its traceback, unless the spec expects errors; the message says
-- where the spec was. Raised once.
function M.raise_unexpected()
  local first, n = W.unexpected[1], #W.unexpected
  if first == nil then return end
  W.unexpected = {}
  local more = n > 1 and format("\n(and %d more error(s) after it: see testing.logs())", n - 1) or ""
  error(UNEXPECTED .. handler_part(first) .. more, spec_level())
end

-- print() while handler code runs: each line goes to whoever runs.
local function capture(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  local text = concat(parts, "\t")
  for line in gmatch(text .. "\n", "([^\n]*)\n") do world.record(W.owner, "printed", line) end
  if M.verbose then io.stdout:write(text, "\n") end
end

-- The error value as text, as the host's message handler words it
-- (src/runtime.c error_text): strings and numbers as they are, else
-- __tostring's answer, else what kind of value it is.
local function error_text(e)
  local kind = type(e)
  if kind == "string" or kind == "number" then return tostring(e) end
  local mt = getmetatable_raw(e)
  local ts = type(mt) == "table" and rawget(mt, "__tostring")
  if not ts then return format("(error object is a %s value)", kind) end
  local ok, s = pcall(ts, e)
  if ok and type(s) == "string" then return s end
  return format("(error object is a %s value whose __tostring failed)", kind)
end

-- The message handler: the error's text, its traceback and the value.
local function catch(e)
  local msg = error_text(e)
  return { message = msg, traceback = traceback(msg, 2), value = e }
end

--- Run fn(...) as handler code of 'owner': print is captured, errors are
-- caught. Returns true, results or false, { message, traceback, value }.
function M.call_as(owner, fn, ...)
  local previous = W.owner
  local saved = rawget(G, "print")
  local swap = saved ~= capture
  if swap then rawset(G, "print", capture) end
  W.owner = owner
  local results = pack(xpcall(fn, catch, ...))
  W.owner = previous
  if swap then rawset(G, "print", saved) end
  return unpack(results, 1, results.n)
end

--- Call a host-to-script callback as the host does: protected, a failure
-- logged as "<what> failed: <traceback>".
function M.callback(owner, what, fn, ...)
  local ok, err = M.call_as(owner, fn, ...)
  if not ok then M.log(owner, "error", what .. " failed: " .. err.traceback) end
end

return M
