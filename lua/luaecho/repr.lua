--- Bytes as a readable, quoted string: control and non-ASCII bytes
-- escaped, so one chunk is one log line whatever the peer sent (what
-- Python's print shows for b'hello\r\n'). Past 'limit' bytes (default 200)
-- the rest is summed up as a count: a 64 KiB chunk makes a line to read,
-- not a screenful, and printing a flood stays cheap.
-- @usage local repr = require "luaecho.repr"
--   print(repr("hi\r\n\0"))                  --> "hi\r\n\x00"
--   print(repr(("x"):rep(1000), 4))          --> "xxxx"... (1000 bytes)
local char, format, gsub, sub = string.char, string.format, string.gsub, string.sub

local DEFAULT_LIMIT = 200

-- Every byte that needs escaping, with its escape: gsub with a table does
-- no Lua call per byte.
local escapes = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ['"'] = '\\"', ["\\"] = "\\\\" }
for byte = 0, 255 do
  local c = char(byte)
  if escapes[c] == nil and (byte < 32 or byte >= 127) then escapes[c] = format("\\x%02x", byte) end
end

local function quote(data)
  return '"' .. gsub(data, '[%c"\\\128-\255]', escapes) .. '"'
end

return function(data, limit)
  limit = limit or DEFAULT_LIMIT
  if #data <= limit then return quote(data) end
  return format("%s... (%d bytes)", quote(sub(data, 1, limit)), #data)
end
