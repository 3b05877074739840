-- luacheck: std +busted
local task = require("luaecho.task")
local log = require("luaecho.log")

-- Capture log lines as "level: msg" for the duration of each spec.
local logged
local function capture_log()
  logged = {}
  log.sink = function(level, msg) logged[#logged + 1] = level .. ": " .. msg end
end
local function restore_log()
  log.sink = log.default_sink
end

local NOT_HERE = " cannot suspend here: call it from a luaecho task"
  .. " (a streams handler, a 'luaecho run' script or luaecho.spawn),"
  .. " not from a Protocol callback, a call_later callback or a coroutine of your own"

describe("luaecho.task #unit", function()
  before_each(capture_log)
  after_each(restore_log)

  describe("spawn", function()
    it("runs the function at once, with its arguments, until it ends", function()
      local t = task.spawn(function(a, b) return a + b, "sum" end, 2, 3)
      assert.is_true(t:done())
      assert.are.same({ n = 2, 5, "sum" }, t.results)
    end)

    it("returns once the task suspends, leaving it not done", function()
      local steps = {}
      local t = task.spawn(function()
        steps[#steps + 1] = "before"
        task.suspend("wait")
        steps[#steps + 1] = "after"
      end)
      assert.are.same({ "before" }, steps)
      assert.is_false(t:done())
    end)

    it("keeps the result count, nils included", function()
      local t = task.spawn(function() return nil, nil end)
      assert.are.same({ n = 2 }, t.results)
    end)
  end)

  describe("current", function()
    it("is the running task inside it", function()
      local seen
      local t = task.spawn(function() seen = task.current() end)
      assert.are.equal(t, seen)
    end)

    it("is nil outside any task", function()
      assert.is_nil(task.current())
    end)

    it("is nil inside a coroutine the task made itself", function()
      local seen = "unset"
      task.spawn(function()
        coroutine.wrap(function() seen = task.current() end)()
      end)
      assert.is_nil(seen)
    end)

    it("is the outer task again once a task it spawned suspends", function()
      local seen
      local outer = task.spawn(function()
        task.spawn(function() task.suspend("inner") end)
        seen = task.current()
      end)
      assert.are.equal(outer, seen)
    end)
  end)

  describe("suspend and wake", function()
    it("raises the clear message when called outside a task", function()
      local ok, err = pcall(task.suspend, "reader:readline()")
      assert.is_false(ok)
      assert.are.equal("reader:readline()" .. NOT_HERE, err)
    end)

    it("raises the clear message from a coroutine the task made itself", function()
      local err
      task.spawn(function()
        local co = coroutine.create(function() task.suspend("writer:drain()") end)
        local _
        _, err = coroutine.resume(co)
      end)
      assert.matches("writer:drain() cannot suspend here", err, 1, true)
    end)

    it("blames the caller's line when check fails", function()
      local function drain() task.check("writer:drain()", 2) end
      local function script() drain() end
      local ok, err = pcall(script)
      assert.is_false(ok)
      assert.matches("^.-task_spec%.lua:%d+: writer:drain%(%) cannot suspend here", err)
    end)

    it("returns the values the task is woken with", function()
      local got
      local t = task.spawn(function() got = table.pack(task.suspend("wait")) end)
      assert.is_true(task.wake(t, "a", nil, 3))
      assert.are.same({ n = 3, "a", nil, 3 }, got)
    end)

    it("keeps a wake that comes before the task suspends and delivers it at the suspend", function()
      local got
      local t = task.spawn(function()
        task.wake(task.current(), "early")
        got = task.suspend("wait")
      end)
      assert.is_true(t:done())
      assert.are.equal("early", got)
    end)

    it("keeps a wake from a task the waker's target is resuming, with no resume error", function()
      local got
      local outer = task.spawn(function()
        local me = task.current()
        task.spawn(function() task.wake(me, "from inner") end)
        got = task.suspend("wait")
      end)
      assert.is_true(outer:done())
      assert.is_nil(outer.error)
      assert.are.equal("from inner", got)
    end)

    it("delivers kept wakes in the order they came, one per suspend", function()
      local got = {}
      task.spawn(function()
        local me = task.current()
        task.wake(me, 1)
        task.wake(me, 2)
        got[1] = task.suspend("wait")
        got[2] = task.suspend("wait")
      end)
      assert.are.same({ 1, 2 }, got)
    end)

    it("delivers a kept wake to a task that yields with coroutine.yield", function()
      local got
      local t = task.spawn(function()
        task.wake(task.current(), "kept")
        got = coroutine.yield()
      end)
      assert.is_true(t:done())
      assert.are.equal("kept", got)
    end)

    it("ignores a wake of a task that has ended", function()
      local t = task.spawn(function() return 1 end)
      assert.is_false(task.wake(t, 2))
      assert.are.same({ n = 1, 1 }, t.results)
    end)

    it("resumes a task many times, in the waker's call each time", function()
      local sum = 0
      local t = task.spawn(function()
        while true do
          local v = task.suspend("wait")
          if v == nil then return sum end
          sum = sum + v
        end
      end)
      for i = 1, 1000 do task.wake(t, i) end
      task.wake(t)
      assert.are.same({ n = 1, 500500 }, t.results)
    end)
  end)

  describe("failure", function()
    local reported
    local saved
    before_each(function()
      saved = task.on_error
      reported = {}
      task.on_error = function(t, err, tb) reported[#reported + 1] = { t = t, err = err, tb = tb } end
    end)
    after_each(function() task.on_error = saved end)

    it("never lets the task's error reach spawn or wake", function()
      local t = task.spawn(function()
        task.suspend("wait")
        error("boom")
      end)
      assert.has_no.errors(function() task.wake(t) end)
      assert.is_true(t:done())
    end)

    it("keeps an error table as the same table", function()
      local err = { kind = "Custom" }
      local t = task.spawn(function() error(err) end)
      assert.are.equal(err, t.error)
      assert.are.equal(err, reported[1].err)
    end)

    it("reports once with the traceback of the task's own coroutine", function()
      local function failing_step() error("boom") end
      local t = task.spawn(function() failing_step() end)
      assert.are.equal(1, #reported)
      assert.are.equal(t, reported[1].t)
      assert.matches("boom$", t.error)
      assert.matches("failing_step", reported[1].tb, 1, true)
      assert.are.equal(t.traceback, reported[1].tb)
    end)

    it("uses the task's own on_error instead of task.on_error", function()
      local mine
      local t = task.new(function() error("boom", 0) end)
      t.on_error = function(_, err) mine = err end
      t:start()
      assert.are.same({ "boom", 0 }, { mine, #reported })
    end)

    it("keeps a nil error as a readable message", function()
      local t = task.spawn(function() error(nil) end)
      assert.are.equal("(error object is a nil value)", t.error)
    end)

    it("closes the task's to-be-closed variables", function()
      local closed = false
      task.spawn(function()
        local _ <close> = setmetatable({}, { __close = function() closed = true end })
        error("boom")
      end)
      assert.is_true(closed)
    end)

    it("logs the error and a handler failure when on_error itself raises", function()
      task.on_error = function() error("handler broken", 0) end
      task.spawn(function() error("boom", 0) end)
      assert.are.equal(2, #logged)
      assert.matches("^error: task error handler failed: handler broken", logged[1])
      assert.matches("^error: task failed: boom\nstack traceback:", logged[2])
    end)
  end)

  describe("default on_error", function()
    it("logs 'task failed:' with the error and the task's traceback", function()
      local function failing_step() error("boom", 0) end
      task.spawn(function() failing_step() end)
      assert.are.equal(1, #logged)
      assert.matches("^error: task failed: boom\nstack traceback:\n", logged[1])
      assert.matches("failing_step", logged[1], 1, true)
    end)

    it("logs an error table through its __tostring", function()
      local err = setmetatable({}, { __tostring = function() return "Custom: readable" end })
      task.spawn(function() error(err) end)
      assert.matches("^error: task failed: Custom: readable\n", logged[1])
    end)
  end)

  describe("on_done", function()
    it("runs when the task returns", function()
      local seen
      local t = task.spawn(function() task.suspend("wait") return "ok" end)
      t:on_done(function(done) seen = done.results[1] end)
      assert.is_nil(seen)
      task.wake(t)
      assert.are.equal("ok", seen)
    end)

    it("runs when the task fails, after the failure is reported", function()
      local order = {}
      local t = task.new(function() task.suspend("wait") error("boom", 0) end)
      t.on_error = function() order[#order + 1] = "on_error" end
      t:start()
      t:on_done(function(done) order[#order + 1] = "on_done " .. done.error end)
      task.wake(t)
      assert.are.same({ "on_error", "on_done boom" }, order)
    end)

    it("runs at once for a task that has already ended", function()
      local seen = false
      task.spawn(function() end):on_done(function() seen = true end)
      assert.is_true(seen)
    end)

    it("logs a callback's error instead of raising it into the waker", function()
      local t = task.spawn(function() task.suspend("wait") end)
      t:on_done(function() error("callback broken", 0) end)
      assert.has_no.errors(function() task.wake(t) end)
      assert.matches("^error: task done callback failed: callback broken", logged[1])
    end)
  end)

  describe("start", function()
    it("refuses to start a task twice", function()
      local t = task.spawn(function() end)
      assert.has_error(function() t:start() end)
    end)

    it("keeps wakes that come before the task starts", function()
      local got
      local t = task.new(function() got = task.suspend("wait") end)
      task.wake(t, "before start")
      t:start()
      assert.are.equal("before start", got)
    end)
  end)
end)

describe("luaecho.log #unit", function()
  after_each(restore_log)

  it("sends each level and message to log.sink", function()
    capture_log()
    log.error("e")
    log.warn("w")
    log.info("i")
    log.debug("d")
    assert.are.same({ "error: e", "warn: w", "info: i", "debug: d" }, logged)
  end)

  it("writes 'luaecho: <level>: msg' on stderr without the host", function()
    local saved_stderr = io.stderr
    local lines = {}
    io.stderr = { write = function(_, ...) lines[#lines + 1] = table.concat({ ... }) end } -- luacheck: ignore 122
    local ok, err = pcall(function()
      log.error("boom")
      log.warn("careful")
      log.debug("hidden at the default level")
    end)
    io.stderr = saved_stderr -- luacheck: ignore 122
    assert(ok, err)
    assert.are.same({ "luaecho: error: boom\n", "luaecho: warning: careful\n" }, lines)
  end)

  it("goes through luaecho.core.log when the host preloaded it", function()
    local seen
    package.preload["luaecho.core"] = function()
      return { log = function(level, msg) seen = level .. " " .. msg end }
    end
    local ok, err = pcall(log.warn, "via core")
    package.preload["luaecho.core"], package.loaded["luaecho.core"] = nil, nil
    assert(ok, err)
    assert.are.equal("warn via core", seen)
  end)
end)
