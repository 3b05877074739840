-- The metrics endpoint (--metrics HOST:PORT or unix:PATH) over real
-- sockets: what each request gets (/metrics in the exposition format,
-- /healthz, 404, 405, HEAD, a query ignored, 400, 431), that a client is
-- closed after its answer and after 5 s without a whole head, that no more
-- than 64 clients are held and the endpoint answers again once they go,
-- the Unix socket file's life, and that the serving port goes on echoing
-- meanwhile. Every wait has a deadline.
local socket = require "socket"
local uv = require "luv"
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local server = require "support.server"
local sockets = require "support.sockets"
local wait = require "support.wait"

local EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"
local HEAD_TIMEOUT = 5 -- seconds the endpoint waits for a whole head
local MAX_CLIENTS = 64

after_each(function()
  sockets.close_all()
  cleanup.expect_clean() -- no crash, a clean exit on SIGTERM, no sanitizer report
end)

-- Start luaecho serving on a free port, with its metrics on `spec`
-- (default 127.0.0.1:0) and `args` before the script; returns the Proc
-- with proc.metrics_port (TCP) set from the "metrics on" line.
local function start(spec, args)
  local full = { "--metrics", spec or "127.0.0.1:0" }
  for _, arg in ipairs(args or {}) do full[#full + 1] = arg end
  local proc = server.start(full)
  proc:wait_metrics()
  assert.are.equal("127.0.0.1", proc.metrics_host)
  return proc
end

-- An answer taken apart: { status = 200, headers = { lower-case name =
-- value }, body = "...", raw = "..." }. Raises if it is no HTTP answer.
local function parse(raw)
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  if not head then error(("no HTTP answer: %q"):format(raw:sub(1, 200)), 2) end
  local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d) [^\r\n]+"))
  if not status then error(("no status line: %q"):format(head:sub(1, 200)), 2) end
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do headers[name:lower()] = value end
  return { status = status, headers = headers, body = body, raw = raw }
end

-- Send `request` (bytes) on a new TCP connection and read until the
-- endpoint closes; returns the parsed answer.
local function request(proc, bytes)
  local conn = client.connect("127.0.0.1", proc.metrics_port)
  conn:send_all(bytes)
  local raw, how = conn:receive_until_close()
  conn:close()
  assert.are.equal("closed", how, "the answer did not end with a close")
  return parse(raw)
end

local function get(proc, path, method)
  return request(proc, ("%s %s HTTP/1.1\r\nHost: localhost\r\n\r\n"):format(method or "GET", path))
end

-- Its Content-Length says how long its body is.
local function assert_length(answer)
  assert.are.equal(#answer.body, tonumber(answer.headers["content-length"]))
end

-- The serving port still echoes.
local function assert_echoes(proc)
  local conn = client.connect(proc.host, proc.port)
  conn:send_all("hello")
  assert.are.equal("echo:hello", conn:receive_exactly(10))
  conn:close()
end

describe("metrics endpoint #integration", function()
  it("answers GET /metrics with the exposition format", function()
    local proc = start()
    local answer = get(proc, "/metrics")
    assert.are.equal(200, answer.status)
    assert.are.equal(EXPOSITION, answer.headers["content-type"])
    assert.are.equal("close", answer.headers["connection"])
    assert_length(answer)
    assert.matches("# TYPE ", answer.body, 1, true)
    assert.are.equal("\n", answer.body:sub(-1))
  end)

  it("ignores a query string", function()
    local proc = start()
    local answer = get(proc, "/metrics?name=x&y=1")
    assert.are.equal(200, answer.status)
    assert.matches("# TYPE ", answer.body, 1, true)
  end)

  it("answers GET /healthz with 200 ok", function()
    local proc = start()
    local answer = get(proc, "/healthz")
    assert.are.equal(200, answer.status)
    assert.are.equal("ok\n", answer.body)
    assert_length(answer)
  end)

  it("answers 404 for another path, 405 with Allow for another method", function()
    local proc = start()
    local missing = get(proc, "/metrics/")
    assert.are.equal(404, missing.status)
    assert.are.equal("not found\n", missing.body)
    local post = request(proc, "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert.are.equal(405, post.status)
    assert.are.equal("GET, HEAD", post.headers["allow"])
    assert_length(post)
  end)

  it("answers HEAD with the headers GET would have, and no body", function()
    local proc = start()
    local answer = get(proc, "/metrics", "HEAD")
    assert.are.equal(200, answer.status)
    assert.are.equal(EXPOSITION, answer.headers["content-type"])
    assert.are.equal("", answer.body)
    assert.is_true(tonumber(answer.headers["content-length"]) > 0)
    local health = get(proc, "/healthz", "HEAD")
    assert.are.equal("", health.body)
    assert.are.equal("3", health.headers["content-length"])
  end)

  it("reads a head that comes a byte at a time, with bare LF line ends", function()
    local proc = start()
    local conn = client.connect("127.0.0.1", proc.metrics_port)
    for byte in ("GET /healthz HTTP/1.0\nHost: x\n\n"):gmatch(".") do conn:send_all(byte) end
    local answer = parse((conn:receive_until_close()))
    assert.are.equal(200, answer.status)
    assert.are.equal("ok\n", answer.body)
  end)

  it("answers 400 to a malformed request", function()
    local proc = start()
    assert.are.equal(400, request(proc, "GARBAGE\r\n\r\n").status)
    assert.are.equal(400, request(proc, "GET /metrics HTTP/2.0\r\n\r\n").status)
    assert.are.equal(400, request(proc, "GET http://localhost/metrics HTTP/1.1\r\n\r\n").status)
    assert.are.equal(400, request(proc, "GET /met\1rics HTTP/1.1\r\n\r\n").status)
    assert.are.equal(200, get(proc, "/healthz").status)
  end)

  it("answers 431 (or closes) a head over 8 KiB, and serves the next client", function()
    local proc = start()
    local conn = client.connect("127.0.0.1", proc.metrics_port)
    conn:send_all("GET /metrics HTTP/1.1\r\nX-Pad: " .. ("a"):rep(9000) .. "\r\n\r\n")
    local raw = conn:receive_until_close()
    if raw ~= "" then assert.are.equal(431, parse(raw).status) end
    assert.are.equal(200, get(proc, "/healthz").status)
  end)

  it("closes a client that sends no whole head within 5 s, without an answer", function()
    local proc = start()
    local silent = client.connect("127.0.0.1", proc.metrics_port)
    local partial = client.connect("127.0.0.1", proc.metrics_port)
    partial:send_all("GET /metr")
    local started = wait.now()
    assert.are.same({ "", "closed" }, { silent:receive_until_close(HEAD_TIMEOUT + 3) })
    assert.are.same({ "", "closed" }, { partial:receive_until_close(HEAD_TIMEOUT + 3) })
    assert.is_true(wait.now() - started > HEAD_TIMEOUT - 1, "closed before its time")
    assert_echoes(proc)
  end)

  it("holds at most 64 clients, closing the rest at once, and answers again once they go", function()
    local proc = start()
    local idle = client.connect_many("127.0.0.1", proc.metrics_port, MAX_CLIENTS + 6)
    local socks = {}
    for i, conn in ipairs(idle) do
      conn.sock:settimeout(0)
      socks[i] = conn.sock
    end
    -- The 6 over the cap are closed at accept; the others wait for a head.
    local closed = {}
    wait.until_true(function()
      local readable = socket.select(socks, nil, 0.1)
      for _, sock in ipairs(readable) do
        local _, err = sock:receive(1)
        if err == "closed" then closed[sock] = true end
      end
      local n = 0
      for _ in pairs(closed) do n = n + 1 end
      return n >= 6
    end, 3, "6 clients over the cap closed", true)
    assert_echoes(proc)
    client.close_all()
    -- The endpoint sees them go, one read each: until then a new client
    -- may be closed at accept, so ask until it answers.
    local answer = wait.until_true(function()
      local conn = client.connect("127.0.0.1", proc.metrics_port)
      local ok, raw = pcall(function()
        conn:send_all("GET /healthz HTTP/1.1\r\n\r\n")
        return (conn:receive_until_close())
      end)
      conn:close()
      return ok and raw ~= "" and parse(raw)
    end, 5, "an answer once the idle clients are gone")
    assert.are.equal(200, answer.status)
  end)

  it("answers /healthz 503 once shutdown began", function()
    local proc = start(nil, { "--shutdown-timeout", "5", server.fixture("flood.lua") })
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("flood") -- output the server cannot flush: it stays up draining
    proc:wait_output("stdout", "flooding %d+ buffered %d+\n")
    proc:signal("sigterm")
    proc:wait_output("stderr", "shutting down")
    local answer = get(proc, "/healthz")
    assert.are.equal(503, answer.status)
    assert.are.equal("shutting down\n", answer.body)
    conn:reset()
    assert.are.equal(0, (proc:wait_exit(5 + 2)))
  end)

  describe("on a Unix socket", function()
    local function socket_path()
      return files.scratch("metrics"):path("metrics.sock")
    end

    it("answers /metrics there and removes the file at exit", function()
      local path = socket_path()
      local proc = server.start({ "--metrics", "unix:" .. path })
      assert.are.equal("unix:" .. path .. " (GET /metrics)", proc:wait_metrics())
      local sock = sockets.unix_connect(path)
      assert(sock:send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
      local raw, err, partial = sock:receive("*a")
      local answer = parse(raw or partial)
      assert.is_nil(err)
      assert.are.equal(200, answer.status)
      assert.are.equal(EXPOSITION, answer.headers["content-type"])
      assert.matches("# TYPE ", answer.body, 1, true)
      assert_echoes(proc)
      proc:signal("sigterm")
      assert.are.equal(0, (proc:wait_exit(5)))
      assert.is_nil(uv.fs_lstat(path), "the socket file is still there")
    end)

    it("replaces a socket file left by a dead process", function()
      local path = socket_path()
      local stale = require("socket.unix").stream()
      assert(stale:bind(path))
      stale:close() -- the file stays, nobody listens
      local proc = server.start({ "--metrics", "unix:" .. path })
      proc:wait_metrics()
      local sock = sockets.unix_connect(path)
      assert(sock:send("GET /healthz HTTP/1.1\r\n\r\n"))
      local raw, _, partial = sock:receive("*a")
      assert.are.equal("ok\n", parse(raw or partial).body)
    end)
  end)
end)
