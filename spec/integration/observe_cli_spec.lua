-- The command line of --metrics, --admin and --admin-allow-remote: each
-- mistake one line and exit 2, an address in use one line and exit 1 before
-- anything listens, and --help and ctl --help naming them.
local socket = require "socket"
local exits = require "support.exits"
local server = require "support.server"
local text = require "support.text"

local assert_usage_error = exits.assert_usage_error

-- A listening socket of our own: a port in use.
local function occupy()
  local sock = socket.tcp()
  assert(sock:bind("127.0.0.1", 0))
  assert(sock:listen(8))
  local _, port = sock:getsockname()
  return sock, tonumber(port)
end

describe("--metrics and --admin on the command line #integration", function()
  it("refuse a UDP address, which cannot carry HTTP or a console", function()
    assert_usage_error({ "--port", "0", "--metrics", "udp:127.0.0.1:0" },
      "luaecho: --metrics must be HOST:PORT or unix:PATH, not a UDP address ('udp:127.0.0.1:0')")
    assert_usage_error({ "--port", "0", "--admin", "udp:127.0.0.1:0" },
      "luaecho: --admin must be HOST:PORT or unix:PATH, not a UDP address ('udp:127.0.0.1:0')")
  end)

  it("refuse an address that is not one, naming it", function()
    assert_usage_error({ "--port", "0", "--metrics", "127.0.0.1:99999" }, "luaecho: --metrics '127.0.0.1:99999': ")
    assert_usage_error({ "--port", "0", "--admin", "unix:" }, "luaecho: --admin 'unix:': ")
  end)

  it("are for serving: a 'run' script has neither", function()
    assert_usage_error({ "run", "--metrics", "127.0.0.1:0", server.fixture("empty.lua") }, "--metrics")
    assert_usage_error({ "run", "--admin", "127.0.0.1:0", server.fixture("empty.lua") }, "--admin")
  end)

  it("want --admin before --admin-allow-remote means anything", function()
    assert_usage_error({ "--port", "0", "--admin-allow-remote" },
      "luaecho: --admin-allow-remote needs --admin SPEC")
  end)

  it("keep the console off a non-loopback address unless allowed", function()
    assert_usage_error({ "--port", "0", "--admin", "0.0.0.0:0" },
      "luaecho: --admin 0.0.0.0:0 is not a loopback address: add --admin-allow-remote to allow it")
  end)

  it("refuse the address of a listener, or one address for both", function()
    assert_usage_error({ "--listen", "127.0.0.1:7999", "--metrics", "127.0.0.1:7999" },
      "luaecho: --metrics cannot use the address of a --listen listener")
    assert_usage_error({ "--port", "0", "--metrics", "127.0.0.1:7998", "--admin", "127.0.0.1:7998" },
      "luaecho: --metrics and --admin cannot share an address")
  end)

  it("exit 1 with one line, and never listen, when the metrics port is in use", function()
    local holder, port = occupy()
    local code, _, err = server.run({ "--port", "0", "--metrics", "127.0.0.1:" .. port })
    holder:close()
    local lines = text.lines(err)
    assert.are.equal(1, code, err)
    assert.are.same({ ("luaecho: error: cannot serve metrics on 127.0.0.1:%d: address already in use"):format(port) },
      lines)
  end)

  it("exit 1 with one line when the console's port is in use", function()
    local holder, port = occupy()
    local code, _, err = server.run({ "--port", "0", "--admin", "127.0.0.1:" .. port })
    holder:close()
    assert.are.equal(1, code, err)
    local want = "luaecho: error: cannot open the admin console on 127.0.0.1:%d: address already in use"
    assert.are.same({ want:format(port) }, text.lines(err))
  end)

  it("are in --help, and ctl has a help of its own", function()
    local code, out = server.run({ "--help" })
    assert.are.equal(0, code)
    for _, word in ipairs({ "--metrics SPEC", "--admin SPEC", "--admin-allow-remote", "luaecho ctl [--admin SPEC]" }) do
      assert.matches(word, out, 1, true)
    end
    local ctl_code, ctl_out = server.run({ "ctl", "--help" })
    assert.are.equal(0, ctl_code)
    assert.matches("show conns", ctl_out, 1, true)
  end)
end)
