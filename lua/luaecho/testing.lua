--- luaecho.testing: run a handler script inside busted, with no sockets, no
-- luaecho process and no waiting.
-- A fake connection plays the peer: it sends bytes in any chunking,
-- half-closes, resets, reads what the handler wrote (or holds it unread, so
-- flow control kicks in), and reports what the handler did with its
-- transport and which callbacks ran. A virtual clock moves only when the
-- spec says so, firing sleeps, call_later timers and idle timeouts in time
-- order. Requiring this module installs a fake `luaecho.core`, so
-- `require "luaecho"` (sleep, call_later, spawn, open_connection,
-- start_server...) works under plain busted: clients reach fake servers
-- that the spec starts. Scripts load as the host loads them (through
-- luaecho.loader, the host's own loader), the host's default limits come
-- from luaecho.defaults, and a failing callback is logged, aborts its
-- connection and reaches connection_lost(err), as in the host.
-- An error luaecho would log (a failed callback, streams handler, task,
-- timer or program) also fails the spec, with its traceback, the next
-- time the spec talks to the fake (send, output, advance, run...). A spec
-- that provokes errors on purpose says so first: testing.expect_errors();
-- conn:errors() and testing.logs() then show them.
-- UDP too: testing.datagram serves a script's DatagramProtocol on a fake
-- udp: listener, and luaecho.create_datagram_endpoint makes fake
-- endpoints that reach each other by address.
-- A handler's luaecho.metrics work on a fake registry: testing.metric()
-- reads a series back, testing.scrape() gives the exposition text. Its
-- luaecho.redis clients talk to a fake Redis: testing.redis() runs a
-- command on it, testing.redis_outage() takes it down.
-- luaecho.channel works within the fake world (one worker): delivery on
-- the next loop turn; testing.published() and testing.publish() look at it
-- and play other workers.
-- This file is the public face; the fake host lives in luaecho.testing.*
-- (world, args, report, clock, conn, transport, server, datagram, metrics,
-- channel, redis, core, scripts, peer, endpoint, runner), which never
-- require this file.
-- @usage
--   local testing = require "luaecho.testing"
--   before_each(testing.reset)
--   it("answers each chunk", function()
--     local conn = testing.connect("lua/echo.lua")
--     conn:send("abc")
--     assert.are.equal("echo:abc", conn:output())
--   end)
local world = require "luaecho.testing.world"
local report = require "luaecho.testing.report"
local clock = require "luaecho.testing.clock"
local server = require "luaecho.testing.server"
local scripts = require "luaecho.testing.scripts"
local peer = require "luaecho.testing.peer"
local runner = require "luaecho.testing.runner"
local fake_core = require "luaecho.testing.core"
local endpoint = require "luaecho.testing.endpoint"
local datagram = require "luaecho.testing.datagram"
local metrics = require "luaecho.testing.metrics"
local channel = require "luaecho.testing.channel"
local fake_redis = require "luaecho.testing.redis"
local log = require "luaecho.log"
local format = string.format
local floor, huge = math.floor, math.huge
local error, ipairs, tostring, type = error, ipairs, tostring, type

local W, settle, copy = world.W, clock.settle, world.copy

-- luaecho.metrics' primitives in the fake core, over the fake registry.
fake_core.core.metric_family = metrics.family
fake_core.core.metric_series = metrics.series
fake_core.core.metric_add = metrics.add
fake_core.core.metric_set = metrics.set
fake_core.core.metric_observe = metrics.observe
-- luaecho.channel's, over the fake world's topics.
fake_core.core.channel_publish = channel.publish
fake_core.core.channel_subscribe = channel.subscribe
fake_core.core.channel_redis_url = channel.redis_url
-- luaecho.redis on the fake Redis.
fake_core.core.redis_connect = fake_redis.connect
fake_core.install(2)

local M = {}

--- The Protocol table the host would make of 'script' (a path, a Protocol
-- table, or a streams function, which luaecho.streams wraps).
function M.load(script)
  return (scripts.protocol(script, 2, nil))
end

--- Serve 'script' (a path, a Protocol table or a streams function) on a
-- fake address. opts.host (default "127.0.0.1"), opts.port (default: a
-- free one), and the host's limits: opts.idle_timeout (seconds),
-- opts.max_write_buffer (bytes, default luaecho.defaults.max_write_buffer,
-- 0 for none). The script loads once; every connection to the server
-- shares it.
function M.serve(script, opts)
  return peer.handle(peer.serve(script, opts or {}, 2))
end

--- Serve 'script' and connect a fake peer to it: testing.serve(script,
-- opts):connect(opts). Returns the connection.
function M.connect(script, opts)
  opts = opts or {}
  local S = peer.serve(script, opts, 2)
  peer.handle(S)
  return peer.connect(S, opts, 2)
end

-- The server listening where host:port reaches, or nil.
local function listening(host, port)
  local addr = server.resolve(host)
  return addr and server.listener(addr, port)
end

--- Connect a fake peer to whatever listens at host:port (a server a
-- program started with luaecho.start_server, say). Raises when nothing does.
function M.connect_to(host, port, opts)
  settle()
  local S = listening(host, port)
  if S == nil or S.closed then
    error(format("luaecho.testing: cannot connect to %s port %s: connection refused", tostring(host),
      tostring(port)), 2)
  end
  return peer.connect(S, opts, 2)
end

--- Serve 'script' (a path or a Protocol table) on a fake UDP listener,
-- as `luaecho --listen udp:HOST:PORT` does: one protocol instance, whose
-- connection_made runs now. opts.host (default "127.0.0.1"), opts.port
-- (default: a free one), opts.listener (what get_extra_info("listener")
-- answers; default "udp:HOST:PORT"), opts.max_write_buffer. A Protocol
-- without datagram_received is refused with the host's message. Returns
-- the Endpoint: send(data [, host, port]), sent(), error(message),
-- hold(), release(), close(), events(), errors(), printed(), lost().
function M.datagram(script, opts)
  return endpoint.listen(script, opts, 2)
end

--- The Endpoint bound where host:port reaches (one a program made with
-- luaecho.create_datagram_endpoint, say), or nil.
function M.datagram_at(host, port)
  settle()
  local addr = server.resolve(host)
  local E = addr and datagram.bound_at(addr, port)
  return E and endpoint.handle(E)
end

--- The Server listening at host:port, or nil.
function M.server_at(host, port)
  settle()
  local S = listening(host, port)
  return S and peer.handle(S)
end

--- Make host 'name' resolve to 'address' (localhost is 127.0.0.1).
function M.add_host(name, address)
  W.hosts[name] = address
end

--- Run 'script' (a path, or a function) as the main task of a program, as
-- `luaecho run` does, with 'arg' set from the extra arguments. It runs
-- until it first waits; testing.advance() and the connections it talks
-- to move it on. A failure is logged and shuts the fake host down.
-- Returns a Program: status(), done(), error(), printed(), errors().
function M.run(script, ...)
  return runner.run(2, script, ...)
end

--- Move the virtual clock on by 'seconds' (default 0), firing what falls
-- due in time order: sleeps, call_later timers, idle timeouts. advance()
-- with no argument runs only what is due now.
function M.advance(seconds)
  seconds = seconds or 0
  if type(seconds) ~= "number" or seconds < 0 or seconds ~= seconds or seconds == huge then
    error("luaecho.testing.advance(): seconds must be a number >= 0", 2)
  end
  clock.advance_to(W.now + floor(seconds * 1000 + 0.5))
end

--- The virtual clock, in seconds (what luaecho.now() answers).
function M.now()
  return W.now / 1000
end

--- Timers pending (sleeps, call_later) on the virtual clock.
function M.pending_timers()
  return W.pending
end

--- What SIGTERM does to the fake host: servers stop accepting, every
-- connection is closed (flushed), and wait_closed returns.
function M.shutdown(why)
  settle()
  server.shutdown(why or "SIGTERM")
  settle()
end

--- Every log line so far, formatted as the host writes it on stderr in
-- the text format ("luaecho: error: ...", tracebacks included, a script's
-- fields appended as " key=value"). With 'level', only the messages of that
-- level ("error", "warn", "info", "debug"), fields appended the same way.
function M.logs(level)
  settle()
  local out = {}
  for _, entry in ipairs(W.logs) do
    if level == nil then
      out[#out + 1] = report.LOG_PREFIX[entry.level] .. log.text_line(entry.message, entry.fields)
    elseif entry.level == level then
      out[#out + 1] = log.text_line(entry.message, entry.fields)
    end
  end
  return out
end

--- Every line printed by handler code so far.
function M.printed()
  settle()
  return copy(W.printed)
end

--- What the script metric 'name' holds for 'label_values' (an array in
-- the order of its label names; numbers as their text; none for a metric
-- without labels): a number for a counter or a gauge, and for a histogram
-- { count =, sum =, buckets = {...} }, buckets[i] counting the
-- observations <= the i-th bound, cumulative as in a scrape, the last one
-- (+Inf) all of them. nil when the script never used those label values;
-- raises for a name no script declared.
function M.metric(name, label_values)
  settle()
  return metrics.value(name, label_values, 2)
end

--- The script metrics as luaecho's /metrics endpoint lists them (after
-- its own luaecho_ and process_ series), for one worker: worker="1".
function M.scrape()
  settle()
  return metrics.render()
end

--- The messages handler code published on luaecho.channel 'topic' so
-- far, in order (without a topic: every one, as { topic, message }).
function M.published(topic)
  settle()
  return channel.published(topic)
end

--- Publish 'message' on 'topic' as another worker or instance would: the
-- script's subscribers get it on the next loop turn (run before this
-- returns), and it is not in testing.published().
function M.publish(topic, message)
  settle()
  channel.inject(topic, message)
  settle()
end

--- What luaecho.channel.redis_url() answers from now on (nil: none), as
-- `--channel-redis URL` would set it.
function M.channel_redis(url)
  W.channel.redis_url = url
end

--- Run one command on the fake Redis that luaecho.redis talks to under
-- luaecho.testing, now: to put data in place before a spec or read what a
-- handler left. Returns the reply as r:call does (nil, err for an error).
function M.redis(...)
  settle()
  return fake_redis.command(...)
end

--- Take the fake Redis down (true) or bring it back (false or nil): each
-- client's on_state hears it; while down, commands fail at once with an
-- error of kind "disconnected".
function M.redis_outage(down)
  settle()
  fake_redis.outage(down ~= false and down ~= nil)
  settle()
end

--- Echo printed lines to stdout and log lines to stderr as they happen.
function M.verbose(on)
  report.verbose = on ~= false
end

--- This spec provokes errors on purpose: until testing.reset(), an error
-- luaecho logs (a failed callback, streams handler, task, timer or
-- program) is only recorded, for conn:errors() and testing.logs(), and no
-- longer fails the spec. Call it before the code that fails.
function M.expect_errors()
  W.expect_errors = true
  W.unexpected = {}
end

--- Start afresh: clock at 0, no timers, servers, connections, logs or
-- printed lines, errors unexpected again; package.path as before any
-- script was loaded. Call it before each spec: before_each(testing.reset).
function M.reset()
  scripts.remove_dirs()
  world.reset()
end

return M
