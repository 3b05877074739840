-- Script metrics (luaecho.metrics) in the real binary, scraped from
-- --metrics over a socket: the fixture's series after luaecho's own, each
-- with its worker label; a bad call is the callback's error (logged,
-- connection_lost(err)); a hot reload keeps the series, and a reload that
-- declares a name as another kind fails and keeps generation 1; with
-- --workers 2 both workers' series are in one scrape. The same module runs
-- under the fake registry in spec/luaecho/metrics_spec.lua. Every wait has
-- a deadline.
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local prometheus = require "support.prometheus"
local server = require "support.server"
local text = require "support.text"
local wait = require "support.wait"

local FIXTURE = "script_metrics/counting.lua"

after_each(cleanup.expect_clean) -- no crash, a clean exit on SIGTERM, no sanitizer report

-- Start luaecho serving `script` with `args` and its metrics on a free
-- port; returns the Proc, proc.metrics_port set from the "metrics on" line.
local function start(script, args)
  local full = { "--metrics", "127.0.0.1:0" }
  for _, arg in ipairs(args or {}) do full[#full + 1] = arg end
  full[#full + 1] = script
  local proc = server.start(full)
  proc:wait_metrics()
  return proc
end

-- The body of GET /metrics.
local function scrape(proc)
  local conn = client.connect("127.0.0.1", proc.metrics_port)
  conn:send_all("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
  local raw, how = conn:receive_until_close()
  conn:close()
  assert.are.equal("closed", how)
  local body = raw:match("^HTTP/1%.1 200 [^\r\n]*\r\n.-\r\n\r\n(.*)$")
  assert.is_truthy(body, ("not a 200 answer: %q"):format(raw:sub(1, 200)))
  return body
end

-- The value of the sample line `sample` (name{labels} as scraped), or nil.
local function value(body, sample)
  return tonumber(body:match("\n" .. text.literal(sample) .. " ([^\n]+)\n"))
end

-- Send `line` and return the reply line (without its "\n").
local function ask(conn, line)
  conn:send_all(line .. "\n")
  conn.sock:settimeout(5)
  local reply, err = conn.sock:receive("*l")
  assert(reply, ("no reply to %q: %s"):format(line, tostring(err)))
  return reply
end

-- `promtool check metrics` on `body` (scripts/setup installs it: a
-- missing promtool fails the spec): true, or false and what it said.
local function promtool(body)
  local code, said = prometheus.check_metrics(body)
  return code == 0 and said == "", said
end

describe("script metrics #integration", function()
  it("are scraped after luaecho's own series, each with worker=\"1\" first", function()
    local proc = start(server.fixture(FIXTURE))
    local conn = client.connect(proc.host, proc.port)
    for _, line in ipairs({ "GET /a", "PUT /bb", "GET /c" }) do assert.are.equal("ok", ask(conn, line)) end
    local body = scrape(proc)
    assert.are.equal(2, value(body, 'fixture_requests_total{worker="1",method="GET"}'))
    assert.are.equal(1, value(body, 'fixture_requests_total{worker="1",method="PUT"}'))
    assert.are.equal(1, value(body, 'fixture_connections{worker="1"}'))
    assert.are.equal(0, value(body, 'fixture_line_bytes_bucket{worker="1",le="1"}'))
    assert.are.equal(3, value(body, 'fixture_line_bytes_bucket{worker="1",le="10"}'))
    assert.are.equal(3, value(body, 'fixture_line_bytes_bucket{worker="1",le="+Inf"}'))
    assert.are.equal(19, value(body, 'fixture_line_bytes_sum{worker="1"}'))
    assert.are.equal(3, value(body, 'fixture_line_bytes_count{worker="1"}'))
    assert.matches("\n# HELP fixture_requests_total Lines served, by method.\n"
      .. "# TYPE fixture_requests_total counter\n", body, 1, true)
    -- Families by name, all after luaecho's own.
    local own = body:find("\n# TYPE process_start_time_seconds ", 1, true)
    local connections = body:find("\n# TYPE fixture_connections ", 1, true)
    local sizes = body:find("\n# TYPE fixture_line_bytes ", 1, true)
    local requests = body:find("\n# TYPE fixture_requests_total ", 1, true)
    assert.is_truthy(own and connections and sizes and requests, body)
    assert.is_true(own < connections and connections < sizes and sizes < requests, body)
    local ok, said = promtool(body)
    assert.is_true(ok, said)
    conn:close()
    wait.until_true(function() return value(scrape(proc), 'fixture_connections{worker="1"}') == 0 end, 5,
      "the gauge back at 0 after the close")
  end)

  it("make a bad call the callback's error: logged at the script's line, in connection_lost(err)", function()
    local proc = start(server.fixture(FIXTURE))
    local conn = client.connect(proc.host, proc.port)
    assert.are.equal("ok", ask(conn, "GET /a"))
    conn:send_all("BAD\n")
    conn:receive_until_close()
    local message = "counting.lua:%d+: counter 'fixture_requests_total' has labels {method}: "
      .. "inc%(%) was given 2 label values"
    proc:wait_output("stderr", "luaecho: error: data_received failed for [^\n]*: [^\n]*" .. message, 5,
      "the error line")
    proc:wait_output("stdout", "connection_lost: [^\n]*" .. message, 5, "connection_lost(err)")
    local body = scrape(proc)
    assert.is_nil(value(body, 'fixture_requests_total{worker="1",method="BAD"}'))
    assert.are.equal(1, value(body, 'fixture_requests_total{worker="1",method="GET"}'))
    assert.are.equal(0, value(body, 'fixture_connections{worker="1"}'))
  end)

  describe("across a hot reload", function()
    local scratch
    before_each(function() scratch = files.scratch("script-metrics") end)

    it("keep their series: a counter goes on from its value", function()
      local script = scratch:write("handler.lua", files.read(server.fixture(FIXTURE)))
      local proc = start(script)
      local old = client.connect(proc.host, proc.port)
      assert.are.equal("ok", ask(old, "GET /1"))
      assert.are.equal("ok", ask(old, "GET /2"))
      scratch:write("handler.lua", (files.read(server.fixture(FIXTURE)):gsub('local VERSION = "v1"',
        'local VERSION = "v2"')))
      proc:signal("sighup")
      proc:wait_output("stderr", "luaecho: reloaded " .. text.literal(script) .. " %(generation 2%)\n", 10,
        "the 'reloaded ... (generation 2)' line")
      local new = client.connect(proc.host, proc.port)
      assert.are.equal("v2 ok", ask(new, "GET /3"))
      assert.are.equal("ok", ask(old, "GET /4"))  -- the old connection keeps its generation's code
      local body = scrape(proc)
      assert.are.equal(4, value(body, 'fixture_requests_total{worker="1",method="GET"}'))
      assert.are.equal(2, value(body, 'fixture_connections{worker="1"}'))
      assert.are.equal(4, value(body, 'fixture_line_bytes_count{worker="1"}'))
      local _, declared = body:gsub("\n# TYPE fixture_requests_total ", "")
      assert.are.equal(1, declared)
    end)

    it("refuse a name declared again as another kind: the reload fails, generation 1 serves on", function()
      local script = scratch:write("handler.lua", files.read(server.fixture(FIXTURE)))
      local proc = start(script)
      local conn = client.connect(proc.host, proc.port)
      assert.are.equal("ok", ask(conn, "GET /1"))
      scratch:write("handler.lua", files.read(server.fixture("script_metrics/clash.lua")))
      proc:signal("sighup")
      local message = proc:wait_output("stderr",
        "luaecho: error: reload %(SIGHUP%) failed, still serving generation 1: ([^\n]*)\n", 10,
        "the 'reload failed' line")
      assert.are.equal(script .. ":6: luaecho.metrics.gauge(): metric 'fixture_requests_total' is already "
        .. "a counter with labels {method}", message)
      assert.are.equal("ok", ask(client.connect(proc.host, proc.port), "GET /2"))
      local body = scrape(proc)
      assert.are.equal(2, value(body, 'fixture_requests_total{worker="1",method="GET"}'))
      assert.matches("\n# TYPE fixture_requests_total counter\n", body, 1, true)
    end)
  end)

  it("of every worker are in one scrape, each series with its worker label", function()
    local proc = start(server.fixture(FIXTURE), { "--workers", "2" })
    local conns = {}
    for i = 1, 20 do
      conns[i] = client.connect(proc.host, proc.port)
      assert.are.equal("ok", ask(conns[i], "GET /" .. i))
    end
    local body = scrape(proc)
    local total, workers = 0, {}
    for line in body:gmatch("[^\n]+") do
      local worker, count = line:match('^fixture_requests_total{worker="(%d)",method="GET"} (%d+)$')
      if worker then total, workers[#workers + 1] = total + tonumber(count), worker end
    end
    assert.are.equal(20, total)
    assert.is_true(#workers >= 1 and #workers <= 2)
    for _, worker in ipairs({ "1", "2" }) do
      -- Series without labels exist from the declaration, in each worker.
      assert.is_number(value(body, ('fixture_connections{worker="%s"}'):format(worker)))
      assert.is_number(value(body, ('fixture_line_bytes_count{worker="%s"}'):format(worker)))
    end
    assert.are.equal(20,
      value(body, 'fixture_connections{worker="1"}') + value(body, 'fixture_connections{worker="2"}'))
    local ok, said = promtool(body)
    assert.is_true(ok, said)
  end)
end)
