-- The streams layer and `luaecho run` over real TCP: the article's three
-- programs, clients that cannot connect, timers, and misuse of suspension.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"

local ARTICLE_OUTPUT = table.concat({
  "Lines received",
  [["First line.\n"]],
  [["Second line.\n"]],
  [["Third line.\n"]],
  [["Last line.\n"]],
  "",
}, "\n")

after_each(cleanup.all)

describe("the article's streams programs #integration", function()
  it("runs echo_client.lua against stream_echo.lua and prints the four lines", function()
    local srv = server.start({ server.script("examples/stream_echo.lua") })
    local code, out, err = server.run({ "run", server.script("examples/echo_client.lua"), "127.0.0.1",
      tostring(srv.port) })
    assert.are.equal(0, code, err)
    assert.are.equal(ARTICLE_OUTPUT, out)
    srv:wait_output("stdout", "Connection received!\n", 5)
  end)

  it("serves stream_echo.lua: prints each chunk and echoes it", function()
    local srv = server.start({ server.script("examples/stream_echo.lua") })
    local conn = client.connect(srv.host, srv.port)
    conn:send_all("hello\r\n")
    assert.are.equal("hello\r\n", conn:receive_exactly(7))
    srv:wait_output("stdout", '"hello\\r\\n"\n', 5, "the printed chunk")
  end)

  it("echoes 1 MiB exactly through reader:read(8192) and writer:drain()", function()
    local srv = server.start({ server.script("examples/stream_echo.lua") }, { env = { LUAECHO_QUIET = "1" } })
    local data = {}
    for i = 1, 16384 do data[i] = ("%063d\n"):format(i) end
    data = table.concat(data)
    local conn = client.connect(srv.host, srv.port)
    local echoed = client.exchange({ { conn = conn, send = data, expect = #data } }, 20)[1]
    assert.are.equal(#data, #echoed)
    assert.is_true(data == echoed, "the echo differs from what was sent")
    assert.are.equal("", srv:stdout())
  end)

  it("runs stream_server.lua as a program that serves until SIGTERM", function()
    local proc = server.spawn({ "run", server.script("examples/stream_server.lua"), "0" })
    local port = tonumber(proc:wait_output("stdout", "Serving on %S+ port (%d+)\n", 5))
    local conn = client.connect("127.0.0.1", port)
    conn:send_all("First line.\n")
    assert.are.equal("First line.\n", conn:receive_exactly(12))
    proc:signal("sigterm")
    assert.are.equal(0, proc:wait_exit(5))
    assert.matches("Connection received!", proc:stdout(), 1, true)
  end)

  it("echoes what people type in telnet with line_echo.lua, CRLF included", function()
    local srv = server.start({ server.script("examples/line_echo.lua") })
    local conn = client.connect(srv.host, srv.port)
    local banner = "Type a line; an empty line or Ctrl-] quit ends.\r\n"
    assert.are.equal(banner, conn:receive_exactly(#banner))
    conn:send_all("hel")
    conn:send_all("lo\r\nsecond\n")
    assert.are.equal("hello\r\nsecond\n", conn:receive_exactly(14))
    conn:send_all("\r\n")
    local rest = conn:receive_until_close(5)
    assert.are.equal("Bye.\r\n", rest)
  end)
end)

describe("streams handler errors #integration", function()
  it("logs a failing handler with its traceback and aborts that connection alone", function()
    local srv = server.start({ server.fixture("stream_boom.lua") })
    local good = client.connect(srv.host, srv.port)
    local bad = client.connect(srv.host, srv.port)
    good:send_all("one\n")
    assert.are.equal("one\n", good:receive_exactly(4))
    bad:send_all("boom\n")
    local _, how = bad:receive_until_close(5)
    assert.is_not_nil(how)
    srv:wait_output("stderr", "stream handler failed for 127%.0%.0%.1:%d+: .-handler exploded on boom", 5)
    assert.matches("stack traceback:", srv:stderr(), 1, true)
    assert.matches("stream_boom.lua:6", srv:stderr(), 1, true)
    good:send_all("two\n")
    assert.are.equal("two\n", good:receive_exactly(4))
  end)

  it("raises a clear error when a Protocol callback tries to suspend", function()
    local srv = server.start({ server.fixture("sleep_in_callback.lua") })
    local conn = client.connect(srv.host, srv.port)
    conn:send_all("x")
    conn:receive_until_close(5)
    srv:wait_output("stderr", "data_received failed for .-luaecho%.sleep%(%) cannot suspend here", 5)
  end)
end)

describe("luaecho run #integration", function()
  it("fires timers in order, never a cancelled one, and sleeps per task", function()
    local code, out, err = server.run({ "run", server.fixture("run/timers.lua") })
    assert.are.equal(0, code, err)
    assert.are.equal("first\nsecond\ntask woke\nthird\nmain woke after >= 0.05 s: true\ncancelled: true\n", out)
  end)

  it("exits 1 with the traceback on an uncaught error", function()
    local code, _, err = server.run({ "run", server.fixture("run/fails.lua") })
    assert.are.equal(1, code)
    assert.matches("fails.lua:4: the client gave up", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
    assert.matches("in local 'deep'", err, 1, true)
  end)

  it("raises a clear error for sleep() in a timer callback or a coroutine of the script's own", function()
    local code, out, err = server.run({ "run", server.fixture("run/misuse.lua") })
    assert.are.equal(0, code, err)
    assert.matches("own coroutine: false .-luaecho%.sleep%(%) cannot suspend here", out)
    assert.matches("timer callback: false .-luaecho%.sleep%(%) cannot suspend here", out)
  end)

  it("sets arg as the lua interpreter does", function()
    local code, out = server.run({ "run", server.fixture("run/args.lua"), "a", "-b", "--c" })
    assert.are.equal(0, code)
    assert.matches("args.lua|a|-b|--c|3\n", out, 1, true)
  end)

  it("exits 1 with a clear message when the server refuses the connection", function()
    local srv = server.start({ server.script("examples/plain_echo.lua") })
    local port = srv.port
    srv:signal("sigterm")
    srv:wait_exit(5)
    local code, _, err = server.run({ "run", server.script("examples/echo_client.lua"), "127.0.0.1",
      tostring(port) })
    assert.are.equal(1, code)
    assert.matches("ConnectionError: cannot connect to 127.0.0.1 port " .. port .. ": connection refused", err, 1, true)
  end)

  it("exits 1 with a clear message when the host name does not resolve", function()
    local args = { "run", server.script("examples/echo_client.lua"), "no-such-host.invalid", "2222" }
    local code, _, err = server.run(args, nil, 20)
    assert.are.equal(1, code)
    assert.matches("ConnectionError: cannot resolve no-such-host.invalid port 2222", err, 1, true)
  end)

  it("exits 1 naming the file and line of a script that does not compile", function()
    local code, _, err = server.run({ "run", server.fixture("bad_syntax.lua") })
    assert.are.equal(1, code)
    assert.matches("bad_syntax.lua:%d+:", err)
  end)
end)
