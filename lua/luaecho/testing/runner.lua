--- Running a `luaecho run` program on luaecho.testing's fake host: the
-- script (or a function) as the main task, with 'arg' set as the host
-- sets it. Like luaecho._run_main, a failure is logged with its traceback
-- and shuts the fake host down; unlike it, each program keeps its own
-- status and error value, for the spec to look at.
-- Relies on luaecho.testing.world, .clock, .report, .scripts, .server and
-- luaecho.task.
-- @usage
--   local runner = require "luaecho.testing.runner"
--   local program = runner.run(1, "lua/examples/echo_client.lua", "2", "hello")
--   print(program:status())                    --> "running", "done" or "failed"
local world = require "luaecho.testing.world"
local clock = require "luaecho.testing.clock"
local report = require "luaecho.testing.report"
local scripts = require "luaecho.testing.scripts"
local server = require "luaecho.testing.server"
local task = require "luaecho.task"
local pack, unpack = table.pack, table.unpack
local traceback = debug.traceback
local error, setmetatable, tostring, type, xpcall = error, setmetatable, tostring, type, xpcall

local settle, copy = clock.settle, world.copy

local M = {}

local Program = {}
Program.__index = Program

--- "running", "done" or "failed".
function Program:status()
  settle()
  return self.P.status
end

--- True once the script has returned or failed.
function Program:done()
  settle()
  return self.P.status ~= "running"
end

--- The failure's message (tostring of the error) and the error value, or nil.
function Program:error()
  settle()
  return self.P.error, self.P.error_value
end

--- Lines the program printed, including its handlers' and connections'.
function Program:printed()
  settle()
  return copy(self.P.printed)
end

--- Errors logged by the program and its connections, without tracebacks.
function Program:errors()
  settle()
  return copy(self.P.errors)
end

-- The main chunk of 'script' (a path or a function) run with 'args'.
local function main_chunk(script, args, level)
  if type(script) == "function" then return script end
  if type(script) ~= "string" then
    error("luaecho.testing.run(): a path or a function, not a " .. type(script), level + 1)
  end
  local arg = { [-1] = "luaecho", [0] = script }
  for i = 1, args.n do arg[i] = args[i] end
  return scripts.program(scripts.path(script), arg, level + 1)
end

-- The main task's body: run chunk(...); a failure is logged and shuts the
-- fake host down, as an exception escaping asyncio.run() ends the program.
local function main_task(P, chunk, name)
  local function catch(e) return { value = e, traceback = traceback(tostring(e), 2) } end
  return function(...)
    local ok, err = xpcall(chunk, catch, ...)
    if ok then
      local hint = require("luaecho")._handler_hint(err, name) -- a handler run as a program
      if hint == nil then
        P.status = "done"
        return
      end
      err = { value = hint, traceback = hint }
    end
    P.status, P.error, P.error_value = "failed", tostring(err.value), err.value
    report.log(P, "error", err.traceback)
    server.shutdown("the script failed")
  end
end

--- Run 'script' as a program's main task with the extra arguments;
-- returns the Program once it first waits. Errors blame 'level' above
-- the caller.
function M.run(level, script, ...)
  settle()
  local args = pack(...)
  local chunk = main_chunk(script, args, level + 1)
  local P = { printed = {}, errors = {}, logs = {}, status = "running" }
  local main = main_task(P, chunk, type(script) == "string" and script or nil)
  local ok, err = report.call_as(P, function() task.spawn(main, unpack(args, 1, args.n)) end)
  if not ok then error(err.message, level + 1) end
  settle()
  return setmetatable({ P = P }, Program)
end

return M
