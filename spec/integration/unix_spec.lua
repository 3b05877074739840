-- Unix stream sockets (--listen unix:PATH, and luaecho.*unix* in `luaecho
-- run` programs): the same Protocol and streams contract as TCP, the socket
-- file's life (a stale one replaced, a live one or a non-socket refused,
-- removed at exit, --unix-mode), what get_extra_info says about a Unix
-- peer, and the limits. The spec's own client is luasocket's socket.unix.
-- Every socket lives in a scratch directory, removed after each spec; every
-- wait has a deadline.
local uv = require "luv"
local socket = require "socket"
local unix = require "socket.unix"
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local server = require "support.server"
local sockets = require "support.sockets"
local wait = require "support.wait"

local TIMEOUT = 5

local function fixture(name)
  return server.fixture("listeners/" .. name)
end

after_each(function()
  sockets.close_all()
  cleanup.expect_clean() -- no crash, a clean exit on SIGTERM, no sanitizer report; scratch removed
end)

-- A fresh socket path in a scratch directory of its own.
local function socket_path(name)
  return files.scratch("unix"):path(name or "luaecho.sock")
end

local connect = sockets.unix_connect

-- Send all of `data`.
local function send(sock, data)
  local last, err = sock:send(data)
  if last ~= #data then error(("send failed: %s"):format(tostring(err)), 2) end
end

-- Receive exactly `n` bytes within the deadline, or raise with what came.
local function receive(sock, n)
  local data, err, partial = sock:receive(n)
  if not data then error(("%s after %q"):format(tostring(err), partial or ""), 2) end
  return data
end

-- Receive one line (without its newline) within the deadline.
local function receive_line(sock)
  local line, err, partial = sock:receive("*l")
  if not line then error(("%s after %q"):format(tostring(err), partial or ""), 2) end
  return line
end

-- Read until the server closes: returns what arrived. Raises if it is
-- still open at the deadline, or ends otherwise than by a close.
local function receive_until_close(sock)
  local data, err, partial = sock:receive("*a")
  if data then return data end -- luasocket: "*a" with data, then the close
  if err == "closed" then return partial end
  error(("not closed (%s) after %q"):format(tostring(err), partial or ""), 2)
end

-- The type luv reports for `path` ("socket", "file", ...), or nil.
local function file_type(path)
  local stat = uv.fs_lstat(path)
  return stat and stat.type
end

-- The permission bits of `path`, as an octal string such as "600".
local function permissions(path)
  local stat = assert(uv.fs_lstat(path))
  return ("%o"):format(math.tointeger(stat.mode) & tonumber("777", 8))
end

-- Start the server on the Unix socket at `path`; returns the Proc.
local function start_unix(path, extra)
  local args = { "--listen", "unix:" .. path }
  for _, arg in ipairs(extra or {}) do args[#args + 1] = arg end
  local proc = server.start_listeners(args)
  assert.are.same({ kind = "unix", name = "unix:" .. path, path = path }, proc.listeners[1])
  return proc
end

-- The key=value fields of unix_info.lua's answer to "info\n".
local function info(sock)
  send(sock, "info\n")
  local line = receive_line(sock)
  local fields = {}
  for key, value in line:gmatch('(%w+)=(%b"")') do fields[key] = load("return " .. value)() end
  for key, value in line:gmatch("(%w+)=(%d+)") do fields[key] = math.tointeger(tonumber(value)) end
  return fields, line
end

describe("a Unix socket listener #integration", function()
  it("serves a Protocol script: the bundled echo.lua answers each chunk", function()
    local path = socket_path()
    local proc = start_unix(path)
    assert.are.equal("socket", file_type(path))
    local sock = connect(path)
    send(sock, "hello")
    assert.are.equal("echo:hello", receive(sock, 10))
    send(sock, "again")
    assert.are.equal("echo:again", receive(sock, 10))
    sock:close()
    proc:wait_output("stdout", "Connection lost!\n", TIMEOUT, "echo.lua's 'Connection lost!'")
    assert.matches('Connection received!\n"hello"\n"again"\n', proc:stdout(), 1, true)
  end)

  it("serves a streams script: examples/stream_echo.lua echoes, and closes after our EOF", function()
    local path = socket_path()
    start_unix(path, { server.script("examples/stream_echo.lua") })
    local sock = connect(path)
    send(sock, "one\n")
    assert.are.equal("one", receive_line(sock))
    send(sock, "two\n")
    assert.are.equal("two", receive_line(sock))
    assert(sock:shutdown("send"))
    assert.are.equal("", receive_until_close(sock))
  end)

  it("names a Unix peer by its credentials when a streams handler fails, as the host names it", function()
    local path = socket_path()
    local proc = start_unix(path, { server.fixture("stream_boom.lua") })
    local sock = connect(path)
    send(sock, "boom\n")
    local pid = math.tointeger(require("luv").os_getpid())
    proc:wait_output("stderr", "stream handler failed for unix peer %(pid " .. pid .. ", uid %d+%)", TIMEOUT,
      "the failure's line naming the peer")
  end)

  it("reports the listener, an empty peername, the path as sockname and the peer's credentials", function()
    local path = socket_path()
    start_unix(path, { fixture("unix_info.lua") })
    local fields, line = info(connect(path))
    assert.are.same({
      listener = "unix:" .. path,
      peername = "",
      sockname = path,
      pid = math.tointeger(uv.os_getpid()),
      uid = math.tointeger(uv.getuid()),
      gid = math.tointeger(uv.getgid()),
      worker = 1,
    }, fields, line)
  end)

  it("replaces a socket file nobody listens on", function()
    local path = socket_path()
    local stale = assert(unix.stream())
    assert(stale:bind(path))
    stale:close() -- the file stays, as after a crash
    assert.are.equal("socket", file_type(path))
    start_unix(path)
    local sock = connect(path)
    send(sock, "fresh")
    assert.are.equal("echo:fresh", receive(sock, 10))
  end)

  it("refuses a socket a live process listens on (exit 1), leaving it and that process alone", function()
    local path = socket_path()
    start_unix(path)
    local code, _, err = server.run({ "--listen", "unix:" .. path }, nil, TIMEOUT)
    assert.are.equal(1, code, err)
    local lines = {}
    for line in err:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(1, #lines, err)
    assert.matches("another process is listening on it", lines[1], 1, true)
    assert.matches("unix:" .. path, lines[1], 1, true)
    assert.are.equal("socket", file_type(path))
    local sock = connect(path)
    send(sock, "still mine")
    assert.are.equal("echo:still mine", receive(sock, 15))
  end)

  it("refuses a path that exists and is not a socket (exit 1), leaving the file as it was", function()
    local path = socket_path("not-a-socket")
    files.write(path, "precious\n")
    local code, _, err = server.run({ "--listen", "unix:" .. path }, nil, TIMEOUT)
    assert.are.equal(1, code, err)
    assert.matches("is not a socket", err, 1, true)
    assert.are.equal("precious\n", files.read(path))
  end)

  -- A start that fails on a later listener must not leave the Unix
  -- socket it had already made behind.
  local later_failures = {
    { "a path that is not a socket", function(scratch)
      return { "--listen", "unix:" .. files.write(scratch:path("file"), "x\n") }
    end },
    { "a TCP port in use", function()
      local busy = assert(socket.tcp())
      assert(busy:bind("127.0.0.1", 0))
      assert(busy:listen(8))
      sockets.track(busy)
      local _, port = busy:getsockname()
      return { "--listen", "127.0.0.1:" .. port }
    end },
    { "a UDP listener the script cannot serve", function()
      return { "--listen", "udp:127.0.0.1:0", fixture("no_datagram.lua") }
    end },
  }
  for _, case in ipairs(later_failures) do
    it("removes its socket file when the start fails on " .. case[1], function()
      local scratch = files.scratch("unix")
      local path = scratch:path("first.sock")
      local args = { "--listen", "unix:" .. path }
      for _, arg in ipairs(case[2](scratch)) do args[#args + 1] = arg end
      local code, _, err = server.run(args, nil, TIMEOUT)
      assert.are.equal(1, code, err)
      assert.not_matches("listening on", err, 1, true)
      assert.is_nil(file_type(path), "the socket file of the failed start is still there")
    end)
  end

  for _, signal in ipairs({ "sigterm", "sigint" }) do
    it("removes its socket file when " .. signal:upper() .. " stops it", function()
      local path = socket_path()
      local proc = start_unix(path)
      assert.are.equal("socket", file_type(path))
      proc:signal(signal)
      assert.are.equal(0, (proc:wait_exit(TIMEOUT)))
      assert.is_nil(file_type(path), "the socket file is still there")
    end)
  end

  for _, mode in ipairs({ "600", "660" }) do
    it("gives the socket file the permissions of --unix-mode " .. mode, function()
      local path = socket_path()
      start_unix(path, { "--unix-mode", mode })
      assert.are.equal(mode, permissions(path))
      local sock = connect(path)
      send(sock, "x")
      assert.are.equal("echo:x", receive(sock, 6))
    end)
  end

  it("counts Unix and TCP connections together for --max-connections", function()
    local path = socket_path()
    local proc = server.start_listeners({ "--max-connections", "2", "--listen", "127.0.0.1:0",
      "--listen", "unix:" .. path, fixture("unix_info.lua") })
    local tcp = client.connect(proc.host, proc.port)
    tcp:send_all("tcp\n")
    assert.are.equal("tcp\n", tcp:receive_exactly(4))
    local sock = connect(path)
    send(sock, "unix\n")
    assert.are.equal("unix", receive_line(sock))
    -- Two open: a third is accepted and closed at once, on either listener.
    assert.are.equal("", receive_until_close(connect(path)))
    local extra_tcp = client.connect(proc.host, proc.port)
    local data = extra_tcp:receive_until_close(TIMEOUT)
    assert.are.equal("", data)
    proc:wait_output("stderr", "connection limit reached", TIMEOUT, "the limit's log line")
    -- Both still served.
    send(sock, "still\n")
    assert.are.equal("still", receive_line(sock))
    -- Once the TCP one goes, a Unix one takes its place.
    tcp:close()
    wait.until_true(function()
      local next_one = connect(path)
      next_one:send("in?\n")
      local line = next_one:receive("*l")
      return line == "in?"
    end, TIMEOUT, "a Unix connection served after the TCP one closed")
  end)

  it("closes an idle Unix connection after --idle-timeout", function()
    local path = socket_path()
    local proc = start_unix(path, { "--idle-timeout", "0.3", fixture("unix_info.lua") })
    local sock = connect(path)
    send(sock, "hi\n")
    assert.are.equal("hi", receive_line(sock))
    local quiet_since = wait.now()
    assert.are.equal("", receive_until_close(sock))
    local silence = wait.now() - quiet_since
    assert.is_true(silence >= 0.25, ("closed after only %.3f s of silence"):format(silence))
    proc:wait_output("stderr", "idle timeout: no traffic for 0%.3 s", TIMEOUT, "the idle timeout's log line")
  end)
end)

describe("Unix sockets in `luaecho run` programs #integration", function()
  for _, style in ipairs({ "streams", "protocol" }) do
    local how = style == "streams" and "open_unix_connection" or "create_unix_connection"
    it("a client on " .. how .. " talks to a server the spec started", function()
      local path = socket_path()
      start_unix(path)
      local code, out, err = server.run({ "run", fixture("unix_client.lua"), style, path, "ping" }, nil, TIMEOUT)
      assert.are.equal(0, code, err)
      assert.matches("got echo:ping\n", out, 1, true)
    end)
  end

  for _, style in ipairs({ "streams", "protocol" }) do
    local how = style == "streams" and "start_unix_server" or "create_unix_server"
    it("a server on " .. how .. " answers one client, closes, and its socket file goes", function()
      local path = socket_path()
      local proc = server.spawn({ "run", fixture("unix_server.lua"), style, path })
      proc:wait_output("stdout", "serving [^\n]+\n", TIMEOUT, "the 'serving' line")
      assert.are.equal("socket", file_type(path))
      local sock = connect(path)
      send(sock, "hello\n")
      assert.are.equal("served:hello", receive_line(sock))
      assert.are.equal("", receive_until_close(sock))
      assert.are.equal(0, (proc:wait_exit(TIMEOUT)), proc:describe())
      assert.matches("closed\n", proc:stdout(), 1, true)
      assert.is_nil(file_type(path), "the socket file is still there")
    end)
  end
end)
