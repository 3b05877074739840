-- luaecho.redis against a real redis-server (support.redis: a free port, a
-- scratch directory, no persistence, stopped by its PID): the binary serves
-- spec/fixtures/redis/relay.lua, which relays the spec's lines to Redis and
-- answers with the replies shown as text; `luaecho run` programs cover the
-- URLs. Commands and every reply type, error replies as error tables,
-- refusals while disconnected (at once) and past the pending bound, a
-- reconnection after redis-server is killed and restarted on the same port
-- (logged once per outage, subscriptions made again), AUTH and SELECT from
-- the URL, a Unix socket. Every wait has a deadline.
local cleanup = require "support.cleanup"
local client = require "support.client"
local redis = require "support.redis"
local server = require "support.server"
local wait = require "support.wait"

local RELAY = server.fixture("redis/relay.lua")

after_each(function()
  local problems = cleanup.all() -- no crash, a clean exit on SIGTERM, no sanitizer report
  for _, p in ipairs(redis.stop_all()) do problems[#problems + 1] = p end
  assert.are.same({}, problems)
end)

-- Serve the relay against `url` (extra `env` too); returns the Proc.
local function serve(url, env, args)
  env = env or {}
  env.REDIS_URL = url
  local full = {}
  for _, a in ipairs(args or {}) do full[#full + 1] = a end
  full[#full + 1] = RELAY
  return server.start(full, { env = env })
end

-- One line from `conn` (without "\n"), within 5 s.
local function line_of(conn)
  conn.sock:settimeout(5)
  local reply, err = conn.sock:receive("*l")
  assert(reply, "no line from the relay: " .. tostring(err))
  return reply
end

-- Send `line` and return the answer line.
local function ask(conn, line)
  conn:send_all(line .. "\n")
  return line_of(conn)
end

local function connect(proc)
  return client.connect(proc.host, proc.port)
end

describe("luaecho.redis #integration", function()
  it("turns every reply type into Lua values", function()
    local r = redis.start()
    local proc = serve(r:url())
    local c = connect(proc)
    assert.are.equal("s:OK", ask(c, "CALL SET k v"))
    assert.are.equal("s:v", ask(c, "CALL GET k"))
    assert.are.equal("nil", ask(c, "CALL GET absent"))
    assert.are.equal("i:1", ask(c, "CALL INCR n"))
    assert.are.equal("i:3", ask(c, "CALL RPUSH l a b 7"))
    assert.are.equal("[s:a,s:b,s:7]", ask(c, "CALL LRANGE l 0 -1"))
    assert.are.equal("[]", ask(c, "CALL LRANGE absent 0 -1"))
    assert.are.equal("[i:1,[i:2,s:x],s:y]", ask(c, "CALL EVAL return{1,{2,'x'},'y'} 0"))
    assert.are.equal("[s:v,nil,s:1]", ask(c, "CALL MGET k absent n")) -- a nil element is a hole, n counts it
    assert.are.equal("s:PONG", ask(c, "CALL PING"))
    assert.are.equal("v", r:command("GET", "k")) -- what Redis itself holds
  end)

  it("returns an error reply as nil and an error table of kind redis", function()
    local r = redis.start()
    local proc = serve(r:url())
    local c = connect(proc)
    ask(c, "CALL SET k v")
    assert.are.equal("err:redis:WRONGTYPE:WRONGTYPE Operation against a key holding the wrong kind of value",
      ask(c, "CALL LPUSH k x"))
    assert.are.equal("err:redis:ERR:ERR unknown command 'NOSUCH', with args beginning with: 'a' ",
      ask(c, "CALL NOSUCH a"))
    -- an error inside an array (EXEC) is an error table in its place
    assert.are.equal("s:OK", ask(c, "CALL MULTI"))
    assert.are.equal("s:QUEUED", ask(c, "CALL INCR n"))
    assert.are.equal("s:QUEUED", ask(c, "CALL LPUSH k x"))
    assert.are.equal("[i:1,err:redis:WRONGTYPE:WRONGTYPE Operation against a key holding the wrong kind of value]",
      ask(c, "CALL EXEC"))
  end)

  it("calls a callback once, after r:call returned, also for a refusal", function()
    local r = redis.start()
    local proc = serve(r:url(), { REDIS_MAX_PENDING = "2" })
    local c = connect(proc)
    ask(c, "CALL SET k v")
    assert.are.equal("cb s:v", ask(c, "CB GET k"))
    assert.are.equal("cb nil", ask(c, "CB GET absent"))
    assert.are.equal("cb err:redis:WRONGTYPE:WRONGTYPE Operation against a key holding the wrong kind of value",
      ask(c, "CB LPUSH k x"))
    r:kill()
    wait.until_true(function() return proc:stdout():find("state down", 1, true) end, 5, "the link to go down")
    assert.matches("^cb err:disconnected:nil:not connected to redis://127%.0%.0%.1:%d+/0 %(it reconnects by itself%); "
      .. "the command was not sent$", ask(c, "CB PING")) -- not "(inside call)": delivered on a later turn
  end)

  it("refuses commands past the pending bound at once, with kind busy", function()
    local r = redis.start()
    local proc = serve(r:url(), { REDIS_MAX_PENDING = "5" })
    local c = connect(proc)
    assert.are.equal("s:PONG", ask(c, "CALL PING"))
    -- 20 PINGs sent in one go: no reply can come before the 6th is asked
    assert.are.equal("ok=5 busy=15 other=0", ask(c, "FLOOD 20"))
    assert.are.equal("ok=5 busy=0 other=0", ask(c, "FLOOD 5"))
  end)

  it("fails commands at once while down, reconnects with backoff, logs once per outage", function()
    local r = redis.start()
    local proc = serve(r:url(), nil, { "--log-level", "debug" })
    local c = connect(proc)
    assert.are.equal("s:OK", ask(c, "CALL SET k before"))
    assert.are.equal("subscribed", ask(c, "SUB news"))
    assert.are.equal("subscribed", ask(c, "PSUB ne*"))
    local function publish_to_both(instance, message)
      wait.until_true(function()
        return instance:command("PUBSUB", "NUMSUB", "news")[2] == 1 and instance:command("PUBSUB", "NUMPAT") == 1
      end, 5, "the channel and the pattern subscribed")
      assert.are.equal(2, instance:command("PUBLISH", "news", message))
      local got = { line_of(c), line_of(c) }
      table.sort(got)
      assert.are.same({ "msg news " .. message, "pmsg ne* news " .. message }, got)
    end
    publish_to_both(r, "one")

    r:kill()
    wait.until_true(function() return proc:stdout():find("state down", 1, true) end, 5, "the link to go down")
    local started = wait.now()
    local answer = ask(c, "CALL GET k")
    assert.is_true(wait.now() - started < 0.5, "a refusal took " .. (wait.now() - started) .. " s")
    assert.matches("^err:disconnected:nil:not connected to redis://127%.0%.0%.1:%d+/0 %(it reconnects by itself%); "
      .. "the command was not sent$", answer)
    -- several attempts fail (debug lines), one warning says so
    wait.until_true(function() return proc:count("stderr", "still unreachable") >= 3 end, 10, "three retries")
    assert.are.equal(2, proc:count("stderr", "luaecho.redis: lost the connection to")) -- command and subscriber link
    assert.are.equal(1, proc:count("stdout", "^state down"))

    local again = r:restart()
    wait.until_true(function() return proc:count("stdout", "^state up") == 2 end, 10, "the link to come back")
    assert.are.equal(2, proc:count("stderr", "luaecho.redis: connected to redis://127%.0%.0%.1:%d+/0 after"))
    assert.are.equal("nil", ask(c, "CALL GET k")) -- a new server, empty: no persistence
    assert.are.equal("s:OK", ask(c, "CALL SET k after"))
    -- the subscriptions were made again on the new server
    publish_to_both(again, "two")
    assert.are.equal(2, proc:count("stderr", "lost the connection")) -- still one per link for that outage
  end)

  it("answers a command still awaited when the client is closed with kind closed", function()
    local r = redis.start()
    local proc = serve(r:url())
    local a, b = connect(proc), connect(proc)
    assert.are.equal("s:PONG", ask(a, "CALL PING"))
    a:send_all("CALL BLPOP queue 0\n") -- Redis holds the reply until something is pushed
    wait.until_true(function()
      return r:command("INFO", "clients"):match("blocked_clients:(%d+)") == "1"
    end, 5, "the BLPOP to block")
    assert.are.equal("closed", ask(b, "CLOSE"))
    assert.matches("^err:closed:nil:the client of redis://127%.0%.0%.1:%d+/0 was closed before the reply$",
      line_of(a))
    assert.matches("^err:closed:nil:the client of redis://127%.0%.0%.1:%d+/0 is closed; the command was not sent$",
      ask(b, "CALL PING"))
    wait.until_true(function()
      return r:command("INFO", "clients"):match("connected_clients:(%d+)") == "1" -- only this check's own
    end, 5, "the link to close")
  end)

  it("reconnects to a host name, looked up again without blocking the loop", function()
    local r = redis.start()
    local proc = serve(("redis://localhost:%d"):format(r.port), nil, { "--log-level", "debug" })
    local c = connect(proc)
    assert.are.equal("s:PONG", ask(c, "CALL PING"))
    r:kill()
    wait.until_true(function() return proc:count("stderr", "still unreachable") >= 2 end, 10, "two retries")
    assert.are.equal("false", ask(c, "UP")) -- the loop answers while the lookups and attempts go on
    r:restart()
    wait.until_true(function() return proc:count("stdout", "^state up") == 2 end, 10, "the link to come back")
    assert.are.equal("s:PONG", ask(c, "CALL PING"))
    assert.matches("luaecho.redis: connected to redis://localhost:%d+/0 after", proc:stderr())
  end)

  it("delivers channel and pattern messages until the subscription is closed", function()
    local r = redis.start()
    local proc = serve(r:url())
    local a, b = connect(proc), connect(proc)
    assert.are.equal("subscribed", ask(a, "SUB room"))
    assert.are.equal("subscribed", ask(b, "SUB room"))
    assert.are.equal("subscribed", ask(b, "PSUB ro*"))
    -- one Redis subscription per name for the whole client, however many functions
    wait.until_true(function()
      local numsub = r:command("PUBSUB", "NUMSUB", "room")
      return numsub[2] == 1 and r:command("PUBSUB", "NUMPAT") == 1
    end, 5, "the channel and the pattern subscribed")
    assert.are.equal(2, r:command("PUBLISH", "room", "hi"))
    assert.are.equal("msg room hi", line_of(a))
    local got = { line_of(b), line_of(b) }
    table.sort(got)
    assert.are.same({ "msg room hi", "pmsg ro* room hi" }, got)
    assert.are.equal("unsubscribed", ask(a, "UNSUB room"))
    assert.are.equal(2, r:command("PUBLISH", "room", "again")) -- b still has both
    got = { line_of(b), line_of(b) }
    table.sort(got)
    assert.are.same({ "msg room again", "pmsg ro* room again" }, got)
    assert.are.equal("unsubscribed", ask(b, "UNSUB room"))
    assert.are.equal("unsubscribed", ask(b, "UNSUB ro*"))
    wait.until_true(function() return r:command("PUBLISH", "room", "gone") == 0 end, 5, "the unsubscriptions")
    assert.are.equal("s:PONG", ask(a, "CALL PING")) -- nothing else was queued for a
  end)

  it("authenticates and selects the database the URL names", function()
    local r = redis.start({ password = "p@ss:w/rd" })
    local proc = serve(("redis://:%s@127.0.0.1:%d/3"):format("p%40ss%3Aw%2Frd", r.port))
    local c = connect(proc)
    assert.are.equal("s:OK", ask(c, "CALL SET k in3"))
    assert.are.equal("in3", r:command_in(3, "GET", "k"))
    assert.is_nil(r:command("GET", "k")) -- not in db 0
  end)

  it("reports a wrong password as the reason the link is down", function()
    local r = redis.start({ password = "right" })
    local proc = serve(("redis://:wrong@127.0.0.1:%d"):format(r.port))
    wait.until_true(function() return proc:stdout():find("state down", 1, true) end, 5, "the link to be down")
    assert.matches("state down WRONGPASS invalid username%-password pair", proc:stdout())
    assert.matches("luaecho.redis: cannot connect to redis://127%.0%.0%.1:%d+/0: WRONGPASS", proc:stderr())
    assert.is_nil(proc:stderr():find("wrong", 1, true)) -- the password is never logged
    local c = connect(proc)
    assert.matches("^err:disconnected:", ask(c, "CALL PING"))
  end)

  it("connects over a Unix socket", function()
    local r = redis.start({ unix = true })
    local proc = serve("unix:" .. r.socket_path .. "?db=1")
    local c = connect(proc)
    assert.are.equal("s:OK", ask(c, "CALL SET k unix"))
    assert.are.equal("s:unix", ask(c, "CALL GET k"))
    assert.are.equal("[s:unix]", ask(c, "CALL EVAL return{redis.call('GET','k')} 0"))
  end)

  it("keeps working across a hot reload, each generation with its own client", function()
    local r = redis.start()
    local proc = serve(r:url())
    local old = connect(proc)
    assert.are.equal("s:OK", ask(old, "CALL SET k v1"))
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: reloaded [^\n]* %(generation 2%)\n", 10, "the reload")
    local new = connect(proc)
    assert.are.equal("s:v1", ask(new, "CALL GET k"))
    assert.are.equal("s:OK", ask(old, "CALL SET k v2")) -- the old generation's client still serves it
    assert.are.equal("s:v2", ask(new, "CALL GET k"))
  end)
end)

describe("luaecho.redis in `luaecho run` #integration", function()
  it("raises one clear message for each bad URL, at the caller's line", function()
    local code, out = server.run({ "run", server.fixture("redis/urls.lua") }, nil, 10)
    assert.are.equal(0, code, out)
    out = "\n" .. out
    local function says(url, message)
      local expected = "\n" .. url .. " -> false luaecho.redis.connect(): bad Redis URL: " .. message
      assert.is_truthy(out:find(expected, 1, true), url .. " should say: " .. message .. "\n" .. out)
    end
    says("http://127.0.0.1:6379", "a Redis URL starts with redis://, unix: or redis+unix://")
    says("rediss://127.0.0.1:6379", "rediss:// (TLS) is not supported")
    says("redis://", "the host is missing")
    says("redis://127.0.0.1:0", "the port must be a number from 1 to 65535 after ':'")
    says("redis://127.0.0.1:65536", "the port must be a number from 1 to 65535 after ':'")
    says("redis://127.0.0.1:63x9", "the port must be a number from 1 to 65535 after ':'")
    says("redis://127.0.0.1/x", "the database after '/' must be a number from 0")
    says("redis://127.0.0.1/1?timeout=2", "'?' has no meaning here")
    says("redis://s3cret@127.0.0.1", "the part before '@' must be USER:PASSWORD or :PASSWORD")
    says("redis://:@127.0.0.1", "the password after ':' is empty")
    says("redis://:bad%zzescape@127.0.0.1", "the user or password has a bad %XX escape")
    says("redis://[::1:6379", "an IPv6 address needs its closing ']'")
    says("unix:", "the Unix socket path is empty")
    says("unix:/tmp/redis.sock?db=x", "db must be a number from 0 (?db=N)")
    says("redis+unix://host/tmp/redis.sock", "redis+unix:// takes no host")
    says("unix:/" .. string.rep("d", 120), "the Unix socket path is longer than 107 bytes")
    assert.matches("number %-> false [^\n]*urls%.lua:27: luaecho%.redis%.connect%(%): url must be a string, not number",
      out)
    assert.matches("max_pending 0 %-> false [^\n]*urls%.lua:30: [^\n]*max_pending must be an integer", out)
    assert.matches("at the caller's line %-> false [^\n]*urls%.lua:49: luaecho%.redis%.connect%(%): bad Redis URL", out)
    for _, url in ipairs({ "redis://localhost", "redis://127.0.0.1:6380/15", "redis://user:pa%40ss@127.0.0.1:6380/",
      "redis://[::1]:6380/2", "unix:/tmp/redis.sock", "unix:/tmp/redis.sock?db=3",
      "redis+unix://:pw@/tmp/redis.sock?db=1" }) do
      assert.is_truthy(out:find(url .. " -> ok\n", 1, true), url .. " should parse\n" .. out)
    end
  end)

  it("closes a client nobody references, and an idle client lets the program end", function()
    local r = redis.start()
    local code, out = server.run({ "run", server.fixture("redis/lifetime.lua"), r:url() }, nil, 10)
    assert.are.equal(0, code, out)
    assert.are.equal("while referenced: 1\nafter collection: 0\nmain task done\n", out)
  end)

  it("keeps a subscribed program running until SIGTERM, which ends it at once", function()
    local r = redis.start()
    local proc = server.spawn({ "run", server.fixture("redis/subscriber.lua"), r:url() })
    proc:wait_output("stdout", "subscribed\n", 5, "the subscription")
    wait.until_true(function() return r:command("PUBLISH", "news", "hello") == 1 end, 5, "the subscriber")
    proc:wait_output("stdout", "news: hello\n", 5, "the message")
    assert.is_false(proc:exited())
    proc:signal("sigterm")
    assert.are.equal(0, proc:wait_exit(3), proc:describe())
  end)
end)

