-- What --watch follows (issue 19 point 5, issue 20 point 5): the script,
-- the modules it required from its own directory (subdirectories
-- included), and a Kubernetes ConfigMap's `..data` symlink swap, which
-- replaces the script without writing the file --watch was given. Each
-- spec serves from a scratch directory and edits there. A swap must
-- reload exactly once: after the watched change made generation 2, a
-- SIGHUP must make generation 3 (a second reload would have taken it).
local uv = require "luv"
local cleanup = require "support.cleanup"
local client = require "support.client"
local files = require "support.files"
local prometheus = require "support.prometheus"
local server = require "support.server"

-- A Protocol answering each chunk with PREFIX .. chunk.
local function prefixer(prefix)
  return ([[
local P = {}
function P:connection_made(transport) self.transport = transport end
function P:data_received(data) self.transport:write(%q .. data) end
return P
]]):format(prefix)
end

-- The one reload the change made, and no other: SIGHUP takes generation 3.
local function assert_reloaded_once(proc, script)
  proc:wait_reloaded(script, 2)
  proc:signal("sighup")
  proc:wait_reloaded(script, 3)
  assert.are.same({ 2, 3 }, proc:reloads())
end

local function sh(command)
  assert(os.execute(command), command)
end

describe("--watch #integration", function()
  local scratch, proc

  before_each(function()
    scratch = files.scratch("watch")
  end)

  after_each(cleanup.expect_clean)

  it("reloads when a module the script required from a subdirectory changes", function()
    local script = scratch:write("greeter.lua", files.read(server.fixture("checks/greeter.lua")))
    assert(uv.fs_mkdir(scratch:path("lib"), tonumber("755", 8)))
    scratch:write("lib/greeting.lua", 'return { word = "hello" }\n')
    proc = server.start({ "--watch", script })
    local held = client.connect(proc.host, proc.port)
    held:send_all("a")
    assert.are.equal("hello a", held:receive_exactly(7))
    scratch:write("lib/greeting.lua", 'return { word = "howdy" }\n', 2) -- in place, in two writes
    assert_reloaded_once(proc, script)
    assert.are.equal("howdy b", client.answer_of(proc, "b", 7))
    held:send_all("c")
    assert.are.equal("hello c", held:receive_exactly(7)) -- the open connection keeps its code
  end)

  it("reloads when a required module is replaced by a rename, and follows the modules the new code requires",
    function()
      local script = scratch:write("handler.lua", 'return require "first"\n')
      scratch:write("first.lua", prefixer("first:"))
      scratch:write("second.lua", prefixer("second:"))
      proc = server.start({ "--watch", script })
      assert.are.equal("first:a", client.answer_of(proc, "a", 7))
      scratch:replace("first.lua", 'return require "second"\n')
      proc:wait_reloaded(script, 2)
      assert.are.equal("second:b", client.answer_of(proc, "b", 8))
      scratch:replace("second.lua", prefixer("SECOND:"))
      proc:wait_reloaded(script, 3)
      assert.are.equal("SECOND:c", client.answer_of(proc, "c", 8))
    end)

  it("keeps following a module whose edit broke the reload, and reloads once it is fixed", function()
    local script = scratch:write("handler.lua", 'return require "inner"\n')
    scratch:write("inner.lua", prefixer("one:"))
    proc = server.start({ "--watch", script })
    assert.are.equal("one:a", client.answer_of(proc, "a", 5))
    scratch:replace("inner.lua", "return {\n")
    proc:wait_output("stderr", "luaecho: error: reload %(file changed%) failed, still serving generation 1: ", 10)
    assert.are.equal("one:b", client.answer_of(proc, "b", 5))
    scratch:replace("inner.lua", prefixer("two:"))
    proc:wait_reloaded(script, 2)
    assert.are.equal("two:c", client.answer_of(proc, "c", 5))
  end)

  it("sees a Kubernetes ConfigMap's ..data swap and reloads once, the new code serving", function()
    local root = scratch:path("scripts")
    local old_dir = "..2026_12_07_01_00_00.123456789"
    local new_dir = "..2026_12_07_01_05_00.987654321"
    sh(("mkdir -p %s/%s"):format(root, old_dir))
    files.write(("%s/%s/handler.lua"):format(root, old_dir), prefixer("v1:"))
    sh(("cd %s && ln -s %s ..data && ln -s ..data/handler.lua handler.lua"):format(root, old_dir))
    local script = root .. "/handler.lua"
    proc = server.start({ "--watch", "--metrics", "127.0.0.1:0", script })
    proc:wait_metrics()
    assert.are.equal("v1:a", client.answer_of(proc, "a", 4))
    -- The kubelet's update: a new timestamped directory, ..data_tmp pointing
    -- at it, renamed over ..data, then the old directory removed.
    sh(("mkdir %s/%s"):format(root, new_dir))
    files.write(("%s/%s/handler.lua"):format(root, new_dir), prefixer("v2:"))
    sh(("cd %s && ln -s %s ..data_tmp && mv -T ..data_tmp ..data && rm -rf %s"):format(root, new_dir, old_dir))
    proc:wait_reloaded(script, 2)
    assert.are.equal("v2:b", client.answer_of(proc, "b", 4))
    local _, body = prometheus.http_get(proc.metrics_port, "/metrics", 5)
    assert.matches('luaecho_reloads_total{result="ok"} 1\n', body, 1, true)
    assert_reloaded_once(proc, script)
    assert.are.equal("v2:c", client.answer_of(proc, "c", 4))
  end)
end)
