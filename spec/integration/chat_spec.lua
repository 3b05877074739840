-- The telnet chat example (lua/examples/chat.lua) on the real binary, with
-- plain TCP clients that never answer option offers (as nc does): the room
-- survives a hot swap of chat.lua, because it lives in luaecho.shared, so a
-- member who joined before the swap and one who joined after it see each
-- other; with --workers 2 members served by different workers hear each
-- other (the room is a luaecho.channel topic); with --channel-redis the
-- member list lives in a real Redis, across a hot swap too. Across
-- instances: scale_out_spec.lua. (Its other rules have specs on luaecho.testing, in
-- spec/examples/chat_spec.lua; real telnet clients chat in
-- telnet_clients_spec.lua.) Every read has a deadline.
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local prometheus = require "support.prometheus"
local redis = require "support.redis"
local server = require "support.server"
local text = require "support.text"
local wait = require "support.wait"

after_each(cleanup.expect_clean)
after_each(function() assert.are.same({}, redis.stop_all()) end)

local TIMEOUT = 5

-- What a member has read so far, telnet commands (IAC ...) left out.
local function readable(member)
  return (member.seen:gsub("\255[\251-\254].", ""))
end

-- Read until what `member` has seen matches `pattern`; returns the capture.
local function expect(member, pattern, what)
  return wait.until_true(function()
    member.conn.sock:settimeout(0.05)
    local data, _, partial = member.conn.sock:receive(4096)
    member.seen = member.seen .. (data or partial or "")
    return readable(member):match(pattern)
  end, TIMEOUT, what or pattern)
end

local function join(proc, nick)
  local member = { conn = client.connect(proc.host, proc.port), seen = "" }
  expect(member, "Your nickname: ", "the nickname prompt")
  member.conn:send_all(nick .. "\r\n")
  expect(member, "Hello " .. nick .. "%.", "the greeting of " .. nick)
  return member
end

describe("the chat example #integration", function()
  it("keeps one room across a hot swap: members from before and after it see each other", function()
    local original = files.read(server.script("examples/chat.lua"))
    local scratch = files.scratch("chat")
    local script = scratch:write("chat.lua", original)
    local proc = server.start({ script })
    local ann = join(proc, "ann")

    -- The new code says hello differently: who joins after the swap runs it.
    local edited, n = original:gsub('"Hello %%s%. %%s\\n"', '"Welcome back, %%s. %%s\\n"')
    assert.are.equal(1, n, "chat.lua's greeting line changed: update this spec")
    scratch:replace("chat.lua", edited)
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: reloaded " .. text.literal(script) .. " %(generation 2%)\n", 10,
      "the 'reloaded' line")

    local bob = { conn = client.connect(proc.host, proc.port), seen = "" }
    expect(bob, "Your nickname: ")
    bob.conn:send_all("bob\r\n")
    expect(bob, "Welcome back, bob%. Here: ann%.", "the new code's greeting, naming ann")
    expect(ann, "%* bob joined", "ann told that bob joined")

    ann.conn:send_all("hi bob\r\n")
    expect(bob, "<ann> hi bob")
    bob.conn:send_all("hi ann\r\n")
    expect(ann, "<bob> hi ann")
    bob.conn:send_all("/who\r\n")
    expect(bob, "Here: ann, bob%.")
  end)

  -- Connections accepted so far, by worker (a scrape of proc's metrics).
  local function accepted(proc)
    local status, body = prometheus.http_get(proc.metrics_port, "/metrics", 5)
    assert.are.equal(200, status, body)
    local by = {}
    for w, n in body:gmatch('\nluaecho_connections_accepted_total{worker="(%d)",[^}]*} (%d+)') do
      by[tonumber(w)] = (by[tonumber(w)] or 0) + tonumber(n)
    end
    return by
  end

  it("with --workers 2, members served by different workers hear each other", function()
    local proc = server.start({ "--workers", "2", "--metrics", "127.0.0.1:0", server.script("examples/chat.lua") })
    proc:wait_metrics()
    -- Connect until a client lands on each worker; the others leave at the prompt.
    local on = {}
    for _ = 1, 64 do
      if on[1] and on[2] then break end
      local before = accepted(proc)
      local member = { conn = client.connect(proc.host, proc.port), seen = "" }
      expect(member, "Your nickname: ", "the nickname prompt")
      local after = accepted(proc)
      local worker = (after[1] or 0) > (before[1] or 0) and 1 or 2
      if on[worker] then member.conn:close() else on[worker] = member end
    end
    assert(on[1] and on[2], "the kernel never gave both workers a connection")
    on[1].conn:send_all("ann\r\n")
    expect(on[1], "Hello ann%.")
    on[2].conn:send_all("bob\r\n")
    expect(on[2], "Hello bob%.")
    expect(on[1], "%* bob joined", "ann (worker 1) told that bob (worker 2) joined")
    on[1].conn:send_all("hi from worker 1\r\n")
    expect(on[2], "<ann> hi from worker 1")
    on[2].conn:send_all("/me waves from worker 2\r\n")
    expect(on[1], "%* bob waves from worker 2")
  end)

  it("with --channel-redis, keeps its members in Redis across a hot swap", function()
    local store = redis.start()
    local scratch = files.scratch("chat")
    local script = scratch:write("chat.lua", files.read(server.script("examples/chat.lua")))
    local proc = server.start({ "--channel-redis", store:url(), script })
    local ann = join(proc, "ann")
    assert.matches("^%x+/%d+ ann$", store:command("GET", "chat:nick:ann"))
    local ttl = store:command("TTL", "chat:nick:ann")
    assert(ttl > 0 and ttl <= 30, "the name's TTL is " .. tostring(ttl))

    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: reloaded " .. text.literal(script) .. " %(generation 2%)\n", 10,
      "the 'reloaded' line")
    local bob = join(proc, "bob")            -- the new code, the same Redis client and list
    assert.matches("Hello bob%. Here: ann%.", readable(bob))
    expect(ann, "%* bob joined")
    bob.conn:send_all("/who\r\n")
    expect(bob, "Here: ann, bob%.")
    assert.are.same({ "ann", "bob" }, store:command("ZRANGE", "chat:who", "0", "-1"))

    ann.conn:send_all("/quit\r\n")          -- the old code releases its name
    expect(bob, "%* ann left")
    wait.until_true(function() return store:command("GET", "chat:nick:ann") == nil end, TIMEOUT,
      "ann's name released in Redis")
    assert.are.same({ "bob" }, store:command("ZRANGE", "chat:who", "0", "-1"))
  end)
end)
