--- Coroutine tasks: the pure-Lua runner under luaecho's streams and spawn.
-- A task is a coroutine that suspends while it waits (task.suspend) and is
-- resumed by whoever has what it waits for (task.wake). There is no run
-- queue: a wake resumes the task at once, inside the waker's call, and the
-- waker gets control back when the task next suspends or ends. A wake that
-- finds the task busy is kept and delivered at its next suspend, so none is
-- ever lost. A task's error never reaches its waker: it is kept on the task
-- and reported through task.on_error.
-- @usage
--   local task = require("luaecho.task")
--   local t = task.spawn(function() return task.suspend("waiting") end)
--   task.wake(t, 42)        -- t:done() == true, t.results[1] == 42
local create, resume, running = coroutine.create, coroutine.resume, coroutine.running
local status, yield, close = coroutine.status, coroutine.yield, coroutine.close
local pack, unpack, remove = table.pack, table.unpack, table.remove
local traceback = debug.traceback
local error, xpcall, rawequal, setmetatable = error, xpcall, rawequal, setmetatable
local log = require("luaecho.log")
-- Error values become text without raising: a failing __tostring must not
-- stop the report of a failure, nor what follows it.
local tostring = require("luaecho.errors").tostring

local M = {}

local Task = {}
Task.__index = Task

-- Tasks that have not ended, by coroutine: how task.current() knows whether
-- the running coroutine is one of ours. Weak keys, so a task nobody can wake
-- any more is collected with its coroutine.
local by_coroutine = setmetatable({}, { __mode = "k" })

local NOT_HERE = "%s cannot suspend here: call it from a luaecho task"
  .. " (a streams handler, a 'luaecho run' script or luaecho.spawn),"
  .. " not from a Protocol callback, a call_later callback or a coroutine of your own"

-- What task.suspend yields: a resume that returns it as its first value
-- stopped in task.suspend, so settle() needs no coroutine.status() call.
-- Private, so no other yield can pass for it; a function, because comparing
-- one never calls an __eq metamethod of what a task returns.
local function SUSPENDED() end

local settle

-- Resume 't' with the given values; returns once it suspends or ends.
local function step(t, ...)
  t.state = "running"
  return settle(t, resume(t.co, ...))
end

-- Remove the oldest kept wake of 't' and return its values.
local function take_queued(t)
  local q = t.queue
  local v = remove(q, 1)
  if q[1] == nil then t.queue = nil end
  return unpack(v, 1, v.n)
end

-- Call 'fn' protected; an error in it is logged with its traceback, because
-- the caller is a waker that must never see it.
local function call_logged(what, fn, ...)
  local ok, err = xpcall(fn, traceback, ...)
  if not ok then log.error(what .. " failed: " .. tostring(err)) end
  return ok
end

-- The default report of a failed task: one log line with the traceback.
local function log_failure(_, err, tb)
  log.error("task failed: " .. tostring(err) .. "\n" .. tb)
end

-- Run the on_done callbacks of an ended task, once each.
local function run_done_callbacks(t)
  local callbacks = t.callbacks
  t.callbacks = nil
  for i = 1, callbacks and #callbacks or 0 do
    call_logged("task done callback", callbacks[i], t)
  end
end

-- The task returned: keep its results.
local function succeed(t, ...)
  t.state, t.results = "done", pack(...)
  by_coroutine[t.co] = nil
  run_done_callbacks(t)
end

-- The task raised 'err': keep it, take the traceback from the task's own
-- coroutine (still intact after the error), close its to-be-closed variables,
-- then report.
local function fail(t, err)
  if err == nil then err = "(error object is a nil value)" end
  t.state, t.error, t.traceback = "done", err, traceback(t.co)
  by_coroutine[t.co] = nil
  local _, close_err = close(t.co)
  if not rawequal(close_err, err) then
    log.error("task cleanup failed: " .. tostring(close_err))
  end
  if not call_logged("task error handler", t.on_error or M.on_error, t, err, t.traceback) then
    log_failure(t, err, t.traceback) -- the handler broke: the error still shows
  end
  run_done_callbacks(t)
end

-- How a resume of 't' ended other than in task.suspend: the task returned,
-- raised, yielded by itself, or could not be resumed at all.
local function settle_other(t, ok, ...)
  if status(t.co) == "dead" then
    if ok then return succeed(t, ...) end
    return fail(t, (...))
  end
  t.state = "suspended"
  if not ok then -- the resume itself failed (C stack overflow): the waker's problem
    error("cannot resume task: " .. tostring((...)), 0)
  end
  if t.queue then return step(t, take_queued(t)) end
end

-- Record how the resume of 't' ended: suspended (deliver a kept wake if
-- the task yielded without taking it), returned, or raised.
function settle(t, ok, mark, ...)
  if mark == SUSPENDED and ok then
    t.state = "suspended"
    if t.queue then return step(t, take_queued(t)) end
    return
  end
  return settle_other(t, ok, mark, ...)
end

--- Make a task running 'fn', not started yet. Set t.on_error before
-- t:start(...) to report its failure your own way.
function M.new(fn)
  local t = setmetatable({ co = create(fn), state = "new" }, Task)
  by_coroutine[t.co] = t
  return t
end

--- Start the task with arguments for its function; it runs until it first
-- suspends or ends. Returns the task.
function Task:start(...)
  if self.state ~= "new" then error("task:start(): task already started", 2) end
  step(self, ...)
  return self
end

--- True once the task has returned or raised.
function Task:done()
  return self.state == "done"
end

--- Run fn(task) when the task ends, succeeded or failed (at once if it has).
function Task:on_done(fn)
  if self.state == "done" then
    call_logged("task done callback", fn, self)
    return
  end
  local callbacks = self.callbacks or {}
  callbacks[#callbacks + 1] = fn
  self.callbacks = callbacks
end

--- Make a task for fn(...) and run it until it first suspends or ends.
function M.spawn(fn, ...)
  return M.new(fn):start(...)
end

--- The running task, or nil outside one (in a Protocol callback, a timer
-- callback, or a coroutine the script made itself).
function M.current()
  return by_coroutine[running()]
end

--- The table task.current() looks in: task.by_coroutine[coroutine.running()]
-- is task.current() without the call, for hot paths. Read it, never write.
M.by_coroutine = by_coroutine

--- The running task, or raise the "cannot suspend here" error for 'what'.
-- 'level' works as in error(): 1 (the default) blames the caller of check.
function M.check(what, level)
  local t = by_coroutine[running()]
  if t then return t end
  error(NOT_HERE:format(what or "this call"), (level or 1) + 1)
end

--- Suspend the running task until task.wake(t, ...); returns those values.
-- 'what' names the caller in the error raised outside a task.
function M.suspend(what)
  local t = by_coroutine[running()]
  if not t then error(NOT_HERE:format(what or "task.suspend()"), 2) end
  if t.queue then return take_queued(t) end
  return yield(SUSPENDED)
end

--- task.suspend() for a caller that has 't', the running task, already
-- (from task.current or task.check): the same, without looking it up again.
function M.suspend_running(t)
  if t.queue then return take_queued(t) end
  return yield(SUSPENDED)
end

--- Resume the suspended task 't' with values for its task.suspend().
-- Returns true if it ran now; false if the values were kept for its next
-- suspend (it is running, or is the one that caused this wake) or if it has
-- ended (the values are dropped).
function M.wake(t, ...)
  local state = t.state
  if state == "suspended" then
    t.state = "running" -- step(), inlined: this is the path of every chunk
    settle(t, resume(t.co, ...))
    return true
  end
  if state ~= "done" then
    local q = t.queue or {}
    q[#q + 1] = pack(...)
    t.queue = q
  end
  return false
end

--- task.wake(t) with no values, without the cost of a vararg call: the
-- wake of every chunk a streams reader receives.
function M.notify(t)
  if t.state == "suspended" then
    t.state = "running"
    settle(t, resume(t.co))
    return true
  end
  return M.wake(t)
end

--- Report a failed task; replace it to report elsewhere (t.on_error, set on
-- one task, wins). The default logs the error with the task's traceback.
M.on_error = log_failure

return M
