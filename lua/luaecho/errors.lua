--- Error values a luaecho script can test, shaped like asyncio's exceptions.
-- An error is a table with a `kind`, a `message` and any extra fields
-- (`partial`, `expected`, `consumed`, `reason`...). Raised with error(), it
-- survives pcall as the same table, and tostring() gives "kind: message".
-- @usage
--   local errors = require("luaecho.errors")
--   local ok, err = pcall(reader.readexactly, reader, 4)
--   if errors.is(err, "IncompleteReadError") then print(#err.partial) end
local pairs, setmetatable, getmetatable, type = pairs, setmetatable, getmetatable, type
local pcall, tostring = pcall, tostring

local M = {}

-- One metatable for every luaecho error: it is how errors.is() knows ours.
local Error = {}
Error.__index = Error
Error.__name = "luaecho.error"

function Error.__tostring(e)
  return e.kind .. ": " .. e.message
end

--- Make an error of 'kind' with a readable 'message' and optional 'fields'.
-- kind and message win over fields of the same name, so the shape holds.
function M.new(kind, message, fields)
  local e = {}
  if fields then
    for k, v in pairs(fields) do e[k] = v end
  end
  e.kind, e.message = kind, message
  return setmetatable(e, Error)
end

--- True when 'value' is a luaecho error, of 'kind' if one is given.
function M.is(value, kind)
  if type(value) ~= "table" or getmetatable(value) ~= Error then
    return false
  end
  return kind == nil or value.kind == kind
end

--- tostring(value) that never raises: an error path must finish its work
-- (log, abort the connection) whatever the error value's __tostring does.
function M.tostring(value)
  local ok, text = pcall(tostring, value)
  if ok and type(text) == "string" then return text end
  return "(error object is a " .. type(value) .. " value whose __tostring failed)"
end

return M
