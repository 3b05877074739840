-- luaecho.log's fields (issue 15, point 5): the sink gets them, the stderr
-- fallback and the fake host append them as the host's text format does,
-- and fields of the wrong kind raise naming the call. (The levels and the
-- sink without fields: spec/luaecho/task_spec.lua.)
local log = require "luaecho.log"
local testing = require "luaecho.testing"

-- Call fn without a host (not even luaecho.testing's fake core) and with
-- io.stderr writing into a list; returns the list.
local function stderr_of(fn)
  local saved, lines = io.stderr, {}
  local loaded, preload = package.loaded["luaecho.core"], package.preload["luaecho.core"]
  package.loaded["luaecho.core"], package.preload["luaecho.core"] = nil, nil
  io.stderr = { write = function(_, ...) lines[#lines + 1] = table.concat({ ... }) end } -- luacheck: ignore 122
  local ok, err = pcall(fn)
  io.stderr = saved -- luacheck: ignore 122
  package.loaded["luaecho.core"], package.preload["luaecho.core"] = loaded, preload
  assert(ok, err)
  return lines
end

describe("luaecho.log fields #unit", function()
  local logged

  before_each(function()
    logged = {}
    log.sink = function(level, msg, fields) logged[#logged + 1] = { level, msg, fields } end
  end)

  after_each(function()
    log.sink = log.default_sink
  end)

  it("hands the sink each line's fields, and nil without", function()
    local fields = { user = "ann", n = 3 }
    log.warn("x", fields)
    log.info("y")
    assert.are.same({ { "warn", "x", { user = "ann", n = 3 } }, { "info", "y" } }, logged)
    assert.are.equal(fields, logged[1][3])
    assert.is_nil(logged[2][3])
  end)

  it("raises naming the call when fields are not a table of string or number values", function()
    assert.has_error(function() log.warn("x", 5) end,
      "bad argument #2 to 'warn' (fields must be a table, not a number)")
    assert.has_error(function() log.error("x", { "positional" }) end,
      "bad argument #2 to 'error' (fields' keys must be strings, not a number)")
    assert.has_error(function() log.info("x", { ok = true }) end,
      "bad argument #2 to 'info' (field 'ok' must be a string or a number, not a boolean)")
    local ok, err = pcall(log.debug, "x", { t = {} })
    assert.is_false(ok)
    assert.matches("^bad argument #2 to 'debug' %(field 't' must be", err)
    assert.are.same({}, logged)
  end)

  it("blames the line that called it", function()
    local ok, err = pcall(function() log.warn("x", false) end)
    assert.is_false(ok)
    assert.matches("log_spec%.lua:%d+: bad argument #2 to 'warn'", err)
  end)

  it("formats fields as the host's text format does: sorted, numbers plain, odd strings quoted", function()
    assert.are.equal("", log.text_fields(nil))
    assert.are.equal(" n=3 user=ann", log.text_fields({ user = "ann", n = 3 }))
    assert.are.equal(" a=1.5 b=2 c=-7 d=null e=0.1 f=1e+300", log.text_fields({ a = 1.5, b = 2.0, c = -7, d = 0 / 0,
      e = 0.1, f = 1e300 }))
    assert.are.equal(' e="" q="say \\"hi\\"" s="a b" x="1=2"',
      log.text_fields({ e = "", s = "a b", q = 'say "hi"', x = "1=2" }))
    -- Bytes that are not UTF-8 pass as they are, as in any text line.
    assert.are.equal(' c="\\u0001\\n\\t" u=é v=\255', log.text_fields({ c = "\1\n\t", u = "é", v = "\255" }))
  end)

  it("appends them to the stderr fallback's line", function()
    log.sink = log.default_sink
    local lines = stderr_of(function() log.warn("careful", { n = 3, user = "ann" }) end)
    assert.are.same({ "luaecho: warning: careful n=3 user=ann\n" }, lines)
  end)
end)

describe("luaecho.log fields under luaecho.testing #unit", function()
  before_each(testing.reset)

  local Logger = {}
  function Logger:connection_made(transport) self.transport = transport end
  function Logger:data_received(data)
    require("luaecho.log").warn("got " .. data, { user = "ann", n = 3 })
    self.transport:write(data)
  end

  it("shows them in testing.logs() as the host's text format does", function()
    local conn = testing.connect(Logger)
    conn:send("hi")
    assert.are.equal("hi", conn:output())
    assert.are.same({ "luaecho: warning: got hi n=3 user=ann" }, testing.logs())
    assert.are.same({ "got hi n=3 user=ann" }, testing.logs("warn"))
  end)

  it("checks them in the fake core.log as the host does", function()
    local core = require "luaecho.core"
    assert.has_error(function() core.log("info", "x", { ok = true }) end,
      "bad argument #3 to 'log' (field 'ok' must be a string or a number, not a boolean)")
    assert.has_error(function() core.log("info", "x", "no") end,
      "bad argument #3 to 'log' (fields must be a table, not a string)")
  end)
end)
