-- luaecho.shared(name, init): a table that outlives every generation of the
-- served script, where a module-level table is made anew by each load. The
-- fixture counts connections both ways; a hot swap (SIGHUP) restarts the
-- one and not the other. Its argument errors are checked in a `run`
-- program. Every wait has a deadline.
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local server = require "support.server"
local text = require "support.text"

after_each(cleanup.expect_clean)

-- Connect, and return the one line the counter answers.
local function ask(proc)
  local conn = client.connect(proc.host, proc.port)
  conn.sock:settimeout(5)
  local line, err, partial = conn.sock:receive("*l")
  if not line then error(("no answer: %s (received %q)"):format(err, partial or ""), 2) end
  conn:close()
  return line
end

describe("luaecho.shared #integration", function()
  it("keeps its table across a hot swap, while the script's own locals start again", function()
    local original = files.read(server.fixture("shared/counter.lua"))
    local scratch = files.scratch("shared")
    local script = scratch:write("counter.lua", original)
    local proc = server.start({ script })
    assert.are.equal("v1 local=1 shared=1", ask(proc))
    assert.are.equal("v1 local=2 shared=2", ask(proc))

    local edited, n = original:gsub('local GENERATION = "v1"', 'local GENERATION = "v2"')
    assert.are.equal(1, n)
    scratch:replace("counter.lua", edited)
    proc:signal("sighup")
    proc:wait_output("stderr", "luaecho: reloaded " .. text.literal(script) .. " %(generation 2%)\n", 10,
      "the 'reloaded' line")

    assert.are.equal("v2 local=1 shared=3", ask(proc))
  end)

  it("checks its arguments", function()
    local scratch = files.scratch("shared")
    local program = scratch:write("misuse.lua", [[
local luaecho = require "luaecho"
local function message(...)
  local ok, err = pcall(luaecho.shared, ...)
  assert(not ok)
  return err
end
print(message(42))
print(message("x", 42))
print(message("y", function() return 1 end))
local a = luaecho.shared("z", { n = 1 })
local b = luaecho.shared("z", { n = 2 })
print(a == b, b.n)
]])
    local code, out, err = server.run({ "run", program })
    assert.are.equal(0, code, err)
    assert.are.equal(table.concat({
      "luaecho.shared(): name must be a string",
      "luaecho.shared(): init must be a table or a function, not number",
      "luaecho.shared(): init() must return a table, not number",
      "true\t1",
      "",
    }, "\n"), (out:gsub("[^\n]*misuse%.lua:%d+: ", "")))
  end)
end)
