-- Hostile clients (issue 5, point 4). For LUAECHO_CHAOS_SECONDS (default
-- 20), 100 clients send random bytes in random chunk sizes (telnet IAC
-- sequences and NUL bytes included), half-close, reset (SO_LINGER 0) in the
-- middle of a write, close and reconnect, while one well-behaved client
-- checks every byte of its echoes. Afterwards the well-behaved client has
-- seen no error and no wrong byte, connection_lost ran once per
-- connection_made, and the server's descriptors and memory are back where
-- they started.
--
-- Everything random comes from one seeded generator: the seed is printed,
-- and LUAECHO_CHAOS_SEED=<seed> replays the same choices (the timing of the
-- network still varies).
local socket = require "socket"
local sanitizer = require "support.sanitizer"
local server = require "support.server"
local wait = require "support.wait"
local stats = require "support.proc_stats"

local MiB = 1024 * 1024
local SECONDS = tonumber(os.getenv("LUAECHO_CHAOS_SECONDS") or "20")
local SEED = math.tointeger(tonumber(os.getenv("LUAECHO_CHAOS_SEED") or "")) or os.time()
local HOSTILE = 100
local MAX_RSS_GROWTH = 16 * MiB
local MEAN_PAUSE_MS = 100    -- between two steps of one hostile client

-- splitmix64: a small generator of our own, so nothing else that draws
-- from math.random changes the sequence. random(lo, hi) is in [lo, hi].
local function generator(seed)
  local state = seed
  return function(lo, hi)
    state = state + 0x9e3779b97f4a7c15
    local z = state
    z = (z ~ (z >> 30)) * 0xbf58476d1ce4e5b9
    z = (z ~ (z >> 27)) * 0x94d049bb133111eb
    z = z ~ (z >> 31)
    return lo + (z >> 1) % (hi - lo + 1)
  end
end

-- Telnet commands a server may meet: IAC WILL ECHO, IAC DO SGA, a
-- subnegotiation (IAC SB TTYPE SEND IAC SE), an escaped 255, IAC alone,
-- and the NULs of telnet's CR NUL.
local SPECIAL = { "\255\251\1", "\255\253\3", "\255\250\24\1\255\240", "\255\255", "\255", "\0", "\r\0",
  "\0\0\0\0", "\r\n" }

-- 1 MiB of random bytes with telnet sequences and NULs sprinkled in.
local function random_pool(random)
  local parts, size = {}, 0
  while size < MiB do
    local run = {}
    for i = 1, random(1, 64) do run[i] = random(0, 255) end
    local piece = string.char(table.unpack(run)) .. SPECIAL[random(1, #SPECIAL)]
    parts[#parts + 1] = piece
    size = size + #piece
  end
  return table.concat(parts)
end

-- A random chunk size: mostly small, sometimes large.
local function chunk_size(random)
  local roll = random(1, 100)
  if roll <= 50 then return random(1, 16) end
  if roll <= 80 then return random(17, 1024) end
  if roll <= 95 then return random(1025, 16384) end
  return random(16385, 256 * 1024)
end

local function random_chunk(random, pool)
  local len = chunk_size(random)
  local from = random(1, #pool - len + 1)
  return pool:sub(from, from + len - 1)
end

-- Sockets not closed yet, so teardown can close them if a spec fails.
local open_socks = {}

-- Raw luasocket connect, counted; nil if the connection failed.
local function connect(proc, counts)
  local sock = socket.tcp()
  sock:settimeout(2)
  local ok = sock:connect(proc.host, proc.port)
  if not ok then
    sock:close()
    counts.connect_failures = counts.connect_failures + 1
    return nil
  end
  counts.connects = counts.connects + 1
  sock:settimeout(0)
  open_socks[sock] = true
  return sock
end

local function close(sock)
  sock:close()
  open_socks[sock] = nil
end

local function reset(sock)
  sock:setoption("linger", { on = true, timeout = 0 })
  close(sock)
end

------------------------------------------------------------------------------
-- A hostile client: "idle" (no connection), "open" or "half_closed". Some
-- read what comes back, some never do. `pending` is a chunk being sent;
-- `reset_at` resets the connection once that many bytes of it are out.

local Hostile = {}
Hostile.__index = Hostile

function Hostile.new(random)
  return setmetatable({ state = "idle", reads = random(1, 2) == 1, next_at = 0 }, Hostile)
end

function Hostile:drop(how, counts)
  if how == "reset" then reset(self.sock) else close(self.sock) end
  counts[how] = counts[how] + 1
  self.sock, self.state, self.pending, self.reset_at = nil, "idle", nil, nil
end

-- One random step. Returns nothing; counts what it did.
function Hostile:act(random, pool, proc, counts)
  if self.state == "idle" then
    self.sock = connect(proc, counts)
    if self.sock then self.state, self.reads = "open", random(1, 2) == 1 end
    return
  end
  local roll = random(1, 100)
  if self.state == "half_closed" then
    if roll <= 10 then self:drop(roll <= 5 and "reset" or "close", counts) end
    return
  end
  if roll <= 45 then
    if not self.pending then self.pending, self.sent = random_chunk(random, pool), 0 end
  elseif roll <= 52 then
    -- Reset in the middle of a big write.
    self.pending, self.sent = pool:sub(1, random(64 * 1024, 512 * 1024)), 0
    self.reset_at = random(1, #self.pending - 1)
  elseif roll <= 60 then
    self:drop("reset", counts)
  elseif roll <= 67 then
    self.pending = nil
    self.sock:shutdown("send")
    self.state, self.reads = "half_closed", true
    counts.half_close = counts.half_close + 1
  elseif roll <= 74 then
    self:drop("close", counts)
  end
end

-- The socket is writable: send what it takes of the pending chunk.
function Hostile:write(counts)
  local upto = self.reset_at or #self.pending
  local last, err, partial = self.sock:send(self.pending, self.sent + 1, upto)
  local sent = last or partial or self.sent
  counts.bytes_sent = counts.bytes_sent + (sent - self.sent)
  self.sent = sent
  if err and err ~= "timeout" then
    self:drop("close", counts)   -- the server ended it (it may reset us)
  elseif self.reset_at and sent >= self.reset_at then
    self:drop("reset", counts)
    counts.reset_mid_write = counts.reset_mid_write + 1
  elseif sent >= #self.pending then
    self.pending, self.reset_at = nil, nil
  end
end

-- The socket is readable: take what came, notice the server's close.
function Hostile:read(counts)
  local _, err = self.sock:receive(65536)
  if err and err ~= "timeout" then
    counts.closed_by_server = counts.closed_by_server + 1
    self:drop("close", counts)
  end
end

------------------------------------------------------------------------------
-- The well-behaved client: one random chunk at a time, its echo compared
-- byte for byte as it arrives.

local Good = {}
Good.__index = Good

function Good.new(sock)
  return setmetatable({ sock = sock, chunks = 0, bytes = 0, max_round_trip = 0 }, Good)
end

function Good:next(random, pool)
  self.out = random_chunk(random, pool):sub(1, 16384)
  self.sent, self.got, self.started = 0, 0, wait.now()
end

function Good:write()
  local last, err, partial = self.sock:send(self.out, self.sent + 1)
  self.sent = last or partial or self.sent
  assert(not err or err == "timeout", "the well-behaved client could not send: " .. tostring(err))
end

-- Returns true once the whole chunk has come back.
function Good:read()
  local data, err, partial = self.sock:receive(#self.out - self.got)
  local piece = data or partial or ""
  local want = self.out:sub(self.got + 1, self.got + #piece)
  if piece ~= want then
    local at = 1
    while piece:byte(at) == want:byte(at) do at = at + 1 end
    error(("wrong byte in echo %d at offset %d of %d: got %q, expected %q"):format(self.chunks + 1,
      self.got + at - 1, #self.out, piece:sub(at, at + 15), want:sub(at, at + 15)))
  end
  self.got = self.got + #piece
  assert(not err or err == "timeout", ("the well-behaved client's connection failed after %d bytes of echo %d: %s")
    :format(self.got, self.chunks + 1, tostring(err)))
  if self.got < #self.out then return false end
  self.chunks, self.bytes = self.chunks + 1, self.bytes + #self.out
  self.max_round_trip = math.max(self.max_round_trip, wait.now() - self.started)
  return true
end

------------------------------------------------------------------------------

-- One turn: select over every socket, move bytes, then let each hostile
-- client whose pause is over take a random step.
local function turn(random, pool, proc, hostile, good, counts)
  local recvt, sendt, owner = { good.sock }, {}, {}
  if good.sent < #good.out then sendt[1] = good.sock end
  for _, h in ipairs(hostile) do
    if h.sock then
      owner[h.sock] = h
      if h.reads then recvt[#recvt + 1] = h.sock end
      if h.pending then sendt[#sendt + 1] = h.sock end
    end
  end
  local readable, writable = socket.select(recvt, sendt, 0.01)
  for _, sock in ipairs(writable) do
    if sock == good.sock then good:write()
    elseif owner[sock].sock == sock then owner[sock]:write(counts) end
  end
  for _, sock in ipairs(readable) do
    if sock == good.sock then
      if good:read() then good:next(random, pool) end
    elseif owner[sock].sock == sock then
      owner[sock]:read(counts)
    end
  end
  local now = wait.now()
  for _, h in ipairs(hostile) do
    if now >= h.next_at then
      h:act(random, pool, proc, counts)
      h.next_at = now + random(0, 2 * MEAN_PAUSE_MS) / 1000
    end
  end
end

local function count_lines(proc, prefix)
  return proc:count("stdout", "^" .. prefix .. " ")
end

-- Ports (as the server saw them) whose connection_made and connection_lost
-- counts differ: { [port] = "made M, lost L" }. Ports are reused over time,
-- so it is the counts per port that must agree, not their order.
local function unpaired_ports(proc)
  local made, lost, ports = {}, {}, {}
  for event, port in proc:stdout():gmatch("(%a+) (%d+)[^\n]*\n") do
    local counter = event == "made" and made or lost
    counter[port] = (counter[port] or 0) + 1
    ports[port] = true
  end
  local unpaired = {}
  for port in pairs(ports) do
    if made[port] ~= lost[port] then
      unpaired[port] = ("made %d, lost %d"):format(made[port] or 0, lost[port] or 0)
    end
  end
  return unpaired
end

describe("hostile clients #integration #soak", function()
  after_each(function()
    for sock in pairs(open_socks) do close(sock) end
    server.stop_all()
  end)

  it("leave the server serving a well-behaved client exactly, and leave nothing behind", function()
    print(("chaos: seed %d (replay with LUAECHO_CHAOS_SEED=%d), %g s"):format(SEED, SEED, SECONDS))
    local random = generator(SEED)
    local pool = random_pool(random)
    local proc = server.start({ server.fixture("limits/counted.lua") }, { env = sanitizer.small_quarantine() })
    local pid = proc.pid
    local fds_start, rss_start = stats.open_fds(pid), stats.rss(pid)
    local counts = { connects = 0, connect_failures = 0, reset = 0, close = 0, half_close = 0,
      reset_mid_write = 0, closed_by_server = 0, bytes_sent = 0 }

    local good = Good.new(connect(proc, counts))
    good:next(random, pool)
    local hostile = {}
    for i = 1, HOSTILE do hostile[i] = Hostile.new(random) end
    local started = wait.now()
    wait.until_true(function()
      turn(random, pool, proc, hostile, good, counts)
      return wait.now() - started >= SECONDS
    end, SECONDS + 30, "the chaos to run its course", true)

    -- Wind down: every hostile connection goes, by reset or close; the
    -- well-behaved client finishes its last echo and closes.
    for _, h in ipairs(hostile) do
      if h.sock then h:drop(random(1, 2) == 1 and "reset" or "close", counts) end
    end
    wait.until_true(function()
      if good.sent < #good.out then good:write() end
      socket.select({ good.sock }, nil, 0.05)
      return good:read()
    end, 10, "the well-behaved client's last echo", true)
    close(good.sock)

    local made = wait.until_true(function()
      local m, l = count_lines(proc, "made"), count_lines(proc, "lost")
      return m == counts.connects and l == m and m
    end, 30, "connection_lost for every connection", true)
    local errors = count_lines(proc, "lost") - proc:count("stdout", "^lost %d+ nil$")
    local fds_end = stats.settle_fds(pid, fds_start, 10)
    local rss_end = stats.rss(pid)
    print(("chaos: %d connections made, %d lost (%d with an error), %d connects failed; %d resets (%d mid-write),"
      .. " %d closes, %d half-closes, %d closed by the server; %s sent by hostile clients"):format(
      made, count_lines(proc, "lost"), errors, counts.connect_failures, counts.reset, counts.reset_mid_write,
      counts.close, counts.half_close, counts.closed_by_server, stats.mib(counts.bytes_sent)))
    print(("chaos: well-behaved client: %d echoes, %s checked byte for byte, 0 errors, slowest %.0f ms"):format(
      good.chunks, stats.mib(good.bytes), 1000 * good.max_round_trip))
    print(("chaos: server descriptors %d at start, %d after; RSS %s at start, %s after (%+.1f MiB)"):format(
      fds_start, fds_end, stats.mib(rss_start), stats.mib(rss_end), (rss_end - rss_start) / MiB))

    assert.are.same({}, unpaired_ports(proc))
    assert.are.equal(fds_start, fds_end, "open descriptors:\n" .. table.concat(stats.fd_targets(pid), "\n"))
    assert.are.equal(0, counts.connect_failures)
    assert.is_true(good.chunks > 0, "the well-behaved client got no echo at all")
    assert.is_true(rss_end - rss_start < MAX_RSS_GROWTH, ("RSS grew by %s"):format(stats.mib(rss_end - rss_start)))
    assert.is_nil(proc:stderr():find("luaecho: error:", 1, true), "a callback failed:\n" .. proc:stderr())
    proc:signal("sigterm")
    assert.are.equal(0, proc:wait_exit(10), proc:describe())
  end)
end)
