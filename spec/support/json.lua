--- A strict JSON decoder (RFC 8259) for specs of the JSON log lines: one
-- value and nothing after it (but whitespace), strings of valid UTF-8 with
-- no raw control characters, escapes checked (a \u surrogate must pair),
-- no duplicate keys in an object, numbers in JSON's grammar only. Raises
-- "json: <what> at byte N" on anything else. Objects become tables, arrays
-- lists, null becomes M.null.
-- @usage
--   local json = require "support.json"
--   local line = json.decode('{"level":"warn","n":3}')
local utf8_char, utf8_len = utf8.char, utf8.len
local byte, find, format, sub = string.byte, string.find, string.format, string.sub
local concat = table.concat
local error, tonumber = error, tonumber

local M = {}

--- What JSON's null decodes to.
M.null = setmetatable({}, { __name = "json.null", __tostring = function() return "null" end })

local function fail(what, i)
  error(format("json: %s at byte %d", what, i), 0)
end

local function skip_space(s, i)
  local _, e = find(s, "^[ \t\r\n]*", i)
  return e + 1
end

local value

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function hex4(s, i)
  local h = sub(s, i, i + 3)
  if not find(h, "^%x%x%x%x$") then fail("bad \\u escape", i) end
  return tonumber(h, 16)
end

local function string_at(s, i) -- s[i] is the opening quote
  local out, j = {}, i + 1
  while true do
    local run_end = find(s, '["\\%z\1-\31]', j)
    if not run_end then fail("unterminated string", i) end
    local run = sub(s, j, run_end - 1)
    if not utf8_len(run) then fail("invalid UTF-8 in a string", j) end
    out[#out + 1] = run
    local c = sub(s, run_end, run_end)
    if c == '"' then return concat(out), run_end + 1 end
    if c ~= "\\" then fail("raw control character in a string", run_end) end
    local e = sub(s, run_end + 1, run_end + 1)
    if ESCAPES[e] then
      out[#out + 1] = ESCAPES[e]
      j = run_end + 2
    elseif e == "u" then
      local cp = hex4(s, run_end + 2)
      j = run_end + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        if sub(s, j, j + 1) ~= "\\u" then fail("lone high surrogate", j) end
        local low = hex4(s, j + 2)
        if low < 0xDC00 or low > 0xDFFF then fail("bad low surrogate", j) end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
        j = j + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        fail("lone low surrogate", j - 6)
      end
      out[#out + 1] = utf8_char(cp)
    else
      fail("bad escape", run_end)
    end
  end
end

local function number_at(s, i)
  local _, e
  -- int: -? (0 | [1-9][0-9]*); frac: . [0-9]+; exp: [eE] [+-]? [0-9]+
  local j = i
  if sub(s, j, j) == "-" then j = j + 1 end
  if sub(s, j, j) == "0" then
    j = j + 1
  else
    _, e = find(s, "^[1-9]%d*", j)
    if not e then fail("bad number", j) end
    j = e + 1
  end
  if sub(s, j, j) == "." then
    _, e = find(s, "^%d+", j + 1)
    if not e then fail("bad fraction", j) end
    j = e + 1
  end
  if find(s, "^[eE]", j) then
    _, e = find(s, "^[+-]?%d+", j + 1)
    if not e then fail("bad exponent", j) end
    j = e + 1
  end
  return tonumber(sub(s, i, j - 1)), j
end

local function object_at(s, i)
  local obj, seen = {}, {}
  i = skip_space(s, i + 1)
  if sub(s, i, i) == "}" then return obj, i + 1 end
  while true do
    if sub(s, i, i) ~= '"' then fail("expected a key", i) end
    local key
    key, i = string_at(s, i)
    if seen[key] then fail("duplicate key '" .. key .. "'", i) end
    seen[key] = true
    i = skip_space(s, i)
    if sub(s, i, i) ~= ":" then fail("expected ':'", i) end
    obj[key], i = value(s, skip_space(s, i + 1))
    i = skip_space(s, i)
    local c = sub(s, i, i)
    if c == "}" then return obj, i + 1 end
    if c ~= "," then fail("expected ',' or '}'", i) end
    i = skip_space(s, i + 1)
  end
end

local function array_at(s, i)
  local arr = {}
  i = skip_space(s, i + 1)
  if sub(s, i, i) == "]" then return arr, i + 1 end
  while true do
    arr[#arr + 1], i = value(s, i)
    i = skip_space(s, i)
    local c = sub(s, i, i)
    if c == "]" then return arr, i + 1 end
    if c ~= "," then fail("expected ',' or ']'", i) end
    i = skip_space(s, i + 1)
  end
end

local LITERALS = { t = { "true", true }, f = { "false", false }, n = { "null", M.null } }

value = function(s, i)
  local c = sub(s, i, i)
  if c == "{" then return object_at(s, i) end
  if c == "[" then return array_at(s, i) end
  if c == '"' then return string_at(s, i) end
  local lit = LITERALS[c]
  if lit then
    if sub(s, i, i + #lit[1] - 1) ~= lit[1] then fail("bad literal", i) end
    return lit[2], i + #lit[1]
  end
  if c == "" then fail("unexpected end", i) end
  if byte(c) == 45 or find(c, "%d") then return number_at(s, i) end
  fail("unexpected character", i)
end

--- Decode the one JSON value in 's'; raises on anything but exactly one.
function M.decode(s)
  local v, i = value(s, skip_space(s, 1))
  i = skip_space(s, i)
  if i <= #s then fail("trailing characters", i) end
  return v
end

return M
