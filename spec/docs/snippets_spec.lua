-- Every ```lua block of README.md and docs/*.md runs as written, on the
-- real binary ($LUAECHO_BIN, else build/luaecho):
--   * a block marked with <!-- fragment --> on the line before it only has
--     to compile: it cannot run alone (it uses a `reader` or a Protocol
--     defined elsewhere);
--   * a busted spec (it calls describe) passes under `luaecho test`;
--   * a handler script (it returns from the main chunk) is
--     served on --port 0 and gets one round trip: a client sends a line and
--     the server answers or closes, with no error on stderr, and the server
--     then shuts down cleanly on SIGTERM;
--   * anything else is a `luaecho run` program, which must exit 0 with no
--     error on stderr.
-- Every block must compile. A block whose first line is a comment naming a
-- file (`-- shout.lua: ...`, `-- spec/shout_spec.lua`) is saved under that
-- name in one directory shared by all the blocks, so a spec in the docs can
-- serve a handler shown elsewhere in the docs, as a reader would.
local uv = require "luv"
local server = require "support.server"
local client = require "support.client"
local wait = require "support.wait"

local DEADLINE = 5

-- The markdown files whose snippets must run: README.md and docs/*.md.
local function documents()
  local list = { "README.md" }
  local dir = assert(uv.fs_scandir("docs"))
  local names = {}
  while true do
    local name, kind = uv.fs_scandir_next(dir)
    if not name then break end
    if kind == "file" and name:match("%.md$") then names[#names + 1] = "docs/" .. name end
  end
  table.sort(names)
  for _, name in ipairs(names) do list[#list + 1] = name end
  return list
end

-- The ```lua blocks of one file: { file, line, code, fragment }. A fence may
-- be indented (inside a list item); the indentation is removed.
local function blocks_of(path)
  local file = assert(io.open(path, "r"))
  local found, current, previous = {}, nil, ""
  local number = 0
  for line in file:lines() do
    number = number + 1
    if current then
      if line:match("^%s*```%s*$") then
        current.code = table.concat(current.lines, "\n") .. "\n"
        found[#found + 1] = current
        current = nil
      else
        current.lines[#current.lines + 1] = line:sub(#current.indent + 1)
      end
    else
      local indent = line:match("^(%s*)```lua%s*$")
      if indent then
        current = { file = path, line = number, lines = {}, indent = indent,
                    fragment = previous:match("^%s*<!%-%- fragment %-%->%s*$") ~= nil }
      end
      if line:match("%S") then previous = line end
    end
  end
  file:close()
  assert(current == nil, path .. ": a ```lua block is never closed")
  return found
end

-- What to do with a block: "fragment", "spec", "handler" or "program". A
-- handler returns its Protocol or function from the main chunk: a line of
-- its own at the left margin starts with `return` (the docs indent nested
-- code, and a program has no reason to return).
local function kind_of(block)
  if block.fragment then return "fragment" end
  if block.code:match("%f[%w_]describe%s*%(") then return "spec" end
  for line in block.code:gmatch("[^\n]+") do
    if line:match("^return[%s%(]") or line:match("^return$") then return "handler" end
  end
  return "program"
end

-- The file name a block gives itself in its first line, if any.
local function name_of(block)
  return block.code:match("^%-%- ([%w_%-/]+%.lua)")
end

local function write_file(path, text)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then os.execute(("mkdir -p %q"):format(dir)) end
  local file = assert(io.open(path, "w"))
  file:write(text)
  file:close()
end

-- The luaecho log lines that report a failure.
local function errors_in(stderr)
  local lines = {}
  for line in stderr:gmatch("[^\n]+") do
    if line:match("^luaecho: error:") then lines[#lines + 1] = line end
  end
  return lines
end

-- Send a line and wait until the server answers or closes. Returns what
-- arrived and how it ended ("answered", "closed", or the socket error).
local function round_trip(proc)
  local conn = client.connect(proc.host, proc.port)
  conn:send_all("hello\n")
  conn.sock:settimeout(0.05)
  local got, how = wait.until_true(function()
    local data, err, partial = conn.sock:receive(1)
    if data then return data, "answered" end
    if err ~= "timeout" then return partial or "", err end
  end, DEADLINE, "an answer or a close from the handler", true)
  conn:close()
  return got, how
end

local blocks = {}
for _, path in ipairs(documents()) do
  for _, block in ipairs(blocks_of(path)) do blocks[#blocks + 1] = block end
end

describe("the documentation's Lua snippets #integration", function()
  local dir

  setup(function()
    dir = assert(uv.fs_mkdtemp("/tmp/luaecho-snippets-XXXXXX"))
    local named = {}
    for i, block in ipairs(blocks) do
      local name = name_of(block)
      if block.fragment then
        block.path = nil
      elseif name then
        assert(named[name] == nil or named[name] == block.code,
          ("%s:%d names %s, as another block with other code does"):format(block.file, block.line, name))
        named[name] = block.code
        block.path = name
      else
        block.path = ("snippet_%d.lua"):format(i)
      end
      if block.path then write_file(dir .. "/" .. block.path, block.code) end
    end
  end)

  teardown(function()
    client.close_all()
    server.stop_all()
    if dir then os.execute(("rm -rf %q"):format(dir)) end
  end)

  it("finds handlers, programs, specs and fragments to check", function()
    local count = { fragment = 0, spec = 0, handler = 0, program = 0 }
    for _, block in ipairs(blocks) do count[kind_of(block)] = count[kind_of(block)] + 1 end
    for kind, n in pairs(count) do
      assert.is_true(n > 0, "no " .. kind .. " found in the docs")
    end
  end)

  for _, block in ipairs(blocks) do
    local where = ("%s:%d"):format(block.file, block.line)
    local kind = kind_of(block)

    it(("%s, a %s, compiles"):format(where, kind), function()
      local chunk, err = load(block.code, "=" .. where, "t")
      assert(chunk, err)
    end)

    if kind == "handler" then
      it(("%s, a handler, answers or closes a connection without an error"):format(where), function()
        local proc = server.start({ block.path }, { cwd = dir })
        local got, how = round_trip(proc)
        local stderr = proc:stderr()
        local problems = proc:stop()
        assert.are.same({}, errors_in(stderr),
          ("%s: %s after %q; stderr:\n%s"):format(where, how, got, stderr))
        assert.are.same({}, problems)
      end)
    elseif kind == "program" then
      it(("%s, a 'luaecho run' program, exits 0"):format(where), function()
        local code, out, err = server.run({ "run", block.path }, { cwd = dir }, DEADLINE)
        assert.are.same({}, errors_in(err), ("%s: stdout:\n%s\nstderr:\n%s"):format(where, out, err))
        assert.are.equal(0, code, ("%s: stdout:\n%s\nstderr:\n%s"):format(where, out, err))
      end)
    elseif kind == "spec" then
      it(("%s, a spec, passes under 'luaecho test'"):format(where), function()
        local code, out, err = server.run({ "test", block.path }, { cwd = dir }, 60)
        assert.are.equal(0, code, ("%s: stdout:\n%s\nstderr:\n%s"):format(where, out, err))
      end)
    end
  end
end)
