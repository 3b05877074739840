-- lua/examples/chat.lua: a chat room over telnet. Nicknames, broadcast,
-- the commands, a stalled reader dropped after 5 s of virtual time while
-- the others chat on, and the room shared by two generations of the script.
local testing = require "luaecho.testing"
local luaecho = require "luaecho"
local loader = require "luaecho.loader"

local SCRIPT = "lua/examples/chat.lua"
local WELCOME = "Welcome to the chat. A nickname is 1 to 20 letters, digits, _ or -.\r\nYour nickname: "
local HELP = "Commands: /who, /nick NAME, /me ACTION, /quit.\r\n"
local NEGOTIATION = "\255\253\31\255\253\24" -- DO NAWS, DO TTYPE

-- Empty the shared room: luaecho.shared outlives testing.reset().
local function empty_room()
  local room = luaecho.shared("chat.room")
  for k in pairs(room) do room[k] = nil end
end

describe("examples/chat.lua #unit", function()
  local server

  before_each(function()
    testing.reset()
    empty_room()
    server = testing.serve(SCRIPT)
  end)

  -- A member who joined as 'nick', its output read.
  local function join(nick, srv)
    local conn = (srv or server):connect()
    conn:send(nick .. "\r\n")
    conn:output()
    return conn
  end

  it("welcomes and asks for a nickname", function()
    local conn = server:connect()
    assert.are.equal(NEGOTIATION .. WELCOME, conn:output())
  end)

  it("refuses nicknames that break the rule, saying so, then takes a good one", function()
    local conn = server:connect()
    conn:output()
    for _, bad in ipairs({ "", "   ", ("x"):rep(21), "two words", "caf\195\169", "a.b", "<ann>" }) do
      conn:send(bad .. "\r\n")
      assert.are.equal("A nickname is 1 to 20 letters, digits, _ or -.\r\nYour nickname: ", conn:output())
    end
    conn:send(("x"):rep(20) .. "\r\n")
    assert.are.equal("Hello " .. ("x"):rep(20) .. ". Nobody else is here yet.\r\n" .. HELP, conn:output())
    local other = server:connect()
    other:send("  Ann_2-b  \r\n")   -- spaces around it are trimmed
    assert.matches("Hello Ann_2%-b%. Here: x+%.\r\n", other:output())
  end)

  it("keeps nicknames unique, whatever their case", function()
    join("ann")
    local conn = server:connect()
    conn:output()
    conn:send("ANN\r\n")
    assert.are.equal("ANN is taken; choose another.\r\nYour nickname: ", conn:output())
    conn:send("bob\r\n")
    assert.are.equal("Hello bob. Here: ann.\r\n" .. HELP, conn:output())
  end)

  it("tells the room who joins, and broadcasts every line to the others", function()
    local ann = join("ann")
    local bob = join("bob")
    assert.are.equal("* bob joined\r\n", ann:output())
    local carol = join("carol")
    assert.are.equal("* carol joined\r\n", ann:output())
    assert.are.equal("* carol joined\r\n", bob:output())
    ann:send("hello, all\r\n")
    assert.are.equal("<ann> hello, all\r\n", bob:output())
    assert.are.equal("<ann> hello, all\r\n", carol:output())
    assert.are.equal("", ann:output()) -- the sender saw it as typed
    ann:send("\r\n")                   -- an empty line says nothing
    assert.are.equal("", bob:output())
  end)

  it("takes lines however they arrive: a plain nc client, byte by byte", function()
    local ann = join("ann")
    local bob = server:connect()
    bob:send("bob\nhi there\n", 1)
    assert.are.equal("* bob joined\r\n<bob> hi there\r\n", ann:output())
  end)

  it("does not pass control bytes on (no escape sequences on the others' screens)", function()
    local ann = join("ann")
    local bob = join("bob")
    bob:send("\27[2Jclear\tme\r\n")
    assert.are.equal("* bob joined\r\n<bob> [2Jclear me\r\n", ann:output())
  end)

  it("/who lists the members in the order they joined", function()
    local ann = join("ann")
    join("bob")
    join("carol")
    ann:output()
    ann:send("/who\r\n")
    assert.are.equal("Here: ann, bob, carol.\r\n", ann:output())
  end)

  it("/nick renames, tells the room, and frees the old name", function()
    local ann = join("ann")
    local bob = join("bob")
    ann:output()
    ann:send("/nick bob\r\n")
    assert.are.equal("bob is taken; choose another.\r\n", ann:output())
    ann:send("/nick not valid\r\n")
    assert.are.equal("A nickname is 1 to 20 letters, digits, _ or -.\r\n", ann:output())
    ann:send("/nick Anna\r\n")
    assert.are.equal("You are now Anna.\r\n", ann:output())
    assert.are.equal("* ann is now known as Anna\r\n", bob:output())
    ann:send("/nick ANNA\r\n")       -- a new case of one's own name
    assert.are.equal("You are now ANNA.\r\n", ann:output())
    ann:send("hi\r\n")
    assert.are.equal("* Anna is now known as ANNA\r\n<ANNA> hi\r\n", bob:output())
    local newcomer = server:connect()
    newcomer:send("ann\r\n")
    assert.matches("Hello ann%. Here: ANNA, bob%.", newcomer:output())
  end)

  it("/me acts", function()
    local ann = join("ann")
    local bob = join("bob")
    ann:send("/me waves\r\n")
    assert.are.equal("* bob joined\r\n", ann:output())
    assert.are.equal("* ann waves\r\n", bob:output())
  end)

  it("answers an unknown command with the list", function()
    local ann = join("ann")
    ann:send("/dance\r\n")
    assert.are.equal("Unknown command /dance. " .. HELP, ann:output())
  end)

  it("/quit says bye, closes, and the room hears it", function()
    local ann = join("ann")
    local bob = join("bob")
    ann:output()
    bob:send("/quit\r\n")
    assert.are.equal("Bye.\r\n", bob:output())
    assert.is_true(bob:closed())
    assert.are.equal("* bob left\r\n", ann:output())
    ann:send("/who\r\n")
    assert.are.equal("Here: ann.\r\n", ann:output())
  end)

  it("a member who goes away (reset, half-close) leaves with a notice", function()
    local ann = join("ann")
    local bob = join("bob")
    local carol = join("carol")
    ann:output()
    bob:reset()
    testing.advance()
    assert.are.equal("* bob left\r\n", ann:output())
    carol:eof()
    assert.are.equal("* carol left\r\n", ann:output())
    assert.is_true(carol:closed())
  end)

  it("disconnects a member who stops reading for 5 s, while the others chat on", function()
    local ann = join("ann")
    local bob = join("bob")
    local slow = join("slow")
    ann:output()
    bob:output()
    slow:hold_output()
    local line = ("x"):rep(100)
    for _ = 1, 700 do ann:send(line .. "\r\n") end   -- ~77 KB for each of the others
    assert.are.equal(700 * #("<ann> " .. line .. "\r\n"), #bob:output()) -- bob is never held up
    assert.is_true(slow:buffered() > 65536)              -- above the high mark: paused
    testing.advance(4.9)
    assert.is_false(slow:closed())
    bob:send("still here\r\n")
    assert.are.equal("<bob> still here\r\n", ann:output())
    testing.advance(0.1)
    assert.is_true(slow:aborted())
    assert.are.equal("* slow was disconnected: not reading for 5 s\r\n", ann:output())
    assert.are.equal("* slow was disconnected: not reading for 5 s\r\n", bob:output())
    ann:send("/who\r\n")
    assert.are.equal("Here: ann, bob.\r\n", ann:output())
    testing.advance(10)
    assert.are.equal("", bob:output()) -- no second notice when connection_lost follows
  end)

  it("keeps a member who catches up within 5 s", function()
    local ann = join("ann")
    local slow = join("slow")
    slow:hold_output()
    local line = ("y"):rep(100)
    for _ = 1, 700 do ann:send(line .. "\r\n") end
    testing.advance(4)
    slow:release_output()   -- reads it all: resume_writing
    testing.advance(10)
    assert.is_false(slow:closed())
    ann:output()
    ann:send("/who\r\n")
    assert.are.equal("Here: ann, slow.\r\n", ann:output())
  end)

  describe("across a hot swap", function()
    -- luaecho.testing cannot reload a served script, so the swap is shown
    -- as the host does it: chat.lua loaded twice through luaecho.loader in
    -- the same Lua state (the second time edited), each load serving its
    -- own connections, as generations 1 and 2 do after a SIGHUP.
    local function generation_2()
      local f = assert(io.open(SCRIPT, "r"))
      local text = f:read("a")
      f:close()
      local edited, n = text:gsub("Welcome to the chat%.", "Welcome to chat v2.")
      assert.are.equal(1, n)
      return loader.load(edited, "@" .. SCRIPT)
    end

    it("keeps one room: members of the old code and of the new see each other", function()
      local old = testing.serve(loader.load_file(SCRIPT)) -- generation 1
      local ann = join("ann", old)
      local bob = join("bob", old)
      ann:output()

      local new = testing.serve(generation_2())            -- generation 2
      local carol = new:connect()
      assert.matches("Welcome to chat v2%.", carol:output())
      carol:send("Carol\r\n")
      assert.are.equal("Hello Carol. Here: ann, bob.\r\n" .. HELP, carol:output())
      assert.are.equal("* Carol joined\r\n", ann:output())

      carol:send("hi from the new code\r\n")
      assert.are.equal("<Carol> hi from the new code\r\n", ann:output())
      ann:send("hi from the old code\r\n")
      assert.are.equal("<ann> hi from the old code\r\n", carol:output())

      local dup = new:connect()           -- uniqueness holds across generations
      dup:output()
      dup:send("BOB\r\n")
      assert.are.equal("BOB is taken; choose another.\r\nYour nickname: ", dup:output())

      bob:output()
      ann:send("/quit\r\n")                -- the old code's leave notice reaches the new
      assert.are.equal("* ann left\r\n", carol:output())
      carol:send("/who\r\n")
      assert.are.equal("Here: bob, Carol.\r\n", carol:output())
      carol:send("/nick Caro\r\n")         -- the new code's rename reaches the old
      assert.are.equal("* ann left\r\n* Carol is now known as Caro\r\n", bob:output())

      assert.are.equal("You are now Caro.\r\n", carol:output())
      bob:hold_output()                    -- the old code still watches its stalled reader
      for _ = 1, 700 do carol:send(("z"):rep(100) .. "\r\n") end
      testing.advance(5)
      assert.is_true(bob:aborted())
      assert.are.equal("* bob was disconnected: not reading for 5 s\r\n", carol:output())
    end)
  end)
end)
