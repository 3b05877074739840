--- luaecho.telnet: serve people at a telnet client (or plain nc).
-- Puts together the NVT byte codec (luaecho.telnet.codec), RFC 1143 option
-- negotiation (luaecho.telnet.options) and the line editor
-- (luaecho.telnet.editor) behind one session object, in both of luaecho's
-- handler styles:
--   telnet.protocol(Handler, opts)  -> a Protocol table the host serves;
--                                      Handler gets line_received(line),
--                                      key_received(key), interrupt(),
--                                      eof(), window_resized(w, h) ...
--   telnet.wrap(reader, writer, opts) -> a session with readline() for a
--                                      streams handler function(reader, writer)
-- At start the server asks DO NAWS and DO TTYPE (then IAC SB TTYPE SEND
-- once the client agrees); "character" and "keys" modes also say WILL
-- ECHO, WILL SGA and DO SGA; opts.binary offers BINARY both ways. Bytes
-- that are not telnet pass through, so nc works (line mode).
-- Output: session:write(text) doubles 0xFF (also in BINARY mode, as RFC 856
-- wants) and, unless we send in BINARY, turns a lone "\n" into "\r\n" and a
-- lone "\r" into "\r\0" (NVT line ends, RFC 854). Text with none of these
-- three bytes, or already in NVT form, goes to the transport as it is,
-- never copied; received bytes with no 0xFF skip the codec.
-- Beside the contract: session:get_write_buffer_size(), is_writing_paused(),
-- is_closing(), abort(), option(side, option), redraw(), partial_line(),
-- get_extra_info(); Handler's pause_writing(), resume_writing(),
-- line_too_long(dropped), terminal_type_received(name), upgrade(handler);
-- wrap's readkey().
-- @usage
--   local telnet = require "luaecho.telnet"
--   local Echo = {}
--   function Echo:connection_made(session)
--     self.session = session
--     session:prompt("> ")
--   end
--   function Echo:line_received(line)
--     self.session:write("echo:" .. line .. "\n")
--     self.session:prompt("> ")
--   end
--   return telnet.protocol(Echo, { mode = "character" })
local codec = require "luaecho.telnet.codec"
local options = require "luaecho.telnet.options"
local editor = require "luaecho.telnet.editor"
local byte, find, gsub, sub = string.byte, string.find, string.gsub, string.sub
local error, pairs, setmetatable, tostring, type = error, pairs, setmetatable, tostring, type

local M = {}

local IAC = "\255"
local ECHO, SGA, BINARY, NAWS, TTYPE = codec.ECHO, codec.SGA, codec.BINARY, codec.NAWS, codec.TTYPE
local CMD_IP, CMD_EOF, CMD_AYT = codec.IP, codec.EOF, codec.AYT

--- What a session answers to IAC AYT (are you there).
M.AYT_ANSWER = "[yes]\r\n"

local MODES = { line = true, character = true, keys = true }
local POLICIES = { error = true, discard = true, split = true }

-- opts checked, with defaults: mode, max_line, policy, binary,
-- max_subnegotiation. Errors blame 'level' above the caller.
local function check_opts(opts, who, level)
  if opts ~= nil and type(opts) ~= "table" then error(who .. ": opts must be a table", level + 1) end
  opts = opts or {}
  local mode = opts.mode or "line"
  if not MODES[mode] then
    error(who .. ": opts.mode must be \"line\", \"character\" or \"keys\", not " .. tostring(mode), level + 1)
  end
  local max_line = opts.max_line or 4096
  if math.type(max_line) ~= "integer" or max_line < 1 then
    error(who .. ": opts.max_line must be a positive integer", level + 1)
  end
  local policy = opts.policy or "error"
  if not POLICIES[policy] then
    error(who .. ": opts.policy must be \"error\", \"discard\" or \"split\", not " .. tostring(policy), level + 1)
  end
  return {
    mode = mode, max_line = max_line, policy = policy, binary = opts.binary == true,
    max_subnegotiation = opts.max_subnegotiation or 1024,
  }
end

------------------------------------------------------------------------------
-- Output: NVT conversion.

local NVT = { ["\r"] = "\r\0", ["\n"] = "\r\n", ["\255"] = "\255\255" }

-- 'text' as it goes on the wire: 0xFF doubled; unless 'binary', "\r\n"
-- kept, a lone "\n" sent as "\r\n" and a lone "\r" as "\r\0". Returns
-- 'text' itself when nothing changes.
local function to_wire(text, binary)
  if binary then
    if not find(text, IAC, 1, true) then return text end
    return (gsub(text, IAC, "\255\255"))
  end
  if not find(text, "[\r\n\255]") then return text end
  local has_cr, has_iac = find(text, "\r", 1, true), find(text, IAC, 1, true)
  if not has_cr and not has_iac then return (gsub(text, "\n", "\r\n")) end -- the usual "...\n": one pass
  if not has_iac and not find(text, "\r[^\n]") and not find(text, "[^\r]\n")
    and byte(text, 1) ~= 10 and byte(text, -1) ~= 13 then
    return text -- already NVT: every "\r" is followed by "\n", every "\n" follows "\r"
  end
  if find(text, "\r\n", 1, true) then text = gsub(text, "\r\n", "\n") end
  return (gsub(text, "[\r\n\255]", NVT))
end
M.to_wire = to_wire

------------------------------------------------------------------------------
-- Session: one connection's telnet state. It writes through 'out' (a
-- transport or a streams writer: anything with write(bytes)) and reports
-- what the user did to 'sink' (a table of functions, see below).

local Session = {}
Session.__index = Session

-- The option sets handed to luaecho.telnet.options (which copies them):
-- what we agree to do (us) and let the client do (him) in 'mode'. A later
-- set_mode() asks and stops asking itself (see Session:set_mode).
local function wanted(mode, binary)
  local chars = mode ~= "line" or nil
  return { [ECHO] = chars, [SGA] = chars, [BINARY] = binary or nil },
    { [NAWS] = true, [TTYPE] = true, [SGA] = chars, [BINARY] = binary or nil }
end

-- Send raw bytes (already on the wire format). While a batch is open
-- (start-up negotiation) they are collected and sent in one write.
local function send_raw(s, bytes)
  if s.batch then
    s.batch[#s.batch + 1] = bytes
    return
  end
  if s.closed or s.out_closing(s) then return end
  s.out:write(bytes)
end

-- An option settled on or off.
local function option_changed(s, side, option, enabled)
  if side == "him" then
    if option == TTYPE and enabled and not s.ttype_asked then
      s.ttype_asked = true
      send_raw(s, codec.ttype_send())
    end
  else
    if option == BINARY then
      s.binary_out = enabled
    elseif option == ECHO then
      s.echoing = enabled
      -- a session switched back to line mode does not echo: the client must
      if enabled and s.current_mode == "line" then s.q:disable("us", ECHO) end
    end
  end
end

-- A new session. 'out' has write(); 'closing(s)' says whether the output
-- is closing; 'sink' gets line/key/interrupt/eof/too_long/resized/ttype.
local function new_session(opts, out, closing, sink)
  local s = setmetatable({
    opts = opts, out = out, out_closing = closing, sink = sink,
    current_mode = opts.mode, prompt_text = nil,
    width = nil, height = nil, ttype = nil, ttype_asked = false,
    binary_out = false, echoing = false,
    plain = true,        -- no 0xFF received yet: bytes skip the codec
    closed = false, write_paused = false,
  }, Session)
  local us, him = wanted(opts.mode, opts.binary)
  s.parser = codec.new({ max_subnegotiation = opts.max_subnegotiation })
  s.q = options.new({
    us = us, him = him,
    send = function(bytes) send_raw(s, bytes) end,
    changed = function(side, option, enabled) option_changed(s, side, option, enabled) end,
  })
  s.editor = editor.new({
    mode = opts.mode, max_line = opts.max_line, policy = opts.policy,
    -- what the user typed, shown back only once the client let us echo
    -- (a plain nc in cooked mode echoes by itself)
    echo = function(bytes)
      if s.echoing then send_raw(s, to_wire(bytes, true)) end
    end,
  })
  return s
end

-- The negotiation a new connection starts with, in one write.
local function start(s)
  local q = s.q
  s.batch = {}
  q:enable("him", NAWS)
  q:enable("him", TTYPE)
  if s.current_mode ~= "line" then
    q:enable("us", ECHO)
    q:enable("us", SGA)
    q:enable("him", SGA)
  end
  if s.opts.binary then
    q:enable("us", BINARY)
    q:enable("him", BINARY)
  end
  local batch = s.batch
  s.batch = nil
  if #batch > 0 then send_raw(s, table.concat(batch)) end
end

-- Editor events to the sink.
local function edited(s, events)
  local sink = s.sink
  for i = 1, #events do
    local e = events[i]
    local kind = e.kind
    if kind == "line" then
      sink.line(e.line)
    elseif kind == "key" then
      sink.key(e.key)
    elseif kind == "interrupt" then
      sink.interrupt()
    elseif kind == "eof" then
      sink.eof()
    elseif kind == "too_long" then
      sink.too_long(e.dropped)
    end
    if s.closed then return end
  end
end

-- Data for the editor. In character mode, while we echo, the echo is
-- written as the editor goes and its events come back at the end of a
-- feed: a chunk holding several lines (a paste) is fed a line at a time,
-- so that each line's echo comes before what the handler answers to it.
local function feed_editor(s, data)
  if s.current_mode ~= "character" or not s.echoing then return edited(s, s.editor:feed(data)) end
  local pos, n = 1, #data
  while true do
    local i = find(data, "[\r\n\3\4]", pos)
    if i == nil or i == n then
      return edited(s, s.editor:feed(pos == 1 and data or sub(data, pos)))
    end
    edited(s, s.editor:feed(sub(data, pos, i)))
    if s.closed then return end
    pos = i + 1
  end
end

-- A 2-byte telnet command.
local function command(s, cmd)
  if cmd == CMD_IP then
    edited(s, s.editor:interrupt())   -- the line dropped, and an interrupt event
  elseif cmd == CMD_EOF then
    s.sink.eof()
  elseif cmd == CMD_AYT then
    send_raw(s, M.AYT_ANSWER)
  end
  -- NOP, DM, GA, BRK, AO, EC, EL...: nothing to do (the editor edits)
end

local function subnegotiation(s, option, payload)
  if option == NAWS and s.q:enabled("him", NAWS) then
    local w, h = codec.naws(payload)
    if w then
      s.width, s.height = w, h
      s.sink.resized(w, h)
    end
  elseif option == TTYPE and s.q:enabled("him", TTYPE) then
    local name = codec.ttype(payload)
    if name then
      s.ttype = name
      s.sink.ttype(name)
    end
  end
end

-- A lone ESC (the Escape key) cannot be told from the start of an escape
-- sequence until the next byte: when a chunk ends with one, the editor is
-- told to settle it after ESC_WAIT seconds of silence (Protocol style).
M.ESC_WAIT = 0.05

local function settle_later(s, data)
  local timer = s.esc_timer
  if timer then
    timer:cancel()
    s.esc_timer = nil
  end
  if s.call_later == nil or s.current_mode == "line" or sub(data, -1) ~= "\27" then return end
  s.esc_timer = s.call_later(M.ESC_WAIT, function()
    s.esc_timer = nil
    if not s.closed then edited(s, s.editor:flush()) end
  end)
end

-- Bytes received: through the codec (unless none was ever 0xFF: then the
-- codec is still in its data state and would hand them back unchanged),
-- then the editor.
local function receive(s, data)
  if s.plain then
    if not find(data, IAC, 1, true) then
      feed_editor(s, data)
      if s.current_mode ~= "line" then settle_later(s, data) end
      return
    end
    s.plain = false
  end
  local events = s.parser:feed(data)
  for i = 1, #events do
    if s.closed then return end
    local e = events[i]
    local kind = e.kind
    if kind == "data" then
      feed_editor(s, e.data)
    elseif kind == "negotiate" then
      s.q:received(e.verb, e.option)
    elseif kind == "command" then
      command(s, e.command)
    elseif kind == "subnegotiation" then
      subnegotiation(s, e.option, e.data)
    end
  end
  if s.current_mode ~= "line" then settle_later(s, data) end
end

--- Write 'text' to the user: 0xFF doubled; "\n" sent as "\r\n" (and a
-- lone "\r" as "\r\0") unless we send in BINARY. Returns true, or false
-- when the connection is closing (nothing is written then).
function Session:write(text)
  if type(text) ~= "string" then error("session:write(): text must be a string, not " .. type(text), 2) end
  if self.closed or self.out_closing(self) then return false end
  self.out:write(to_wire(text, self.binary_out))
  return true
end

--- Write 'text' as the prompt and remember it: it is drawn again after an
-- interrupt. prompt(nil) forgets it (and writes nothing).
function Session:prompt(text)
  self.prompt_text = text
  if text ~= nil and text ~= "" then return self:write(text) end
  return true
end

--- The prompt remembered, or nil.
function Session:prompt_string()
  return self.prompt_text
end

--- Draw the prompt again, with the line being edited (character mode).
function Session:redraw()
  local line = self.current_mode == "character" and self.editor:line() or ""
  return self:write((self.prompt_text or "") .. line)
end

--- The partial line being edited (character mode), "" otherwise.
function Session:partial_line()
  return self.current_mode == "character" and self.editor:line() or ""
end

--- The client's terminal type (TTYPE IS), or nil.
function Session:terminal_type()
  return self.ttype
end

--- The client's window width, height (NAWS), or nil.
function Session:window_size()
  if self.width == nil then return nil end
  return self.width, self.height
end

--- "line", "character" or "keys".
function Session:mode()
  return self.current_mode
end

--- Switch modes: to "character" or "keys" we offer ECHO and SGA (and ask
-- DO SGA); back to "line" we stop echoing and let the client edit.
function Session:set_mode(mode)
  if not MODES[mode] then
    error("session:set_mode(): mode must be \"line\", \"character\" or \"keys\", not " .. tostring(mode), 2)
  end
  if mode == self.current_mode then return end
  local was_line = self.current_mode == "line"
  self.current_mode = mode
  self.editor:set_mode(mode)
  local q = self.q
  if was_line then
    q:enable("us", ECHO)
    q:enable("us", SGA)
    q:enable("him", SGA)
  elseif mode == "line" then
    q:disable("us", ECHO)
    q:disable("us", SGA)
    q:disable("him", SGA)
  end
end

--- Is option 'option' (a codec constant) on, on 'side' ("us" or "him")?
function Session:option(side, option)
  return self.q:enabled(side, option)
end

--- Bytes written but not yet sent (the transport's).
function Session:get_write_buffer_size()
  if self.closed then return 0 end
  return self.transport:get_write_buffer_size()
end

--- Is the transport's write buffer above its high mark (between
-- pause_writing and resume_writing)?
function Session:is_writing_paused()
  return self.write_paused
end

--- Is the connection closing or gone?
function Session:is_closing()
  return self.closed or self.out_closing(self)
end

--- Send what is queued, then close.
function Session:close()
  if self.closed then return end
  self.out:close()
end

--- Close now, dropping what is queued (a peer that does not read).
function Session:abort()
  if self.closed then return end
  self.transport:abort()
end

--- The transport's get_extra_info(name [, default]).
function Session:get_extra_info(name, default)
  local v, w = self.transport:get_extra_info(name)
  if v == nil then return default end
  return v, w
end

------------------------------------------------------------------------------
-- Protocol style.

-- Call the handler's method 'name' if it has one; true when it did.
local function call(h, name, ...)
  local f = h[name]
  if f == nil then return false end
  f(h, ...)
  return true
end

-- The sink of a Protocol-style session: the Handler's methods, with the
-- documented defaults.
local function handler_sink(inst)
  local sink = {}
  function sink.line(line) call(inst.handler, "line_received", line) end
  function sink.key(key) call(inst.handler, "key_received", key) end
  function sink.interrupt()
    if not call(inst.handler, "interrupt") then
      local s = inst.session
      s:write("\r\n")
      if s.prompt_text then s:write(s.prompt_text) end
    end
  end
  function sink.eof()
    if not call(inst.handler, "eof") then inst.session:close() end
  end
  function sink.too_long(dropped)
    if not call(inst.handler, "line_too_long", dropped) then
      local s = inst.session
      s:write(("\r\nline too long (%d bytes dropped)\r\n"):format(dropped))
      if s.prompt_text then s:write(s.prompt_text) end
    end
  end
  function sink.resized(w, h) call(inst.handler, "window_resized", w, h) end
  function sink.ttype(name) call(inst.handler, "terminal_type_received", name) end
  return sink
end

local function transport_closing(s)
  return s.transport:is_closing()
end

--- A Protocol table that serves each connection over telnet with a new
-- instance of 'Handler' (Handler.new(), or a table with Handler as its
-- __index). Handler's optional methods: connection_made(session),
-- line_received(line) (without its line end), key_received(key) ("keys"
-- mode), interrupt() (default: the line is dropped, "\r\n" and the prompt
-- are written), eof() (Ctrl-D on an empty line, IAC EOF or the client's
-- half-close; default: close), line_too_long(dropped) (default: say so,
-- prompt again), window_resized(width, height), terminal_type_received(name),
-- pause_writing(), resume_writing(), connection_lost(err), and
-- upgrade(handler) for a hot swap (called with each open connection's
-- handler; the new Handler serves it from then on).
-- opts: mode ("line", "character", "keys"), max_line (4096), policy
-- ("error", "discard", "split"), binary (false), max_subnegotiation (1024).
function M.protocol(Handler, opts)
  if type(Handler) ~= "table" then error("telnet.protocol(): Handler must be a table", 2) end
  opts = check_opts(opts, "telnet.protocol()", 2)
  local Instance = {}
  local P = { Handler = Handler, options = opts }
  local meta = { __index = Instance }

  function P.new()
    local handler
    if Handler.new then
      handler = Handler.new()
      if type(handler) ~= "table" then error("telnet: Handler.new() must return a table", 2) end
    else
      handler = setmetatable({}, { __index = Handler })
    end
    return setmetatable({ handler = handler }, meta)
  end

  function Instance:connection_made(transport)
    local s = new_session(opts, transport, transport_closing, handler_sink(self))
    s.transport = transport
    s.call_later = require("luaecho").call_later
    self.session = s
    start(s)
    call(self.handler, "connection_made", s)
  end

  function Instance:data_received(data)
    receive(self.session, data)
  end

  function Instance:eof_received()
    local h = self.handler
    if h.eof then return h:eof() end
  end

  function Instance:pause_writing()
    self.session.write_paused = true
    call(self.handler, "pause_writing")
  end

  function Instance:resume_writing()
    self.session.write_paused = false
    call(self.handler, "resume_writing")
  end

  function Instance:connection_lost(err)
    local s = self.session
    if s then
      s.closed = true
      if s.esc_timer then s.esc_timer:cancel() end
    end
    call(self.handler, "connection_lost", err)
  end

  -- The methods on the Protocol table too, where the host looks for them.
  for name, f in pairs(Instance) do P[name] = f end
  if Handler.upgrade then
    -- A hot swap: the open connection's handler moves to this Handler.
    function P.upgrade(instance)
      Handler.upgrade(instance.handler)
      setmetatable(instance, meta)
    end
  end
  return P
end

------------------------------------------------------------------------------
-- Streams style.

local Wrapped = setmetatable({}, { __index = Session })
Wrapped.__index = Wrapped

local function writer_closing(s)
  return s.writer:is_closing()
end

-- The sink of a wrapped session: events queue up for readline/readkey.
local function queue_sink(s)
  local sink = {}
  local function push(e)
    local t = s.tail + 1
    s.inbox[t], s.tail = e, t
  end
  function sink.line(line) push({ "line", line }) end
  function sink.key(key) push({ "key", key }) end
  function sink.interrupt()
    s:write("\r\n")
    if s.prompt_text then s:write(s.prompt_text) end
  end
  function sink.eof() push({ "eof" }) end
  function sink.too_long(dropped)
    s:write(("\r\nline too long (%d bytes dropped)\r\n"):format(dropped))
    if s.prompt_text then s:write(s.prompt_text) end
  end
  function sink.resized() end
  function sink.ttype() end
  return sink
end

--- A telnet session on a streams handler's reader and writer (sends the
-- start-up negotiation at once). session:readline() waits for the next
-- line and returns it with "\n" at its end ("" once the client has gone
-- or typed Ctrl-D on an empty line); session:readkey() the same for a key
-- ("keys" mode); session:write(text), session:prompt(text),
-- session:drain(), session:window_size(), session:terminal_type(),
-- session:mode(), session:set_mode(mode), session:close(). opts as for
-- telnet.protocol.
function M.wrap(reader, writer, opts)
  if type(reader) ~= "table" or type(writer) ~= "table" then
    error("telnet.wrap(): give the streams handler's reader and writer", 2)
  end
  opts = check_opts(opts, "telnet.wrap()", 2)
  local sink = {}
  local s = new_session(opts, writer, writer_closing, sink)
  setmetatable(s, Wrapped)
  s.reader, s.writer, s.transport = reader, writer, writer.transport
  s.inbox, s.head, s.tail, s.ended = {}, 1, 0, false
  for k, v in pairs(queue_sink(s)) do sink[k] = v end
  start(s)
  return s
end

-- The next queued event, reading (and waiting) as needed; nil at the end.
local function next_event(s)
  while true do
    local q, h = s.inbox, s.head
    local e = q[h]
    if e then
      q[h], s.head = nil, h + 1
      return e
    end
    if s.ended then return nil end
    local data = s.reader:read(65536)
    if data == "" then
      s.ended = true
    else
      receive(s, data)
    end
  end
end

--- The next line, with "\n" at its end; "" at the end of the session.
-- Keys ("keys" mode) are skipped.
function Wrapped:readline()
  while true do
    local e = next_event(self)
    if e == nil or e[1] == "eof" then
      self.ended = true
      return ""
    end
    if e[1] == "line" then return e[2] .. "\n" end
  end
end

--- The next key ("keys" mode), or "" at the end of the session. A line
-- (other modes) comes as one key, with its "\n".
function Wrapped:readkey()
  local e = next_event(self)
  if e == nil or e[1] == "eof" then
    self.ended = true
    return ""
  end
  if e[1] == "line" then return e[2] .. "\n" end
  return e[2]
end

--- Wait while the client is slow to read (the writer's drain()).
function Wrapped:drain()
  return self.writer:drain()
end

function Wrapped:is_writing_paused()
  return self.writer.state.write_paused
end

function Wrapped:get_write_buffer_size()
  return self.transport:get_write_buffer_size()
end

function Wrapped:close()
  self.writer:close()
end

return M
