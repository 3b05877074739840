-- luaecho.channel across instances (issue 20, point 3): two luaecho
-- processes started with --channel-redis and a real redis-server (on a
-- free port, in a temp folder, no persistence): a message crosses exactly
-- once each way, and never comes back to its own instance twice; Redis
-- stopped: local delivery goes on, luaecho_channel_redis_up is 0, one
-- warning per outage, unsent messages counted; Redis restarted on the
-- same port: the cross path comes back by itself. A bad URL is a usage
-- error. spec/fixtures/channel/room.lua is the script.
local socket = require "socket"
local cleanup = require "support.cleanup"
local client = require "support.client"
local component = require "support.component"
local files = require "support.files"
local prometheus = require "support.prometheus"
local server = require "support.server"
local wait = require "support.wait"

local ROOM = server.fixture("channel/room.lua")

-- A redis-server of our own, until spec/support/redis.lua (wip-redis) lands.
local Redis = component.kind("redis-server")

function Redis:describe()
  return ("redis-server on port %d:\n%s"):format(self.port, self:output())
end

-- True once it answers PING.
function Redis:ready()
  local sock = socket.tcp()
  sock:settimeout(0.5)
  if not sock:connect(component.HOST, self.port) then
    sock:close()
    return false
  end
  sock:send("PING\r\n")
  local line = sock:receive("*l")
  sock:close()
  return line == "+PONG"
end

-- Start redis-server on `port` (default: a free one).
local function start_redis(port)
  local bin = assert(component.find("redis-server"), "redis-server is not installed (scripts/setup)")
  local r, err = component.start(function()
    local p = port or component.free_port()
    return component.spawn(Redis, bin, files.scratch("redis"),
      { "--port", tostring(p), "--bind", component.HOST, "--save", "", "--appendonly", "no", "--dir", "." },
      { port = p })
  end, 10, "redis-server answering PING", "Address already in use")
  return assert(r, err)
end

after_each(function()
  local problems = Redis.registry.stop_all()
  for _, problem in ipairs(cleanup.all()) do problems[#problems + 1] = problem end
  assert.are.same({}, problems)
end)

local function line_of(conn, timeout)
  conn.sock:settimeout(timeout or 5)
  local line, err = conn.sock:receive("*l")
  if not line then error("no line from the server: " .. tostring(err), 2) end
  return line
end

-- Start an instance of the room on Redis at `port`; wait until its link is up.
local function start_instance(port)
  local url = ("redis://%s:%d"):format(component.HOST, port)
  local proc = server.start({ "--channel-redis", url, "--metrics", "127.0.0.1:0", ROOM })
  proc:wait_metrics()
  proc:wait_output("stderr", "luaecho: channel: Redis at [^\n]* is up: messages cross instances\n", 10)
  return proc
end

local function connect(proc)
  local conn = client.connect(proc.host, proc.port)
  assert.are.equal("001", line_of(conn))
  return conn
end

-- The value of the process-wide sample `name` in a scrape of proc's /metrics.
local function sample(proc, name)
  local status, body = prometheus.http_get(proc.metrics_port, "/metrics", 5)
  assert.are.equal(200, status)
  return tonumber(body:match("\n" .. name .. " (%S+)\n"))
end

describe("luaecho --channel-redis #integration", function()
  it("carries a message across two instances exactly once each way", function()
    local redis = start_redis()
    local a, b = start_instance(redis.port), start_instance(redis.port)
    local a1, a2, b1 = connect(a), connect(a), connect(b)
    a1:send_all("pub room from-a\n")
    assert.are.same({ "published from-a", "got v1 from-a" }, { line_of(a1), line_of(a1) })
    assert.are.equal("got v1 from-a", line_of(a2))
    assert.are.equal("got v1 from-a", line_of(b1))
    b1:send_all("pub room from-b\n")
    assert.are.same({ "published from-b", "got v1 from-b" }, { line_of(b1), line_of(b1) })
    assert.are.equal("got v1 from-b", line_of(a1))
    assert.are.equal("got v1 from-b", line_of(a2))
    -- Exactly once: the next line anyone gets is the next message.
    b1:send_all("pub room end\n")
    assert.are.equal("published end", line_of(b1))
    for _, conn in ipairs({ a1, a2, b1 }) do assert.are.equal("got v1 end", line_of(conn)) end
    for _, proc in ipairs({ a, b }) do
      for _, m in ipairs({ "from-a", "from-b", "end" }) do
        assert.are.equal(1, proc:count("stdout", "^room v1 1 " .. m:gsub("%-", "%%-") .. "$"), m)
      end
    end
    assert.are.equal(1, sample(a, "luaecho_channel_redis_up"))
    assert.are.equal(0, sample(a, "luaecho_channel_redis_unsent_total"))
  end)

  it("keeps local delivery without Redis, says so once, and comes back by itself", function()
    local redis = start_redis()
    local port = redis.port
    local a, b = start_instance(port), start_instance(port)
    local a1, b1 = connect(a), connect(b)
    assert.are.same({}, redis:stop())
    local unreachable = "luaecho: warning: channel: Redis at redis://127.0.0.1:" .. port
      .. "/0 is unreachable %([^\n]*%): local subscribers are still served; messages to and from other "
      .. "instances are lost until it is back\n"
    a:wait_output("stderr", unreachable, 10)
    assert.are.equal(0, sample(a, "luaecho_channel_redis_up"))
    a1:send_all("pub room alone\n")
    assert.are.same({ "published alone", "got v1 alone" }, { line_of(a1), line_of(a1) })
    wait.until_true(function() return sample(a, "luaecho_channel_redis_unsent_total") >= 1 end, 5,
      "the message counted as unsent")
    start_redis(port)
    a:wait_output("stderr", "luaecho: channel: Redis at [^\n]* is back: messages cross instances again\n", 15)
    b:wait_output("stderr", "luaecho: channel: Redis at [^\n]* is back: messages cross instances again\n", 15)
    assert.are.equal(1, sample(a, "luaecho_channel_redis_up"))
    -- The first messages may beat the subscriber's PSUBSCRIBE: probe until one crosses.
    local n = 0
    wait.until_true(function()
      n = n + 1
      a1:send_all(("pub room probe%d\n"):format(n))
      assert.are.same({ "published probe" .. n, "got v1 probe" .. n }, { line_of(a1), line_of(a1) })
      b1.sock:settimeout(0.2)
      local line = b1.sock:receive("*l")
      if line then
        assert.is_truthy(line:match("^got v1 probe%d+$"), line)
        return true
      end
    end, 10, "a message crossing again")
    for _, proc in ipairs({ a, b }) do
      assert.are.equal(1, proc:count("stderr", "^luaecho: warning: channel: Redis at .* is unreachable"),
        "one warning for the outage")
    end
    assert.are.equal(0, b:count("stdout", "^room v1 1 alone$")) -- lost, as documented
  end)

  it("refuses a bad URL with exit code 2, and --channel-redis with run", function()
    local code, _, err = server.run({ "--channel-redis", "http://127.0.0.1:6379", ROOM })
    assert.are.equal(2, code)
    assert.matches("^luaecho: %-%-channel%-redis: [^\n]+\nTry 'luaecho %-%-help' for more information%.\n$", err)
    code, _, err = server.run({ "run", "--channel-redis", "redis://127.0.0.1:6379", ROOM })
    assert.are.equal(2, code)
    assert.matches("^luaecho: %-%-channel%-redis is for the server", err)
  end)
end)
