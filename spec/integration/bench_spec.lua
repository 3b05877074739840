-- luaecho-bench, the load generator that ships with luaecho, against the
-- real luaecho: each --expect mode against a server that answers that way,
-- TCP, Unix, UDP and TLS targets, a server that corrupts one byte (exit 1
-- and the verification message), --hold's per-connection figure, --json
-- and bad flags. luaecho-bench is found next to $LUAECHO_BIN, else in
-- $LUAECHO_BUILD_DIR. Each run is short: 1 s measured.
local uv = require "luv"
local cleanup = require "support.cleanup"
local files = require "support.files"
local json = require "support.json"
local sanitizer = require "support.sanitizer"
local server = require "support.server"
local tls = require "support.tls"

local function bench_bin()
  local candidates = { (server.bin():gsub("[^/]*$", "luaecho-bench")) }
  local dir = os.getenv("LUAECHO_BUILD_DIR")
  if dir then candidates[#candidates + 1] = dir .. "/luaecho-bench" end
  for _, path in ipairs(candidates) do
    if uv.fs_stat(path) then return path end
  end
  error("luaecho-bench not found: tried " .. table.concat(candidates, ", "))
end

local SHORT = { "--duration", "1", "--warmup", "0.2" }

-- Run luaecho-bench with `args` (SHORT first unless opts.bare); returns
-- code, stdout, stderr, and fails on a sanitizer report.
local function bench(args, opts)
  local full = {}
  if not (opts and opts.bare) then
    for _, a in ipairs(SHORT) do full[#full + 1] = a end
  end
  for _, a in ipairs(args) do full[#full + 1] = tostring(a) end
  local code, out, err = server.with_bin(bench_bin(), function() return server.run(full, nil, 30) end)
  assert.is_false(sanitizer.reported(err), err)
  return code, out, err
end

-- A JSON run: the decoded object, and stderr.
local function bench_json(args)
  local full = { "--json" }
  for _, a in ipairs(args) do full[#full + 1] = a end
  local code, out, err = bench(full)
  local line = out:match("^(%b{})\n$")
  assert.is_truthy(line, "one JSON object on stdout, got:\n" .. out .. err)
  return json.decode(line), code, err
end

local function start(listen, script, extra)
  local args = { "--listen", listen }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  args[#args + 1] = script
  return server.start_listeners(args)
end

local function fixture(name)
  return server.fixture("bench/" .. name)
end

-- A clean run of `report`: something measured, every reply checked.
local function assert_clean(report, code, err)
  assert.are.equal(0, code, err)
  assert.is_true(report.ok)
  assert.is_true(report.round_trips > 0)
  assert.are.equal(0, report.errors)
  assert.are.equal(0, report.verification_failures)
  assert.are.equal(json.null, report.verification)
end

after_each(function()
  cleanup.expect_clean()
end)

describe("luaecho-bench", function()
  describe("each --expect mode against a server that answers that way", function()
    it("echo (the default) checks every byte sent, with latency percentiles and server CPU", function()
      local proc = start("127.0.0.1:0", fixture("echo.lua"))
      local report, code, err = bench_json({ "--conns", "4", "--size", "1000", "--pipeline", "2",
        "--server-pid", tostring(proc.pid), proc.listeners[1].name })
      assert_clean(report, code, err)
      assert.are.equal("echo", report.expect)
      assert.are.equal("tcp", report.transport)
      assert.is_true(report.verified >= report.round_trips * 1000)
      local lat = report.latency_us
      assert.is_true(lat.p50 > 0 and lat.p50 <= lat.p90 and lat.p90 <= lat.p99 and lat.p99 <= lat.p99_9
        and lat.p99_9 <= lat.max)
      assert.is_true(report.mb_per_s_out > 0 and report.mb_per_s_in > 0)
      assert.is_true(report.server_cpu_us_per_rt > 0)
    end)

    it("prefix:echo: against the bundled echo.lua", function()
      local proc = start("127.0.0.1:0", server.script("echo.lua"))
      local report, code, err = bench_json({ "--expect", "prefix:echo:", "--conns", "2", proc.listeners[1].name })
      assert_clean(report, code, err)
      assert.are.equal("prefix:echo:", report.expect)
      -- the replies carry "echo:" per chunk: more bytes in than out
      assert.is_true(report.mb_per_s_in > report.mb_per_s_out)
    end)

    it("line counts one line back per line sent", function()
      local proc = start("127.0.0.1:0", fixture("lines.lua"))
      local report, code, err = bench_json({ "--expect", "line", "--size", "100", "--pipeline", "4",
        proc.listeners[1].name })
      assert_clean(report, code, err)
    end)

    it("none expects nothing: requests are done once written", function()
      local proc = start("127.0.0.1:0", fixture("sink.lua"))
      local report, code, err = bench_json({ "--expect", "none", "--conns", "2", proc.listeners[1].name })
      assert_clean(report, code, err)
      assert.are.equal(0, report.mb_per_s_in)
    end)

    it("--rate runs an open loop at the total rate asked, in the text report", function()
      local proc = start("127.0.0.1:0", fixture("echo.lua"))
      local code, out, err = bench({ "--rate", "400", "--conns", "4", proc.listeners[1].name })
      assert.are.equal(0, code, out .. err)
      assert.matches("open loop, 400 requests/s in total %(100/s per connection%)", out)
      local count = tonumber(out:match("round trips +(%d+)"))
      assert.is_true(count >= 300 and count <= 500, out)
      assert.matches("latency %(us%) +p50 [%d.]+  p90 [%d.]+  p99 [%d.]+  p99%.9 [%d.]+  max [%d.]+", out)
      assert.matches("verification +ok", out)
    end)
  end)

  describe("targets", function()
    it("unix:PATH", function()
      local path = files.scratch("bench"):path("echo.sock")
      local proc = start("unix:" .. path, fixture("echo.lua"))
      local report, code, err = bench_json({ "--size", "4096", proc.listeners[1].name })
      assert_clean(report, code, err)
      assert.are.equal("unix", report.transport)
    end)

    it("udp:HOST:PORT, one datagram per request, echoed as is or with the prefix", function()
      local proc = start("udp:127.0.0.1:0", fixture("echo.lua"))
      local report, code, err = bench_json({ "--size", "512", "--conns", "2", proc.listeners[1].name })
      assert_clean(report, code, err)
      assert.are.equal("udp", report.transport)
      local default = start("udp:127.0.0.1:0", server.script("echo.lua"))
      report, code, err = bench_json({ "--expect", "prefix:echo:", default.listeners[1].name })
      assert_clean(report, code, err)
    end)

    describe("tls:", function()
      local pki
      setup(function() pki = tls.pki() end)
      teardown(function() tls.remove_all() end)

      local function start_tls(listen)
        return start(listen, fixture("echo.lua"), { "--tls-cert", pki.server_cert, "--tls-key", pki.server_key })
      end

      it("tls:HOST:PORT, unverified by default, verified with --ca and --server-name", function()
        local proc = start_tls("tls:127.0.0.1:0")
        local target = proc.listeners[1].name
        assert.matches("^tls:127", target)
        local report, code, err = bench_json({ "--conns", "2", "--size", "2000", target })
        assert_clean(report, code, err)
        assert.are.equal("tls", report.transport)
        assert.matches("^TLS", report.tls)
        report, code, err = bench_json({ "--ca", pki.ca, "--server-name", "localhost", target })
        assert_clean(report, code, err)
      end)

      it("a certificate that does not verify is a connection error, exit 1", function()
        local proc = start_tls("tls:127.0.0.1:0")
        local report, code = bench_json({ "--ca", pki.ca, "--server-name", "a.test", proc.listeners[1].name })
        assert.are.equal(1, code)
        assert.is_false(report.ok)
        assert.matches("certificate verification failed", report.first_error)
      end)

      it("tls:unix:PATH", function()
        local path = files.scratch("bench"):path("tls.sock")
        local proc = start_tls("tls:unix:" .. path)
        local report, code, err = bench_json({ proc.listeners[1].name })
        assert_clean(report, code, err)
        assert.are.equal("tls+unix", report.transport)
      end)
    end)
  end)

  describe("verification", function()
    it("a server that corrupts one byte: exit 1, and which byte of which connection", function()
      local proc = start("127.0.0.1:0", fixture("corrupt.lua"))
      local code, out, err = bench({ "--conns", "1", "--size", "300", proc.listeners[1].name })
      assert.are.equal(1, code, out .. err)
      local message = "connection 0: reply byte 1000 %(request 3, its byte 100%) differs: expected 0x%x%x"
      assert.matches("luaecho%-bench: verification failed: " .. message, err)
      assert.matches("verification +FAILED on 1 connection%(s%): " .. message, out)
    end)

    it("the wrong prefix is a verification failure too", function()
      local proc = start("127.0.0.1:0", fixture("echo.lua"))
      local report, code = bench_json({ "--expect", "prefix:echo:", proc.listeners[1].name })
      assert.are.equal(1, code)
      assert.is_false(report.ok)
      assert.matches("expected the prefix 'echo:'", report.verification)
    end)
  end)

  describe("--hold", function()
    it("holds idle connections and reports the server's memory per connection", function()
      local proc = start("127.0.0.1:0", fixture("echo.lua"))
      local report, code, err = bench_json({ "--hold", "300", "--server-pid", tostring(proc.pid),
        proc.listeners[1].name })
      assert.are.equal(0, code, err)
      assert.is_true(report.ok)
      assert.are.equal(300, report.established)
      assert.are.equal(300, report.answered_after)
      assert.are.equal(30, report.baseline_conns)
      assert.are.equal(270, report.held)
      assert.are.equal("number", type(report.bytes_per_conn))
      assert.is_true(report.rss_hold_kib >= report.rss_baseline_kib)
      local text_code, out = bench({ "--hold", "50", "--server-pid", tostring(proc.pid), proc.listeners[1].name },
        { bare = true })
      assert.are.equal(0, text_code, out)
      assert.matches("per connection +%d+ B %(RSS growth over the baseline / 45 connections%)", out)
    end)
  end)

  describe("the command line", function()
    it("--help says what each flag does", function()
      local code, out = bench({ "--help" }, { bare = true })
      assert.are.equal(0, code)
      for _, flag in ipairs({ "--conns", "--size", "--duration", "--warmup", "--pipeline", "--rate", "--expect",
                              "--json", "--server-pid", "--hold", "--ca", "--server-name" }) do
        assert.matches(flag:gsub("%-", "%%-"), out)
      end
      assert.matches("in TOTAL", out)
    end)

    it("a bad flag is one line on stderr and exit 2", function()
      for _, args in ipairs({
        { "--conns", "0", "127.0.0.1:1" },
        { "--size", "x", "127.0.0.1:1" },
        { "--expect", "maybe", "127.0.0.1:1" },
        { "--bogus", "127.0.0.1:1" },
        { "--hold", "10", "127.0.0.1:1" },
        { "--expect", "line", "udp:127.0.0.1:1" },
        { "--ca", "x.pem", "127.0.0.1:1" },
        { "nowhere" },
        {},
      }) do
        local code, out, err = bench(args, { bare = true })
        assert.are.equal(2, code, table.concat(args, " "))
        assert.are.equal("", out)
        assert.matches("^luaecho%-bench: [^\n]+\n$", err)
      end
    end)
  end)
end)
