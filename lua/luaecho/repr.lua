--- Bytes as a readable, quoted string: control and non-ASCII bytes
-- escaped, so one chunk is one log line whatever the peer sent (what
-- Python's print shows for b'hello\r\n').
-- @usage local repr = require "luaecho.repr"
--   print(repr("hi\r\n\0"))   --> "hi\r\n\x00"
local format, gsub = string.format, string.gsub

local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }

local function escape(c)
  return named[c] or format("\\x%02x", c:byte())
end

return function(data)
  return '"' .. gsub(data, '[%c"\\\128-\255]', escape) .. '"'
end
