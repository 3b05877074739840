-- haproxy_tls_echo.lua - line echo as an HAProxy 2.6 Lua TCP service.
-- HAProxy 2.6's AppletTCP has no "read what is available" call (receive(n)
-- waits for exactly n bytes), so the echo reads lines: the load generator
-- sends newline-terminated messages (tls-load --line).
core.register_service("echo", "tcp", function(applet)
  while true do
    local line = applet:getline()
    if line == nil or line == "" then return end
    applet:send(line)
  end
end)
