-- The shipped echo handlers over real TCP: the default lua/echo.lua (the
-- seed's "echo:" protocol and its prints) and lua/examples/plain_echo.lua.
local cleanup = require "support.cleanup"
local server = require "support.server"
local client = require "support.client"
local text = require "support.text"

local MiB = 1024 * 1024

-- echo.lua answers "echo:" .. chunk for every chunk it receives, however the
-- stream was split; return the data with those prefixes removed and how
-- many chunks there were. Fails if the reply does not start with "echo:".
local function unprefix(reply)
  assert(reply:sub(1, 5) == "echo:", "reply does not start with echo: " .. ("%q"):format(reply:sub(1, 40)))
  local data, chunks = reply:gsub("echo:", "")
  return data, chunks
end

describe("default echo script #integration", function()
  local proc

  before_each(function()
    proc = server.start({})
  end)

  after_each(cleanup.expect_clean)

  it("answers echo: followed by what the client sent", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("hello\r\n")
    assert.are.equal("echo:hello\r\n", conn:receive_exactly(12))
  end)

  it("prints the connection, each chunk and the loss on stdout", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("hello\r\n")
    conn:receive_exactly(12)
    conn:close()
    proc:wait_output("stdout", "Connection lost!\n")
    assert.are.equal('Connection received!\n"hello\\r\\n"\nConnection lost!\n', proc:stdout())
  end)

  it("keeps serving after a connection has gone", function()
    local first = client.connect(proc.host, proc.port)
    first:send_all("one")
    assert.are.equal("echo:one", first:receive_exactly(8))
    first:close()
    proc:wait_output("stdout", "Connection lost!\n")
    local second = client.connect(proc.host, proc.port)
    second:send_all("two")
    assert.are.equal("echo:two", second:receive_exactly(8))
  end)

  it("echoes binary data with NUL bytes unchanged", function()
    local bytes = {}
    for b = 0, 255 do bytes[#bytes + 1] = string.char(b) end
    local data = "\0\0" .. table.concat(bytes) .. "\0"
    local conn = client.connect(proc.host, proc.port)
    local reply = client.exchange({ { conn = conn, send = data, done_when = client.echoed(#data) } })[1]
    assert.are.equal(data, (unprefix(reply)))
  end)

  it("prints a chunk with NUL and control bytes escaped on one line", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("a\0b\1\255")
    conn:receive_exactly(10)
    proc:wait_output("stdout", '"a\\x00b\\x01\\xff"\n')
  end)

  it("echoes a 1 MiB payload exactly, whatever the chunking", function()
    local data = text.payload(MiB, 7)
    local conn = client.connect(proc.host, proc.port)
    local reply = client.exchange({ { conn = conn, send = data, done_when = client.echoed(#data) } }, 20)[1]
    local echoed, chunks = unprefix(reply)
    assert.are.equal(#data, #echoed)
    assert.is_true(data == echoed, "1 MiB echo differs from what was sent")
    assert.are.equal(#data + 5 * chunks, #reply)
  end)

  it("echoes what a client sent before half-closing, then closes", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("last words")
    conn:shutdown_send()
    local reply, how = conn:receive_until_close()
    assert.are.equal("echo:last words", reply)
    assert.are.equal("closed", how)
  end)

  it("writes one listening line and only luaecho: lines to stderr", function()
    local conn = client.connect(proc.host, proc.port)
    conn:send_all("x")
    conn:receive_exactly(6)
    conn:close()
    proc:wait_output("stdout", "Connection lost!\n")
    local listening, foreign = 0, {}
    for line in proc:stderr():gmatch("([^\n]*)\n") do
      if line == ("luaecho: listening on 127.0.0.1:%d"):format(proc.port) then
        listening = listening + 1
      elseif line:sub(1, 9) ~= "luaecho: " then
        foreign[#foreign + 1] = line
      end
    end
    assert.are.equal(1, listening)
    assert.are.same({}, foreign)
  end)
end)

describe("plain echo example #integration", function()
  local proc

  before_each(function()
    proc = server.start({ server.script("examples/plain_echo.lua") })
  end)

  after_each(cleanup.expect_clean)

  it("echoes a 1 MiB payload exactly and prints nothing", function()
    local data = text.payload(MiB, 3)
    local conn = client.connect(proc.host, proc.port)
    local reply = client.exchange({ { conn = conn, send = data, expect = #data } }, 20)[1]
    assert.are.equal(#data, #reply)
    assert.is_true(data == reply, "1 MiB echo differs from what was sent")
    conn:close()
    assert.are.equal("", proc:stdout())
  end)

  it("gives each of 200 concurrent clients exactly its own bytes back", function()
    local conns = client.connect_many(proc.host, proc.port, 200)
    local jobs = {}
    for i, conn in ipairs(conns) do
      -- Own header plus own noise: a mix-up between clients cannot match.
      local data = ("client %03d|"):format(i) .. text.payload(8192, i)
      jobs[i] = { conn = conn, send = data, expect = #data }
    end
    local replies = client.exchange(jobs, 20)
    local wrong = {}
    for i, job in ipairs(jobs) do
      if replies[i] ~= job.send then wrong[#wrong + 1] = i end
    end
    assert.are.same({}, wrong)
  end)

  it("echoes binary data with NUL bytes unchanged", function()
    local data = "\0abc\0\0\255\0"
    local conn = client.connect(proc.host, proc.port)
    conn:send_all(data)
    assert.are.equal(data, conn:receive_exactly(#data))
  end)
end)
