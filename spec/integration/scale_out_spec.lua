-- Scaling out, all on loopback: a real redis-server, three luaecho
-- instances serving lua/examples/chat.lua with --channel-redis,
-- --proxy-protocol and --metrics, and a real HAProxy in front running
-- deploy/haproxy.cfg itself (its "${VAR}" addresses filled in here). Chat
-- clients connect through HAProxy only, as telnet users would (plain TCP,
-- never answering option offers, as nc does), land on different instances
-- (each instance's metrics say which) and hear each other; an instance that
-- gets SIGTERM closes its own clients cleanly while HAProxy sends newcomers
-- to the others; Redis stopped and started again: the chat within an
-- instance goes on, and the path across instances (and the shared member
-- list) comes back by itself; an instance that crashes leaves names that
-- expire. And an instance whose shutdown waits on a client that does not
-- read says 503 on /healthz meanwhile, which takes it out of HAProxy's
-- rotation (spec/fixtures/scale_out/blob.lua). Every wait has a deadline.
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local haproxy = require "support.haproxy"
local prometheus = require "support.prometheus"
local redis = require "support.redis"
local server = require "support.server"
local wait = require "support.wait"

after_each(cleanup.expect_clean)

local TIMEOUT = 10

-- deploy/haproxy.cfg with its environment references replaced by the three
-- instances' addresses; fails if the file names one this spec does not know.
local function haproxy_config(instances)
  local values = {}
  for i, proc in ipairs(instances) do
    values["LUAECHO" .. i] = ("%s:%d"):format(proc.host, proc.port)
    values["LUAECHO" .. i .. "_METRICS"] = tostring(proc.metrics_port)
  end
  local text = files.read("deploy/haproxy.cfg")
  return function(port)
    values.LUAECHO_FRONTEND = ("%s:%d"):format(haproxy.HOST, port)
    return (text:gsub('"%${([%w_]+)}"', function(name)
      return assert(values[name], "deploy/haproxy.cfg names ${" .. name .. "}, unknown to this spec")
    end))
  end
end

-- Connections accepted by an instance's chat listener so far (its metrics).
local function accepted(proc)
  local status, body = prometheus.http_get(proc.metrics_port, "/metrics", 5)
  assert.are.equal(200, status, body)
  local n = 0
  for value in body:gmatch('\nluaecho_connections_accepted_total{[^}]*} (%d+)') do n = n + tonumber(value) end
  return n
end

local function accepted_all(instances)
  local counts = {}
  for i, proc in ipairs(instances) do counts[i] = proc:exited() and -1 or accepted(proc) end
  return counts
end

-- What a member has read, telnet commands (IAC ...) left out.
local function readable(member)
  return (member.seen:gsub("\255[\251-\254].", ""))
end

-- Read until what `member` has seen since `member.mark` matches `pattern`.
local function expect(member, pattern, what, timeout)
  return wait.until_true(function()
    member.conn.sock:settimeout(0.05)
    local data, err, partial = member.conn.sock:receive(4096)
    member.seen = member.seen .. (data or partial or "")
    if err == "closed" then member.closed = true end
    return readable(member):sub(member.mark):match(pattern)
  end, timeout or TIMEOUT, (what or pattern) .. " (" .. member.nick .. " has read: " .. readable(member) .. ")")
end

-- Forget what `member` has read so far: later expects look past it.
local function mark(member)
  member.mark = #readable(member) + 1
end

-- A new client through HAProxy that joins as `nick`; which instance took it
-- (the one whose accepted count went up) is in member.instance.
local function join(lb, instances, nick)
  local before = accepted_all(instances)
  local member = { conn = client.connect(lb.host, lb.port), seen = "", mark = 1, nick = nick }
  expect(member, "Your nickname: ", "the nickname prompt")
  member.conn:send_all(nick .. "\r\n")
  expect(member, "Hello " .. nick .. "%.", "the greeting")
  local after = accepted_all(instances)
  for i = 1, #instances do
    if after[i] == before[i] + 1 then member.instance = i end
  end
  assert(member.instance, ("%s: no instance counted the connection (%s -> %s)"):format(nick,
    table.concat(before, ","), table.concat(after, ",")))
  mark(member)
  return member
end

local function say(member, line)
  member.conn:send_all(line .. "\r\n")
end

describe("three chat instances behind HAProxy, sharing Redis #integration", function()
  local redis_proc, instances, lb

  before_each(function()
    redis_proc = redis.start()
    local url = redis_proc:url()
    instances = {}
    for i = 1, 3 do
      instances[i] = server.start({ server.script("examples/chat.lua"), "--proxy-protocol",
        "--metrics", "127.0.0.1:0", "--channel-redis", url })
      instances[i]:wait_metrics()
    end
    lb = haproxy.start_config(haproxy_config(instances))
  end)

  after_each(function()
    client.close_all()
    assert.are.same({}, haproxy.stop_all())
    assert.are.same({}, server.stop_all())
    assert.are.same({}, redis.stop_all())
  end)

  it("spreads clients over the instances, who hear each other; SIGTERM and a Redis restart disturb no one else",
    function()
    -- Round robin: three clients, three instances.
    local ann = join(lb, instances, "ann")
    local bob = join(lb, instances, "bob")
    local carol = join(lb, instances, "carol")
    assert.are.same({ 1, 1, 1 }, accepted_all(instances))
    assert.are_not.equal(ann.instance, bob.instance)
    assert.are_not.equal(bob.instance, carol.instance)
    assert.are_not.equal(ann.instance, carol.instance)

    -- Lines, joins and the member list cross the instances.
    expect(ann, "%* bob joined.*%* carol joined", "ann told of bob and carol")
    say(ann, "hello from ann")
    expect(bob, "<ann> hello from ann")
    expect(carol, "<ann> hello from ann")
    say(carol, "/who")
    expect(carol, "Here: ann, bob, carol%.", "/who listing all three instances' members")
    local dup = { conn = client.connect(lb.host, lb.port), seen = "", mark = 1, nick = "(dup)" }
    expect(dup, "Your nickname: ")
    dup.conn:send_all("BOB\r\n")
    expect(dup, "BOB is taken; choose another%.", "bob's name refused on another instance")
    dup.conn:close()
    for _, m in ipairs({ ann, bob, carol }) do mark(m) end

    -- SIGTERM to bob's instance: bob's connection ends cleanly (a FIN after
    -- everything queued), the instance exits 0, the others chat on.
    local doomed = instances[bob.instance]
    doomed:signal("sigterm")
    local _, how = bob.conn:receive_until_close(TIMEOUT)
    assert.are.equal("closed", how)
    assert.are.equal(0, doomed:wait_exit(TIMEOUT))
    assert.matches("luaecho: shutting down %(SIGTERM%)", doomed:stderr())
    expect(ann, "%* bob left", "ann told bob left")
    -- HAProxy's health check took the instance out (its /healthz said 503,
    -- then nothing answered there).
    local down = wait.until_true(function()
      return lb:output():match("Server luaecho/luaecho" .. bob.instance .. " is DOWN[^\n]*")
    end, TIMEOUT, "HAProxy marking bob's instance down")
    assert.matches("reason: Layer[47]", down)
    say(ann, "still here")
    expect(carol, "<ann> still here")

    -- Newcomers go to the two instances left; bob's name was released as
    -- his instance shut down, so it is free at once.
    local newcomers = {}
    for i, nick in ipairs({ "Bob", "erin", "frank", "gina" }) do
      newcomers[i] = join(lb, instances, nick)
      assert.are_not.equal(bob.instance, newcomers[i].instance)
    end
    local anns_neighbour
    for _, m in ipairs(newcomers) do
      if m.instance == ann.instance then anns_neighbour = m end
    end
    assert(anns_neighbour, "no newcomer on ann's instance")
    for _, m in ipairs({ ann, carol, anns_neighbour }) do mark(m) end

    -- Redis stopped: ann's neighbour on her instance still hears her; a
    -- newcomer still gets in; /who says it lists one server.
    assert.are.same({}, redis_proc:stop())
    say(ann, "redis is down")
    expect(anns_neighbour, "<ann> redis is down")
    local late = { conn = client.connect(instances[ann.instance].host, instances[ann.instance].port),
      seen = "", mark = 1, nick = "hank" }
    late.conn:send_all("PROXY TCP4 127.0.0.1 127.0.0.1 40000 2222\r\n")
    expect(late, "Your nickname: ")
    late.conn:send_all("hank\r\n")
    expect(late, "Hello hank%.", "hank served while Redis is down")
    say(late, "/who")
    expect(late, "this server only", "/who saying it lists this server only")

    -- Redis back on the same port (empty: no persistence): the path across
    -- instances comes back by itself, and the refresh restores the names.
    redis_proc = redis_proc:restart()
    local n = 0
    wait.until_true(function()
      n = n + 1
      say(ann, "ping " .. n)
      return pcall(expect, carol, "<ann> ping %d+", "a ping", 0.5)
    end, 20, "a line from ann to carol's instance after Redis came back", true)
    assert.is_nil(readable(carol):find("redis is down", 1, true), "a line from the outage crossed later")
    mark(carol)
    -- Each instance claims its members' names again within 10 s.
    local listed
    wait.until_true(function()
      mark(carol)
      say(carol, "/who")
      listed = expect(carol, "Here: ([^\r\n]*)%.", "a /who answer")
      return listed:find("hank", 1, true) and listed:find("carol", 1, true)
    end, 20, "/who listing the members of both instances again")
    assert.matches("ann", listed)
    assert.matches("gina", listed)
    assert.is_nil(listed:find("bob", 1, true), "bob, gone, still listed: " .. listed)

    -- carol's instance crashes (SIGKILL: nothing released). Her name is
    -- only held by a key with a TTL of at most 30 s; once it has expired
    -- (deleted here, as the expiry would) /who forgets her.
    local crashed = instances[carol.instance]
    crashed:signal("sigkill")
    crashed:wait_exit(TIMEOUT)
    local ttl = redis_proc:command("TTL", "chat:nick:carol")
    assert(ttl and ttl > 0 and ttl <= 30, "carol's name should expire within 30 s; its TTL is " .. tostring(ttl))
    redis_proc:command("DEL", "chat:nick:carol")
    mark(ann)
    say(ann, "/who")
    listed = expect(ann, "Here: ([^\r\n]*)%.", "/who after carol's instance crashed")
    assert.is_nil(listed:find("carol", 1, true), "carol still listed: " .. listed)
    assert.matches("ann", listed)
    assert.matches("hank", listed)
  end)
end)

describe("an instance shutting down behind HAProxy #integration", function()
  local instances, lb

  before_each(function()
    instances = {}
    for i = 1, 3 do
      instances[i] = server.start({ server.fixture("scale_out/blob.lua"), "--proxy-protocol",
        "--metrics", "127.0.0.1:0", "--shutdown-timeout", "4" })
      instances[i]:wait_metrics()
    end
    lb = haproxy.start_config(haproxy_config(instances))
  end)

  after_each(function()
    client.close_all()
    assert.are.same({}, haproxy.stop_all())
    assert.are.same({}, server.stop_all())
  end)

  it("answers 503 on /healthz while its connections close, and HAProxy takes it out on that", function()
    -- A client of instance 1 that does not read: the instance's shutdown
    -- waits on it, up to --shutdown-timeout.
    local first = instances[1]
    local held = client.connect(first.host, first.port)
    held:send_all("PROXY TCP4 127.0.0.1 127.0.0.1 40000 2222\r\n")
    assert.are.equal("x", held:receive_exactly(1, TIMEOUT)) -- it is writing
    local before = accepted(first)
    first:signal("sigterm")
    first:wait_output("stderr", "luaecho: shutting down %(SIGTERM%)", TIMEOUT, "the shutdown line")
    assert.are.equal(503, (prometheus.http_get(first.metrics_port, "/healthz", 5)))
    local down = wait.until_true(function()
      return lb:output():match("Server luaecho/luaecho1 is DOWN[^\n]*")
    end, 5, "HAProxy marking instance 1 down")
    assert.matches("Layer7 wrong status, code: 503", down)
    assert.is_false(first:exited(), "instance 1 should still be closing its client")
    -- Newcomers go to the other two while instance 1 is still closing.
    for _ = 1, 4 do
      local conn = client.connect(lb.host, lb.port)
      assert.are.equal("xxxx", conn:receive_exactly(4, TIMEOUT))
      conn:close()
    end
    assert.are.equal(before, accepted(first))
    assert.are.equal(0, first:wait_exit(10))
  end)
end)
