-- Review of the observability and TLS changes: each spec here failed
-- because of a defect found in review, fixed in the commit that added it.
-- Fixtures: spec/fixtures/review2/.
local json = require "support.json"
local cleanup = require "support.cleanup"
local server = require "support.server"
local tls = require "support.tls"

local pki

-- luaecho serving `script` on a tls: listener, with `extra` flags.
local function start_tls(script, extra)
  local args = pki:server_args(extra)
  args[#args + 1] = server.fixture(script)
  local proc = server.start_listeners(args)
  proc.port = tonumber(proc.listeners[1].name:match(":(%d+)$"))
  return proc
end

-- Run spec/fixtures/review2/tls_probe.py with `args`; its JSON report.
local function probe(args)
  -- tls.python_spawn runs the Python of support.tls (stopped by tls.stop_clients)
  local client = tls.python_client
  tls.python_client = function() return server.fixture("review2/tls_probe.py") end
  local ok_spawn, child = pcall(tls.python_spawn, args)
  tls.python_client = client
  assert(ok_spawn, child)
  child:wait_exit(15)
  local out = child:stdout()
  local ok, report = pcall(json.decode, (out:match("^%s*(.-)%s*$")))
  if not ok or type(report) ~= "table" then error("no report from tls_probe.py:\n" .. child:describe(), 2) end
  child:stop()
  return report
end

describe("review 2 #integration", function()
  setup(function() pki = tls.pki() end)
  teardown(function() tls.remove_all() end)
  after_each(function()
    tls.stop_clients()
    cleanup.expect_clean()
  end)

  describe("close() during a TLS handshake", function()
    -- A write held during the handshake was freed unsent and the FIN went
    -- out mid-handshake: close() and write_eof() now wait for it.
    it("sends what was written, then closes, once the handshake is done", function()
      local proc = server.start({ server.fixture("review2/close_in_handshake.lua") },
        { env = { TLS_CERT = pki.server_cert, TLS_KEY = pki.server_key } })
      local report = tls.python({ "--port", proc.port, "--starttls", "--cafile", pki.ca, "--until-close" })
      assert.are.equal("hello\n", report.received, proc:describe())
      proc:wait_output("stdout", "LOST nil\n", 5, "a clean connection_lost")
      assert.matches("CLOSING true", proc:stdout(), 1, true)
      proc:stop()
    end)
  end)

  describe("TLS half-close", function()
    -- The peer's close_notify is its half-close: eof_received returning
    -- true keeps our side open, as on a plain connection. The filter took
    -- close_notify for the end of the whole stream and dropped every
    -- later write (conn_write returned UV_EPIPE, which nobody raises).
    it("delivers what is written after eof_received returned true", function()
      local proc = start_tls("review2/half_close.lua")
      local report = probe({ "--port", proc.port, "--mode", "halfclose", "--send", "hello" })
      assert.are.equal("got 5 bytes\n", report.received, proc:describe())
      assert.are.equal("close_notify", report["end"], proc:describe())
      proc:stop()
    end)
  end)
end)
