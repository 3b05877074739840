-- cmake --install puts the binary and the bundled Lua files in the usual
-- places, and the installed binary finds its scripts from any working
-- directory; so does the one in the build tree. LUAECHO_LUA_DIR, which the
-- other specs set, is unset here: the binary must find its files itself.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local files = require "support.files"

local build = os.getenv("LUAECHO_BUILD_DIR") or "build"
local NO_OVERRIDE = { LUAECHO_LUA_DIR = false }

local function assert_echo_prefix(proc)
  local conn = client.connect(proc.host, proc.port)
  conn:send_all("hi\n")
  assert.are.equal("echo:hi\n", conn:receive_exactly(8))
  conn:close()
end

describe("an installed luaecho #integration", function()
  local prefix

  setup(function()
    prefix = files.scratch("install").dir
    assert.is_true(os.execute(("cmake --install %q --prefix %q >/dev/null"):format(build, prefix)))
  end)

  teardown(cleanup.all)

  it("lays out bin/luaecho and share/luaecho/ with the bundled scripts", function()
    for _, file in ipairs({ "bin/luaecho", "share/luaecho/echo.lua", "share/luaecho/examples/plain_echo.lua",
      "share/luaecho/luaecho/streams.lua", "share/luaecho/luaecho/testing.lua" }) do
      assert.is_truthy(io.open(prefix .. "/" .. file), file .. " is installed")
    end
  end)

  it("loads its Lua libraries from share/luaecho, not from the source tree", function()
    local script = files.scratch("install-script"):write("searchpath.lua",
      'print(package.searchpath("luaecho.streams", package.path))\n')
    server.with_bin(prefix .. "/bin/luaecho", function()
      local code, out, err = server.run({ "run", script }, { cwd = "/", env = NO_OVERRIDE })
      assert.are.equal(0, code, err)
      assert.are.equal(prefix .. "/bin/../share/luaecho/luaecho/streams.lua\n", out)
    end)
  end)

  it("serves the bundled echo.lua from any working directory", function()
    server.with_bin(prefix .. "/bin/luaecho", function()
      local proc = server.start({}, { cwd = "/", env = NO_OVERRIDE })
      assert_echo_prefix(proc)
    end)
  end)

  it("finds a bundled script by its name and runs the article's client", function()
    server.with_bin(prefix .. "/bin/luaecho", function()
      local srv = server.start({ "examples/stream_echo.lua" }, { cwd = "/", env = NO_OVERRIDE })
      local code, out, err = server.run({ "run", "examples/echo_client.lua", "127.0.0.1", tostring(srv.port) },
        { cwd = "/", env = NO_OVERRIDE })
      assert.are.equal(0, code, err)
      assert.matches('"Last line.\\n"', out, 1, true)
    end)
  end)
end)

describe("the binary in the build tree #integration", function()
  teardown(cleanup.all)

  it("finds its bundled scripts from any working directory", function()
    local proc = server.start({}, { cwd = "/", env = NO_OVERRIDE })
    assert_echo_prefix(proc)
  end)
end)
