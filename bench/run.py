#!/usr/bin/env python3
"""The echo benchmark of scripts/bench, self-contained (issue 18, point 2).

Client: luaecho-bench. Servers: the bare libuv echo (bench/anchors/libuv_echo.c,
the ceiling), luaecho serving lua/examples/plain_echo.lua (Protocol style) and
lua/examples/stream_echo.lua (streams style, LUAECHO_QUIET=1, reads of 65536);
with the workspace's shared bench folder (../shared/bench or $LUAECHO_SHARED/bench)
also uvloop, asyncio, uvloop streams, luv and HAProxy, started from its anchors.

Every server is pinned to CPU 0 and the client to CPU 1. All servers of a
transport are up at once; each run of a cell goes through every server, the
order rotated from run to run, so a drift of the machine hits all alike. The
figure that compares servers is the server's CPU time per round trip (its
utime+stime over the measured window, luaecho-bench --server-pid), shown as
the median of the runs with its ratio to libuv's median in the same cell.
Idle memory: a fresh server per row, luaecho-bench --hold N (RSS growth per
connection over a baseline).

Called by scripts/bench, which builds the binaries first; the results
(results.jsonl, report.md, logs) go to build-release/bench/<time>/.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SERVER_CPU, CLIENT_CPU = "0", "1"
PY = "/usr/bin/python3"  # Debian's python: the one python3-uvloop is installed for

# A UDP handler for luaecho: plain_echo.lua has no datagram_received.
UDP_ECHO_LUA = """-- written by bench/run.py: plain_echo.lua for a udp: listener
local UdpEcho = {}
function UdpEcho:connection_made(transport) self.transport = transport end
function UdpEcho:datagram_received(data, host, port) self.transport:sendto(data, host, port) end
return UdpEcho
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """One server process: name, argv, env, the target luaecho-bench is given."""

    def __init__(self, name, transport, argv_fn, env=None, expect="echo"):
        self.name, self.transport, self.argv_fn = name, transport, argv_fn
        self.env, self.expect = env or {}, expect
        self.proc = None

    def start(self, tmp, logdir, bench):
        if self.transport == "tcp":
            port = free_port()
            addr, self.target = str(port), f"127.0.0.1:{port}"
        elif self.transport == "unix":
            path = os.path.join(tmp, f"{self.name}.sock")
            addr, self.target = path, f"unix:{path}"
        else:
            port = free_port(socket.SOCK_DGRAM)
            addr, self.target = str(port), f"udp:127.0.0.1:{port}"
        argv = ["taskset", "-c", SERVER_CPU] + self.argv_fn(addr)
        env = dict(os.environ, **self.env)
        self.log = open(os.path.join(logdir, f"{self.name}.{self.transport}.log"), "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        # up when a short run passes (UDP: no listening state to look for)
        deadline = time.time() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} ({self.transport}) exited at start: see {self.log.name}")
            r = subprocess.run(["taskset", "-c", CLIENT_CPU, bench, "--conns", "1", "--size", "64",
                                "--duration", "0.2", "--warmup", "0", "--expect", self.expect,
                                "--json", self.target], capture_output=True, text=True)
            if r.returncode == 0:
                return
            if time.time() > deadline:
                raise RuntimeError(f"{self.name} ({self.transport}) does not echo after 15 s: "
                                   f"{(r.stdout + r.stderr).strip()[-300:]}")
            time.sleep(0.2)

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            log(f"bench: {self.name} (pid {self.proc.pid}) ignored SIGTERM for 5 s: SIGKILL")
            self.proc.kill()
            self.proc.wait()


def servers_for(transport, root, build, tmp, shared):
    """The servers of one transport, in table order; shared: the shared bench dir or None."""
    luaecho = os.path.join(build, "luaecho")
    anchor = os.path.join(build, "libuv-echo")
    plain = os.path.join(root, "lua/examples/plain_echo.lua")
    streams = os.path.join(root, "lua/examples/stream_echo.lua")
    quiet = {"LUAECHO_QUIET": "1", "LUAECHO_READ_SIZE": "65536"}
    if transport == "tcp":
        out = [Server("libuv", "tcp", lambda a: [anchor, a]),
               Server("luaecho", "tcp", lambda a: [luaecho, "--port", a, plain]),
               Server("luaecho_streams", "tcp", lambda a: [luaecho, "--port", a, streams], quiet)]
        if shared:
            anc = os.path.join(shared, "anchors")
            out += [Server("uvloop", "tcp", lambda a: [PY, f"{anc}/uvloop_protocol_echo.py", a]),
                    Server("asyncio", "tcp", lambda a: [PY, f"{anc}/asyncio_protocol_echo.py", a]),
                    Server("uvloop_streams", "tcp", lambda a: [PY, f"{anc}/uvloop_streams_echo.py", a]),
                    Server("luv", "tcp", lambda a: ["lua5.4", f"{anc}/luv_echo.lua", a]),
                    # HAProxy 2.6's Lua can only echo lines
                    Server("haproxy", "tcp", lambda a: [f"{anc}/haproxy_echo.sh", a, "1"], expect="line")]
        return out
    if transport == "unix":
        return [Server("libuv", "unix", lambda a: [anchor, f"unix:{a}"]),
                Server("luaecho", "unix", lambda a: [luaecho, "--listen", f"unix:{a}", plain]),
                Server("luaecho_streams", "unix", lambda a: [luaecho, "--listen", f"unix:{a}", streams], quiet)]
    udp_lua = os.path.join(tmp, "udp_echo.lua")
    with open(udp_lua, "w") as f:
        f.write(UDP_ECHO_LUA)
    return [Server("libuv", "udp", lambda a: [anchor, f"udp:{a}"]),
            Server("luaecho", "udp", lambda a: [luaecho, "--listen", f"udp:127.0.0.1:{a}", udp_lua])]


def shared_usable(shared):
    """The reasons the shared anchors cannot run here, [] when they can."""
    missing = []
    if subprocess.run([PY, "-c", "import uvloop"], capture_output=True).returncode != 0:
        missing.append("python3-uvloop")
    if not shutil.which("lua5.4") or subprocess.run(
            ["lua5.4", "-e", "require 'luv'"], capture_output=True).returncode != 0:
        missing.append("lua5.4 with luv (lua-luv)")
    if not shutil.which("haproxy"):
        missing.append("haproxy")
    for f in ("uvloop_protocol_echo.py", "asyncio_protocol_echo.py", "uvloop_streams_echo.py",
              "luv_echo.lua", "haproxy_echo.sh"):
        if not os.path.exists(os.path.join(shared, "anchors", f)):
            missing.append(f"anchors/{f}")
    return missing


def run_bench(bench, args, pid):
    argv = ["taskset", "-c", CLIENT_CPU, bench, "--server-pid", str(pid), "--json"] + args  # TARGET last
    r = subprocess.run(argv, capture_output=True, text=True)
    try:
        d = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        d = {"ok": False, "first_error": (r.stderr or r.stdout).strip()[-300:] or "no result"}
    if r.returncode != 0:
        d["ok"] = False
    return d


def fmt_size(n):
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def spread(vals):
    """Half the range, in % of the median."""
    if len(vals) < 2:
        return ""
    m = statistics.median(vals)
    return f" ±{(max(vals) - min(vals)) / 2 / m * 100:.0f}%" if m else ""


def report(results, holds, names_by_t, meta):
    out = [f"# luaecho echo benchmark {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}", ""]
    out += [f"- {line}" for line in meta] + [""]
    for t, names in names_by_t.items():
        cells = sorted({(r["size"], r["conns"]) for r in results if r["transport"] == t})
        if not cells:
            continue
        med = {}
        for (size, conns) in cells:
            for n in names:
                rs = [r["result"] for r in results if (r["transport"], r["size"], r["conns"], r["server"])
                      == (t, size, conns, n)]
                ok = [r for r in rs if r.get("ok") and r.get("server_cpu_us_per_rt")]
                cpu = [r["server_cpu_us_per_rt"] for r in ok]
                rts = [r["rt_per_s"] for r in ok]
                med[(size, conns, n)] = (cpu, rts, len(rs) - len(ok))
        out += [f"## {t.upper()}: server CPU µs per round trip (median, ±half range; ×libuv)", ""]
        out.append("| cell | " + " | ".join(names) + " |")
        out.append("|---|" + "---:|" * len(names))
        for (size, conns) in cells:
            base = med[(size, conns, "libuv")][0]
            bm = statistics.median(base) if base else None
            row = []
            for n in names:
                cpu, _, bad = med[(size, conns, n)]
                if not cpu:
                    row.append("failed")
                    continue
                m = statistics.median(cpu)
                ratio = f" · {m / bm:.2f}×" if bm else ""
                row.append(f"{m:.2f}{spread(cpu)}{ratio}" + (f" ({bad} failed)" if bad else ""))
            out.append(f"| {fmt_size(size)} × {conns} | " + " | ".join(row) + " |")
        out += ["", f"## {t.upper()}: round trips per second (median; the client's core saturates first)", ""]
        out.append("| cell | " + " | ".join(names) + " |")
        out.append("|---|" + "---:|" * len(names))
        for (size, conns) in cells:
            row = []
            for n in names:
                _, rts, _ = med[(size, conns, n)]
                row.append(f"{statistics.median(rts):,.0f}" if rts else "failed")
            out.append(f"| {fmt_size(size)} × {conns} | " + " | ".join(row) + " |")
        out.append("")
    if holds:
        out += ["## Idle memory per connection (TCP, RSS growth over a baseline)", ""]
        out.append("| server | held past the baseline | bytes per connection |")
        out.append("|---|---:|---:|")
        for n, d in holds:
            b = d.get("bytes_per_conn")
            out.append(f"| {n} | {d.get('held', '?')} | {b if d.get('ok') and b is not None else 'failed: ' + str(d.get('first_error'))} |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 KiB x 10 once, 1000 held connections")
    ap.add_argument("--sizes", default="64,1024,16384,65536")
    ap.add_argument("--conns", default="10,100")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved runs per cell (median shown)")
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--hold", type=int, default=None, help="idle connections held (default 10000, "
                    "5000 if ulimit -n is lower; 0: no memory rows)")
    ap.add_argument("--transports", action="store_true", help="also Unix and UDP, against libuv in that mode")
    ap.add_argument("--only", default=None, help="comma-separated server names (libuv is always kept)")
    ap.add_argument("--no-shared", action="store_true", help="leave out the shared anchors")
    ap.add_argument("--build", required=True, help="the build folder with luaecho, luaecho-bench, libuv-echo")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.conns, a.repeat, a.duration, a.warmup = "1024", "10", 1, 2, 0.5
        if a.hold is None:
            a.hold = 1000
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    build = os.path.abspath(a.build)
    bench = os.path.join(build, "luaecho-bench")
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs 2 CPUs (servers on CPU 0, the client on CPU 1)")
    if not shutil.which("taskset"):
        sys.exit("bench: taskset is missing (apt-get install util-linux)")

    # file descriptors for the hold: raise the soft limit to the hard one
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    except (ValueError, OSError):
        pass
    hold_note = ""
    if a.hold is None:
        a.hold = 10000 if soft >= 10000 + 200 else 5000
        if a.hold == 5000:
            hold_note = f" (5000, not 10000: ulimit -n is {soft})"
    if a.hold and a.hold + 200 > soft:
        sys.exit(f"bench: --hold {a.hold} needs about {a.hold + 200} file descriptors, ulimit -n is {soft}")

    shared_env = os.environ.get("LUAECHO_SHARED")
    shared = os.path.realpath(os.path.join(shared_env or os.path.join(root, "..", "shared"), "bench"))
    shared_line = None
    if a.no_shared:
        shared, shared_line = None, "shared anchors: left out (--no-shared)"
    elif not os.path.isdir(shared):
        shared_line = f"shared anchors: not included ({shared} is absent; they need the workspace's ../shared)"
        shared = None
    else:
        missing = shared_usable(shared)
        if missing:
            shared_line = f"shared anchors: not included ({shared} is there but this machine lacks: {', '.join(missing)})"
            shared = None
        else:
            shared_line = f"shared anchors: uvloop, asyncio, uvloop_streams, luv, haproxy from {shared}/anchors"
    log(f"bench: {shared_line}")

    sizes = [int(s) for s in a.sizes.split(",")]
    conns = [int(c) for c in a.conns.split(",")]
    transports = ["tcp"] + (["unix", "udp"] if a.transports else [])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = os.path.join(build, "bench", stamp)
    os.makedirs(outdir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="luaecho-bench.")
    results, holds, names_by_t, running = [], [], {}, []
    jsonl = open(os.path.join(outdir, "results.jsonl"), "w")
    t0 = time.time()
    try:
        for t in transports:
            srv = servers_for(t, root, build, tmp, shared)
            if a.only:
                keep = set(a.only.split(",")) | {"libuv"}
                srv = [s for s in srv if s.name in keep]
            for s in srv:
                s.start(tmp, outdir, bench)
                running.append(s)
                log(f"== {s.name} ({t}): pid {s.proc.pid}, {s.target}")
            names_by_t[t] = [s.name for s in srv]
            k = 0
            for size in sizes:
                if t == "udp" and size > 65507:
                    log(f"   udp: {size} B does not fit in a datagram, skipped")
                    continue
                for c in conns:
                    for rep in range(a.repeat):
                        for j in range(len(srv)):
                            s = srv[(j + k) % len(srv)]
                            d = run_bench(bench, ["--conns", str(c), "--size", str(size),
                                                  "--duration", str(a.duration), "--warmup", str(a.warmup),
                                                  "--expect", s.expect, s.target], s.proc.pid)
                            rec = {"transport": t, "server": s.name, "size": size, "conns": c,
                                   "rep": rep, "result": d}
                            results.append(rec)
                            jsonl.write(json.dumps(rec) + "\n")
                            jsonl.flush()
                            log(f"   {t} {s.name:15} {fmt_size(size):>6} x {c:<3} run {rep + 1}: "
                                f"{d.get('rt_per_s', '?')} rt/s, {d.get('server_cpu_us_per_rt', '?')} us CPU/rt"
                                + ("" if d.get("ok") else f"  FAILED: {d.get('first_error')}"))
                            if s.proc.poll() is not None:
                                raise RuntimeError(f"{s.name} ({t}) died during the runs: see its log in {outdir}")
                        k += 1
            for s in srv:
                s.stop()
            running = []
        if a.hold:
            for s in servers_for("tcp", root, build, tmp, shared):
                if a.only and s.name not in set(a.only.split(",")) | {"libuv"}:
                    continue
                s.start(tmp, outdir, bench)
                running = [s]
                d = run_bench(bench, ["--hold", str(a.hold), "--expect", s.expect, s.target], s.proc.pid)
                holds.append((s.name, d))
                jsonl.write(json.dumps({"transport": "tcp", "server": s.name, "hold": a.hold, "result": d}) + "\n")
                log(f"   hold {s.name:15} {a.hold}: {d.get('bytes_per_conn', '?')} B per idle connection"
                    + ("" if d.get("ok") else f"  FAILED: {d.get('first_error')}"))
                s.stop()
                running = []
    finally:
        for s in running:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        jsonl.close()
    wall = time.time() - t0

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((l.split(":", 1)[1].strip() for l in lscpu.splitlines() if l.startswith("Model name")), "?")
    version = subprocess.run([os.path.join(build, "luaecho"), "--version"], capture_output=True,
                             text=True).stdout.strip().splitlines()
    cmd = "scripts/bench" + ("".join(" " + x for x in sys.argv[1:] if not x.startswith("--build")
                                     and x != a.build))
    meta = [f"command: `{cmd}`",
            f"cells: {', '.join(fmt_size(s) for s in sizes)} × {', '.join(map(str, conns))} connections, "
            f"{', '.join(transports)}; one request in flight per connection; {a.warmup} s warm-up + "
            f"{a.duration} s measured; {a.repeat} interleaved run(s) per cell, server order rotated; "
            f"servers on CPU {SERVER_CPU}, luaecho-bench on CPU {CLIENT_CPU}; wall time {wall:.0f} s",
            f"idle memory: {a.hold} connections held{hold_note}" if a.hold else "idle memory: not measured",
            f"machine: {model}, {os.cpu_count()} CPUs, kernel {os.uname().release}; "
            f"{version[0] if version else 'luaecho'}",
            shared_line]
    text = report(results, holds, names_by_t, meta)
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    log(f"bench: report in {os.path.relpath(outdir, root)}/report.md")
    bad = [r for r in results if not r["result"].get("ok")] + [h for h in holds if not h[1].get("ok")]
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        sys.exit(f"bench: {e}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted")
