-- Real telnet clients against luaecho.telnet: inetutils' telnet (Debian's
-- `telnet`), netkit's (the telnet-ssl package's client, without SSL) and
-- busybox's, each in a detached tmux session (support.tty), typing as a
-- person would and reading the screen; the server side is read from the
-- handler's stdout. A case is pending for a client only where the client
-- cannot do it, with the reason.
--
-- What the clients do (observed with a byte-dumping server; inetutils 2.4,
-- netkit 0.17, busybox 1.35):
--   * On a port given on the command line none offers an option first; each
--     answers the server's offers: DO NAWS -> WILL NAWS and the size, DO
--     TTYPE -> WILL TTYPE (inetutils names the terminal in capitals).
--   * WILL ECHO puts each in character mode (its terminal raw). Busybox
--     answers DO SGA with DONT SGA (it takes any SGA verb as the server's),
--     and refuses BINARY (DONT/WONT BINARY).
--   * Enter: line mode "\r\n" (busybox "\r\n" always); character mode
--     inetutils and netkit "\r\0"; with BINARY on, a bare "\r" in character
--     mode and a bare "\n" in line mode.
--   * Ctrl-C: character mode "\3" from all three; line mode inetutils and
--     netkit send IAC IP, IAC DO TIMING-MARK and drop everything the server
--     sends until TIMING-MARK is answered (WILL or WONT); busybox opens its
--     console escape menu and sends nothing.
--   * NAWS again on a resize (SIGWINCH): inetutils and netkit; busybox sends
--     the size once, at connect, and has no SIGWINCH handler.
--   * A 0xFF typed (send-keys -H ff) goes out as IAC IAC from all three.
local cleanup = require "support.cleanup"
local server = require "support.server"
local tty = require "support.tty"
local wait = require "support.wait"

local CLIENTS = {
  {
    name = "inetutils telnet",
    command = { "telnet" },
    ip_in_line_mode = true,
    naws_on_resize = true,
  },
  {
    name = "netkit telnet (telnet-ssl)",
    command = { "telnet-ssl" },
    ip_in_line_mode = true,
    naws_on_resize = true,
  },
  {
    name = "busybox telnet",
    command = { "busybox", "telnet" },
    ip_in_line_mode = false,
    naws_on_resize = false,
  },
}

local MiB = 1024 * 1024

-- Field `n` of /proc/sys/NAME (a kernel setting), or `default`.
local function kernel_setting(name, n, default)
  local f = io.open("/proc/sys/" .. name, "r")
  if not f then return default end
  local fields = {}
  for field in f:read("a"):gmatch("%d+") do fields[#fields + 1] = tonumber(field) end
  f:close()
  return fields[n] or default
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Start `client` in a terminal connected to `proc`.
local function connect(client, proc, opts)
  local argv = { table.unpack(client.command) }
  argv[#argv + 1] = proc.host
  argv[#argv + 1] = tostring(proc.port)
  return tty.start(argv, opts)
end

-- luaecho serving fixtures/telnet_clients/session.lua with the session's
-- options from `env` (TELNET_MODE, TELNET_BINARY).
local function session_server(env)
  return server.start({ server.fixture("telnet_clients/session.lua") }, { env = env })
end

-- luaecho serving a shipped example.
local function example_server(name)
  return server.start({ server.script("examples/" .. name) })
end

describe("telnet clients through a terminal #integration", function()
  after_each(function()
    tty.kill_all()       -- the clients first: their connections close
    cleanup.expect_clean()
  end)

  for _, client in ipairs(CLIENTS) do
    describe(client.name, function()
      it("enters character mode for telnet_echo.lua: helo, BSpace, lo, Enter shows echo:hello", function()
        local proc = example_server("telnet_echo.lua")
        local term = connect(client, proc)
        term:wait_raw()    -- WILL ECHO took the client to character mode
        term:type("helo")
        term:wait_for("helo")   -- the server's echo: the client echoes nothing itself now
        term:keys("BSpace")
        term:type("lo")
        term:keys("Enter")
        term:wait_for("echo:hello\n")
      end)

      it("ends telnet_echo.lua with Ctrl-D on an empty line: Bye., the connection closes, the client exits", function()
        local proc = example_server("telnet_echo.lua")
        local term = connect(client, proc)
        term:wait_raw()
        term:type("x")
        term:wait_for("> x")
        term:keys("BSpace")      -- the line is empty again
        wait.until_true(function() return not term:visible():find("> x", 1, true) end, 5, "the x erased")
        term:keys("C-d")
        term:wait_for("Bye%.")
        wait.until_true(function() return not term:alive() end, 5, "the client to exit")
      end)

      it("sends each key at once for keystroke_echo.lua: a, b, c show echo:a, echo:b, echo:c", function()
        local proc = example_server("keystroke_echo.lua")
        local term = connect(client, proc)
        term:wait_raw()
        term:type("a")
        term:wait_for("echo:a")  -- no Enter: the key went alone
        term:type("bc")
        term:wait_for("echo:b.*echo:c")
      end)

      it("reports the window size it connects with as window_resized", function()
        local proc = session_server({ TELNET_MODE = "line" })
        connect(client, proc, { width = 80, height = 24 })
        proc:wait_output("stdout", "resized 80 24\n")
      end)

      it("reports a window resize as window_resized", function()
        if not client.naws_on_resize then
          -- busybox telnet sends NAWS once, when the server asks at connect;
          -- it has no SIGWINCH handler, so a resize never reaches the server.
          pending("busybox telnet sends no NAWS on a resize")
          return
        end
        local proc = session_server({ TELNET_MODE = "line" })
        local term = connect(client, proc, { width = 80, height = 24 })
        proc:wait_output("stdout", "resized 80 24\n")
        term:resize(100, 30)
        proc:wait_output("stdout", "resized 100 30\n")
        term:resize(61, 17)
        proc:wait_output("stdout", "resized 61 17\n")
      end)

      -- In line mode inetutils and netkit send Ctrl-C as IAC IP IAC DO
      -- TIMING-MARK and discard everything the server sends until
      -- TIMING-MARK is answered (RFC 860); an unanswered one mutes the server
      -- for good. In line mode busybox telnet leaves the terminal cooked and
      -- takes the SIGINT of Ctrl-C as its console escape (a menu on the
      -- screen); nothing goes to the server.
      local function line_mode_ctrl_c()
        if not client.ip_in_line_mode then
          pending("busybox telnet sends nothing for Ctrl-C in line mode")
          return nil
        end
        local proc = session_server({ TELNET_MODE = "line" })
        local term = connect(client, proc)
        term:wait_for("ready")
        return proc, term
      end

      it("turns each Ctrl-C in line mode (IAC IP) into interrupt(), and the server is heard after each", function()
        local proc, term = line_mode_ctrl_c()
        if not proc then return end
        for i, word in ipairs({ "one", "two", "three" }) do
          term:type("abc")       -- in the terminal's line buffer, not sent
          term:keys("C-c")
          proc:wait_count("stdout", "^interrupt$", i)
          term:type(word)
          term:keys("Enter")
          proc:wait_output("stdout", "line " .. hex(word) .. "\n")
          term:wait_for("hex:" .. hex(word))
        end
        assert.is_nil(proc:stdout():match("line " .. hex("abc")))
      end)

      it("shows what interrupt() writes after Ctrl-C in line mode", function()
        local proc, term = line_mode_ctrl_c()
        if not proc then return end
        term:keys("C-c")
        proc:wait_output("stdout", "interrupt\n")
        -- Written in interrupt(): it must reach the client after the
        -- answer to its DO TIMING-MARK, or the client throws it away.
        term:wait_for("interrupted")
      end)

      it("turns Ctrl-C in character mode (\\3) into interrupt() and drops the line", function()
        local proc = session_server({ TELNET_MODE = "character" })
        local term = connect(client, proc)
        term:wait_raw()
        term:wait_for("ready")
        term:type("abc")
        term:wait_for("abc")    -- echoed by the server
        term:keys("C-c")
        proc:wait_output("stdout", "interrupt\n")
        term:type("de")
        term:keys("Enter")
        proc:wait_output("stdout", "line (%x*)\n")
        assert.are.equal("line " .. hex("de") .. "\n", proc:stdout():match("line %x*\n"))
        term:wait_for("hex:" .. hex("de"))
      end)

      it("carries a 0xFF byte both ways with binary = true", function()
        -- Busybox refuses BINARY (DONT/WONT BINARY) but escapes 0xFF as
        -- IAC IAC and undoes the server's escaping all the same, so the
        -- byte makes the round trip in NVT mode; inetutils and netkit agree
        -- to BINARY both ways.
        local proc = session_server({ TELNET_MODE = "line", TELNET_BINARY = "1" })
        local term = connect(client, proc)
        term:wait_for("ready")
        term:record()
        term:type("a")
        term:bytes("ff")       -- no key of a UTF-8 keyboard types a lone 0xFF
        term:type("b")
        term:keys("Enter")
        proc:wait_output("stdout", "line 61ff62\n")
        term:wait_for("hex:61ff62")
        -- The bytes the client wrote to its terminal: the server's "raw:"
        -- line came back with the 0xFF unescaped.
        wait.until_true(function()
          return term:recorded():find("raw:a\255b", 1, true)
        end, 5, "raw:a\\255b written to the terminal")
      end)

      it("ends a line at Enter in character mode with BINARY on (a bare CR from inetutils and netkit)", function()
        local proc = session_server({ TELNET_MODE = "character", TELNET_BINARY = "1" })
        local term = connect(client, proc)
        term:wait_raw()
        term:wait_for("ready")
        term:type("xyz")
        term:keys("Enter")
        term:wait_for("hex:" .. hex("xyz"))
        term:type("uv")
        term:keys("Enter")
        term:wait_for("hex:" .. hex("uv"))
        assert.are.equal(("line %s\nline %s\n"):format(hex("xyz"), hex("uv")),
          table.concat({ proc:stdout():match("(line %x+\n)(line %x+\n)") }))
      end)
    end)
  end

  describe("chat.lua with one client of each kind", function()
    -- Join `client` to the room as `nick`; returns its terminal once the
    -- room has greeted it.
    local function join(proc, client, nick)
      local term = connect(client, proc)
      term:wait_for("Your nickname: ")
      term:type(nick)
      term:keys("Enter")
      term:wait_for("Hello " .. nick .. "%.")
      return term
    end

    it("carries lines between three telnet clients and drops one that stopped reading", function()
      local proc = example_server("chat.lua")
      local ann = join(proc, CLIENTS[1], "ann")     -- inetutils
      local bob = join(proc, CLIENTS[2], "bob")     -- netkit
      local cy = join(proc, CLIENTS[3], "cy")       -- busybox
      bob:wait_for("Here: ann%.")
      cy:wait_for("Here: ann, bob%.")
      ann:wait_for("%* cy joined")
      ann:type("hello from ann")
      ann:keys("Enter")
      bob:wait_for("<ann> hello from ann")
      cy:wait_for("<ann> hello from ann")
      cy:type("hi ann")
      cy:keys("Enter")
      ann:wait_for("<cy> hi ann")
      bob:wait_for("<cy> hi ann")

      -- ann's client stops: it reads neither its terminal nor its socket.
      ann:stop()
      -- bob and cy take turns flooding the room with 1000-byte lines, a
      -- chunk at a time: while one pastes, the other waits for the
      -- chunk's last line (only one types at a time: a terminal's local
      -- echo of typing interleaves with the lines arriving on it). The
      -- flood is what ann's socket buffers can take (the sender's grows to
      -- tcp_wmem's maximum, the stalled receiver's stays at tcp_rmem's
      -- default) and 1 MiB more, so her transport goes over its 64 KiB
      -- high mark within the last MiB, and the flood is over before the
      -- 5 s the room allows her have passed.
      local flood = kernel_setting("net/ipv4/tcp_wmem", 3, 4 * MiB)
        + 2 * kernel_setting("net/ipv4/tcp_rmem", 2, 128 * 1024) + MiB
      local line = ("x"):rep(999)
      local chunk = {}
      for i = 1, 1024 do chunk[i] = line end
      chunk = table.concat(chunk, "\n") .. "\n"
      local sent, k = 0, 0
      while sent < flood do
        k = k + 1
        local from, nick, to = bob, "bob", cy
        if k % 2 == 0 then from, nick, to = cy, "cy", bob end
        from:paste(chunk .. ("end of chunk %d\n"):format(k))
        to:wait_visible(("<%s> end of chunk %d\n"):format(nick, k), 15)
        sent = sent + #chunk
      end
      local notice = "%* ann was disconnected: not reading for 5 s\n"
      bob:wait_visible(notice, 10)
      cy:wait_visible(notice, 5)
      -- bob and cy go on without ann.
      bob:type("/who")
      bob:keys("Enter")
      bob:wait_for("Here: bob, cy%.")
      bob:type("still here")
      bob:keys("Enter")
      cy:wait_for("<bob> still here")
    end)
  end)
end)
