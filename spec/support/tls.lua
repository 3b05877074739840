--- TLS for integration specs: certificates made at test time with the
-- `openssl` command, and TLS clients that are not luaecho.
-- tls.pki() makes, in a fresh temporary directory (removed by pki:remove(),
-- or by tls.remove_all() in teardown), with EC P-256 keys (fast):
--   ca.pem/ca.key           a test CA (CN=luaecho test CA)
--   server.pem/server.key   localhost + 127.0.0.1, signed by the CA (the default)
--   a.pem/a.key, b.pem/b.key  a.test and b.test (for SNI), signed by the CA
--   renewed.pem/renewed.key localhost again, subject O=renewed,CN=localhost (a swap)
--   client.pem/client.key   CN=client, signed by the CA (client auth)
--   selfsigned.pem/.key     CN=client, self-signed (not by the CA)
--   expired.pem/expired.key localhost, signed by the CA, valid 2020-01-01..02 only
--   other.key               a key that matches no certificate
-- Clients: tls.s_client(...) runs `openssl s_client` with a pipe for its
-- stdin and files for its output (read them at any time, as support.server
-- does); tls.python(...) runs spec/fixtures/tls/client.py, the Python `ssl`
-- client, which prints one JSON object (see that file for its options).
-- Every wait has a deadline; every process is stopped by its handle.
-- @usage
--   local pki = tls.pki()
--   local proc = server.start_listeners({ "--listen", "tls:127.0.0.1:0",
--     "--tls-cert", pki.server_cert, "--tls-key", pki.server_key })
--   local result = tls.python({ "--port", proc.port, "--cafile", pki.ca, "--send", "hi" })
--   after_each(tls.remove_all)
local uv = require "luv"
local component = require "support.component"
local files = require "support.files"
local json = require "support.json"
local server = require "support.server"
local wait = require "support.wait"

local M = {}

M.OPENSSL = os.getenv("LUAECHO_OPENSSL") or "openssl"
M.PYTHON = os.getenv("LUAECHO_PYTHON") or "python3"

-- Directories made, not yet removed; clients started, not yet stopped.
local dirs, clients = {}, component.registry()

local function remove_dir(dir)
  local entries = uv.fs_scandir(dir)
  while entries do
    local name = uv.fs_scandir_next(entries)
    if not name then break end
    os.remove(dir .. "/" .. name)
  end
  uv.fs_rmdir(dir)
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run `openssl ARGS` in `dir`; raise with its output if it fails.
local function openssl(dir, args)
  local parts = { "cd", quote(dir), "&&", quote(M.OPENSSL) }
  for _, arg in ipairs(args) do parts[#parts + 1] = quote(arg) end
  local log = dir .. "/openssl.log"
  local command = table.concat(parts, " ") .. " >" .. quote(log) .. " 2>&1"
  local ok = os.execute(command)
  if not ok then
    error(("openssl %s failed:\n%s"):format(table.concat(args, " "), files.read_if_present(log)), 3)
  end
end

local function new_key(dir, name)
  openssl(dir, { "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name .. ".key" })
  return dir .. "/" .. name .. ".key"
end

-- An extensions file for a leaf: server (SAN `names`) or client.
local function leaf_extensions(dir, name, sans, usage)
  local lines = { "basicConstraints=CA:FALSE", "extendedKeyUsage=" .. usage }
  if sans then lines[#lines + 1] = "subjectAltName=" .. sans end
  return files.write(dir .. "/" .. name .. ".ext", table.concat(lines, "\n") .. "\n")
end

local serial = 1

-- A leaf certificate NAME.pem for `subject`, signed by the CA.
local function signed(dir, name, subject, sans, usage)
  new_key(dir, name)
  openssl(dir, { "req", "-new", "-key", name .. ".key", "-subj", subject, "-out", name .. ".csr" })
  serial = serial + 1
  openssl(dir, { "x509", "-req", "-in", name .. ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
    "-set_serial", tostring(serial), "-days", "3", "-extfile", leaf_extensions(dir, name, sans, usage),
    "-out", name .. ".pem" })
  return dir .. "/" .. name .. ".pem", dir .. "/" .. name .. ".key"
end

-- A certificate signed by the CA whose validity ended long ago: `openssl ca`
-- takes explicit start and end dates (x509 -req has no start date in 3.0).
local function expired(dir)
  new_key(dir, "expired")
  openssl(dir, { "req", "-new", "-key", "expired.key", "-subj", "/CN=localhost", "-out", "expired.csr" })
  files.write(dir .. "/index.txt", "")
  files.write(dir .. "/serial", "7F01\n")
  files.write(dir .. "/ca.cnf", table.concat({
    "[ ca ]", "default_ca = test_ca",
    "[ test_ca ]",
    "database = " .. dir .. "/index.txt",
    "new_certs_dir = " .. dir,
    "serial = " .. dir .. "/serial",
    "default_md = sha256",
    "policy = any",
    "unique_subject = no",
    "[ any ]", "commonName = supplied", "",
  }, "\n"))
  openssl(dir, { "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
    "-in", "expired.csr", "-out", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
    "-extfile", leaf_extensions(dir, "expired", "DNS:localhost,IP:127.0.0.1", "serverAuth") })
  return dir .. "/expired.pem", dir .. "/expired.key"
end

local Pki = {}
Pki.__index = Pki

--- Make the certificates above in a fresh directory; returns the Pki with
-- the paths: dir, ca, ca_key, server_cert/server_key, a_cert/a_key,
-- b_cert/b_key, renewed_cert/renewed_key, client_cert/client_key,
-- selfsigned_cert/selfsigned_key, expired_cert/expired_key, other_key.
function M.pki()
  local base = os.getenv("TMPDIR") or "/tmp"
  local dir = assert(uv.fs_mkdtemp(base .. "/luaecho-tls-XXXXXX"))
  local self = setmetatable({ dir = dir }, Pki)
  dirs[self] = true
  self.ca_key = new_key(dir, "ca")
  openssl(dir, { "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=luaecho test CA", "-days", "3",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    "-out", "ca.pem" })
  self.ca = dir .. "/ca.pem"
  local server_sans = "DNS:localhost,IP:127.0.0.1"
  self.server_cert, self.server_key = signed(dir, "server", "/CN=localhost", server_sans, "serverAuth")
  self.a_cert, self.a_key = signed(dir, "a", "/CN=a.test", "DNS:a.test", "serverAuth")
  self.b_cert, self.b_key = signed(dir, "b", "/CN=b.test", "DNS:b.test", "serverAuth")
  self.renewed_cert, self.renewed_key = signed(dir, "renewed", "/O=renewed/CN=localhost", server_sans, "serverAuth")
  self.client_cert, self.client_key = signed(dir, "client", "/CN=client", nil, "clientAuth")
  new_key(dir, "selfsigned")
  openssl(dir, { "req", "-x509", "-new", "-key", "selfsigned.key", "-subj", "/CN=client", "-days", "3",
    "-out", "selfsigned.pem" })
  self.selfsigned_cert, self.selfsigned_key = dir .. "/selfsigned.pem", dir .. "/selfsigned.key"
  self.expired_cert, self.expired_key = expired(dir)
  self.other_key = new_key(dir, "other")
  return self
end

--- A copy of file `from` at NAME in the directory (for files a spec swaps).
function Pki:copy(from, name)
  return files.write(self.dir .. "/" .. name, files.read(from))
end

--- Remove the directory and all in it; safe to call more than once.
function Pki:remove()
  if not dirs[self] then return end
  remove_dir(self.dir)
  dirs[self] = nil
end

--- The usual flags of a TLS echo: --listen tls:127.0.0.1:0 and the default
-- certificate, then `extra`.
function Pki:server_args(extra)
  local args = { "--listen", "tls:127.0.0.1:0", "--tls-cert", self.server_cert, "--tls-key", self.server_key }
  for _, arg in ipairs(extra or {}) do args[#args + 1] = arg end
  return args
end

------------------------------------------------------------------------------
-- Child processes: stdin a pipe (or nothing), stdout and stderr temp files.

local Child = {}
Child.__index = Child

local function spawn(bin, args, with_stdin)
  local self = setmetatable({ bin = bin, args = args }, Child)
  self.out_path, self.err_path = os.tmpname(), os.tmpname()
  local out_fd = assert(uv.fs_open(self.out_path, "w", tonumber("600", 8)))
  local err_fd = assert(uv.fs_open(self.err_path, "w", tonumber("600", 8)))
  if with_stdin then self.stdin = uv.new_pipe(false) end
  local handle, pid = uv.spawn(bin, {
    args = args, stdio = { self.stdin, out_fd, err_fd }, cwd = assert(uv.cwd()),
  }, function(code, signal) self.code, self.signal = code, signal end)
  uv.fs_close(out_fd)
  uv.fs_close(err_fd)
  if not handle then
    os.remove(self.out_path)
    os.remove(self.err_path)
    error(("cannot start %s: %s"):format(bin, tostring(pid)), 3)
  end
  self.handle, self.pid = handle, pid
  clients.add(self)
  return self
end

function Child:stdout() return files.read_if_present(self.out_path) end
function Child:stderr() return files.read_if_present(self.err_path) end

function Child:exited()
  uv.run("nowait")
  return self.code ~= nil
end

function Child:describe()
  return ("%s %s (exit %s)\n--- stdout:\n%s\n--- stderr:\n%s"):format(self.bin, table.concat(self.args, " "),
    tostring(self.code), self:stdout(), self:stderr())
end

--- Write `data` to the child's stdin (the write completes in the loop).
function Child:write(data)
  assert(self.stdin, "no stdin pipe"):write(data)
  uv.run("nowait")
end

--- Close the child's stdin (EOF for it).
function Child:close_stdin()
  if self.stdin and not self.stdin:is_closing() then
    self.stdin:shutdown()
    self.stdin:close()
  end
  uv.run("nowait")
end

--- Wait until stdout (or `stream`) holds `plain` (a plain string); returns
-- that stream's text. Raises with the child's output otherwise.
function Child:wait_for(plain, timeout, stream)
  stream = stream or "stdout"
  local ok, err = pcall(wait.until_true, function()
    local text = self[stream](self)
    if text:find(plain, 1, true) then return text end
    if self:exited() and not self[stream](self):find(plain, 1, true) then
      error("exited", 0)
    end
  end, timeout or 5)
  if not ok then
    error(("no %q on %s (%s)\n%s"):format(plain, stream, tostring(err), self:describe()), 2)
  end
  return self[stream](self)
end

--- Wait (bounded) for the child to exit by itself; returns its code.
function Child:wait_exit(timeout)
  local ok = pcall(wait.until_true, function() return self:exited() end, timeout or 5)
  if not ok then error(("still running after %gs:\n%s"):format(timeout or 5, self:describe()), 2) end
  return self.code
end

--- Stop it (SIGTERM by its handle, SIGKILL if it lingers), reap it,
-- remove its files. Safe to call more than once. Returns no problems (a
-- client's own failures are the spec's to judge), as registry() expects.
function Child:stop()
  if not clients.has(self) then return {} end
  if not self:exited() then
    uv.process_kill(self.handle, "sigterm")
    if not pcall(wait.until_true, function() return self:exited() end, 3) then
      uv.process_kill(self.handle, "sigkill")
      pcall(wait.until_true, function() return self:exited() end, 3)
    end
  end
  if self.stdin and not self.stdin:is_closing() then self.stdin:close() end
  if not self.handle:is_closing() then self.handle:close() end
  uv.run("nowait")
  os.remove(self.out_path)
  os.remove(self.err_path)
  clients.remove(self)
  return {}
end

--- `openssl s_client -connect HOST:PORT ARGS...` (no -connect when HOST
-- is nil: ARGS say where, e.g. -unix PATH) with its stdin a pipe
-- (-nocommands: a line starting with Q or R is data). Returns the Child;
-- its stdout has the session summary (subject=..., Protocol, Cipher, ALPN,
-- Verify return code) and what the server sent.
function M.s_client(host, port, args)
  local full = { "s_client", "-nocommands" }
  if host then
    full[#full + 1] = "-connect"
    full[#full + 1] = ("%s:%d"):format(host, port)
  end
  for _, arg in ipairs(args or {}) do full[#full + 1] = tostring(arg) end
  return spawn(M.OPENSSL, full, true)
end

--- What s_client's output says of the session: { subject=, protocol=,
-- cipher=, alpn=, verify=, verify_code= } (nil where it says nothing).
function M.s_client_session(out)
  local session = {}
  session.subject = out:match("\nsubject=([^\n]*)")
  session.protocol, session.cipher = out:match("\nNew, (%S+), Cipher is (%S+)")
  session.alpn = out:match("\nALPN protocol: ([^\n]*)")
  session.verify_code, session.verify = out:match("\nVerify return code: (%d+) %(([^)]*)%)")
  session.verify_code = tonumber(session.verify_code)
  return session
end

--- Path of the Python ssl client.
function M.python_client()
  return server.fixture("tls/client.py")
end

--- Start the Python client with `args` (its options; numbers are turned
-- into strings); returns the Child at once.
function M.python_spawn(args)
  local full = { M.python_client() }
  for _, arg in ipairs(args) do full[#full + 1] = tostring(arg) end
  return spawn(M.PYTHON, full, false)
end

--- Run the Python client to completion (bounded by `timeout`, default 10 s)
-- and return its JSON report decoded (a null field is nil). Raises if it
-- does not print one.
function M.python(args, timeout)
  local child = M.python_spawn(args)
  child:wait_exit(timeout or 10)
  local out = child:stdout()
  local ok, report = pcall(json.decode, (out:match("^%s*(.-)%s*$")))
  if not ok or type(report) ~= "table" then
    local description = child:describe()
    child:stop()
    error("the Python client printed no JSON report:\n" .. description, 2)
  end
  child:stop()
  for key, value in pairs(report) do
    if value == json.null then report[key] = nil end
  end
  return report
end

--- Stop every client still running and remove every PKI directory; for
-- after_each / teardown.
function M.remove_all()
  clients.stop_all()
  for pki in pairs(dirs) do pki:remove() end
end

--- Stop the clients only (keep the PKI for the next spec).
function M.stop_clients()
  clients.stop_all()
end

return M
