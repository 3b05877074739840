-- Hot swap (issue 4): SIGHUP and --watch load the served script again while
-- connections stay open. Each spec copies its handler scripts into a fresh
-- temporary directory, serves them from there and edits them there, so the
-- repository is never touched. Every wait polls a log line or a reply with a
-- deadline; nothing sleeps for a fixed time.
local uv = require "luv"
local socket = require "socket"
local server = require "support.server"
local client = require "support.client"
local wait = require "support.wait"

-- The swap test: CLIENTS connections held open from the start, RELOADS
-- swaps by SIGHUP, NEW_PER_RELOAD more connections after each swap, and
-- every connection echoing PHASE_BYTES more after each swap.
local CLIENTS = 50
local RELOADS = 4
local NEW_PER_RELOAD = 10
local PHASE_BYTES = 16 * 1024
local WINDOW = 8 * 1024 -- bytes a client may have sent and not yet seen echoed
local BATCH = 16        -- records per send
local PHASE_TIMEOUT = 60

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

-- A string as a Lua pattern that matches exactly it.
local function literal(text)
  return (text:gsub("%p", "%%%0"))
end

-- The text of fixture spec/fixtures/reload/NAME; with `label`, prefix.lua's
-- NAME = "v1" becomes NAME = label.
local function fixture(name, label)
  local text = read_file(server.fixture("reload/" .. name))
  if label then
    local replaced, n = text:gsub('local NAME = "v1"', ('local NAME = %q'):format(label))
    assert(n == 1, "prefix.lua has no NAME line")
    text = replaced
  end
  return text
end

--- A fresh temporary directory holding the scripts a spec serves and edits.
local Scratch = {}
Scratch.__index = Scratch

local function scratch_dir()
  local base = os.getenv("TMPDIR") or "/tmp"
  local dir = assert(uv.fs_mkdtemp(base .. "/luaecho-reload-XXXXXX"))
  return setmetatable({ dir = dir }, Scratch)
end

function Scratch:path(name)
  return self.dir .. "/" .. name
end

-- Write `text` to NAME in place, as an editor that saves into the same file
-- does: truncate, then `pieces` writes, each flushed to the file at once.
function Scratch:write(name, text, pieces)
  pieces = pieces or 1
  local f = assert(io.open(self:path(name), "wb"))
  local size = math.ceil(#text / pieces)
  for i = 1, #text, size do
    assert(f:write(text:sub(i, i + size - 1)))
    assert(f:flush())
  end
  assert(f:close())
  return self:path(name)
end

-- Replace NAME by a rename, as editors that save atomically do: write a new
-- file beside it, then rename it over NAME (a new inode takes the name).
function Scratch:replace(name, text)
  local temp = self:path("." .. name .. ".new")
  local f = assert(io.open(temp, "wb"))
  assert(f:write(text))
  assert(f:close())
  assert(os.rename(temp, self:path(name)))
  return self:path(name)
end

-- Remove the directory and everything in it (it holds only plain files).
function Scratch:remove()
  local req = uv.fs_scandir(self.dir)
  while req do
    local name = uv.fs_scandir_next(req)
    if not name then break end
    os.remove(self:path(name))
  end
  uv.fs_rmdir(self.dir)
end

-- Send one line and return the reply line (without its "\n").
local function ask(conn, text)
  conn:send_all(text .. "\n")
  conn.sock:settimeout(5)
  local line, err, partial = conn.sock:receive("*l")
  if not line then
    error(("no reply to %q: %s (received %q)"):format(text, err, partial or ""), 2)
  end
  return line
end

-- Wait for `luaecho: reloaded SCRIPT (generation N)`.
local function wait_reloaded(proc, script, generation)
  return proc:wait_output("stderr",
    ("luaecho: reloaded %s %%(generation %d%%)\n"):format(literal(script), generation), 10,
    ("the 'reloaded ... (generation %d)' line"):format(generation))
end

-- The generations of every `reloaded` line so far, in order.
local function reloads(proc)
  local generations = {}
  for g in proc:stderr():gmatch("luaecho: reloaded [^\n]* %(generation (%d+)%)\n") do
    generations[#generations + 1] = tonumber(g)
  end
  return generations
end

-- Every `luaecho: error:` line so far.
local function error_lines(proc)
  local lines = {}
  for line in proc:stderr():gmatch("luaecho: error: [^\n]*") do lines[#lines + 1] = line end
  return lines
end

-- Streaming clients for the swap test. A client sends records
-- "K<client>N<seq>|" (upper case, digits and "|": never a lower-case letter,
-- ":" or "@") and keeps at most WINDOW bytes unechoed. The reply is
-- PREFIX DATA PREFIX DATA ..., split wherever the server's reads were;
-- since every prefix starts with a lower-case letter and no data holds one,
-- the reply parses unambiguously, and each piece of data must be the next
-- bytes the client sent.
local Stream = {}
Stream.__index = Stream

local function stream(conn, id, prefix)
  conn.sock:settimeout(0)
  return setmetatable({
    conn = conn, id = id, prefix = prefix, seq = 0,
    out = "", out_pos = 1,   -- the batch being sent, and how far
    unechoed = "",           -- sent (or being sent) and not yet echoed
    pending = "",            -- reply bytes not parsed yet (a cut prefix)
    seen_prefix = false, sent = 0, echoed = 0, mark = 0,
  }, Stream)
end

function Stream:fail(why)
  self.failure = self.failure or ("connection %d (%s): %s"):format(self.id, self.prefix, why)
end

function Stream:wants_to_send(sending)
  if self.failure then return false end
  if self.out_pos <= #self.out then return true end
  return sending and #self.unechoed < WINDOW
end

function Stream:send()
  if self.out_pos > #self.out then
    local records = {}
    for i = 1, BATCH do records[i] = ("K%dN%d|"):format(self.id, self.seq + i) end
    self.seq = self.seq + BATCH
    self.out, self.out_pos = table.concat(records), 1
    self.unechoed = self.unechoed .. self.out
  end
  local last, err, partial = self.conn.sock:send(self.out, self.out_pos)
  local upto = last or partial or (self.out_pos - 1)
  self.sent = self.sent + upto - self.out_pos + 1
  self.out_pos = upto + 1
  if err and err ~= "timeout" then
    self.dropped = true
    self:fail("send: " .. err)
  end
end

-- Check one piece of echoed data against what was sent next.
function Stream:take(data)
  if not self.seen_prefix then
    return self:fail(("data before any prefix: %q"):format(data:sub(1, 40)))
  end
  if self.unechoed:sub(1, #data) ~= data then
    return self:fail(("out of order after %d bytes: expected %q, got %q"):format(
      self.echoed, self.unechoed:sub(1, 40), data:sub(1, 40)))
  end
  self.unechoed = self.unechoed:sub(#data + 1)
  self.echoed = self.echoed + #data
end

-- Parse what has arrived: prefixes and data, keeping a prefix cut short.
function Stream:parse(piece)
  local buf, prefix = self.pending .. piece, self.prefix
  local i, n = 1, #buf
  while i <= n and not self.failure do
    if buf:find("^[%l:@]", i) then
      if buf:sub(i, i + #prefix - 1) == prefix then
        self.seen_prefix = true
        i = i + #prefix
      elseif n - i + 1 < #prefix and prefix:sub(1, n - i + 1) == buf:sub(i) then
        break -- the rest of the prefix is still on its way
      else
        self:fail(("expected the prefix %q, got %q"):format(prefix, buf:sub(i, i + 20)))
      end
    else
      local j = (buf:find("[%l:@]", i) or n + 1) - 1
      self:take(buf:sub(i, j))
      i = j + 1
    end
  end
  self.pending = buf:sub(i)
end

function Stream:receive()
  local data, err, partial = self.conn.sock:receive(65536)
  local piece = data or partial or ""
  if #piece > 0 then self:parse(piece) end
  if err and err ~= "timeout" then
    self.dropped = true
    self:fail(err == "closed" and "closed by the server" or ("receive: " .. err))
  end
end

-- Drive every stream (sending new data only while `sending`) until done()
-- is true; raise at the first broken stream or after PHASE_TIMEOUT.
local function pump(streams, sending, done, what)
  local deadline = wait.now() + PHASE_TIMEOUT
  while true do
    for _, s in ipairs(streams) do
      if s.failure then error(s.failure, 2) end
    end
    if done() then return end
    if wait.now() > deadline then
      local late = {}
      for _, s in ipairs(streams) do
        if #late < 5 and (s.echoed < s.mark + PHASE_BYTES or #s.unechoed > 0) then
          late[#late + 1] = ("  connection %d: sent %d, echoed %d"):format(s.id, s.sent, s.echoed)
        end
      end
      error(("timed out after %ds waiting for %s\n%s"):format(PHASE_TIMEOUT, what, table.concat(late, "\n")), 2)
    end
    local recvt, sendt, by_sock = {}, {}, {}
    for _, s in ipairs(streams) do
      by_sock[s.conn.sock] = s
      recvt[#recvt + 1] = s.conn.sock
      if s:wants_to_send(sending) then sendt[#sendt + 1] = s.conn.sock end
    end
    local readable, writable = socket.select(recvt, sendt, 0.05)
    for _, sock in ipairs(writable) do by_sock[sock]:send() end
    for _, sock in ipairs(readable) do by_sock[sock]:receive() end
  end
end

-- Stream until every connection has had PHASE_BYTES more echoed.
local function stream_a_phase(streams, what)
  for _, s in ipairs(streams) do s.mark = s.echoed end
  pump(streams, true, function()
    for _, s in ipairs(streams) do
      if s.echoed < s.mark + PHASE_BYTES then return false end
    end
    return true
  end, what)
end

describe("hot swap #integration", function()
  local scratch, proc

  before_each(function()
    scratch = scratch_dir()
  end)

  after_each(function()
    client.close_all()
    local problems = server.stop_all()
    scratch:remove()
    assert.are.same({}, problems)
  end)

  describe("by SIGHUP under load", function()
    it("drops no connection and no byte while 50 clients stream through four swaps", function()
      local started = wait.now()
      local script = scratch:write("handler.lua", read_file(server.script("echo.lua")))
      proc = server.start({ script })
      local streams = {}
      local function open(n, prefix)
        for _ = 1, n do
          local id = #streams + 1
          streams[id] = stream(client.connect(proc.host, proc.port), id, prefix)
        end
      end

      open(CLIENTS, "echo:")
      stream_a_phase(streams, "every connection to echo through echo.lua")
      local in_flight = {}
      for generation = 2, 1 + RELOADS do
        local label = "v" .. generation
        local open_now = #streams
        scratch:write("handler.lua", fixture("prefix.lua", label))
        -- Every client has data on its way when the signal goes.
        local busy = 0
        for _, s in ipairs(streams) do
          s:send()
          if #s.unechoed > 0 then busy = busy + 1 end
        end
        in_flight[#in_flight + 1] = busy
        proc:signal("sighup")
        -- The clients keep sending while the server reloads.
        local kept = ("luaecho: reloaded %s (generation %d)\nluaecho: %d open connection(s) keep the code "
          .. "they started with (the script has no upgrade())\n"):format(script, generation, open_now)
        pump(streams, true, function()
          return proc:stderr():find(kept, 1, true)
        end, ("%q"):format(kept))
        -- New connections get the new script and the new generation; the
        -- old ones keep their prefix (each Stream checks its own).
        open(NEW_PER_RELOAD, ("%s@%d:"):format(label, generation))
        stream_a_phase(streams, ("every connection to echo after the swap to generation %d"):format(generation))
      end
      pump(streams, false, function()
        for _, s in ipairs(streams) do
          if #s.unechoed > 0 or s.out_pos <= #s.out then return false end
        end
        return true
      end, "every byte sent to come back")

      local bytes, dropped = 0, 0
      for _, s in ipairs(streams) do
        assert.are.equal(s.sent, s.echoed)
        bytes = bytes + s.echoed
        if s.dropped then dropped = dropped + 1 end
      end
      assert.are.equal(0, dropped)
      assert.is_false(proc:exited())
      assert.are.equal(CLIENTS, proc:count("stdout", "^Connection received!$"))
      assert.are.equal(0, proc:count("stdout", "^Connection lost!$"))
      assert.are.same({ 2, 3, 4, 5 }, reloads(proc))
      assert.are.same({}, error_lines(proc))
      print(("\nhot swap figures: %d connections (%d held open from the start, %d opened after swaps), "
        .. "%d bytes echoed in order, %d reloads by SIGHUP (connections with data in flight at each SIGHUP: %s), "
        .. "%d dropped, %.1f s"):format(#streams, CLIENTS, #streams - CLIENTS, bytes, RELOADS,
        table.concat(in_flight, ", "), dropped, wait.now() - started))
    end)
  end)

  describe("a script that fails to load", function()
    local broken = {
      { what = "a syntax error", file = "syntax_error.txt", line = 8, message = "')' expected" },
      { what = "an error at top level", file = "top_level_error.lua", line = 4,
        message = "this version refuses to load" },
      { what = "no table returned", file = "no_table.lua",
        message = "must return a Protocol table or a streams handler function(reader, writer), not nil" },
    }
    for _, case in ipairs(broken) do
      it(("is logged with its file and line, and the old one keeps serving (%s)"):format(case.what), function()
        local script = scratch:write("handler.lua", fixture("prefix.lua"))
        proc = server.start({ script })
        local old = client.connect(proc.host, proc.port)
        assert.are.equal("v1@1:before", ask(old, "before"))

        scratch:write("handler.lua", fixture(case.file))
        proc:signal("sighup")
        local message = proc:wait_output("stderr",
          "luaecho: error: reload %(SIGHUP%) failed, still serving generation 1: ([^\n]*)\n", 10,
          "the 'reload failed' line")
        local where = script .. ":" .. (case.line and (case.line .. ":") or "")
        assert.are.equal(where, message:sub(1, #where))
        assert.truthy(message:find(case.message, 1, true), message)

        assert.are.equal("v1@1:after", ask(old, "after"))
        local new = client.connect(proc.host, proc.port)
        assert.are.equal("v1@1:new", ask(new, "new"))
        assert.are.same({}, reloads(proc))

        -- A failed load used no generation: the next good one is 2.
        scratch:write("handler.lua", fixture("prefix.lua", "v2"))
        proc:signal("sighup")
        wait_reloaded(proc, script, 2)
        assert.are.equal("v2@2:fixed", ask(client.connect(proc.host, proc.port), "fixed"))
        assert.are.equal("v1@1:still", ask(old, "still"))
        assert.are.equal(1, #error_lines(proc))
      end)
    end
  end)

  describe("--watch", function()
    local script, old

    before_each(function()
      script = scratch:write("handler.lua", fixture("prefix.lua"))
      proc = server.start({ "--watch", script })
      old = client.connect(proc.host, proc.port)
      assert.are.equal("v1@1:a", ask(old, "a"))
    end)

    -- After a watched change made generation 2: a SIGHUP must make
    -- generation 3. Had the change caused a second reload, that one would
    -- have taken generation 3 and the SIGHUP 4.
    local function assert_reloaded_once()
      wait_reloaded(proc, script, 2)
      proc:signal("sighup")
      wait_reloaded(proc, script, 3)
      assert.are.same({ 2, 3 }, reloads(proc))
      assert.are.same({}, error_lines(proc)) -- nor was a half-written file loaded
      assert.are.equal("v2@3:b", ask(client.connect(proc.host, proc.port), "b"))
      assert.are.equal("v1@1:c", ask(old, "c"))
    end

    it("reloads once when the script is written in place", function()
      scratch:write("handler.lua", fixture("prefix.lua", "v2"), 3)
      assert_reloaded_once()
    end)

    it("reloads once when the script is replaced by a rename", function()
      scratch:replace("handler.lua", fixture("prefix.lua", "v2"))
      assert_reloaded_once()
    end)
  end)

  describe("upgrade(instance)", function()
    it("moves live connections to the new code, keeping their state, and a failure stays with its connection",
      function()
        local script = scratch:write("handler.lua", fixture("stateful.lua"))
        proc = server.start({ script })
        local a = client.connect(proc.host, proc.port)
        local stays = client.connect(proc.host, proc.port)
        local c = client.connect(proc.host, proc.port)
        assert.are.equal("old g1 n1 a", ask(a, "a"))
        assert.are.equal("old g1 n1 stay", ask(stays, "stay"))
        assert.are.equal("old g1 n1 c", ask(c, "c"))

        scratch:write("handler.lua", fixture("upgrading.lua"))
        proc:signal("sighup")
        wait_reloaded(proc, script, 2)
        proc:wait_output("stderr", "luaecho: upgraded 2 of 3 open connection%(s%) to generation 2\n")
        local host, port = stays:sockname()
        local failure = proc:wait_output("stderr",
          "luaecho: error: upgrade failed for " .. literal(host .. ":" .. port)
          .. ", which keeps generation 1: ([^\n]*)\n")
        assert.truthy(failure:find("this connection asked to stay", 1, true), failure)

        assert.are.equal("new g2 n2 upgraded a", ask(a, "a"))
        assert.are.equal("new g2 n2 upgraded c", ask(c, "c"))
        assert.are.equal("old g1 n2 b", ask(stays, "b"))
        assert.are.equal("new g2 n1 fresh d", ask(client.connect(proc.host, proc.port), "d"))
        assert.are.equal(1, #error_lines(proc))
      end)
  end)

  describe("modules", function()
    it("reloads a module required from the script's directory, not the host's own", function()
      scratch:write("greeting.lua", fixture("greeting.lua"))
      local script = scratch:write("handler.lua", fixture("uses_module.lua"))
      proc = server.start({ script })
      local old = client.connect(proc.host, proc.port)
      local word, host_lib = ask(old, "x"):match("^(%S+) g1 (%S+) x$")
      assert.are.equal("hello", word)

      scratch:write("greeting.lua", (fixture("greeting.lua"):gsub('"hello"', '"bonjour"')))
      proc:signal("sighup")
      wait_reloaded(proc, script, 2)
      assert.are.equal(("bonjour g2 %s y"):format(host_lib), ask(client.connect(proc.host, proc.port), "y"))
      assert.are.equal(("hello g1 %s z"):format(host_lib), ask(old, "z"))
      assert.are.same({}, error_lines(proc))
    end)
  end)
end)
