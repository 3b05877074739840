--- Argument checks for luaecho.testing's fake host objects (transport,
-- timer, server, luaecho.core), raising the messages the C host's
-- luaL_check* calls raise, so a script sees the same error either way.
-- 'level' is what error() would take in the function doing the check:
-- 2 blames the caller of that function.
-- @usage
--   local args = require "luaecho.testing.args"
--   local n = args.integer(v, 1, "set_write_buffer_limits", 2)
local getmetatable_raw = debug.getmetatable
local format = string.format
local tointeger = math.tointeger
local error, rawget, tonumber, tostring, type = error, rawget, tonumber, tostring, type

local M = {}

--- The type name luaL_typeerror would use: __name, else the basic type.
function M.typename(v)
  local mt = getmetatable_raw(v)
  local name = type(mt) == "table" and rawget(mt, "__name")
  if type(name) == "string" then return name end
  return type(v)
end

--- Raise "bad argument #i to 'fname' (why)".
function M.bad(i, fname, why, level)
  error(format("bad argument #%d to '%s' (%s)", i, fname, why), level + 1)
end

--- Raise luaL_typeerror's "bad argument #i to 'fname' (T expected, got U)".
function M.expected(i, fname, what, v, level)
  M.bad(i, fname, format("%s expected, got %s", what, M.typename(v)), level + 1)
end

-- A number or a numeric string, as tonumber reads it; nil for anything else.
local function number_of(v)
  if type(v) ~= "number" and type(v) ~= "string" then return nil end
  return tonumber(v)
end

--- luaL_checknumber.
function M.number(v, i, fname, level)
  local n = number_of(v)
  if n == nil then M.expected(i, fname, "number", v, level + 1) end
  return n
end

--- luaL_checkinteger.
function M.integer(v, i, fname, level)
  local int = tointeger(M.number(v, i, fname, level + 1))
  if int == nil then M.bad(i, fname, "number has no integer representation", level + 1) end
  return int
end

--- luaL_optinteger, with nil for an absent argument.
function M.opt_integer(v, i, fname, level)
  if v == nil then return nil end
  return M.integer(v, i, fname, level + 1)
end

--- luaL_checkstring: a string, or a number as a string.
function M.string(v, i, fname, level)
  if type(v) ~= "string" and type(v) ~= "number" then M.expected(i, fname, "string", v, level + 1) end
  return tostring(v)
end

--- luaL_checktype(L, i, LUA_TFUNCTION).
function M.fn(v, i, fname, level)
  if type(v) ~= "function" then M.expected(i, fname, "function", v, level + 1) end
  return v
end

return M
