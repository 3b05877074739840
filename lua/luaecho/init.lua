--- luaecho: timers, tasks, clients and servers for handler scripts and
-- `luaecho run` programs, in the style of Python's asyncio.
-- Functions that wait (sleep, open_connection, create_connection,
-- start_server, create_server, server:wait_closed) suspend the running
-- luaecho task; called anywhere else they raise a clear error.
-- @usage
--   local luaecho = require "luaecho"
--   local reader, writer = luaecho.open_connection("localhost", 2222)
--   writer:write("hello\n")
--   print(reader:readline())
local core = require "luaecho.core"
local task = require "luaecho.task"
local streams = require "luaecho.streams"
local errors = require "luaecho.errors"
local pack, unpack, traceback = table.pack, table.unpack, debug.traceback
local error, type, xpcall = error, type, xpcall

local M = {}

--- Monotonic seconds (asyncio's loop.time()).
M.now = core.now

--- Call fn(...) once, 'seconds' from now, outside any task. Returns a handle
-- with cancel() and cancelled().
function M.call_later(seconds, fn, ...)
  if type(fn) ~= "function" then error("luaecho.call_later(): fn must be a function", 2) end
  local args = pack(...)
  return core.timer(seconds, function() fn(unpack(args, 1, args.n)) end)
end

--- Suspend the running task for 'seconds'.
function M.sleep(seconds)
  local current = task.check("luaecho.sleep()", 2)
  core.timer(seconds, function() task.wake(current) end)
  task.suspend("luaecho.sleep()")
end

-- What luaecho.shared() has made, by name: this module is loaded once per
-- worker and a hot swap leaves it alone, so these outlive every generation.
local shared = {}

--- The table named 'name', the same one for every generation of the script
-- in this worker: state that must survive a hot swap (a chat room's
-- members, a cache). The first call makes it: 'init' is a table to use, a
-- function returning one (called once), or nil for an empty table; later
-- calls return the table already made and ignore 'init'. With --workers N
-- each worker has its own.
function M.shared(name, init)
  if type(name) ~= "string" then error("luaecho.shared(): name must be a string", 2) end
  local t = shared[name]
  if t ~= nil then return t end
  if type(init) == "function" then
    t = init()
    if type(t) ~= "table" then error("luaecho.shared(): init() must return a table, not " .. type(t), 2) end
  elseif type(init) == "table" or init == nil then
    t = init or {}
  else
    error("luaecho.shared(): init must be a table or a function, not " .. type(init), 2)
  end
  shared[name] = t
  return t
end

--- Run fn(...) as a task of its own; returns the task. A failing task is
-- logged with its traceback.
M.spawn = task.spawn

-- Start an operation that reports through callback(a, b), and suspend the
-- running task until it does. Returns a, b.
local function await(what, start, ...)
  local current = task.check(what, 3)
  local args = pack(...)
  args[args.n + 1] = function(a, b) task.wake(current, a, b) end
  start(unpack(args, 1, args.n + 1))
  return task.suspend(what)
end

-- The options of open_connection ('limit' too) and create_connection.
local CONNECT_OPTIONS = { tls = true, server_hostname = true, ca = true, verify = true, alpn = true }
local TLS_ONLY = { "server_hostname", "ca", "verify", "alpn" }

-- 'opts' of open_connection/create_connection ('what') checked, every
-- error naming the option and blaming the script's line; returns the
-- tlsopts core.connect_tls takes, or nil for a plain connection.
local function connect_options(what, host, opts, with_limit)
  if opts == nil then return nil end
  if type(opts) ~= "table" then error(what .. ": opts must be a table, not " .. type(opts), 3) end
  for key in pairs(opts) do
    if not CONNECT_OPTIONS[key] and not (with_limit and key == "limit") then
      error(("%s: unknown option %s (%stls, server_hostname, ca, verify, alpn)"):format(what, tostring(key),
        with_limit and "limit, " or ""), 3)
    end
  end
  local tls = opts.tls
  if tls ~= nil and type(tls) ~= "boolean" then
    error(("%s: opts.tls must be true or false, not %s"):format(what, type(tls)), 3)
  end
  if not tls then
    for _, name in ipairs(TLS_ONLY) do
      if opts[name] ~= nil then error(("%s: opts.%s needs opts.tls = true"):format(what, name), 3) end
    end
    return nil
  end
  return streams.tls_client_options(what, opts, host, 3)
end

-- Connect to host:port with 'protocol': plain, or TLS with 'tlsopts'.
-- Returns transport, instance or nil, the reason.
local function connect(what, host, port, tlsopts, protocol)
  if tlsopts then return await(what, core.connect_tls, host, port, tlsopts, protocol) end
  return await(what, core.connect, host, port, protocol)
end

--- Connect to host:port and serve the connection with 'protocol' (a
-- Protocol table). opts: the TLS options of open_connection (tls,
-- server_hostname, ca, verify, alpn). Returns transport, protocol
-- instance; raises a ConnectionError naming host and port when the
-- lookup, the connect or the TLS handshake fails.
function M.create_connection(protocol, host, port, opts)
  local what = "luaecho.create_connection()"
  if type(protocol) ~= "table" then error(what .. ": protocol must be a table", 2) end
  local tlsopts = connect_options(what, host, opts, false)
  local transport, instance = connect(what, host, port, tlsopts, protocol)
  if not transport then error(errors.new("ConnectionError", instance), 2) end
  return transport, instance
end

--- Open a UDP endpoint served by 'protocol' (a Protocol table with
-- datagram_received(data, host, port); also connection_made(transport),
-- error_received(err), connection_lost(err)), as asyncio's
-- create_datagram_endpoint. opts: local_host and local_port (0 or absent:
-- any free port) to bind to, remote_host and remote_port to send to by
-- default and hear only from; at least one of the two addresses. Returns
-- transport (sendto(data [, host, port]), close(), get_extra_info(), ...),
-- protocol instance; raises a ConnectionError naming the address when the
-- lookup, bind or connect fails.
function M.create_datagram_endpoint(protocol, opts)
  local what = "luaecho.create_datagram_endpoint()"
  if type(protocol) ~= "table" then error(what .. ": protocol must be a Protocol table", 2) end
  if protocol.datagram_received == nil then
    error(what .. ": the Protocol has no datagram_received(data, host, port), so it cannot serve datagrams", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error(what .. ": opts must be a table", 2) end
  opts = opts or {}
  for key in pairs(opts) do
    if key ~= "local_host" and key ~= "local_port" and key ~= "remote_host" and key ~= "remote_port" then
      error(("%s: unknown option %s (local_host, local_port, remote_host, remote_port)"):format(what,
        tostring(key)), 2)
    end
  end
  local local_host, local_port = opts.local_host, opts.local_port
  local remote_host, remote_port = opts.remote_host, opts.remote_port
  for _, name in ipairs({ "local_host", "remote_host" }) do
    if opts[name] ~= nil and type(opts[name]) ~= "string" then
      error(("%s: opts.%s must be a string"):format(what, name), 2)
    end
  end
  for _, name in ipairs({ "local_port", "remote_port" }) do
    local port = opts[name]
    if port ~= nil and (math.type(port) ~= "integer" or port < 0 or port > 65535) then
      error(("%s: opts.%s must be an integer from 0 to 65535"):format(what, name), 2)
    end
  end
  if local_port ~= nil and local_host == nil then
    error(what .. ": opts.local_port needs opts.local_host (\"0.0.0.0\" for every interface)", 2)
  end
  if (remote_host == nil) ~= (remote_port == nil) or remote_port == 0 then
    error(what .. ": give opts.remote_host and opts.remote_port (1 to 65535) together", 2)
  end
  if local_host == nil and remote_host == nil then
    error(what .. ": give a local address (opts.local_host), a remote one (opts.remote_host), or both", 2)
  end
  local transport, instance = await(what, core.datagram_endpoint, protocol, local_host, local_port or 0,
    remote_host, remote_port)
  if not transport then error(errors.new("ConnectionError", instance), 2) end
  if instance == nil then -- Protocol.new() or connection_made failed: logged, and the endpoint closed
    error(errors.new("ConnectionError",
      what .. ": the endpoint could not start: creating its Protocol instance failed (logged above)"), 2)
  end
  return transport, instance
end

--- Connect to host:port; returns a streams reader and writer.
-- opts.limit: the reader's buffer limit (default 64 KiB). opts.tls = true
-- connects with TLS, verified against the system's CA store (or the PEM
-- file opts.ca) with the name opts.server_hostname (default: host), unless
-- opts.verify = false; opts.alpn: protocol names to offer ({"h2",
-- "http/1.1"}). A failed lookup, connect or handshake (a certificate that
-- does not verify) raises a ConnectionError saying why.
function M.open_connection(host, port, opts)
  local what = "luaecho.open_connection()"
  local tlsopts = connect_options(what, host, opts, true)
  local transport, instance = connect(what, host, port, tlsopts, streams.protocol(nil, opts))
  if not transport then error(errors.new("ConnectionError", instance), 2) end
  -- a client's writer:start_tls() (STARTTLS) names this host by default
  if not tlsopts then instance.writer.tls_client = { host = host } end
  return instance.reader, instance.writer
end

--- Listen on host:port (0: any free port) and serve each connection with
-- 'protocol'. Returns the server (close(), sockname(), wait_closed()).
function M.create_server(protocol, host, port)
  if type(protocol) ~= "table" then error("luaecho.create_server(): protocol must be a table", 2) end
  local server, err = await("luaecho.create_server()", core.listen, host, port, protocol)
  if not server then error(errors.new("ServerError", err), 2) end
  return server
end

--- Listen on host:port and run handler(reader, writer) in a task of its own
-- for each connection. opts.limit: each reader's buffer limit.
function M.start_server(handler, host, port, opts)
  if type(handler) ~= "function" then error("luaecho.start_server(): handler must be a function", 2) end
  local server, err = await("luaecho.start_server()", core.listen, host, port, streams.protocol(handler, opts))
  if not server then error(errors.new("ServerError", err), 2) end
  return server
end

--- Connect to the Unix socket at 'path' and serve the connection with
-- 'protocol'. Returns transport, protocol instance; raises a
-- ConnectionError naming the path when the connect fails.
function M.create_unix_connection(protocol, path)
  if type(protocol) ~= "table" then error("luaecho.create_unix_connection(): protocol must be a table", 2) end
  if type(path) ~= "string" then error("luaecho.create_unix_connection(): path must be a string", 2) end
  local transport, instance = await("luaecho.create_unix_connection()", core.connect_unix, path, protocol)
  if not transport then error(errors.new("ConnectionError", instance), 2) end
  return transport, instance
end

--- Connect to the Unix socket at 'path'; returns a streams reader and
-- writer. opts.limit: the reader's buffer limit (default 64 KiB).
function M.open_unix_connection(path, opts)
  if type(path) ~= "string" then error("luaecho.open_unix_connection(): path must be a string", 2) end
  local transport, instance = await("luaecho.open_unix_connection()", core.connect_unix, path,
    streams.protocol(nil, opts))
  if not transport then error(errors.new("ConnectionError", instance), 2) end
  instance.writer.tls_client = {} -- a client's writer:start_tls() (STARTTLS): no host name to check
  return instance.reader, instance.writer
end

-- Listen on a Unix socket at once: no lookup to wait for.
local function listen_unix(what, path, protocol)
  if type(path) ~= "string" then error(what .. ": path must be a string", 3) end
  local server, err = core.listen_unix(path, protocol)
  if not server then error(errors.new("ServerError", err), 3) end
  return server
end

--- Listen on a Unix socket at 'path' and serve each connection with
-- 'protocol'. A socket file no process listens on is replaced; the file
-- is removed when the server closes. Returns the server.
function M.create_unix_server(protocol, path)
  if type(protocol) ~= "table" then error("luaecho.create_unix_server(): protocol must be a table", 2) end
  return listen_unix("luaecho.create_unix_server()", path, protocol)
end

--- Listen on a Unix socket at 'path' and run handler(reader, writer) in a
-- task of its own for each connection. opts.limit: each reader's limit.
function M.start_unix_server(handler, path, opts)
  if type(handler) ~= "function" then error("luaecho.start_unix_server(): handler must be a function", 2) end
  return listen_unix("luaecho.start_unix_server()", path, streams.protocol(handler, opts))
end

--- server:wait_closed(): suspend until the server is closed and its last
-- connection has gone.
function core.server_methods.wait_closed(server)
  await("server:wait_closed()", core.on_server_finished, server)
end

-- The main task of `luaecho run`: "ok", "failed" or "pending" afterwards.
local main_status = "pending"

-- Started by the host for `luaecho run SCRIPT`: run chunk(...) as the main
-- task. Its failure is logged with its traceback and shuts the host down,
-- as an exception escaping asyncio.run() would end the program.
function M._run_main(chunk, ...)
  task.spawn(function(...)
    local ok, err = xpcall(chunk, function(e) return traceback(tostring(e), 2) end, ...)
    if ok then err = M._handler_hint(err, arg and arg[0]) end
    if err == nil then
      main_status = "ok"
    else
      main_status = "failed"
      core.log("error", err)
      core.shutdown("the script failed")
    end
  end, ...)
end

local PROTOCOL_METHODS = { "connection_made", "data_received", "eof_received", "connection_lost" }

--- What to say when the `luaecho run` program 'script' returned a handler
-- (a Protocol table or a streams function): it was meant to be served, and
-- running it did nothing. nil for anything else a program may return.
function M._handler_hint(result, script)
  local what
  if type(result) == "function" then
    what = "a streams handler function(reader, writer)"
  elseif type(result) == "table" then
    for _, name in ipairs(PROTOCOL_METHODS) do
      if rawget(result, name) ~= nil then what = "a Protocol table" end
    end
  end
  if what == nil then return nil end
  script = script or "the script"
  return ("%s returned %s: it is a handler, which luaecho serves; serve it with 'luaecho %s' "
    .. "('luaecho run' runs programs)"):format(script, what, script)
end

function M._main_status()
  return main_status
end

return M
