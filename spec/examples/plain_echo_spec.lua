-- lua/examples/plain_echo.lua: every byte back unchanged, nothing printed,
-- and no memory growth when the peer does not read.
local testing = require "luaecho.testing"

local SCRIPT = "lua/examples/plain_echo.lua"

-- Every byte value once.
local function all_bytes()
  local bytes = {}
  for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
  return table.concat(bytes)
end

describe("examples/plain_echo.lua #unit", function()
  before_each(testing.reset)

  it("echoes every byte value unchanged and prints nothing", function()
    local conn = testing.connect(SCRIPT)
    conn:send(all_bytes())
    assert.are.equal(all_bytes(), conn:output())
    assert.are.same({}, conn:printed())
  end)

  it("echoes a byte at a time as well as a megabyte at once", function()
    local conn = testing.connect(SCRIPT)
    conn:send("one byte at a time", 1)
    assert.are.equal("one byte at a time", conn:output())
    local big = ("0123456789abcdef"):rep(65536)
    conn:send(big)
    assert.are.equal(big, conn:output())
  end)

  it("stops reading while its answers pile up, and resumes as the peer reads them", function()
    local conn = testing.connect(SCRIPT, { hold_output = true })
    conn:send(("x"):rep(200000)) -- four chunks: 65536, 65536, 65536 and 3392 bytes
    assert.is_false(conn:reading())
    assert.are.same({ 131072, 68928 }, { conn:buffered(), conn:held() }) -- the second chunk went above the mark
    conn:drain(131072 - 16384) -- down to the low mark: resume_writing, so it reads the third chunk...
    assert.are.same({ false, 81920, 3392 }, { conn:reading(), conn:buffered(), conn:held() }) -- ...and pauses again
    conn:release_output()
    assert.are.same({ true, 0, 0 }, { conn:reading(), conn:buffered(), conn:held() })
    assert.are.equal(200000, #conn:output())
  end)

  it("closes when the peer half-closes", function()
    local conn = testing.connect(SCRIPT)
    conn:eof()
    assert.is_true(conn:closed())
    assert.is_true(conn:at_eof())
  end)
end)
