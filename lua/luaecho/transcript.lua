--- Transcripts `luaecho --record DIR` writes, read back (pure: bytes in,
-- a table out). The format, version 1 (docs/deploying.md):
-- the line "luaecho-record 1", then events, each "NAME TIME LENGTH\n",
-- LENGTH bytes, "\n"; TIME in microseconds since the connection was made.
-- The header's fields come first, as events at time 0: listener, peer,
-- script, generation, worker, start. Then: in (bytes data_received got),
-- out (bytes the script wrote), eof (the peer half-closed), write_eof,
-- close and abort (the script ended the connection; abort's bytes are the
-- error of a failed callback, if that was why), and last end ("WHO
-- REASON[: ERROR]"). A file without end was cut short: the server stopped
-- first, a write failed, or --record-max left no room.
-- Rule: version 1 is read strictly (another version, an unknown event, a
-- header out of order: refused), so a change of format is a new version.
-- @usage
--   local transcript = require "luaecho.transcript"
--   local t = assert(transcript.parse(text, "a.rec"))
--   for _, ev in ipairs(t.events) do print(ev.name, ev.t, #ev.data) end
local find, format, match, sub = string.find, string.format, string.match, string.sub
local tonumber = tonumber

local M = {}

M.MAGIC = "luaecho-record"
M.VERSION = 1

local HEADER = { "listener", "peer", "script", "generation", "worker", "start" }
local EVENTS = { ["in"] = true, out = true, eof = true, write_eof = true, close = true, abort = true, ["end"] = true }
local IS_HEADER = {}
for _, name in ipairs(HEADER) do IS_HEADER[name] = true end

-- The first line: the format and its version, or nil and why not (and
-- true when the file ends inside the line: cut short, not malformed).
local function check_magic(text)
  local line = M.MAGIC .. " " .. M.VERSION .. "\n"
  if #text < #line and sub(line, 1, #text) == text then return nil, "cut short in its first line", true end
  local magic, version, nxt = match(text, "^([%w%-]+) (%d+)\n()")
  if magic ~= M.MAGIC then
    return nil, format("it does not start with %q (not a transcript luaecho --record wrote)", M.MAGIC .. " 1")
  end
  if tonumber(version) ~= M.VERSION then
    return nil, format("format version %s, and this luaecho reads version %d", version, M.VERSION)
  end
  return nxt
end

-- The event at 'i': name, time, data, next index; or nil, why, cut (the
-- file ends inside the event: it was cut short, not malformed).
local function read_event(text, i)
  local name, t, len, body = match(text, "^([%l_]+) (%d+) (%d+)\n()", i)
  if name == nil then
    local line_end = find(text, "\n", i, true)
    if line_end == nil and #text - i < 64 then return nil, "the last event's line is cut short", true end
    return nil, format("byte %d: expected an event (\"NAME TIME LENGTH\"), found %q", i - 1,
      sub(text, i, (line_end or i + 40) - 1))
  end
  len = tonumber(len)
  if body + len > #text then return nil, format("the %s event at byte %d is cut short", name, i - 1), true end
  if sub(text, body + len, body + len) ~= "\n" then
    return nil, format("byte %d: the %s event's %d bytes are not followed by a newline", body + len - 1, name, len)
  end
  return name, tonumber(t), sub(text, body, body + len - 1), body + len + 1
end

-- The header's fields into t, from the events that open the file.
local function read_header(t, text, i)
  for _, field in ipairs(HEADER) do
    local name, _, data, nxt = read_event(text, i)
    if name == nil and data then return nil, "cut short in its header", true end
    if name ~= field then
      return nil, format("the header's %s field is missing (found %s)", field, name and ("a " .. name .. " event")
        or _)
    end
    t[field] = data
    i = nxt
  end
  t.generation = tonumber(t.generation)
  t.worker = tonumber(t.worker)
  return i
end

--- Parse a transcript's bytes. Returns the table { listener, peer,
-- script, generation, worker, start, events = {{name =, t =, data =}},
-- complete = (an end event closes it), ending = its end text or nil }, or
-- nil and one line saying what is wrong. A file cut short before its
-- header was whole (an empty one too) gives { header_cut = true,
-- events = {}, complete = false }: nothing to replay, and nothing wrong.
function M.parse(text)
  local header_cut = { version = M.VERSION, events = {}, complete = false, header_cut = true }
  local i, why, cut = check_magic(text)
  if i == nil then
    if cut then return header_cut end
    return nil, why
  end
  local t = { version = M.VERSION, events = {}, complete = false }
  i, why, cut = read_header(t, text, i)
  if i == nil then
    if cut then return header_cut end
    return nil, why
  end
  while i <= #text do
    if t.complete then return nil, format("byte %d: events after the end event", i - 1) end
    local name, time, data, nxt = read_event(text, i)
    if name == nil then
      if data then break end -- cut short while it was written: keep what came whole
      return nil, time
    end
    if not EVENTS[name] then
      return nil, format("byte %d: unknown event %q%s", i - 1, name, IS_HEADER[name] and " after the header" or "")
    end
    t.events[#t.events + 1] = { name = name, t = time, data = data }
    if name == "end" then t.complete, t.ending = true, data end
    i = nxt
  end
  return t
end

--- What the recording says the script did: its output (every out event's
-- bytes, in order) and how it ended the connection itself ("close",
-- "abort", or nil when the peer or the host ended it).
function M.expected(t)
  local out, ended = {}, nil
  for _, ev in ipairs(t.events) do
    if ev.name == "out" then out[#out + 1] = ev.data end
    if (ev.name == "close" or ev.name == "abort") and ended == nil then ended = ev.name end
  end
  return table.concat(out), ended
end

return M
