--- How a handler script becomes a Protocol table: the one loader the host
-- and luaecho.testing's fake host share, so both accept and refuse the same
-- scripts with the same messages. The script runs in a fresh environment
-- (globals it sets stay in it; reading falls back to the real globals); a
-- function it returns is a streams handler, wrapped by luaecho.streams.
-- @usage
--   local loader = require("luaecho.loader")
--   local Protocol = loader.load_file("echo.lua")
local load, loadfile, setmetatable, type, error = load, loadfile, setmetatable, type, error
local _G, require = _G, require

local M = {}

-- A fresh _ENV whose reads fall back to the globals.
local function fresh_env()
  return setmetatable({}, { __index = _G })
end

-- Run the loaded chunk and turn what it returns into a Protocol table.
local function run(chunk, name)
  local result = chunk()
  local kind = type(result)
  if kind == "table" then return result end
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
