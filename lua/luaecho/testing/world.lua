--- luaecho.testing's world: the state every part of the fake host shares
-- (the virtual clock, timers, work due now, servers, connections, what was
-- logged and printed, the script metrics), and the small helpers they all use. reset() empties
-- the one world table in place, so a part may keep it in a local.
-- Relies on nothing; every other part of luaecho.testing relies on it.
-- @usage
--   local world = require "luaecho.testing.world"
--   local W = world.W
--   print(W.now)                               --> 0 (virtual milliseconds)
local pairs, tostring = pairs, tostring
local find = string.find

local M = {}

local FIRST_PORT, FIRST_PEER_PORT = 40000, 50000

-- A world as testing.reset() leaves it.
local function fresh()
  return {
    now = 0,                -- virtual milliseconds
    seq = 0,                -- timers due at the same time fire in creation order
    timers = {},            -- a heap (see luaecho.testing.clock)
    pending = 0,            -- the script's timers not yet fired or cancelled
    queue = {}, qhead = 1, qtail = 0, -- work for "a later loop turn"
    listening = {},         -- "addr:port" -> server record
    servers = {},           -- every server record, in creation order
    conns = {},             -- connection ends not yet gone, in creation order
    bound = {},             -- "addr:port" -> UDP endpoint record
    endpoints = {},         -- UDP endpoint records not yet gone, in creation order
    logs = {}, printed = {}, errors = {},
    rates = {},             -- the log limiter's state, per kind
    next_port = FIRST_PORT, next_peer_port = FIRST_PEER_PORT,
    hosts = { localhost = "127.0.0.1" },
    owner = nil,            -- whose code runs now: a connection, server or program record
    shutting_down = false,
    added_paths = {},       -- package.path prefixes the scripts' directories added
    expect_errors = false,  -- testing.expect_errors(): logged errors do not fail the spec
    unexpected = {},        -- errors logged since the spec last heard of them
    metrics = { families = {}, nfamilies = 0, nseries = 0 }, -- luaecho.metrics' (see luaecho.testing.metrics)
    channel = { topics = {}, published = {}, redis_url = nil }, -- luaecho.channel's (see luaecho.testing.channel)
  }
end

--- The world. Never replaced: reset() refills it.
M.W = fresh()

--- "host:port", or "[host]:port" for IPv6: the key of W.listening and
-- W.bound (luaecho.address.text, which this file cannot require: it relies
-- on nothing).
function M.addr_text(host, port)
  if find(host, ":", 1, true) then host = "[" .. host .. "]" end
  return host .. ":" .. tostring(port)
end

--- In 'bound' (W.listening or W.bound: "addr:port" -> record), the record
-- that host:port reaches: bound to that address, else to its family's
-- wildcard ("0.0.0.0" for IPv4, "::"). nil when none.
function M.reaching(bound, host, port)
  return bound[M.addr_text(host, port)]
    or (find(host, ":", 1, true) == nil and bound[M.addr_text("0.0.0.0", port)])
    or bound[M.addr_text("::", port)] or nil
end

--- A free port at 'host' in 'bound', for a record that asked for port 0.
function M.free_port(bound, host)
  local W = M.W
  local port
  repeat
    port = W.next_port
    W.next_port = W.next_port + 1
  until bound[M.addr_text(host, port)] == nil
  return port
end

--- Start afresh (package.path is the caller's business).
function M.reset()
  local W = M.W
  for k in pairs(W) do W[k] = nil end
  for k, v in pairs(fresh()) do W[k] = v end
end

--- A shallow copy of a list.
function M.copy(list)
  local out = {}
  for i = 1, #list do out[i] = list[i] end
  return out
end

--- Append 'value' to list 'field' of 'owner', of each record above it
-- (owner.parent...), and of the world.
function M.record(owner, field, value)
  local o = owner
  while o do
    local list = o[field]
    list[#list + 1] = value
    o = o.parent
  end
  local list = M.W[field]
  list[#list + 1] = value
end

return M
