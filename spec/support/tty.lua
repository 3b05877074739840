--- Real terminal programs (telnet clients) driven through a pseudo-terminal
-- for integration specs: each runs in a detached tmux session on its own
-- server socket, in a fresh temporary directory, so no user's tmux is
-- touched. Keys go in with send-keys, the screen comes out with
-- capture-pane, and every wait polls the screen until a pattern shows or a
-- deadline passes. kill_all() in after_each ends every tmux server still
-- running, continues a client a spec stopped, and removes the directories.
-- @usage
--   local term = tty.start({ "telnet", proc.host, proc.port }, { width = 80, height = 24 })
--   term:wait_for("Escape character")
--   term:type("hello")      -- literal text
--   term:keys("Enter")      -- key names: Enter, BSpace, C-c, C-d, Left ...
--   term:wait_for("echo:hello")
--   term:resize(100, 30)    -- the client gets SIGWINCH
--   after_each(tty.kill_all)
local uv = require "luv"
local wait = require "support.wait"

local M = {}

-- Terminals started and not yet killed.
local live = {}

-- Quote one word for sh.
local function quote(word)
  return "'" .. tostring(word):gsub("'", [['\'']]) .. "'"
end
M.quote = quote

-- Run a shell command line; returns its output, or raises with it when the
-- command fails.
local function run(line)
  local pipe = assert(io.popen(line .. " 2>&1", "r"))
  local output = pipe:read("a")
  local ok, how, code = pipe:close()
  if not ok then
    error(("command failed (%s %s): %s\n%s"):format(tostring(how), tostring(code), line, output), 3)
  end
  return output
end

-- tmux's configuration for these servers: a pane whose program has exited
-- stays (its last screen can still be read), history is kept for floods,
-- and no status line takes a row from the program.
local CONF = table.concat({
  "set -g remain-on-exit on",
  "set -g history-limit 100000",
  "set -g status off",
  "set -g default-terminal screen",
  "set -g default-shell /bin/sh",
  "",
}, "\n")

local state -- defined below

local Term = {}
Term.__index = Term

-- The end of a screen for a failure message: its last 30 non-empty lines,
-- each cut at 160 bytes (a flood must not bury the error).
local function tail(screen)
  local lines = {}
  for line in (screen or ""):gmatch("[^\n]+") do
    lines[#lines + 1] = #line > 160 and line:sub(1, 160) .. "..." or line
  end
  return table.concat(lines, "\n", math.max(1, #lines - 29))
end

-- The tmux command line for this terminal's server, with `args` after it.
function Term:tmux(...)
  local words = { "tmux", "-f", quote(self.conf), "-S", quote(self.socket) }
  for _, word in ipairs({ ... }) do words[#words + 1] = quote(word) end
  return run(table.concat(words, " "))
end

--- Start `command` in a new detached tmux session of opts.width x
-- opts.height (default 80 x 24). `command` is a list of words or a string
-- for sh (a pipeline). Returns a Term at once; wait_for what the program
-- shows. The pane's process is a sh that runs the command as its child:
-- tmux sends SIGCONT at once to a pane process that stops (but not to its
-- children), so only a child can be stopped for good (term:stop()).
function M.start(command, opts)
  opts = opts or {}
  local dir = assert(uv.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/luaecho-tty-XXXXXX"))
  local self = setmetatable({
    dir = dir,
    socket = dir .. "/tmux.sock",
    conf = dir .. "/tmux.conf",
    width = opts.width or 80,
    height = opts.height or 24,
    stopped = {},
  }, Term)
  local f = assert(io.open(self.conf, "w"))
  assert(f:write(CONF))
  f:close()
  local line = command
  if type(command) == "table" then
    local words = {}
    for i, word in ipairs(command) do words[i] = quote(word) end
    line = table.concat(words, " ")
  end
  self.command = line
  live[self] = true
  -- TMUX set (a spec run from inside tmux) would make tmux refuse to nest.
  -- "; exit" keeps sh from exec-ing a lone command in its own place.
  local ok, err = pcall(run, ("env -u TMUX tmux -f %s -S %s new-session -d -s tty -x %d -y %d %s"):format(
    quote(self.conf), quote(self.socket), self.width, self.height, quote(line .. "; exit $?")))
  if not ok then
    self:kill()
    error(err, 2)
  end
  self.pid = tonumber(self:tmux("display-message", "-p", "-t", "tty", "#{pane_pid}"):match("%d+"))
  return self
end

--- Type `text` as it is (send-keys -l): no key names, no shell.
function Term:type(text)
  self:tmux("send-keys", "-t", "tty", "-l", text)
end

--- Press keys by tmux name: term:keys("BSpace"), term:keys("C-c", "Enter").
function Term:keys(...)
  self:tmux("send-keys", "-t", "tty", ...)
end

--- Send raw bytes given in hex (send-keys -H), e.g. term:bytes("ff"):
-- what no key on a UTF-8 keyboard types, such as a lone 0xFF.
function Term:bytes(...)
  self:tmux("send-keys", "-t", "tty", "-H", ...)
end

--- The screen and its scrollback as text, wrapped lines joined, trailing
-- spaces trimmed.
function Term:screen()
  return self:tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "tty")
end

--- Only what is visible now (no scrollback).
function Term:visible()
  return self:tmux("capture-pane", "-p", "-J", "-t", "tty")
end

-- Poll `read` (screen or visible) until it matches `pattern`; raises with
-- the end of the screen once `timeout` passes, blaming the caller of
-- wait_for or wait_visible (they tail-call this: their frame is gone).
local function wait_match(self, read, pattern, timeout, what)
  local screen
  local ok, err = pcall(wait.until_true, function()
    screen = read(self)
    return screen:match(pattern) ~= nil
  end, timeout or 5, what or ("%q on the screen"):format(pattern))
  if not ok then
    error(("%s\n--- screen of %s (end):\n%s"):format(err, self.command, tail(screen)), 2)
  end
  return screen:match(pattern)
end

--- Wait until the screen (with scrollback) matches the Lua `pattern` and
-- return the captures; raises after `timeout` seconds (default 5) with the
-- end of the screen as it was.
function Term:wait_for(pattern, timeout, what)
  return wait_match(self, Term.screen, pattern, timeout, what)
end

--- wait_for on the visible screen only: cheaper than the whole scrollback
-- when a flood has filled it.
function Term:wait_visible(pattern, timeout, what)
  return wait_match(self, Term.visible, pattern, timeout, what)
end

--- How many lines of the screen (with scrollback) match `pattern`.
function Term:count(pattern)
  local n = 0
  for line in self:screen():gmatch("[^\n]*") do
    if line:match(pattern) then n = n + 1 end
  end
  return n
end

--- Wait until at least `n` lines match `pattern`; raises with the screen.
function Term:wait_count(pattern, n, timeout, what)
  local ok, err = pcall(wait.until_true, function()
    return self:count(pattern) >= n
  end, timeout or 5, what or ("%d lines %q on the screen"):format(n, pattern))
  if not ok then
    error(("%s\n--- screen of %s (end):\n%s"):format(err, self.command, tail(self:screen())), 2)
  end
end

--- Resize the window to width x height: the pane's pty gets the new size
-- and the program SIGWINCH (resize-window works on a detached session).
function Term:resize(width, height)
  self:tmux("resize-window", "-t", "tty", "-x", tostring(width), "-y", tostring(height))
  self.width, self.height = width, height
end

--- The terminal modes the program set on its pty, as `stty -a` prints
-- them ("-icanon -echo" once a telnet client is in character mode).
function Term:modes()
  local path = self:tmux("display-message", "-p", "-t", "tty", "#{pane_tty}"):match("%S+")
  return run("stty -a -F " .. quote(path))
end

--- Wait until the program has put its terminal in raw mode (no line
-- editing, no echo: a telnet client in character mode); raises with the
-- modes and the screen after `timeout` seconds.
function Term:wait_raw(timeout)
  local modes
  local ok, err = pcall(wait.until_true, function()
    modes = self:modes()
    return modes:match("%-icanon") and modes:match("%-echo%f[%A]")
  end, timeout or 5, "the terminal in raw mode (-icanon -echo)")
  if not ok then
    error(("%s\n--- modes:\n%s--- screen of %s (end):\n%s"):format(err, modes, self.command, tail(self:screen())), 2)
  end
end

--- Paste `text` into the terminal at once (load-buffer, paste-buffer): a
-- flood of lines in one tmux command. Line ends are sent as typed: "\n"
-- becomes Enter.
function Term:paste(text)
  local path = self.dir .. "/paste"
  local f = assert(io.open(path, "wb"))
  assert(f:write(text))
  f:close()
  self:tmux("load-buffer", "-b", "paste", path)
  self:tmux("paste-buffer", "-d", "-b", "paste", "-t", "tty")
  os.remove(path)
end

--- Start recording everything the program writes to the terminal, raw, to
-- a file (pipe-pane); term:recorded() reads it.
function Term:record()
  self.recording = self.dir .. "/output"
  self:tmux("pipe-pane", "-t", "tty", "-o", "cat >> " .. quote(self.recording))
end

--- The raw bytes recorded since term:record().
function Term:recorded()
  local f = io.open(assert(self.recording, "term:record() first"), "rb")
  if not f then return "" end
  local text = f:read("a")
  f:close()
  return text
end

--- True while the pane's program runs.
function Term:alive()
  return self:tmux("display-message", "-p", "-t", "tty", "#{pane_dead}"):match("0") ~= nil
end

-- The state letter of `pid` in /proc (R, S, T, Z...), nil once gone.
function state(pid)
  local f = io.open(("/proc/%d/stat"):format(pid), "r")
  if not f then return nil end
  local stat = f:read("a") or ""
  f:close()
  return stat:match("%) (%a)")
end

--- The pids of the command's processes (the children of the pane's sh);
-- waits until there is one.
function Term:programs()
  return wait.until_true(function()
    local pids = {}
    for pid in run("pgrep -P " .. self.pid .. " || true"):gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
    if #pids > 0 then return pids end
  end, 5, "the processes of " .. self.command)
end

--- Stop (SIGSTOP) the command's processes, or continue them (SIGCONT): a
-- stopped client reads neither its terminal nor its socket. Returns once
-- they are stopped.
function Term:stop()
  for _, pid in ipairs(self:programs()) do
    assert(uv.kill(pid, "sigstop"))
    self.stopped[pid] = true
    wait.until_true(function() return state(pid) ~= "R" and state(pid) ~= "S" end, 5, "a stopped " .. pid)
  end
end

function Term:continue()
  for pid in pairs(self.stopped) do uv.kill(pid, "sigcont") end
  self.stopped = {}
end

-- True while `pid` runs: a zombie (exited, not reaped yet: tmux's server
-- daemonised, so init reaps its children when it gets to it) does not.
local function running(pid)
  local s = state(pid)
  return s ~= nil and s ~= "Z"
end

--- End the tmux server (its pane's program gets SIGHUP; one still there
-- after 2 s gets SIGKILL) and remove the directory. Safe to call twice.
function Term:kill()
  if not live[self] then return end
  live[self] = nil
  local pids = {}
  for pid in pairs(self.stopped) do pids[#pids + 1] = pid end
  if self.pid then
    pids[#pids + 1] = self.pid
    local ok, children = pcall(run, "pgrep -P " .. self.pid)
    for pid in (ok and children or ""):gmatch("%d+") do pids[#pids + 1] = tonumber(pid) end
  end
  -- A stopped program would keep the SIGHUP pending forever.
  self:continue()
  pcall(run, ("tmux -S %s kill-server"):format(quote(self.socket)))
  for _, pid in ipairs(pids) do
    if not pcall(wait.until_true, function() return not running(pid) end, 2) then
      uv.kill(pid, "sigkill")
    end
  end
  for _, name in ipairs({ "tmux.sock", "tmux.conf", "output", "paste" }) do os.remove(self.dir .. "/" .. name) end
  uv.fs_rmdir(self.dir)
end

--- Kill every terminal still live; for after_each / teardown.
function M.kill_all()
  for term in pairs(live) do term:kill() end
end

-- An error outside a spec must not leave tmux servers behind.
M._guard = setmetatable({}, { __gc = function()
  for term in pairs(live) do
    pcall(os.execute, ("tmux -S %s kill-server 2>/dev/null; rm -rf %s"):format(quote(term.socket), quote(term.dir)))
  end
end })

return M
