-- Start-up: the command line, the environment defaults, the listening line,
-- and every way start-up can fail, each with its exit code and message.
local socket = require "socket"
local cleanup = require "support.cleanup"
local exits = require "support.exits"
local server = require "support.server"
local client = require "support.client"
local text = require "support.text"


-- A listening socket of our own on a free port: a port that is in use.
local function occupy(host)
  local sock = host:find(":", 1, true) and socket.tcp6() or socket.tcp()
  assert(sock:bind(host, 0))
  assert(sock:listen(8))
  local _, port = sock:getsockname()
  return sock, tonumber(port)
end

-- True when an IPv6 socket can be bound to ::1 here.
local function has_ipv6_loopback()
  local sock = socket.tcp6()
  if not sock then return false end
  local ok = sock:bind("::1", 0)
  sock:close()
  return ok ~= nil
end

-- Echo one line through a running server to prove it serves.
local function assert_serves(host, port)
  local conn = client.connect(host, port)
  conn:send_all("ping\n")
  assert.are.equal("echo:ping\n", conn:receive_exactly(10))
  conn:close()
end

local assert_usage_error = exits.assert_usage_error
local assert_load_error = exits.assert_load_error

describe("luaecho start-up #integration", function()
  after_each(cleanup.expect_clean)

  describe("with a script that cannot load", function()
    it("exits 1 with file:line on a syntax error", function()
      assert_load_error({ "--port", "0", server.fixture("bad_syntax.lua") }, { "bad_syntax.lua:6:" })
    end)

    it("exits 1 with file:line and the message on an error at top level", function()
      assert_load_error({ "--port", "0", server.fixture("top_level_error.lua") },
        { "top_level_error.lua:3:", "this script refuses to load" })
    end)

    it("exits 1 naming the script when it returns no table", function()
      assert_load_error({ "--port", "0", server.fixture("no_table.lua") }, { "no_table.lua" })
    end)

    it("exits 1 naming the script when it returns a number", function()
      assert_load_error({ "--port", "0", server.fixture("returns_number.lua") }, { "returns_number.lua" })
    end)

    it("exits 1 naming the script when it does not exist", function()
      assert_load_error({ "--port", "0", "/nonexistent/missing_handler.lua" }, { "missing_handler.lua" })
    end)
  end)

  describe("with an address it cannot use", function()
    it("exits 1 with one clear line when the port is in use", function()
      local holder, port = occupy("127.0.0.1")
      local code, _, err = server.run({ "--port", tostring(port) })
      holder:close()
      local lines = text.lines(err)
      assert.are.equal(1, code, err)
      assert.are.equal(1, #lines, "expected one line, got:\n" .. err)
      assert.matches("^luaecho: error: ", lines[1])
      assert.matches(tostring(port), lines[1], 1, true)
      assert.matches("in use", lines[1]:lower(), 1, true)
    end)
  end)

  describe("with a bad command line", function()
    it("exits 2 on an unknown flag", function()
      assert_usage_error({ "--bogus" }, "--bogus")
    end)

    it("exits 2 on a port that is not a number", function()
      assert_usage_error({ "--port", "abc" }, "abc")
    end)

    it("exits 2 on a port out of range", function()
      assert_usage_error({ "--port", "70000" }, "70000")
    end)

    it("exits 2 on a port with trailing junk", function()
      assert_usage_error({ "--port=80x" }, "80x")
    end)

    it("exits 2 on an unknown log level", function()
      assert_usage_error({ "--log-level", "loud" }, "loud")
    end)

    it("exits 2 on a shutdown timeout that is not a number", function()
      assert_usage_error({ "--shutdown-timeout", "soon" }, "soon")
    end)

    for _, option in ipairs({ "--port", "-p", "--host", "-H", "--log-level", "--shutdown-timeout" }) do
      it("exits 2 when " .. option .. " has no value", function()
        assert_usage_error({ option }, option)
      end)
    end
  end)

  describe("asked for help or its version", function()
    it("prints help mentioning every option and exits 0", function()
      local code, out = server.run({ "--help" })
      assert.are.equal(0, code)
      for _, option in ipairs({ "-H", "--host", "-p", "--port", "--log-level", "--shutdown-timeout",
        "-V", "--version", "-h", "--help" }) do
        assert.matches("%f[%w-]" .. option:gsub("%-", "%%-") .. "%f[^%w-]", out, nil, false,
          "help does not mention " .. option)
      end
    end)

    it("prints the same help for -h", function()
      local _, long = server.run({ "--help" })
      local code, short = server.run({ "-h" })
      assert.are.equal(0, code)
      assert.are.equal(long, short)
    end)

    for _, flag in ipairs({ "--version", "-V" }) do
      it("prints one version line for " .. flag .. " and exits 0", function()
        local code, out, err = server.run({ flag })
        assert.are.equal(0, code)
        assert.are.equal("", err)
        assert.matches("^luaecho [^\n]*%d[^\n]*\n$", out)
      end)
    end
  end)

  describe("choosing where to listen", function()
    it("prints the real port for --port 0 and serves there", function()
      local proc = server.start({})
      assert.are.equal("127.0.0.1", proc.host)
      assert.is_true(proc.port > 0)
      assert_serves(proc.host, proc.port)
    end)

    it("accepts --port=0 as well as --port 0", function()
      local proc = server.start({ "--port=0" }, { port = false })
      assert_serves(proc.host, proc.port)
    end)

    it("accepts -p and -H as short forms", function()
      local proc = server.start({ "-H", "127.0.0.1", "-p", "0" }, { port = false })
      assert_serves(proc.host, proc.port)
    end)

    it("accepts an explicit serve command", function()
      local proc = server.start({ "serve", server.script("echo.lua") })
      assert_serves(proc.host, proc.port)
    end)

    it("takes the port from LUAECHO_PORT", function()
      local proc = server.start({}, { port = false, env = { LUAECHO_PORT = "0" } })
      assert.are_not.equal(2222, proc.port)
      assert_serves(proc.host, proc.port)
    end)

    it("lets --port override LUAECHO_PORT", function()
      local holder, busy = occupy("127.0.0.1")
      local proc = server.start({}, { env = { LUAECHO_PORT = tostring(busy) } })
      holder:close()
      assert.are_not.equal(busy, proc.port)
      assert_serves(proc.host, proc.port)
    end)

    it("takes the host from LUAECHO_HOST", function()
      local proc = server.start({}, { env = { LUAECHO_HOST = "127.0.0.2" } })
      assert.are.equal("127.0.0.2", proc.host)
      assert_serves("127.0.0.2", proc.port)
    end)

    it("lets --host override LUAECHO_HOST", function()
      local proc = server.start({ "--host", "127.0.0.1" }, { env = { LUAECHO_HOST = "127.0.0.2" } })
      assert.are.equal("127.0.0.1", proc.host)
      assert_serves("127.0.0.1", proc.port)
    end)

    it("resolves a host name", function()
      local proc = server.start({ "--host", "localhost" })
      assert_serves(proc.host, proc.port)
    end)

    for _, level in ipairs({ "error", "warn", "info", "debug" }) do
      it("serves with --log-level " .. level, function()
        local proc = server.start({ "--log-level", level })
        assert_serves(proc.host, proc.port)
      end)
    end

    -- Port 2222 may be taken by a server someone is running by hand.
    local probe = socket.tcp()
    local free_2222 = probe:bind("127.0.0.1", 2222)
    probe:close()
    if free_2222 then
      it("listens on 127.0.0.1:2222 by default", function()
        local proc = server.start({}, { port = false })
        assert.are.same({ "127.0.0.1", 2222 }, { proc.host, proc.port })
        assert_serves(proc.host, proc.port)
      end)
    else
      pending("default port 2222 not checked: something on this machine already uses it")
    end

    if has_ipv6_loopback() then
      it("listens on IPv6 ::1 and prints it in brackets", function()
        local proc = server.start({ "--host", "::1" })
        assert.are.equal("::1", proc.host)
        assert.matches("luaecho: listening on [::1]:" .. proc.port .. "\n", proc:stderr(), 1, true)
        assert_serves("::1", proc.port)
      end)
    else
      pending("IPv6 not checked: this machine has no ::1 loopback address")
    end
  end)
end)
