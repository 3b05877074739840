--- luaecho replay DIR|FILE SCRIPT: every transcript `luaecho --record`
-- wrote, replayed against SCRIPT on luaecho.testing (no sockets, a
-- virtual clock): the same chunks of input at the same times, the same
-- peer and listener. What is compared: the output (every byte the script
-- wrote, concatenated: how writes are split may change) and whether the
-- script ended the connection itself, and how (close or abort). For each
-- connection that differs, the first difference is shown.
-- Relies on luaecho.transcript (the reader), luaecho.testing and
-- luaecho.repr; the C side (src/replay.c) gives list_dir and takes the
-- exit status main() returns: 0 all match, 1 any differs, 2 usage.
-- @usage
--   local replay = require "luaecho.replay"
--   local result = replay.connection(transcript, "handler.lua")
--   if not result.match then print(result.lines[1]) end
local transcript = require "luaecho.transcript"
local testing = require "luaecho.testing"
local repr = require "luaecho.repr"
local concat, sort = table.concat, table.sort
local floor = math.floor
local format, match, sub = string.format, string.match, string.sub
local clock, sethook = os.clock, debug.sethook
local error, io, ipairs, pcall, print, tonumber = error, io, ipairs, pcall, print, tonumber

local M = {}

--- Seconds of CPU one connection's replay may take before every further
-- call into the script fails (a loop that never ends must not hang a
-- --reload-check). $LUAECHO_REPLAY_CPU_LIMIT sets it for the command.
M.cpu_limit = tonumber(os.getenv("LUAECHO_REPLAY_CPU_LIMIT") or "") or 10

local HELP = [[
Usage: luaecho replay DIR|FILE SCRIPT

Replay the transcripts 'luaecho --record DIR' wrote (every *.rec file of
DIR, or one FILE) against SCRIPT, with luaecho.testing: no sockets, a
virtual clock moved by the recorded gaps, each recorded chunk of input
handed to data_received as it came, the recorded peer and listener.

For each connection it compares what SCRIPT writes with what was recorded:
the output bytes in order (concatenated: how the writes are split may
differ) and whether the script ended the connection itself (close, abort,
a failed callback) or left that to the peer. It prints one line per
connection, and for one that differs the first difference: the file,
the byte offset, the recorded and the replayed bytes (quoted), and the
input that came before. A transcript cut short (no end event) is compared
as far as it goes.

Each connection is replayed alone, on a fresh load of SCRIPT: what its
output owed to other connections (a chat room, a shared counter) shows
as a difference.

A connection whose replay spends more than 10 s of CPU in the script
($LUAECHO_REPLAY_CPU_LIMIT seconds, if set) differs: every later call
into the script fails, so a loop that never ends does not hang a check.

Exit status: 0 when every connection matches (or DIR holds none), 1 when one differs or
SCRIPT cannot load, 2 for a bad command line, a missing DIR or FILE, or a
file that is not a transcript.

Transcripts hold what clients sent: keep them as private as the traffic.

Example, before a hot swap:
  luaecho --reload-check 'luaecho replay /var/lib/luaecho/rec {script}' ...
]]

local function usage_error(fmt, ...)
  io.stderr:write("luaecho: replay: ", format(fmt, ...), "\nTry 'luaecho replay --help' for more information.\n")
  return 2
end

local function base_name(path)
  return match(path, "([^/]+)$") or path
end

-- Read one file: its bytes, or nil and why.
local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text, rerr = f:read("a")
  f:close()
  if text == nil then return nil, format("%s: %s", path, rerr or "cannot read") end
  return text
end

-- The transcripts to replay: the files of DIR ending in .rec, by name (so
-- by start time), or the one FILE. nil and an exit status when wrong.
local function transcripts(where, list_dir)
  local names, err, not_dir = list_dir(where)
  if names == nil and not not_dir then return nil, usage_error("%s", err) end
  local files = {}
  if names == nil then
    files[1] = where
  else
    sort(names)
    for _, name in ipairs(names) do files[#files + 1] = where .. "/" .. name end
  end
  local parsed = {}
  for i, path in ipairs(files) do
    local text, rerr = read_file(path)
    if text == nil then return nil, usage_error("cannot read %s", rerr) end
    local t, why = transcript.parse(text)
    if t == nil then return nil, usage_error("%s is not a transcript: %s", path, why) end
    t.file = base_name(path)
    parsed[i] = t
  end
  return parsed
end

-- How the fake peer connects: the recorded listener and peer.
local function connect_opts(t)
  local opts = { listener = t.listener ~= "" and t.listener or nil }
  if t.listener:match("^unix:") or t.listener:match("^tls:unix:") then return opts end
  local host, port = match(t.peer, "^%[(.*)%]:(%d+)$")
  if host == nil then host, port = match(t.peer, "^(.*):(%d+)$") end
  if host then opts.peername = { host, tonumber(port) } end
  return opts
end

-- How the script has ended the fake connection so far: "close", "abort" or nil.
local function script_end(conn)
  if not conn:closed() then return nil end
  return conn:aborted() and "abort" or "close"
end

-- Move the virtual clock to 'us' microseconds after the connection was made.
local function advance_to(us)
  local now = floor(testing.now() * 1000 + 0.5)
  local target = floor(us / 1000 + 0.5)
  if target > now then testing.advance((target - now) / 1000) end
end

-- From now on, Lua code past M.cpu_limit seconds of CPU raises, so each
-- callback that then runs fails, as a script timeout fails it in the
-- host. The command's C side gives M.limit_cpu, a C count hook every
-- coroutine inherits (streams handlers, tasks); without it (under
-- busted) a debug.sethook on the main thread stops Protocol callbacks only.
local function limit_cpu()
  if M.limit_cpu then return M.limit_cpu(M.cpu_limit) end
  local deadline = clock() + M.cpu_limit
  sethook(function()
    if clock() > deadline then
      error("luaecho replay: the script ran past its CPU limit on this connection", 2)
    end
  end, "", 10000)
end

-- Lift the limit once a connection's replay is over.
local function unlimit_cpu()
  if M.limit_cpu then return M.limit_cpu(0) end
  sethook()
end

-- Feed the recorded peer's side of transcript 't' to a fresh fake
-- connection to 'script'; returns the output and how the script ended it.
local function run(t, script)
  testing.reset()
  testing.expect_errors()
  limit_cpu()
  local conn = testing.serve(script):connect(connect_opts(t))
  local got, ended = {}, nil
  for _, ev in ipairs(t.events) do
    if ev.name == "in" or ev.name == "eof" or ev.name == "end" then
      advance_to(ev.t)
      ended = ended or script_end(conn)
      local open = not conn:closed()
      if ev.name == "in" and open then conn:send(ev.data, #ev.data > 0 and #ev.data or nil) end
      if ev.name == "eof" and open then conn:eof() end
      if ev.name == "end" and open and match(ev.data, "^peer") and not match(ev.data, "^peer clean") then
        got[#got + 1] = conn:output()
        conn:reset() -- from here on the connection's end is the peer's doing
        ended = ended or "peer"
      end
    end
    got[#got + 1] = conn:output()
  end
  ended = ended or script_end(conn)
  if ended == "peer" then ended = nil end
  got[#got + 1] = conn:output()
  return concat(got), ended, conn:errors()
end

-- Where the recorded output first differs: the out event holding byte
-- 'offset' (0-based), its time, and the input just before it.
local function context_of(t, offset)
  local seen, inputs, last_in = 0, 0, nil
  for _, ev in ipairs(t.events) do
    if ev.name == "in" then inputs, last_in = inputs + 1, ev.data end
    if ev.name == "out" then
      if seen + #ev.data > offset then return ev.t, inputs, last_in end
      seen = seen + #ev.data
    end
  end
  return t.events[#t.events] and t.events[#t.events].t or 0, inputs, last_in
end

local WINDOW = 40

-- The lines describing the first differing byte of 'expected' and 'got'.
local function output_diff(t, expected, got)
  local n = #expected < #got and #expected or #got
  local offset = n
  for i = 1, n do
    if sub(expected, i, i) ~= sub(got, i, i) then offset = i - 1; break end
  end
  local at, inputs, last_in = context_of(t, offset)
  local lines = {
    format("DIFF %s: output differs at byte %d (recorded %.3f s into the connection, after input %d)", t.file,
      offset, at / 1e6, inputs),
  }
  if last_in then lines[#lines + 1] = format("  input %d:  %s", inputs, repr(last_in, WINDOW)) end
  if offset > 0 then
    lines[#lines + 1] = format("  same before: %s", repr(sub(expected, offset > 20 and offset - 19 or 1, offset)))
  end
  local function shown(s)
    if offset >= #s then return "(nothing more)" end
    return repr(sub(s, offset + 1, offset + WINDOW)) .. (#s > offset + WINDOW and " ..." or "")
  end
  lines[#lines + 1] = format("  expected: %s", shown(expected))
  lines[#lines + 1] = format("  got:      %s", shown(got))
  return lines
end

local function describe_end(how)
  if how == "close" then return "closed it" end
  if how == "abort" then return "aborted it" end
  return "left it to the peer"
end

--- Replay transcript 't' (luaecho.transcript.parse's table, with .file)
-- against 'script'. Returns { match = bool, lines = {...} }: one line for a
-- match, the first difference for a mismatch.
function M.connection(t, script)
  if t.header_cut then
    return { match = true, lines = { format("skip %s: cut short before its header was whole, nothing to replay",
      t.file) } }
  end
  local expected, expected_end = transcript.expected(t)
  local ok, got, got_end, errors = pcall(run, t, script)
  unlimit_cpu()
  if not ok then
    return { match = false, lines = { format("DIFF %s: the replay failed: %s", t.file, got) } }
  end
  if not t.complete then
    got = sub(got, 1, #expected) -- cut short: compare as far as it goes
    got_end = expected_end
  end
  local lines
  if got ~= expected then
    lines = output_diff(t, expected, got)
  elseif got_end ~= expected_end then
    lines = { format("DIFF %s: the script %s when recorded, and %s when replayed", t.file,
      describe_end(expected_end), describe_end(got_end)) }
  else
    return { match = true, lines = { format("ok   %s: %d bytes out%s", t.file, #expected,
      t.complete and "" or " (cut short: compared as far as recorded)") } }
  end
  for i, err in ipairs(errors) do
    if i > 3 then break end
    lines[#lines + 1] = "  the script failed: " .. err
  end
  return { match = false, lines = lines }
end

--- The command: main("DIR|FILE", "SCRIPT") with list_dir given by the C
-- side as M.list_dir. Returns the exit status.
function M.main(...)
  local args = { ... }
  if args[1] == "--help" or args[1] == "-h" then
    io.stdout:write(HELP)
    return 0
  end
  if #args ~= 2 or match(args[1], "^%-") or match(args[2], "^%-") then
    return usage_error("give a DIR (or one FILE) of transcripts and a SCRIPT")
  end
  local where, script = args[1], args[2]
  local f = io.open(script, "r")
  if f == nil then return usage_error("cannot read SCRIPT %s", script) end
  f:close()
  local list, status = transcripts(where, M.list_dir)
  if list == nil then return status end
  if #list == 0 then
    print(format("no transcripts (*.rec) in %s: nothing to compare", where))
    return 0
  end
  local ok, err = pcall(testing.load, script)
  if not ok then
    io.stderr:write("luaecho: replay: ", script, " cannot load: ", err, "\n")
    return 1
  end
  local differ = 0
  for _, t in ipairs(list) do
    local result = M.connection(t, script)
    if not result.match then differ = differ + 1 end
    for _, line in ipairs(result.lines) do print(line) end
  end
  print(format("%d of %d connections match %s", #list - differ, #list, script))
  return differ == 0 and 0 or 1
end

return M
