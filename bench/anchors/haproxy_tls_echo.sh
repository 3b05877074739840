#!/bin/sh
# Usage: haproxy_tls_echo.sh PORT PEM
# PEM holds the certificate followed by its key (HAProxy's "crt" wants both in one file).
# Runs HAProxy in the foreground (exec: the PID you started is HAProxy's).
set -e
here=$(cd "$(dirname "$0")" && pwd)
[ -n "$1" ] && [ -r "$2" ] || { echo "usage: $0 PORT PEM" >&2; exit 2; }
export ECHO_PORT="$1" ECHO_PEM="$2" ECHO_LUA="$here/haproxy_tls_echo.lua"
exec haproxy -db -f "$here/haproxy_tls_echo.cfg"
