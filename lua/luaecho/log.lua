--- Logging for luaecho's Lua libraries and scripts.
-- Inside the host, lines go to luaecho.core.log, which applies --log-level and
-- --log-format: "luaecho: <level>: ..." on stderr, or one JSON object a line.
-- Without the host (plain busted, plain lua) they go straight to io.stderr
-- in the text format. Specs capture lines by replacing log.sink with a
-- function(level, msg, fields).
-- Each function takes an optional table of fields, string or number values
-- under string keys: members of the JSON object (never replacing time,
-- level, msg or worker), or " key=value" after the text message (before a
-- traceback), sorted by key (a value that is empty or holds a space, '"',
-- '=' or a control character is quoted as a JSON string).
-- @usage
--   local log = require("luaecho.log")
--   log.warn("slow reader", { peer = peer, queued = n })
local package, require, io = package, require, io
local format, byte, find = string.format, string.byte, string.find
local concat, sort = table.concat, table.sort
local floor, huge, mtype = math.floor, math.huge, math.type
local error, ipairs, next, pairs, tonumber, type, utf8_len = error, ipairs, next, pairs, tonumber, type, utf8.len

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

--- Check 'fields' as the host does: nil, or a table of string or number
-- values under string keys. Raises "bad argument #i to 'fname' (...)";
-- 'level' is what error() would take in the function calling this one.
function M.check_fields(fields, i, fname, level)
  if fields == nil then return nil end
  local function bad(why) error(format("bad argument #%d to '%s' (%s)", i, fname, why), level + 2) end
  if type(fields) ~= "table" then bad("fields must be a table, not a " .. type(fields)) end
  for k, v in next, fields do
    if type(k) ~= "string" then bad("fields' keys must be strings, not a " .. type(k)) end
    if type(v) ~= "string" and type(v) ~= "number" then
      bad(format("field '%s' must be a string or a number, not a %s", k, type(v)))
    end
  end
  return fields
end

-- A number as the host writes it: an integer as one, else the first of
-- %.15g, %.16g and %.17g that reads back the same; null for NaN and
-- infinities (JSON has neither).
local function number_text(v)
  if mtype(v) == "integer" then return format("%d", v) end
  if v ~= v or v == huge or v == -huge then return "null" end
  if v == floor(v) and v < 1e15 and v > -1e15 then return format("%d", floor(v)) end
  local text
  for digits = 15, 17 do
    text = format("%." .. digits .. "g", v)
    if tonumber(text) == v then break end
  end
  return text
end

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" }

-- s as a JSON string, as the host writes one: control characters as
-- \u00XX, and each byte that is not valid UTF-8 as \ufffd.
local function json_string(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = byte(s, i)
    local ch = s:sub(i, i)
    if ESCAPES[ch] then
      out[#out + 1] = ESCAPES[ch]
      i = i + 1
    elseif c < 0x20 or c == 0x7f then
      out[#out + 1] = format("\\u%04x", c)
      i = i + 1
    elseif c < 0x80 then
      out[#out + 1] = ch
      i = i + 1
    else
      local len = c >= 0xf0 and 4 or c >= 0xe0 and 3 or 2
      if c >= 0xc2 and c <= 0xf4 and i + len - 1 <= n and utf8_len(s:sub(i, i + len - 1)) == 1 then
        out[#out + 1] = s:sub(i, i + len - 1)
        i = i + len
      else
        out[#out + 1] = "\\ufffd"
        i = i + 1
      end
    end
  end
  return '"' .. concat(out) .. '"'
end
M.json_string = json_string

--- The fields as the text format appends them: " k=v" for each, sorted by
-- key ("" for nil or none).
function M.text_fields(fields)
  if fields == nil then return "" end
  local keys = {}
  for k in pairs(fields) do keys[#keys + 1] = k end
  sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = fields[k]
    if type(v) == "number" then
      v = number_text(v)
    elseif v == "" or find(v, '[%z\1- "=\127]') then
      v = json_string(v)
    end
    out[#out + 1] = " " .. k .. "=" .. v
  end
  return concat(out)
end

--- A line's text as the host writes it: the fields appended to the
-- message, before its traceback if it has one ("\nstack traceback:...").
function M.text_line(msg, fields)
  if fields == nil or next(fields) == nil then return msg end
  local at = find(msg, "\nstack traceback:", 1, true)
  if at then return msg:sub(1, at - 1) .. M.text_fields(fields) .. msg:sub(at) end
  return msg .. M.text_fields(fields)
end

--- Default sink: the host's logger, else stderr.
function M.default_sink(level, msg, fields)
  local core = host_core()
  if core then
    core.log(level, msg, fields)
  elseif ranks[level] <= (ranks[M.level] or 3) then
    io.stderr:write("luaecho: ", labels[level], ": ", M.text_line(msg, fields), "\n")
  end
end

--- Where every line goes; specs may replace it with a
-- function(level, msg, fields), fields nil when the caller gave none.
M.sink = M.default_sink

-- Logging never raises, whatever 'msg' is (an error value with a
-- failing __tostring, on the path that reports it); fields of the wrong
-- kind do, naming the call.
local text = require("luaecho.errors").tostring

function M.error(msg, fields) M.sink("error", text(msg), M.check_fields(fields, 2, "error", 2)) end
function M.warn(msg, fields) M.sink("warn", text(msg), M.check_fields(fields, 2, "warn", 2)) end
function M.info(msg, fields) M.sink("info", text(msg), M.check_fields(fields, 2, "info", 2)) end
function M.debug(msg, fields) M.sink("debug", text(msg), M.check_fields(fields, 2, "debug", 2)) end

return M
