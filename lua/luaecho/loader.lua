--- How a handler script becomes a Protocol table: the one loader the host
-- and luaecho.testing's fake host share, so both accept and refuse the same
-- scripts with the same messages. The script runs in a fresh environment
-- (globals it sets stay in it; reading falls back to the real globals); a
-- function it returns is a streams handler, wrapped by luaecho.streams.
-- @usage
--   local loader = require("luaecho.loader")
--   local Protocol = loader.load_file("echo.lua")
local load, loadfile, setmetatable, type, error = load, loadfile, setmetatable, type, error
local _G, require, tostring = _G, require, tostring

local M = {}

-- A fresh _ENV whose reads fall back to the globals.
local function fresh_env()
  return setmetatable({}, { __index = _G })
end

local policies = { keep = true, upgrade = true, drain = true }

-- What the Protocol says should happen to connections of older
-- generations on a hot swap: checked here, so a bad value fails the load
-- (the old code keeps serving) with the same message under the fake.
local function check_reload_policy(protocol, name)
  local policy, timeout = protocol.reload_policy, protocol.drain_timeout
  if policy ~= nil and not policies[policy] then
    error(name .. ": Protocol.reload_policy must be \"keep\", \"upgrade\" or \"drain\", not "
      .. (type(policy) == "string" and ("\"" .. policy .. "\"") or tostring(policy)), 0)
  end
  if policy == "upgrade" and type(protocol.upgrade) ~= "function" then
    error(name .. ": Protocol.reload_policy is \"upgrade\" but Protocol.upgrade(instance) is not a function", 0)
  end
  if timeout ~= nil and policy ~= "drain" then
    error(name .. ": Protocol.drain_timeout is used only with reload_policy = \"drain\"", 0)
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout <= 0 or timeout > 86400) then
    error(name .. ": Protocol.drain_timeout must be a number of seconds above 0 and at most 86400, not "
      .. tostring(timeout), 0)
  end
  return protocol
end

-- Run the loaded chunk and turn what it returns into a Protocol table.
local function run(chunk, name)
  local result = chunk()
  local kind = type(result)
  if kind == "table" then return check_reload_policy(result, name) end
  if kind == "function" then
    local protocol = require("luaecho.streams").protocol(result)
    if type(protocol) ~= "table" then
      error(name .. ": luaecho.streams.protocol() did not return a table", 0)
    end
    return protocol
  end
  error(name .. ": the script must return a Protocol table or a streams handler function(reader, writer), not "
    .. kind, 0)
end

--- The Protocol table of the handler script at 'path' (text only, never
-- bytecode). Raises "path:line: message" for a script that does not load
-- or fails while it runs, or says what it returned instead.
function M.load_file(path)
  local chunk, err = loadfile(path, "t", fresh_env())
  if not chunk then error(err, 0) end
  return run(chunk, path)
end

--- The same for a script's text in memory; 'chunkname' names it in
-- messages as Lua does ("@path" for a file's text).
function M.load(source, chunkname)
  local chunk, err = load(source, chunkname, "t", fresh_env())
  if not chunk then error(err, 0) end
  return run(chunk, chunkname:sub(1, 1) == "@" and chunkname:sub(2) or chunkname)
end

return M
