--- Finding and loading scripts for luaecho.testing the host's way: a
-- script given by a name under the bundled lua/ directory is found there,
-- its own directory comes first in package.path, and a handler script is
-- made a Protocol table by luaecho.loader, the host's own loader (same
-- rules, same messages). testing.reset() takes the added directories
-- off package.path again.
-- Relies on luaecho.testing.world, .report, luaecho.loader and
-- luaecho.streams.
-- @usage
--   local scripts = require "luaecho.testing.scripts"
--   local Protocol, path = scripts.protocol("examples/plain_echo.lua", 2)
local world = require "luaecho.testing.world"
local report = require "luaecho.testing.report"
local loader = require "luaecho.loader"
local streams = require "luaecho.streams"
local sub, find = string.sub, string.find
local getinfo = debug.getinfo
local error, ipairs, loadfile, setmetatable, type = error, ipairs, loadfile, setmetatable, type
local io, package, G = io, package, _G

local W = world.W

local M = {}

-- The bundled lua/ directory: where this file lives, two levels up.
local BUNDLED = (getinfo(1, "S").source:match("^@(.*)/luaecho/testing/scripts%.lua$"))

local function readable(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

--- 'path' as the host finds it: as given, else under the bundled lua/.
function M.path(path)
  if readable(path) or sub(path, 1, 1) == "/" or not BUNDLED then return path end
  local bundled = BUNDLED .. "/" .. path
  return readable(bundled) and bundled or path
end

--- Modules next to the script come first in package.path, as in the host.
function M.add_dir(path)
  local dir = path:match("^(.*)/[^/]*$") or "."
  local prefix = dir .. "/?.lua;" .. dir .. "/?/init.lua;"
  if sub(package.path, 1, #prefix) == prefix then return end
  package.path = prefix .. package.path
  W.added_paths[#W.added_paths + 1] = prefix
end

--- Take the directories add_dir added off package.path again.
function M.remove_dirs()
  for _, prefix in ipairs(W.added_paths) do
    local i = find(package.path, prefix, 1, true)
    if i then package.path = sub(package.path, 1, i - 1) .. sub(package.path, i + #prefix) end
  end
  W.added_paths = {}
end

-- The handler script at 'path' through the host's loader, as handler
-- code of 'owner' (its prints are the owner's); raises "cannot load
-- script: ..." as the host reports it, 'level' above the caller.
local function load_handler(path, level, owner)
  M.add_dir(path)
  local ok, result = report.call_as(owner, loader.load_file, path)
  if not ok then error("cannot load script: " .. result.message, level + 1) end
  return result
end

--- A Protocol table from a path, a Protocol table or a streams function,
-- and the path it was loaded from; errors blame 'level' above the caller.
function M.protocol(script, level, owner)
  local kind = type(script)
  if kind == "table" then return script end
  if kind == "function" then return streams.protocol(script) end
  if kind ~= "string" then
    error("luaecho.testing: a script is a path, a Protocol table or a streams function(reader, writer), not a "
      .. kind, level + 1)
  end
  local path = M.path(script)
  return load_handler(path, level + 1, owner), path
end

--- The main chunk of a `luaecho run` program at 'path', with 'arg' set in
-- an environment of its own (the host's loads it in text mode too);
-- errors blame 'level' above the caller.
function M.program(path, arg, level)
  local chunk, err = loadfile(path, "t", setmetatable({ arg = arg }, { __index = G }))
  if not chunk then error("cannot load script: " .. err, level + 1) end
  M.add_dir(path)
  return chunk
end

return M
