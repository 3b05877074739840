-- luaecho.channel across instances (issue 20, point 3): two luaecho
-- processes started with --channel-redis and a real redis-server (on a
-- free port, in a temp folder, no persistence): a message crosses exactly
-- once each way, and never comes back to its own instance twice; a burst
-- of 20,000 published in one callback crosses whole and in order; Redis
-- stopped: local delivery goes on, luaecho_channel_redis_up is 0, one
-- warning per outage, unsent messages counted; Redis restarted on the
-- same port: the cross path comes back by itself. A bad URL is a usage
-- error. spec/fixtures/channel/room.lua is the script; support.redis
-- starts redis-server.
local cleanup = require "support.cleanup"
local client = require "support.client"
local prometheus = require "support.prometheus"
local redis = require "support.redis"
local server = require "support.server"
local wait = require "support.wait"

local ROOM = server.fixture("channel/room.lua")

after_each(function()
  local problems = redis.stop_all()
  for _, problem in ipairs(cleanup.all()) do problems[#problems + 1] = problem end
  assert.are.same({}, problems)
end)

local function line_of(conn, timeout)
  conn.sock:settimeout(timeout or 5)
  local line, err = conn.sock:receive("*l")
  if not line then error("no line from the server: " .. tostring(err), 2) end
  return line
end

-- Start an instance of the room on Redis `r`; wait until its link is up.
local function start_instance(r)
  local proc = server.start({ "--channel-redis", r:url(), "--metrics", "127.0.0.1:0", ROOM })
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
    local r = redis.start()
    local a, b = start_instance(r), start_instance(r)
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

  it("carries a burst published in one callback whole and in order", function()
    local r = redis.start()
    local a, b = start_instance(r), start_instance(r)
    local a1, b1 = connect(a), connect(b)
    b1:send_all("tally flood\n")
    assert.are.equal("tallying flood", line_of(b1))
    a1:send_all("flood flood 20000 100\n") -- more than the PUBLISHes awaiting replies at once (4096)
    assert.are.equal("flooded", line_of(a1, 30))
    wait.until_true(function()
      b1:send_all("tally?\n")
      local count, order = line_of(b1):match("^tally (%d+) (%a+)$")
      assert.are.equal("ordered", order)
      return tonumber(count) == 20000
    end, 30, "20000 messages on instance B")
    assert.are.equal(0, sample(a, "luaecho_channel_redis_unsent_total"))
  end)

  it("keeps local delivery without Redis, says so once, and comes back by itself", function()
    local r = redis.start()
    local port = r.port
    local a, b = start_instance(r), start_instance(r)
    local a1, b1 = connect(a), connect(b)
    assert.are.same({}, r:stop())
    local unreachable = "luaecho: warning: channel: Redis at redis://127.0.0.1:" .. port
      .. "/0 is unreachable %([^\n]*%): local subscribers are still served; messages to and from other "
      .. "instances are lost until it is back\n"
    a:wait_output("stderr", unreachable, 10)
    assert.are.equal(0, sample(a, "luaecho_channel_redis_up"))
    a1:send_all("pub room alone\n")
    assert.are.same({ "published alone", "got v1 alone" }, { line_of(a1), line_of(a1) })
    wait.until_true(function() return sample(a, "luaecho_channel_redis_unsent_total") >= 1 end, 5,
      "the message counted as unsent")
    r:restart()
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
