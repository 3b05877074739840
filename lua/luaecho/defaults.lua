--- The host's default limits, written once. The C build reads this file
-- (CMakeLists.txt turns each `name = integer,` line into a #define
-- LUAECHO_DEFAULT_NAME in luaecho_defaults.h) and luaecho.testing's fake host
-- requires it: the two cannot drift apart. Keep one `name = integer,` a line.
-- @usage
--   local defaults = require("luaecho.defaults")
--   print(defaults.high_water)          --> 65536
return {
  port = 2222,                  -- --port
  high_water = 65536,           -- a transport's high mark; the low mark is a quarter of it
  max_water = 4294967295,       -- the largest mark set_write_buffer_limits() takes (marks are 32-bit)
  read_chunk = 65536,           -- the host reads at most this many bytes at a time
  max_write_buffer = 16777216,  -- --max-write-buffer (bytes)
  channel_buffer = 16777216,    -- --channel-buffer: each worker's luaecho.channel inbox (bytes)
  shutdown_timeout_ms = 5000,   -- --shutdown-timeout
  proxy_timeout_ms = 5000,      -- --proxy-timeout: a PROXY header must arrive within it
  tls_handshake_timeout_ms = 10000, -- --tls-handshake-timeout: a TLS handshake must finish within it
  script_timeout_ms = 1000,     -- --script-timeout
  lua_memory_mib = 512,         -- --lua-memory
  descriptor_reserve = 32,      -- --max-connections' default is `ulimit -n` minus this
}
