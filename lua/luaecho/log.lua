--- Logging for luaecho's Lua libraries.
-- Inside the host, lines go to luaecho.core.log, which applies --log-level and
-- writes "luaecho: <level>: ..." on stderr. Without the host (plain busted,
-- plain lua) they go straight to io.stderr in the same format. Specs capture
-- lines by replacing log.sink with a function(level, msg).
-- @usage
--   local log = require("luaecho.log")
--   log.warn("slow reader on " .. peer)
local package, require, io = package, require, io

local M = {}

-- How the host spells each level on stderr ("warning", not "warn").
local labels = { error = "error", warn = "warning", info = "info", debug = "debug" }
local ranks = { error = 1, warn = 2, info = 3, debug = 4 }

--- Lowest level the stderr fallback writes (the host has its own --log-level).
M.level = "info"

-- The host's C module, if the host preloaded it; looked up on each line so
-- that requiring this module early never pins the fallback.
local function host_core()
  local core = package.loaded["luaecho.core"]
  if core == nil and package.preload["luaecho.core"] then
    core = require("luaecho.core")
  end
  return core
end

--- Default sink: the host's logger, else stderr.
function M.default_sink(level, msg)
  local core = host_core()
  if core then
    core.log(level, msg)
  elseif ranks[level] <= (ranks[M.level] or 3) then
    io.stderr:write("luaecho: ", labels[level], ": ", msg, "\n")
  end
end

--- Where every line goes; specs may replace it with a function(level, msg).
M.sink = M.default_sink

-- Logging never raises, whatever 'msg' is (an error value with a
-- failing __tostring, on the path that reports it).
local text = require("luaecho.errors").tostring

function M.error(msg) M.sink("error", text(msg)) end
function M.warn(msg) M.sink("warn", text(msg)) end
function M.info(msg) M.sink("info", text(msg)) end
function M.debug(msg) M.sink("debug", text(msg)) end

return M
