--- luaecho.testing's loop: work posted for a later loop turn, timers on a
-- virtual clock (in milliseconds), and settle(), which runs what is due
-- now. Every function the spec calls settles before and after it acts, so
-- the spec always sees the fake host at rest; settle() then raises the
-- first error the spec does not expect (see luaecho.testing.report).
-- Relies on luaecho.testing.world and .report.
-- @usage
--   local clock = require "luaecho.testing.clock"
--   clock.post(function() deliver(C, "data") end)
--   clock.settle()
local world = require "luaecho.testing.world"
local report = require "luaecho.testing.report"
local find, traceback = string.find, debug.traceback
local error, type, xpcall = error, type, xpcall

local W = world.W

local M = {}

--- Run fn() on a later loop turn.
function M.post(fn)
  W.qtail = W.qtail + 1
  W.queue[W.qtail] = fn
end

-- Timers wait in a binary heap ordered by due time, then by creation:
-- timers due at the same time fire in the order they were set. A
-- cancelled timer stays in the heap, marked done, until it comes up.
local function earlier(a, b)
  return a.due < b.due or (a.due == b.due and a.seq < b.seq)
end

local function heap_push(heap, t)
  local i = #heap + 1
  heap[i] = t
  while i > 1 do
    local parent = i // 2
    if not earlier(heap[i], heap[parent]) then break end
    heap[i], heap[parent] = heap[parent], heap[i]
    i = parent
  end
end

-- Move the last entry down from the top to its place.
local function sift_down(heap, n)
  local i = 1
  while true do
    local smallest, l, r = i, 2 * i, 2 * i + 1
    if l <= n and earlier(heap[l], heap[smallest]) then smallest = l end
    if r <= n and earlier(heap[r], heap[smallest]) then smallest = r end
    if smallest == i then return end
    heap[i], heap[smallest] = heap[smallest], heap[i]
    i = smallest
  end
end

local function heap_pop(heap)
  local top, n = heap[1], #heap
  local last = heap[n]
  heap[n] = nil
  if n > 1 then
    heap[1] = last
    sift_down(heap, n - 1)
  end
  return top
end

--- Add a timer due at virtual millisecond 'due'; returns its record.
-- Internal timers (idle timeouts, the shutdown timeout) are the host's:
-- they run unprotected and do not count as the script's.
function M.add_timer(due, fn, owner, internal)
  W.seq = W.seq + 1
  local t = { due = due, seq = W.seq, fn = fn, owner = owner, internal = internal }
  heap_push(W.timers, t)
  if not internal then W.pending = W.pending + 1 end
  return t
end

--- The timer was cancelled, or is firing: it will not fire (again).
function M.retire(t)
  t.done = true
  if not t.internal then W.pending = W.pending - 1 end
end

--- The earliest pending timer due at or before 'limit', or nil.
function M.next_timer(limit)
  local heap = W.timers
  while heap[1] and heap[1].done do heap_pop(heap) end
  local t = heap[1]
  if t and t.due <= limit then return t end
  return nil
end

-- Fire the earliest timer (next_timer's answer).
local function fire(t)
  heap_pop(W.timers)
  M.retire(t)
  if t.internal then return t.fn() end
  report.callback(t.owner, "timer callback", t.fn)
end

-- Run everything due now, without moving the clock: queued work first,
-- then timers due by now, until nothing is left. A handler that keeps
-- scheduling work for now would hang the spec: past a budget, raise.
local NEVER_SETTLES = "luaecho.testing: the loop never settles: something keeps scheduling work for now"

local function run_due()
  local work, timers = 1000000, 10000
  while true do
    if W.qhead <= W.qtail then
      local fn = W.queue[W.qhead]
      W.queue[W.qhead] = nil
      W.qhead = W.qhead + 1
      fn()
      work = work - 1
      if work == 0 then error(NEVER_SETTLES, 0) end
    else
      local t = M.next_timer(W.now)
      if t == nil then return end
      fire(t)
      timers = timers - 1
      if timers == 0 then error(NEVER_SETTLES, 0) end
    end
  end
end

-- An error out of run_due is a bug in the fake host (handler code runs
-- protected): keep its traceback.
local function internal(e)
  if type(e) ~= "string" or find(e, "^luaecho%.testing: ") then return e end
  return traceback(e, 2)
end

local settling = false

--- Run what is due now, then raise the first error the spec does not
-- expect. Does nothing when called from inside a settle.
function M.settle()
  if settling then return end
  settling = true
  local ok, err = xpcall(run_due, internal)
  settling = false
  if not ok then error(err, 0) end
  report.raise_unexpected()
end

--- Move the clock on to virtual millisecond 'target', firing what falls
-- due in time order, each at its own time.
function M.advance_to(target)
  M.settle()
  while true do
    local t = M.next_timer(target)
    if t == nil then break end
    if t.due > W.now then W.now = t.due end
    M.settle()
  end
  W.now = target
  M.settle()
end

return M
