--- The line editor of luaecho.telnet: it turns the data bytes of a telnet
-- connection (what the codec hands out as "data") into lines or keystrokes.
-- Pure Lua, no sockets: the session feeds it and acts on the events.
--
-- Modes:
--   "line"      the client edits and sends whole lines; the editor only splits
--               them at "\r\n", "\r\0", "\n" or a bare "\r", and applies
--               max_line. No echo, no decoding: escape sequences, control bytes
--               and any bytes at all stay in the line. A whole line in one feed
--               is found with one string.find.
--   "character" the server echoes and edits: printable UTF-8 characters are
--               inserted and echoed; "\b" and DEL erase one whole character
--               ("\b \b", one column per character); Ctrl-U the line; Ctrl-W
--               the last word; escape sequences are swallowed; Ctrl-C drops
--               the line (interrupt); Ctrl-D on an empty line is eof; Enter
--               echoes "\r\n" and delivers the line. Other controls are ignored.
--   "keys"      each keystroke on its own, no echo, no editing: a UTF-8
--               character, a whole escape sequence ("\27[A") or a control byte.
--               Enter ("\r\n", "\r\0", "\r" or "\n") is always the key "\r"
--               (editor.ENTER); Ctrl-C is an interrupt event, not a key.
--
-- Every event is the same however the input is split across feeds (inside a
-- UTF-8 character, an escape sequence or "\r\n"), with one exception kept
-- out of feed: a lone ESC cannot be told from the start of a sequence until
-- the next byte comes. Beyond the contract, e:flush() settles such pending
-- bytes; the session may call it after ~50 ms of silence so the Escape key
-- alone reaches a keys-mode handler.
--
-- Invalid UTF-8 never breaks anything: a byte that does not start a valid
-- character (or a character cut short) counts as a one-byte character.
-- Escape sequences: ESC [ params/intermediates (0x20-0x3F) final (0x40-0x7E),
-- the Linux console's ESC [ [ x, ESC O x, and a lone ESC (followed by
-- anything but "[" or "O": only the ESC is taken, the next byte is read
-- anew). A sequence broken by another byte, or longer than
-- editor.MAX_SEQUENCE bytes, ends there. feed never raises on any bytes.
--
-- Over max_line bytes (a line without its line end):
--   "error"   the line is dropped and one { kind = "too_long" } event is
--             emitted as soon as it goes over (not at its line end, which may
--             never come), then input is skipped up to the next line end.
--             'dropped' counts the line's bytes at that moment, which any split
--             of the input gives alike: max_line + 1 in line mode; in
--             character mode the line plus the character that did not fit.
--   "discard" the same, silently.
--   "split"   pieces of max_line bytes are delivered as lines. A piece is not
--             cut inside a UTF-8 character when it can be helped (it is then
--             shorter); in character mode a character never is.
-- In character mode a line being skipped is not echoed; the Enter that ends
-- the skip echoes "\r\n" and delivers nothing.
--
-- Beside the contract: e:interrupt() returns its events like feed does;
-- e:flush() is extra (above); e.mode reads the mode. Ctrl-C and e:interrupt()
-- echo nothing: the session, which prints the new prompt, starts the new
-- screen line. Erasing assumes one column per character, as agreed, so a
-- double-width character (CJK, most emoji) leaves half of itself on screen.
-- @usage
--   local e = editor.new({ mode = "character", echo = function(b) session:send(b) end })
--   for _, ev in ipairs(e:feed(data)) do
--     if ev.kind == "line" then handler:line_received(ev.line) end
--   end
local byte, char, find, sub, rep = string.byte, string.char, string.find, string.sub, string.rep
local concat = table.concat
local error, setmetatable, tostring, type = error, setmetatable, tostring, type
local math_type, min = math.type, math.min

local M = {}

--- Default maximum line length in bytes.
M.DEFAULT_MAX_LINE = 4096
--- The key keys mode delivers for Enter, whatever line end the client sent.
M.ENTER = "\r"
--- Longest escape sequence collected, in bytes; a longer one ends there.
M.MAX_SEQUENCE = 32

local MODES = { line = true, character = true, keys = true }
local POLICIES = { error = true, discard = true, split = true }

-- Decoder states (character and keys modes).
local GROUND, UTF8, ESC, CSI, CSI2, SS3 = 0, 1, 2, 3, 4, 5

local Editor = {}
Editor.__index = Editor

local function check_mode(mode, who)
  if not MODES[mode] then
    error(who .. ': mode must be "line", "character" or "keys", got ' .. tostring(mode), 3)
  end
  return mode
end

--- A new editor. opts (all optional): mode ("line"), max_line (4096 bytes,
-- a positive integer), policy ("error", "discard" or "split"), echo (a
-- function(bytes) called once per feed with what character mode shows; the
-- bytes are plain text, the caller escapes IAC).
function M.new(opts)
  opts = opts or {}
  local max_line = opts.max_line or M.DEFAULT_MAX_LINE
  if math_type(max_line) ~= "integer" or max_line < 1 then
    error("editor.new: max_line must be a positive integer, got " .. tostring(max_line), 2)
  end
  local policy = opts.policy or "error"
  if not POLICIES[policy] then
    error('editor.new: policy must be "error", "discard" or "split", got ' .. tostring(policy), 2)
  end
  local echo = opts.echo
  if echo ~= nil and type(echo) ~= "function" then
    error("editor.new: echo must be a function, got " .. type(echo), 2)
  end
  return setmetatable({
    mode = check_mode(opts.mode or "line", "editor.new"),
    max_line = max_line, policy = policy, echo_to = echo,
    cr = false,          -- a "\r" ended the last line: a "\n" or "\0" next is part of it
    skip = false,        -- a line over max_line is being dropped up to its line end
    parts = {}, np = 0, plen = 0,   -- line mode: the partial line, in chunks
    chars = {}, nc = 0, clen = 0,   -- character mode: the line, one entry per character
    st = GROUND, pend = "", need = 0, lo = 0, hi = 0,   -- decoder: an incomplete character or sequence
    out = nil, eb = nil, ne = 0,    -- during a feed: its events, its echo
  }, Editor)
end

------------------------------------------------------------------------------
-- Output of a feed.

local function emit(self, ev)
  local out = self.out
  out[#out + 1] = ev
end

local function echo(self, bytes)
  if self.echo_to then
    local ne = self.ne + 1
    if ne == 1 then self.eb = {} end
    self.eb[ne] = bytes
    self.ne = ne
  end
end

-- Start collecting the events of one call; done() returns them after
-- handing the echo over in one piece.
local function begin(self)
  self.out = {}
end

local function done(self)
  local out = self.out
  self.out = nil
  if self.ne > 0 then
    local bytes = concat(self.eb, "", 1, self.ne)
    self.eb, self.ne = nil, 0
    self.echo_to(bytes)
  end
  return out
end

------------------------------------------------------------------------------
-- Line mode.

-- Where to cut 's' from 'pos' on (more than 'm' bytes are left) for a piece
-- of at most m bytes: the piece's length, m or less when m would fall inside
-- a UTF-8 character and backing off leaves something.
local function cut(s, pos, m)
  local last = pos + m - 1
  local b = byte(s, last + 1)
  if b < 0x80 or b > 0xBF then return m end
  for p = last, last - 2, -1 do
    if p < pos then return m end
    local lead = byte(s, p)
    if lead >= 0xC0 then
      local len = lead >= 0xF0 and 4 or lead >= 0xE0 and 3 or 2
      if p + len - 1 > last and p > pos then return p - pos end
      return m
    elseif lead < 0x80 then
      return m
    end
  end
  return m
end

local function clear_partial(self)
  if self.np > 0 then self.parts, self.np = {}, 0 end
  self.plen = 0
end

-- Split mode: deliver pieces of a line over max_line; returns what is left
-- (at most max_line bytes).
local function split(self, line)
  local m, pos, n = self.max_line, 1, #line
  while n - pos >= m do
    local c = cut(line, pos, m)
    emit(self, { kind = "line", line = sub(line, pos, pos + c - 1) })
    pos = pos + c
  end
  return sub(line, pos)
end

-- Error or discard: the line is dropped, skipping starts.
local function drop(self)
  if self.policy == "error" then emit(self, { kind = "too_long", dropped = self.max_line + 1 }) end
  self.skip = true
end

-- Bytes of a line whose end has not come yet.
local function add_partial(self, s)
  if self.skip then return end
  local np = self.np + 1
  self.parts[np], self.np = s, np
  local plen = self.plen + #s
  self.plen = plen
  if plen > self.max_line then
    local rest = self.policy == "split" and split(self, concat(self.parts, "", 1, np))
    clear_partial(self)
    if rest then
      self.parts[1], self.np, self.plen = rest, 1, #rest
    else
      drop(self)
    end
  end
end

-- The line ends after 's'.
local function end_line(self, s)
  if self.skip then
    self.skip = false
    return
  end
  local line = s
  if self.np > 0 then
    line = concat(self.parts, "", 1, self.np) .. s
    clear_partial(self)
  end
  self.plen = 0
  if #line > self.max_line then
    if self.policy ~= "split" then
      -- the line end is here already: nothing to skip
      if self.policy == "error" then emit(self, { kind = "too_long", dropped = self.max_line + 1 }) end
      return
    end
    line = split(self, line)
  end
  emit(self, { kind = "line", line = line })
end

local function feed_line(self, data)
  local i, n = 1, #data
  if self.cr then
    self.cr = false
    local b = byte(data, 1)
    if b == 10 or b == 0 then i = 2 end
  end
  while i <= n do
    local s = find(data, "[\r\n]", i)
    if not s then
      add_partial(self, i == 1 and data or sub(data, i))
      return
    end
    end_line(self, sub(data, i, s - 1))
    if byte(data, s) == 13 then
      if s == n then
        self.cr = true
        return
      end
      local b = byte(data, s + 1)
      i = (b == 10 or b == 0) and s + 2 or s + 1
    else
      i = s + 1
    end
  end
end

------------------------------------------------------------------------------
-- Character mode editing.

local function clear_line(self)
  if self.nc > 0 then self.chars, self.nc = {}, 0 end
  self.clen = 0
end

local function take_line(self)
  local line = concat(self.chars, "", 1, self.nc)
  clear_line(self)
  return line
end

-- Insert one character (any length), minding max_line.
local function insert(self, c)
  if self.skip then return end
  local len = #c
  if self.clen + len > self.max_line then
    local policy = self.policy
    if policy ~= "split" then
      if policy == "error" then emit(self, { kind = "too_long", dropped = self.clen + len }) end
      clear_line(self)
      self.skip = true
      return
    end
    -- split: what is there is a piece (a character longer than max_line
    -- alone on the line becomes a piece of its own with the next insert)
    if self.nc > 0 then emit(self, { kind = "line", line = take_line(self) }) end
  end
  local nc = self.nc + 1
  self.chars[nc], self.nc, self.clen = c, nc, self.clen + len
  echo(self, c)
end

-- Insert a run of printable ASCII, as insert would one by one.
local function insert_run(self, s)
  local i, n = 1, #s
  while i <= n and not self.skip do
    local room = self.max_line - self.clen
    if room <= 0 then
      insert(self, sub(s, i, i))
      i = i + 1
    else
      local j = min(n, i + room - 1)
      local chars, nc = self.chars, self.nc
      for k = i, j do
        nc = nc + 1
        chars[nc] = sub(s, k, k)
      end
      self.nc, self.clen = nc, self.clen + (j - i + 1)
      echo(self, (i == 1 and j == n) and s or sub(s, i, j))
      i = j + 1
    end
  end
end

-- Erase the last 'count' characters, on the line and on the screen.
local function erase(self, count)
  if count <= 0 then return end
  local chars, nc, clen = self.chars, self.nc, self.clen
  for k = nc, nc - count + 1, -1 do
    clen = clen - #chars[k]
    chars[k] = nil
  end
  self.nc, self.clen = nc - count, clen
  echo(self, rep("\b \b", count))
end

-- The characters Ctrl-W erases: trailing spaces, then non-spaces.
local function last_word(self)
  local chars, k = self.chars, self.nc
  while k > 0 and chars[k] == " " do k = k - 1 end
  while k > 0 and chars[k] ~= " " do k = k - 1 end
  return self.nc - k
end

local function interrupt(self)
  clear_line(self)
  clear_partial(self)
  self.skip = false
  emit(self, { kind = "interrupt" })
end

local function enter(self)
  if self.mode == "keys" then
    emit(self, { kind = "key", key = M.ENTER })
    return
  end
  echo(self, "\r\n")
  if self.skip then
    self.skip = false
    return
  end
  emit(self, { kind = "line", line = take_line(self) })
end

------------------------------------------------------------------------------
-- Character and keys modes: decoding.

-- A character (valid UTF-8, ASCII, or a stray byte).
local function text(self, c)
  if self.mode == "keys" then
    emit(self, { kind = "key", key = c })
  else
    insert(self, c)
  end
end

-- A whole escape sequence.
local function sequence(self, s)
  if self.mode == "keys" then emit(self, { kind = "key", key = s }) end
end

-- A control byte (0-31, 127) in ground state.
local function control(self, b)
  if b == 13 then
    self.cr = true
    return enter(self)
  elseif b == 10 then
    return enter(self)
  elseif b == 27 then
    self.st, self.pend = ESC, "\27"
    return
  elseif b == 3 then
    return interrupt(self)
  end
  if self.mode == "keys" then
    return emit(self, { kind = "key", key = char(b) })
  end
  if self.skip then return end
  if b == 8 or b == 127 then
    erase(self, self.nc > 0 and 1 or 0)
  elseif b == 21 then
    erase(self, self.nc)
  elseif b == 23 then
    erase(self, last_word(self))
  elseif b == 4 then
    if self.nc == 0 then emit(self, { kind = "eof" }) end
  end
end

-- A byte from 0x80 up in ground state: how many continuation bytes a UTF-8
-- character it starts needs, and the range of the first one (RFC 3629), or
-- nil for a stray byte.
local function lead(b)
  if b < 0xC2 then return nil end
  if b <= 0xDF then return 1, 0x80, 0xBF end
  if b <= 0xEF then
    if b == 0xE0 then return 2, 0xA0, 0xBF end
    if b == 0xED then return 2, 0x80, 0x9F end
    return 2, 0x80, 0xBF
  end
  if b == 0xF0 then return 3, 0x90, 0xBF end
  if b <= 0xF3 then return 3, 0x80, 0xBF end
  if b == 0xF4 then return 3, 0x80, 0x8F end
  return nil
end

-- The length of the character at s[i]: a valid UTF-8 character whole, else 1.
local function char_len(s, i)
  local need, lo, hi = lead(byte(s, i))
  if not need then return 1 end
  local b = byte(s, i + 1)
  if not b or b < lo or b > hi then return 1 end
  for k = i + 2, i + need do
    b = byte(s, k)
    if not b or b < 0x80 or b > 0xBF then return 1 end
  end
  return need + 1
end

-- Settle the pending bytes of an incomplete character or sequence: a
-- character cut short is stray bytes, a sequence cut short a sequence.
local function settle(self)
  local st, pend = self.st, self.pend
  self.st, self.pend = GROUND, ""
  if st == UTF8 then
    for k = 1, #pend do text(self, sub(pend, k, k)) end
  elseif st ~= GROUND then
    sequence(self, pend)
  end
end

local function feed_keys(self, data)
  local i, n = 1, #data
  while i <= n do
    local b = byte(data, i)
    local st = self.st
    if self.cr then
      -- only set by a "\r" read in ground state, so st is GROUND
      self.cr = false
      if b == 10 or b == 0 then
        i = i + 1
        goto continue
      end
    end
    if st == GROUND then
      if b >= 32 and b < 127 then
        local _, j = find(data, "^[ -~]+", i)
        if self.mode == "keys" then
          for k = i, j do emit(self, { kind = "key", key = sub(data, k, k) }) end
        else
          insert_run(self, sub(data, i, j))
        end
        i = j + 1
      elseif b < 128 then
        control(self, b)
        i = i + 1
      else
        local need, lo, hi = lead(b)
        if need then
          self.st, self.pend, self.need, self.lo, self.hi = UTF8, char(b), need, lo, hi
        else
          text(self, char(b))
        end
        i = i + 1
      end
    elseif st == UTF8 then
      if b >= self.lo and b <= self.hi then
        local pend, need = self.pend .. char(b), self.need - 1
        i = i + 1
        if need == 0 then
          self.st, self.pend = GROUND, ""
          text(self, pend)
        else
          self.pend, self.need, self.lo, self.hi = pend, need, 0x80, 0xBF
        end
      else
        settle(self)   -- b is read again in ground state
      end
    elseif st == ESC then
      if b == 91 then
        self.st, self.pend = CSI, "\27["
        i = i + 1
      elseif b == 79 then
        self.st, self.pend = SS3, "\27O"
        i = i + 1
      else
        settle(self)   -- a lone ESC; b is read again
      end
    elseif st == CSI then
      local pend = self.pend
      if b >= 0x40 and b <= 0x7E then
        if b == 91 and pend == "\27[" then
          self.st, self.pend = CSI2, "\27[["
        else
          self.st, self.pend = GROUND, ""
          sequence(self, pend .. char(b))
        end
        i = i + 1
      elseif b >= 0x20 and b <= 0x3F and #pend < M.MAX_SEQUENCE then
        self.pend = pend .. char(b)
        i = i + 1
      else
        settle(self)   -- broken or too long: it ends here, b is read again
      end
    else -- CSI2, SS3: one more byte
      if b >= 0x20 and b <= 0x7E then
        local pend = self.pend
        self.st, self.pend = GROUND, ""
        sequence(self, pend .. char(b))
        i = i + 1
      else
        settle(self)
      end
    end
    ::continue::
  end
end

------------------------------------------------------------------------------
-- Public methods.

--- Feed data bytes (split anywhere); returns the list of events they make,
-- maybe empty: { kind = "line", line = ... }, { kind = "key", key = ... },
-- { kind = "interrupt" }, { kind = "eof" }, { kind = "too_long", dropped = n }.
-- In character mode the echo function is called once with what to show.
function Editor:feed(data)
  if type(data) ~= "string" then
    if data == nil then return {} end
    error("editor:feed: data must be a string, got " .. type(data), 2)
  end
  begin(self)
  if #data > 0 then
    if self.mode == "line" then
      feed_line(self, data)
    else
      feed_keys(self, data)
    end
  end
  return done(self)
end

--- The session got IAC IP: drop the current line, as Ctrl-C does. Returns
-- the events: { { kind = "interrupt" } }.
function Editor:interrupt()
  begin(self)
  interrupt(self)
  return done(self)
end

--- Settle what waits for more bytes: an escape sequence cut short (a lone
-- ESC above all) is delivered as a key in keys mode and dropped in character
-- mode; a UTF-8 character cut short counts as stray bytes. Returns the
-- events. Not in the contract: for a session timer after a quiet moment.
function Editor:flush()
  begin(self)
  if self.mode ~= "line" then settle(self) end
  return done(self)
end

--- The partial line being edited (character mode), or received so far (line
-- mode): what to redraw after a prompt. "" in keys mode or while a line over
-- max_line is being skipped.
function Editor:line()
  if self.mode == "character" then
    return concat(self.chars, "", 1, self.nc)
  elseif self.mode == "line" then
    return concat(self.parts, "", 1, self.np)
  end
  return ""
end

--- Switch to "line", "character" or "keys". The partial line carries over
-- between line and character modes; switching to or from keys mode drops
-- it. Bytes of an unfinished character or escape sequence become part of
-- the line when switching to line mode (which does not decode them).
function Editor:set_mode(mode)
  check_mode(mode, "editor:set_mode")
  local old = self.mode
  if mode == old then return end
  self.mode = mode
  if old == "line" and mode == "character" then
    local s = concat(self.parts, "", 1, self.np)
    clear_partial(self)
    local i, n, chars, nc = 1, #s, {}, 0
    while i <= n do
      local len = char_len(s, i)
      nc = nc + 1
      chars[nc] = sub(s, i, i + len - 1)
      i = i + len
    end
    self.chars, self.nc, self.clen = chars, nc, n
  elseif old == "character" and mode == "line" then
    local s = take_line(self)
    if #s > 0 then self.parts, self.np, self.plen = { s }, 1, #s end
  else
    clear_line(self)
    clear_partial(self)
    self.skip = false
  end
  if mode == "line" and self.st ~= GROUND then
    local pend = self.pend
    self.st, self.pend = GROUND, ""
    if not self.skip then
      local np = self.np + 1
      self.parts[np], self.np, self.plen = pend, np, self.plen + #pend
    end
  end
end

return M
