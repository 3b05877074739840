-- The built-in series of --metrics, read the ways an operator reads them:
-- the exposition checked by `promtool check metrics`; a real Prometheus
-- (support.prometheus, 1 s scrapes) reading luaecho_connections_open back
-- through its query API while connections are held and after they close;
-- counters that move with traffic, read by scraping /metrics directly
-- (bytes, connections by close reason, callback errors, limits,
-- datagrams); the loop-lag and callback-duration histograms while a
-- callback busy-loops; the worker label with --workers 2; the script
-- generation and reloads; the process_ series. Every wait has a deadline.
local socket = require "socket"
local uv = require "luv"
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local prometheus = require "support.prometheus"
local server = require "support.server"
local sockets = require "support.sockets"
local text = require "support.text"
local wait = require "support.wait"

local TIMEOUT = 5 -- seconds a counter may take to show what happened

-- The luaecho_ series that belong to the process, not to a loop: they
-- have no worker label.
local PROCESS_WIDE = {
  luaecho_reloads_total = true, luaecho_script_generation = true,
  luaecho_workers = true, luaecho_build_info = true,
  luaecho_generation_connections = true, luaecho_generation_errors_total = true,
}

after_each(function()
  local problems = prometheus.stop_all()
  sockets.close_all()
  for _, problem in ipairs(cleanup.all()) do problems[#problems + 1] = problem end
  assert.are.same({}, problems) -- no crash, a clean exit on SIGTERM, no sanitizer report
end)

local function fixture(name)
  return server.fixture("metrics/" .. name)
end

-- Start luaecho with --metrics 127.0.0.1:0 and `args` on a free port.
local function start(args)
  local full = { "--metrics", "127.0.0.1:0" }
  for _, arg in ipairs(args or {}) do full[#full + 1] = arg end
  local proc = server.start(full)
  proc:wait_metrics()
  return proc
end

-- As start, for args with their own --listen (no --port added).
local function start_listeners(args)
  local full = { "--metrics", "127.0.0.1:0" }
  for _, arg in ipairs(args) do full[#full + 1] = arg end
  local proc = server.start_listeners(full)
  proc:wait_metrics()
  return proc
end

-- The body of GET /metrics (raises unless the answer is a 200).
local function scrape_body(proc)
  local status, body = prometheus.http_get(proc.metrics_port, "/metrics", TIMEOUT)
  if status ~= 200 then
    error(("GET /metrics: %s %s"):format(tostring(status), tostring(body)), 2)
  end
  return body
end

-- `name{a="x",b="y"}` -> { a = "x", b = "y" }.
local function parse_labels(braces)
  local labels = {}
  for name, value in braces:gmatch('([%w_]+)="(.-)"[,}]') do labels[name] = value end
  return labels
end

-- An exposition taken apart: a list of { name, labels, value } and the
-- family types ({ name = "counter" | "gauge" | "histogram" ... }).
local function parse(body)
  local samples, types = {}, {}
  for line in body:gmatch("[^\n]+") do
    local family, kind = line:match("^# TYPE (%S+) (%S+)$")
    if family then
      types[family] = kind
    elseif line:sub(1, 1) ~= "#" then
      local name, braces, value = line:match("^([%w_:]+)(%b{})%s+(%S+)$")
      if not name then name, value = line:match("^([%w_:]+)%s+(%S+)$") end
      assert(name, ("an exposition line we cannot read: %q"):format(line))
      samples[#samples + 1] = { name = name, labels = braces and parse_labels(braces) or {}, value = tonumber(value) }
    end
  end
  return samples, types
end

-- Does `labels` have every label of `match`?
local function matches(labels, match)
  for k, v in pairs(match or {}) do
    if labels[k] ~= v then return false end
  end
  return true
end

-- The sum of every sample `name` whose labels include `match`, or nil
-- when there is none.
local function sum(samples, name, match)
  local total
  for _, s in ipairs(samples) do
    if s.name == name and matches(s.labels, match) then total = (total or 0) + s.value end
  end
  return total
end

-- Describe a label match for messages: {a="x"}.
local function series_name(name, match)
  local parts = {}
  for k, v in pairs(match or {}) do parts[#parts + 1] = ('%s="%s"'):format(k, v) end
  table.sort(parts)
  return name .. "{" .. table.concat(parts, ",") .. "}"
end

-- One scrape: sample(name, match) sums the matching samples and raises if
-- there is none; the parsed samples come second.
local function scrape(proc)
  local samples = parse(scrape_body(proc))
  return function(name, match)
    local value = sum(samples, name, match)
    if value == nil then
      error(("no sample %s in the scrape"):format(series_name(name, match)), 2)
    end
    return value
  end, samples
end

-- Scrape until sample(name, match) == want (deadline TIMEOUT); the error
-- says the last value seen.
local function wait_sample(proc, name, match, want)
  local last
  local ok, err = pcall(wait.until_true, function()
    last = sum(parse(scrape_body(proc)), name, match)
    return last == want
  end, TIMEOUT, series_name(name, match) .. " == " .. want)
  if not ok then error(("%s (last value seen: %s)"):format(tostring(err), tostring(last)), 2) end
end

-- The names in /proc/PID/fd.
local function fd_entries(pid)
  local names = {}
  local dir = assert(uv.fs_scandir("/proc/" .. pid .. "/fd"))
  for name in function() return uv.fs_scandir_next(dir) end do names[#names + 1] = name end
  return names
end

-- A connection that has had one echo through the default script.
local function echoed(proc, data)
  local conn = client.connect(proc.host, proc.port)
  data = data or "hello"
  conn:send_all(data)
  assert.are.equal("echo:" .. data, conn:receive_exactly(5 + #data))
  return conn
end

describe("built-in metrics #integration", function()
  it("pass `promtool check metrics` with traffic on every kind of series", function()
    local proc = start_listeners({ "--workers", "2", "--listen", "127.0.0.1:0", "--listen", "udp:127.0.0.1:0",
      server.script("echo.lua") })
    echoed(proc):close()
    local sock = sockets.udp()
    local udp = proc.listeners[2]
    assert(sock:sendto("ping", udp.host, udp.port))
    assert.are.equal("echo:ping", (sock:receivefrom(100)))
    wait_sample(proc, "luaecho_connections_closed_total", { reason = "clean" }, 1)
    local body = scrape_body(proc)
    local code, output = prometheus.check_metrics(body)
    assert.are.equal("", output, "promtool printed something about the exposition")
    assert.are.equal(0, code, "promtool check metrics failed:\n" .. output)
  end)

  it("are scraped by a real Prometheus, which reads connections_open as clients come and go", function()
    local proc = start({ server.script("echo.lua") })
    local prom = prometheus.start({ target = "127.0.0.1:" .. proc.metrics_port })
    -- Prometheus' discovery hands it the target a few seconds after start.
    prom:wait_value('up{job="luaecho"}', 1, 20)
    local held = {}
    for i = 1, 3 do held[i] = echoed(proc) end
    prom:wait_value("sum(luaecho_connections_open)", 3, 20)
    local series = prom:query("luaecho_connections_open")
    assert.are.equal(1, #series, "one worker, one listener: one series")
    assert.are.same({ "1", "luaecho", "127.0.0.1:" .. proc.port },
      { series[1].metric.worker, series[1].metric.job, series[1].metric.listener })
    for _, conn in ipairs(held) do conn:close() end
    prom:wait_value("sum(luaecho_connections_open)", 0, 20)
    assert.are.equal(3, prom:value("sum(luaecho_connections_accepted_total)"))
    -- Prometheus' own parser took every scrape: the target is healthy.
    local targets = prom:targets()
    assert.are.equal(1, #targets)
    assert.are.same({ "up", "" }, { targets[1].health, targets[1].lastError })
  end)

  describe("counters that move with traffic", function()
    it("count the bytes each way and a clean close", function()
      local proc = start({ server.script("echo.lua") })
      local sample = scrape(proc)
      local received, sent = sample("luaecho_bytes_received_total"), sample("luaecho_bytes_sent_total")
      local payload = ("x"):rep(1000) .. "end"
      local conn = client.connect(proc.host, proc.port)
      conn:send_all(payload)
      assert.are.equal("echo:" .. payload, conn:receive_exactly(5 + #payload))
      wait_sample(proc, "luaecho_connections_open", nil, 1)
      wait_sample(proc, "luaecho_bytes_received_total", nil, received + #payload)
      wait_sample(proc, "luaecho_bytes_sent_total", nil, sent + 5 + #payload)
      conn:close()
      wait_sample(proc, "luaecho_connections_closed_total", { reason = "clean" }, 1)
      sample = scrape(proc)
      assert.are.equal(0, sample("luaecho_connections_open"))
      assert.are.equal(1, sample("luaecho_connections_accepted_total"))
      assert.are.equal(1, sample("luaecho_connections_closed_total"), "closed for another reason too")
      -- Scraping /metrics is no traffic of the served port.
      assert.are.equal(received + #payload, sample("luaecho_bytes_received_total"))
      assert.are.equal(sent + 5 + #payload, sample("luaecho_bytes_sent_total"))
    end)

    it("count every byte of a 1 MiB echo, queued writes too, and hold no write buffer after", function()
      local proc = start({ server.script("echo.lua") })
      local size = 1024 * 1024
      local conn = client.connect(proc.host, proc.port)
      local replies = client.exchange({ { conn = conn, send = ("z"):rep(size), done_when = client.echoed(size) } },
        20)[1]
      wait_sample(proc, "luaecho_bytes_received_total", nil, size)
      wait_sample(proc, "luaecho_bytes_sent_total", nil, #replies)
      wait_sample(proc, "luaecho_write_buffer_bytes", nil, 0)
      conn:close()
      wait_sample(proc, "luaecho_connections_closed_total", { reason = "clean" }, 1)
    end)

    it("count a connection the client reset as reason=reset", function()
      local proc = start({ server.script("echo.lua") })
      echoed(proc):reset()
      wait_sample(proc, "luaecho_connections_closed_total", { reason = "reset" }, 1)
      local sample = scrape(proc)
      assert.are.equal(1, sample("luaecho_connections_closed_total"))
      assert.are.equal(0, sample("luaecho_connections_open"))
    end)

    it("count a callback that raised: reason=script_error and callback_errors_total", function()
      local proc = start({ fixture("raises.lua") })
      local conn = client.connect(proc.host, proc.port)
      conn:send_all("boom")
      conn:receive_until_close()
      wait_sample(proc, "luaecho_connections_closed_total", { reason = "script_error" }, 1)
      wait_sample(proc, "luaecho_callback_errors_total", { callback = "data_received" }, 1)
      local sample = scrape(proc)
      assert.are.equal(1, sample("luaecho_callback_errors_total"), "errors counted for another callback")
      assert.are.equal(1, sample("luaecho_connections_closed_total"))
    end)

    it("count a connection closed for --idle-timeout: reason=idle and limit=idle_timeout", function()
      local proc = start({ "--idle-timeout", "0.3", server.script("echo.lua") })
      local conn = echoed(proc)
      local _, how = conn:receive_until_close(TIMEOUT)
      assert.is_not_nil(how)
      wait_sample(proc, "luaecho_connections_closed_total", { reason = "idle" }, 1)
      wait_sample(proc, "luaecho_limits_hit_total", { limit = "idle_timeout" }, 1)
      assert.are.equal(1, scrape(proc)("luaecho_connections_closed_total"))
    end)

    it("count a connection refused by --max-connections as limit=max_connections", function()
      local proc = start({ "--max-connections", "1", server.script("echo.lua") })
      local held = echoed(proc)
      local extra = client.connect(proc.host, proc.port)
      extra:receive_until_close(TIMEOUT) -- closed at once by the server
      wait_sample(proc, "luaecho_limits_hit_total", { limit = "max_connections" }, 1)
      local sample = scrape(proc)
      assert.are.equal(1, sample("luaecho_limits_hit_total"), "another limit counted too")
      -- The refused one was never served: accepted and open count the held one.
      assert.are.equal(1, sample("luaecho_connections_accepted_total"))
      assert.are.equal(1, sample("luaecho_connections_open"))
      held:close()
    end)

    it("count datagrams and their bytes on a --listen udp: endpoint", function()
      local proc = start_listeners({ "--listen", "udp:127.0.0.1:0", server.script("echo.lua") })
      local udp = proc.listeners[1]
      local sock = sockets.udp()
      local sizes = 0
      for _, data in ipairs({ "a", "bb", "ccc" }) do
        assert(sock:sendto(data, udp.host, udp.port))
        assert.are.equal("echo:" .. data, (sock:receivefrom(100)))
        sizes = sizes + #data
      end
      wait_sample(proc, "luaecho_datagrams_received_total", nil, 3)
      wait_sample(proc, "luaecho_datagrams_sent_total", nil, 3)
      local sample, samples = scrape(proc)
      assert.are.equal(sizes, sample("luaecho_bytes_received_total"))
      assert.are.equal(sizes + 3 * 5, sample("luaecho_bytes_sent_total"))
      -- A datagram is no connection (and a UDP listener has no connection series).
      assert.is_nil(sum(samples, "luaecho_connections_accepted_total"))
    end)
  end)

  it("show the loop lag and the callback's duration while a callback busy-loops", function()
    local proc = start({ "--script-timeout", "2000", fixture("busy.lua") })
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("warm")
    assert.are.equal("warm", conn:receive_exactly(4))
    local before = scrape(proc)
    local lag_sum = before("luaecho_event_loop_lag_seconds_sum")
    local lag_over = before("luaecho_event_loop_lag_seconds_count")
      - before("luaecho_event_loop_lag_seconds_bucket", { le = "0.25" })
    local calls = before("luaecho_callback_duration_seconds_count")
    local calls_over = calls - before("luaecho_callback_duration_seconds_bucket", { le = "0.5" })
    conn:send_all("spin")
    assert.are.equal("spun\n", conn:receive_exactly(5, TIMEOUT))
    -- The probe fires late once the callback lets go of the loop.
    local after = wait.until_true(function()
      local sample = scrape(proc)
      if sample("luaecho_event_loop_lag_seconds_sum") > lag_sum + 0.3 then return sample end
    end, TIMEOUT, "event_loop_lag_seconds_sum to grow by more than 0.3")
    local over = after("luaecho_event_loop_lag_seconds_count")
      - after("luaecho_event_loop_lag_seconds_bucket", { le = "0.25" })
    assert.is_true(over >= lag_over + 1, ("no lag above 0.25 s counted (%d before, %d after)"):format(lag_over, over))
    assert.is_true(after("luaecho_callback_duration_seconds_count") > calls, "the busy call was not counted")
    local long_calls = after("luaecho_callback_duration_seconds_count")
      - after("luaecho_callback_duration_seconds_bucket", { le = "0.5" })
    assert.are.equal(calls_over + 1, long_calls, "the 600 ms call is not counted above 0.5 s")
    assert.is_true(after("luaecho_callback_duration_seconds_sum") >= 0.5)
  end)

  it("label every per-loop series with its worker, each worker in one scrape, with --workers 2", function()
    local proc = start({ "--workers", "2", server.script("echo.lua") })
    local samples = parse(scrape_body(proc))
    local workers, seen = {}, {}
    for _, s in ipairs(samples) do
      if s.name:match("^luaecho_") then
        local family = s.name:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
        if PROCESS_WIDE[family] then
          assert.is_nil(s.labels.worker, s.name .. " belongs to the process but has a worker label")
        else
          seen[family] = true
          workers[family] = workers[family] or {}
          workers[family][s.labels.worker or "none"] = true
        end
      end
    end
    local want = {
      "luaecho_connections_open", "luaecho_connections_accepted_total", "luaecho_connections_closed_total",
      "luaecho_bytes_received_total", "luaecho_bytes_sent_total", "luaecho_datagrams_received_total",
      "luaecho_datagrams_sent_total", "luaecho_callback_errors_total", "luaecho_callback_duration_seconds",
      "luaecho_event_loop_lag_seconds", "luaecho_event_loop_idle_seconds_total", "luaecho_lua_memory_bytes",
      "luaecho_write_buffer_bytes", "luaecho_limits_hit_total",
    }
    for _, family in ipairs(want) do assert.is_true(seen[family], family .. " is missing") end
    for family, by_worker in pairs(workers) do
      assert.are.same({ ["1"] = true, ["2"] = true }, by_worker, family .. ": workers seen")
    end
    local sample = scrape(proc)
    assert.are.equal(2, sample("luaecho_workers"))
    assert.is_true(sample("luaecho_lua_memory_bytes", { worker = "1" }) > 0)
    assert.is_true(sample("luaecho_lua_memory_bytes", { worker = "2" }) > 0)
  end)

  it("show the script generation and each reload's result", function()
    local scratch = files.scratch("metrics")
    local script = scratch:write("handler.lua", files.read(server.script("echo.lua")))
    local proc = start({ script })
    local sample = scrape(proc)
    assert.are.equal(1, sample("luaecho_script_generation"))
    assert.are.equal(0, sample("luaecho_reloads_total", { result = "ok" }))
    assert.are.equal(0, sample("luaecho_reloads_total", { result = "failed" }))
    proc:signal("sighup")
    proc:wait_output("stderr", ("luaecho: reloaded %s %%(generation 2%%)\n"):format(text.literal(script)), 10,
      "the 'reloaded ... (generation 2)' line")
    wait_sample(proc, "luaecho_script_generation", nil, 2)
    sample = scrape(proc)
    assert.are.equal(1, sample("luaecho_reloads_total", { result = "ok" }))
    assert.are.equal(0, sample("luaecho_reloads_total", { result = "failed" }))
    scratch:replace("handler.lua", files.read(server.fixture("bad_syntax.lua")))
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: error: reload %(SIGHUP%) failed, still serving generation 2", 10,
      "the 'reload failed' line")
    wait_sample(proc, "luaecho_reloads_total", { result = "failed" }, 1)
    sample = scrape(proc)
    assert.are.equal(2, sample("luaecho_script_generation"))
    assert.are.equal(1, sample("luaecho_reloads_total", { result = "ok" }))
  end)

  it("export the standard process_ series with sane values", function()
    local proc = start({ server.script("echo.lua") })
    local sample = scrape(proc)
    local now = socket.gettime()
    assert.is_true(sample("process_open_fds") > 0)
    assert.is_true(sample("process_max_fds") > 0)
    assert.is_true(sample("process_max_fds") >= sample("process_open_fds"))
    -- What /proc says, give or take the scrape's own socket and a descriptor or two.
    local fds = #fd_entries(proc.pid)
    assert.is_true(math.abs(sample("process_open_fds") - fds) <= 3,
      ("process_open_fds %d, /proc/%d/fd has %d"):format(sample("process_open_fds"), proc.pid, fds))
    local start_time = sample("process_start_time_seconds")
    assert.is_true(math.abs(now - start_time) < 60, ("process_start_time_seconds %f, now %f"):format(start_time, now))
    assert.is_true(start_time <= now)
    assert.is_true(sample("process_resident_memory_bytes") > 1e6)
    assert.is_true(sample("process_virtual_memory_bytes") >= sample("process_resident_memory_bytes"))
    assert.is_true(sample("process_cpu_seconds_total") >= 0)
  end)
end)
